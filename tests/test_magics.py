"""%%agent and %agent through a real IPython shell (no kernel: runs are headless)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import nbagent
from nbagent.testing import ScriptedServer, call, say, use_tools


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbagent")
    yield ip
    ip.run_line_magic("unload_ext", "nbagent")


@pytest.fixture(autouse=True)
def _fresh(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NBAGENT_MODEL", "NBAGENT_API_BASE", "NBAGENT_APPROVE", "NBAGENT_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    shell.run_line_magic("agent", "new default")
    shell.run_line_magic("config", "NBAgent.model = None")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def run(shell: InteractiveShell, code: str) -> object:
    result = shell.run_cell(code)
    if result.error_before_exec or result.error_in_exec:
        raise result.error_before_exec or result.error_in_exec
    return shell.user_ns["_"]


def usage_error(shell: InteractiveShell, code: str, capsys: pytest.CaptureFixture[str]) -> str:
    result = shell.run_cell(code)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    err = capsys.readouterr().err.strip()
    assert err.startswith("UsageError: ") and "\n" not in err, err  # one line, no traceback
    return err


def test_a_cell_becomes_a_top_level_await(shell: InteractiveShell) -> None:
    code = shell.transform_cell("%%agent -s x\nhello")
    assert code.startswith("await get_ipython().run_cell_magic('agent', '-s x', 'hello")
    assert not shell.transform_cell("print(1)").startswith("await")


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%%agent --bogus\nhi", "unrecognized arguments: --bogus"),
        ("%%agent --approve maybe\nhi", "invalid choice: 'maybe'"),
        ("%%agent --mode later\nhi", "invalid choice: 'later'"),
        ("%%agent --max-turns many\nhi", "invalid int value: 'many'"),
        ("%%agent --max-turns 0\nhi", "--max-turns must be at least 1"),
        ("%%agent\n   \n", "write the message to the agent"),
        ("%%agent --tools nosuch\nhi", "no tool named 'nosuch'"),
        ("%%agent --tools not_callable\nhi", "not_callable cannot be a tool"),
        ("%agent frobnicate", "unknown %agent command 'frobnicate'"),
        ("%agent frobnicate", "valid commands: sessions, use, new, history"),
        ("%agent use a b", "wrong arguments for %agent use; usage: %agent use NAME"),
        ("%agent fork x --at", "usage: %agent fork NEW [--at CHECKPOINT]"),
        ("%agent code some", "usage: %agent code [all]"),
        ("%agent history nobody", "no session named 'nobody'"),
        ("%%agent -p temperature\nhi", "-p/--param takes KEY=VALUE"),
        ("%%agent --max-tokens 0\nhi", "--max-cost and --max-tokens must be positive"),
        ("%%agent --timeout -1\nhi", "--timeout must be a positive number"),
        ("%%agent --effort extreme\nhi", "invalid choice: 'extreme'"),
        ('%%agent --system "Be terse\nhi', "%%agent options: no closing quotation in"),
        ("%%agent --system 'unbalanced\nhi", 'no closing quotation in "--system \'unbalanced"'),
    ],
)
def test_bad_input_is_a_one_line_usage_error(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], cell: str, message: str
) -> None:
    shell.user_ns["not_callable"] = 42
    assert message in usage_error(shell, cell, capsys)


def test_a_bad_environment_value_is_a_usage_error(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBAGENT_APPROVE", "sometimes")
    assert "NBAGENT_APPROVE='sometimes'" in usage_error(shell, "%%agent\nhi", capsys)


def test_a_run_shows_the_transcript_and_continues_the_conversation(
    shell: InteractiveShell, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add(
        use_tools(call("add", {"a": 2, "b": 3}), text="Adding."),
        say("I was not allowed to add."),
        say("You asked me to add."),
    )
    shell.run_cell("def add(a: int, b: int) -> int:\n    'Add.'\n    return a + b")
    result = run(shell, f"%%agent --api-base {server.url} --tools add\nAdd 2 and 3.")
    assert result.text == "I was not allowed to add."  # type: ignore[attr-defined]
    call_record = result.tool_calls[0]  # type: ignore[attr-defined]
    assert call_record.name == "add" and call_record.status == "denied"
    shown = capsys.readouterr().out
    assert "  denied by policy: nobody can click Approve in a headless run" in shown
    assert "Denied" not in shown
    assert "I was not allowed to add." in shown

    second = run(shell, f"%%agent --api-base {server.url}\nWhat did I ask?")
    assert second.text == "You asked me to add."  # type: ignore[attr-defined]
    assert [m["role"] for m in server.requests[-1]["messages"]][-2:] == ["assistant", "user"]
    assert len(server.requests[-1]["messages"]) == 5  # user, call, result, answer, user


def test_settings_come_from_options_then_config_then_environment(
    shell: InteractiveShell, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBAGENT_MODEL", "openai/from-env")
    monkeypatch.setenv("NBAGENT_API_BASE", server.url)
    server.add(say("a"), say("b"), say("c"))
    run(shell, "%%agent -s env\nhi")
    assert server.requests[-1]["model"] == "from-env"

    shell.run_line_magic("config", 'NBAgent.model = "openai/from-config"')
    run(shell, "%%agent -s config\nhi")
    assert server.requests[-1]["model"] == "from-config"

    run(shell, "%%agent -s option -m openai/from-option\nhi")
    assert server.requests[-1]["model"] == "from-option"


def test_options_are_quoted_like_a_shell(shell: InteractiveShell, server: ScriptedServer) -> None:
    server.add(use_tools(call("list_variables")), say("done"))
    run(
        shell,
        f'%%agent --api-base {server.url} --system "Be terse, please" --tools "notebook" '
        "--approve 'all'\nhi",
    )
    first = server.requests[0]
    assert first["messages"][0] == {"role": "system", "content": "Be terse, please"}
    assert "list_variables" in [t["function"]["name"] for t in first["tools"]]
    assert server.requests[1]["messages"][-1]["role"] == "tool"


def test_approve_all_runs_the_tool_in_a_headless_cell(
    shell: InteractiveShell, server: ScriptedServer
) -> None:
    server.add(use_tools(call("add", {"a": 2, "b": 3})), say("5"))
    shell.run_cell("def add(a: int, b: int) -> int:\n    'Add.'\n    return a + b")
    result = run(shell, f"%%agent --api-base {server.url} --tools add --approve all\nadd")
    assert [(c.status, c.result) for c in result.tool_calls] == [("ok", "5")]  # type: ignore[attr-defined]


def test_line_commands(
    shell: InteractiveShell, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add(say("hello there"))
    run(shell, f"%%agent --api-base {server.url} -s first\nhi")
    sessions = shell.run_line_magic("agent", "sessions")
    assert "first" in sessions.to_plain() and "openai/gpt-4o-mini" in sessions.to_plain()
    assert "completed" not in sessions.to_plain() and "idle" in sessions.to_plain()

    history = shell.run_line_magic("agent", "history first")
    assert "hello there" in history.bundle["text/plain"]

    shell.run_line_magic("agent", "use first")
    assert "session 'first'" in capsys.readouterr().out
    shell.run_line_magic("agent", "stop")
    assert "no run to stop" in capsys.readouterr().out

    shell.run_line_magic("agent", "new")
    assert "new session 'session-" in capsys.readouterr().out

    @nbagent.tool(read_only=True)
    def lookup(key: str) -> str:
        """Look a key up."""
        return key

    tools = shell.run_line_magic("agent", "tools").to_plain()
    assert "lookup" in tools and "registered" in tools

    shell.run_line_magic("agent", "help")
    assert "%agent doctor" in capsys.readouterr().out


def test_doctor_names_the_key_variable_but_never_its_value(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = shell.run_line_magic("agent", "doctor").to_plain()
    assert "sk-test-secret-value" not in report
    assert "model" in report and "provider openai" in report
    monkeypatch.delenv("OPENAI_API_KEY")
    report = shell.run_line_magic("agent", "doctor").to_plain()
    assert "FAIL" in report and "OPENAI_API_KEY is not set" in report
    shell.run_line_magic("config", "NBAgent.api_key_env = 'TEAM_LLM_KEY'")
    try:
        report = shell.run_line_magic("agent", "doctor").to_plain()
        assert "FAIL" in report and "TEAM_LLM_KEY is not set" in report
        monkeypatch.setenv("TEAM_LLM_KEY", "sk-team-key-0123456789")
        report = shell.run_line_magic("agent", "doctor").to_plain()
        assert "read from TEAM_LLM_KEY" in report and "sk-team-key" not in report
    finally:
        shell.run_line_magic("config", "NBAgent.api_key_env = None")


def test_load_ext_imports_neither_litellm_nor_the_widget() -> None:
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "InteractiveShell.instance().run_line_magic('load_ext', 'nbagent')\n"
        "print(sorted(m for m in ('litellm', 'anywidget', 'ipywidgets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_parameters_reach_the_request_of_this_cell_only(
    shell: InteractiveShell, server: ScriptedServer
) -> None:
    server.add(say("cool"), say("default"))
    run(shell, f"%%agent --api-base {server.url} -p temperature=0.2 -p seed=7 -p stop=END\nhi")
    first = server.requests[0]
    assert (first["temperature"], first["seed"], first["stop"]) == (0.2, 7, "END")
    run(shell, f"%%agent --api-base {server.url}\nagain")
    assert "temperature" not in server.requests[1] and "seed" not in server.requests[1]


def test_effort_reaches_a_reasoning_model_and_is_refused_in_one_line_elsewhere(
    shell: InteractiveShell, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add(say("thought"))
    run(shell, f"%%agent --model openai/o4-mini --api-base {server.url} --effort low\nhi")
    assert server.requests[0]["reasoning_effort"] == "low"
    result = shell.run_cell(f"%%agent -s other --api-base {server.url} --effort high\nhi")
    assert isinstance(result.error_in_exec, nbagent.RunFailed)
    assert "does not support parameters: ['reasoning_effort']" in str(result.error_in_exec)
    assert len(server.requests) == 1  # refused before any request


def test_a_token_budget_stops_a_long_answer_while_it_streams(
    shell: InteractiveShell, server: ScriptedServer
) -> None:
    server.add(say(" ".join(f"word{i}" for i in range(3_000))))
    shell.run_line_magic("config", "NBAgent.fail_headless = False")
    try:
        result = run(shell, f"%%agent --api-base {server.url} --max-tokens 50\ntalk a lot")
    finally:
        shell.run_line_magic("config", "NBAgent.fail_headless = True")
    assert result.status == "budget_exceeded"  # type: ignore[attr-defined]
    assert 0 < len(result.text) < 2_000  # type: ignore[attr-defined]


def test_the_key_comes_from_the_variable_named_and_never_shows(
    shell: InteractiveShell, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_LLM_KEY", "sk-team-key-0123456789")
    server.add(say("hello"))
    result = run(shell, f"%%agent --api-base {server.url} --api-key-env TEAM_LLM_KEY\nhi")
    assert result.text == "hello"  # type: ignore[attr-defined]
    assert server.headers[0]["authorization"] == "Bearer sk-team-key-0123456789"
    assert "sk-team-key" not in repr(result.transcript.mimebundle())  # type: ignore[attr-defined]


def test_doctor_checks_the_server_in_use_and_what_the_model_supports(
    shell: InteractiveShell, server: ScriptedServer
) -> None:
    server.add(say("hi"))
    run(shell, f"%%agent --model openai/gpt-4o-mini --api-base {server.url}\nhello")
    report = shell.run_line_magic("agent", "doctor").to_plain()
    assert f"{server.url} answers (1 models listed)" in report
    assert "context 128,000 tokens; tools yes; vision yes" in report  # gpt-4o-mini
    gone = server.url
    server.stop()
    report = shell.run_line_magic("agent", "doctor").to_plain()
    assert f"{gone} does not answer" in report and "FAIL" in report


def test_config_caps_the_calls_of_one_response(
    shell: InteractiveShell, server: ScriptedServer
) -> None:
    server.add(
        use_tools(*(call("add", {"a": n, "b": 1}) for n in range(3))), say("Too many, sorry.")
    )
    shell.run_cell("def add(a: int, b: int) -> int:\n    'Add.'\n    return a + b")
    shell.run_line_magic("config", "NBAgent.max_calls_per_response = 2")
    try:
        result = run(shell, f"%%agent -s capped --api-base {server.url} --tools add\nadd three")
    finally:
        shell.run_line_magic("config", "NBAgent.max_calls_per_response = 64")
    assert result.status == "completed"  # type: ignore[attr-defined]
    assert result.tool_calls == ()  # type: ignore[attr-defined]
    results = [m for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert len(results) == 3 and "more than the 2 one response may propose" in results[0]["content"]
    markdown = result.transcript.to_markdown()  # type: ignore[attr-defined]
    assert "proposed 3 tool calls in one response, more than 2" in markdown
    assert "**tool**" not in markdown  # no card for a refused call
