"""Saved sessions, their commands and the notebook tools, through a real IPython shell."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from nbagent.testing import ScriptedServer, call, http_error, say, use_tools


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("NBAGENT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    for name in ("NBAGENT_MODEL", "NBAGENT_API_BASE", "NBAGENT_APPROVE", "NBAGENT_MODE"):
        monkeypatch.delenv(name, raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbagent")
    ip.run_line_magic("config", "NBAgent.model = None")
    yield ip
    ip.run_line_magic("unload_ext", "nbagent")


def run(shell: InteractiveShell, code: str) -> object:
    result = shell.run_cell(code)
    if result.error_before_exec or result.error_in_exec:
        raise result.error_before_exec or result.error_in_exec
    return shell.user_ns.get("_")


def log_of(tmp_path: Path, name: str = "default") -> Path:
    return tmp_path / "home" / "kernel" / f"{name}.jsonl"


def user_turns(server: ScriptedServer) -> list[str]:
    return [m["content"] for m in server.requests[-1]["messages"] if m["role"] == "user"]


def test_a_session_survives_a_new_kernel(
    shell: InteractiveShell, server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(say("Nice to meet you, Ada."), say("Your name is Ada."))
    run(shell, f"%%agent --api-base {server.url}\nMy name is Ada.")
    assert log_of(tmp_path).exists()
    # a new kernel: the extension reloads with nothing in memory
    shell.run_line_magic("unload_ext", "nbagent")
    shell.run_line_magic("load_ext", "nbagent")
    result = run(shell, f"%%agent --api-base {server.url}\nWhat is my name?")
    assert result.text == "Your name is Ada."  # type: ignore[attr-defined]
    assert user_turns(server) == ["My name is Ada.", "What is my name?"]
    sessions = shell.run_line_magic("agent", "sessions").to_plain()
    assert "default" in sessions and "idle" in sessions


def test_history_marks_the_turns_that_did_not_complete(
    shell: InteractiveShell, server: ScriptedServer
) -> None:
    server.add(
        say("Fine."),
        http_error(401, "bad key"),
        use_tools(call("add", {"a": 1, "b": 2})),
        say("Done."),
    )
    shell.run_cell("def add(a: int, b: int) -> int:\n    'Add.'\n    return a + b")
    base = f"%%agent --api-base {server.url} --allow-errors --approve all"
    run(shell, f"{base}\nhello")
    run(shell, f"{base}\nthis one fails")
    run(shell, f"{base} --tools add --max-turns 1\nthis one runs out of turns")
    run(shell, f"{base}\nand this one completes")

    def marks() -> list[str]:
        plain = shell.run_line_magic("agent", "history").bundle["text/plain"]
        return [line for line in plain.splitlines() if line.startswith("[")]

    shown = marks()
    assert len(shown) == 2  # the completed turns have none
    assert shown[0].startswith("[✗ turn failed: openai/gpt-4o-mini refused the credentials")
    assert shown[1].startswith("[⏹ turn stopped at the limit of model requests: The run stopped")
    plain = shell.run_line_magic("agent", "history").bundle["text/plain"]
    assert (
        plain.index("this one fails")
        < plain.index("✗ turn failed")
        < plain.index("this one runs out")
    )
    # a new kernel reads the log: the same marks
    shell.run_line_magic("unload_ext", "nbagent")
    shell.run_line_magic("load_ext", "nbagent")
    assert marks() == shown


def test_undo_checkpoints_fork_and_delete(
    shell: InteractiveShell,
    server: ScriptedServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.add(say("one"), say("two"), say("three"))
    run(shell, f"%%agent --api-base {server.url}\nfirst")
    run(shell, f"%%agent --api-base {server.url}\nsecond")
    shell.run_line_magic("agent", "undo")
    assert "it has 1 turn(s) now" in capsys.readouterr().out
    run(shell, f"%%agent --api-base {server.url}\nsecond, again")
    assert user_turns(server) == ["first", "second, again"]

    table = shell.run_line_magic("agent", "checkpoints").to_plain()
    assert "input" in table and "end" in table and "old branch" in table

    shell.run_line_magic("agent", "fork experiment")
    assert "into 'experiment'" in capsys.readouterr().out
    history = shell.run_line_magic("agent", "history experiment")
    assert "second, again" in history.bundle["text/plain"]

    with pytest.raises(UsageError, match="-y"):
        shell.run_line_magic("agent", "delete experiment")
    shell.run_line_magic("agent", "delete experiment -y")
    assert not log_of(tmp_path, "experiment").exists()
    assert log_of(tmp_path).exists()


def test_compact_and_resume_are_awaited_line_commands(
    shell: InteractiveShell, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add(say("a"), say("b"), say("We talked about 1 and 2."), say("c"))
    run(shell, f"%%agent --api-base {server.url}\n1")
    run(shell, f"%%agent --api-base {server.url}\n2")
    run(shell, "%agent compact")
    assert "compacted session 'default'" in capsys.readouterr().out
    run(shell, f"%%agent --api-base {server.url}\n3")
    sent = server.requests[-1]["messages"]
    assert sent[0]["content"].startswith("Summary of the earlier conversation:")
    run(shell, "%agent resume")
    assert "nothing to resume" in capsys.readouterr().out


def test_new_starts_over_and_keeps_the_old_conversation_in_the_log(
    shell: InteractiveShell, server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(say("a"), say("b"))
    run(shell, f"%%agent --api-base {server.url}\nold topic")
    shell.run_line_magic("agent", "new default")
    run(shell, f"%%agent --api-base {server.url}\nnew topic")
    assert user_turns(server) == ["new topic"]
    assert "old topic" in log_of(tmp_path).read_text()


def test_variables_in_the_message_and_cell_context(
    shell: InteractiveShell, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add(say("ok"), say("ok"))
    shell.run_cell("prices = [3.5, 2.25, 9.0]", store_history=True)
    result = run(shell, f"%%agent --api-base {server.url}\nWhat is the max of {{prices}}?")
    sent = server.requests[-1]["messages"][-1]["content"]
    assert "prices: list of 3 items (float)" in sent and "{prices}" not in sent
    assert result.transcript.prompt == "What is the max of {prices}?"  # type: ignore[attr-defined]
    assert "context ~" in capsys.readouterr().out
    run(shell, f"%%agent --api-base {server.url} --context cells\nWhat did I do?")
    assert "prices = [3.5, 2.25, 9.0]" in server.requests[-1]["messages"][-1]["content"]


def test_notebook_tools_run_code_in_the_namespace_and_code_comes_back(
    shell: InteractiveShell, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = "import math\ncircle = math.pi * 2 ** 2\nround(circle, 2)"
    server.add(use_tools(call("run_python", {"code": code})), say("The area is 12.57."))
    result = run(
        shell, f"%%agent --api-base {server.url} --tools notebook --approve all\nArea of r=2?"
    )
    assert shell.user_ns["circle"] == pytest.approx(12.566, rel=1e-3)
    assert result.tool_calls[0].result.endswith("value:\n12.57")  # type: ignore[attr-defined]
    shell.run_line_magic("agent", "code")
    assert code in capsys.readouterr().out
    assert shell.rl_next_input == code  # type: ignore[attr-defined]
    shell.run_line_magic("agent", "code all")
    assert code in capsys.readouterr().out


def test_notebook_tools_by_name_and_a_bad_name(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="no tool named 'nope'"):
        run(shell, "%%agent --tools describe,nope\nhi")


def test_a_capacity_limit_refuses_more_running_sessions(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_line_magic("config", "NBAgent.max_running = 0")
    try:
        result = shell.run_cell("%%agent\nhi")
        assert isinstance(result.error_in_exec, UsageError)
        assert "limit 0, %config NBAgent.max_running" in str(result.error_in_exec)
    finally:
        shell.run_line_magic("config", "NBAgent.max_running = 4")


def test_persistence_can_be_turned_off(
    shell: InteractiveShell, server: ScriptedServer, tmp_path: Path
) -> None:
    shell.run_line_magic("config", "NBAgent.persist = False")
    try:
        server.add(say("a"))
        run(shell, f"%%agent --api-base {server.url} -s volatile\nhi")
        assert not log_of(tmp_path, "volatile").exists()
        with pytest.raises(UsageError, match="not saved"):
            shell.run_line_magic("agent", "undo volatile")
    finally:
        shell.run_line_magic("config", "NBAgent.persist = True")


def test_the_log_holds_no_key(
    shell: InteractiveShell, server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(say("ok"))
    run(shell, f"%%agent --api-base {server.url}\nhello")
    text = log_of(tmp_path).read_text()
    assert os.environ["OPENAI_API_KEY"] not in text
    assert all(json.loads(line)["schema"] == 1 for line in text.splitlines())


def test_an_mcp_server_added_in_one_line_is_used_with_approval(
    shell: InteractiveShell, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    shell.run_line_magic(
        "agent", f"mcp add demo -- {sys.executable} -m nbagent.testing.mcp_server --transport stdio"
    )
    assert "--tools mcp:demo" in capsys.readouterr().out
    server.add(use_tools(call("mcp__demo__add", {"a": 20, "b": 22})), say("It is 42."))
    result = run(
        shell, f"%%agent --api-base {server.url} --tools mcp:demo/add --approve all\n20 + 22?"
    )
    assert [(c.name, c.status, c.result) for c in result.tool_calls] == [  # type: ignore[attr-defined]
        ("mcp__demo__add", "ok", "42")
    ]
    table = shell.run_line_magic("agent", "mcp").to_plain()
    assert "demo" in table and "ready" in table
    run(shell, "%agent mcp stop demo")
    assert "stopped" in shell.run_line_magic("agent", "mcp").to_plain()
    with pytest.raises(UsageError, match="mcp add NAME"):
        shell.run_line_magic("agent", "mcp add broken")
