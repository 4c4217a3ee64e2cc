"""Notebook tools through a real IPython shell (the kernel path is in tests/kernel/)."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import nbagent
from conftest import collect, finished, of_type
from nbagent import ApprovalRequested, Session, ToolFinished
from nbagent.testing import ScriptedModel, call, say, use_tools
from nbagent.tools import ToolOutput
from nbagent.tools._runs import namespace_changes, snapshot
from nbagent.tools.notebook import expand_variables, notebook_tools


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    saved = dict(shell.user_ns)
    yield shell
    shell.user_ns.clear()
    shell.user_ns.update(saved)


@pytest.fixture
def tools(shell: InteractiveShell, tmp_path: Path) -> dict[str, Any]:
    return {t.name: t for t in notebook_tools(shell, tmp_path)}


async def run(tools: dict[str, Any], tool_name: str, /, **arguments: Any) -> Any:
    tool = tools[tool_name]
    return await tool.invoke(tool.validate(arguments))


async def test_run_python_defines_variables_for_later_cells(
    shell: InteractiveShell, tools: dict[str, Any]
) -> None:
    output = await run(tools, "run_python", code="answer = 6 * 7\nprint('computed')\nanswer + 1")
    assert isinstance(output, ToolOutput) and not output.is_error
    assert shell.user_ns["answer"] == 42
    assert "stdout:\ncomputed" in output.text and "value:\n43" in output.text
    assert output.display == ()  # the value is in the text: the card shows it once
    shell.run_cell("later = answer * 2")
    assert shell.user_ns["later"] == 84


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="


async def test_run_python_shows_the_value_once_and_each_image_once(
    shell: InteractiveShell, tools: dict[str, Any]
) -> None:
    shell.user_ns["png"] = base64.b64decode(PNG)
    code = (
        "from IPython.display import Image, display\n"
        "display(Image(data=png))\n"
        "display(Image(data=png))  # a figure the inline backend shows again\n"
        "'the value'"
    )
    output = await run(tools, "run_python", code=code)
    assert output.text.count("the value") == 1
    assert output.text.count("displayed (image/png)") == 1
    assert [sorted(b) for b in output.display] == [["image/png", "text/plain"]]


async def test_run_python_says_what_changed_in_the_kernel(
    shell: InteractiveShell, tools: dict[str, Any]
) -> None:
    shell.run_cell("rows = [1, 2, 3]\ntmp = 'x'\nkept = 5\n_private = 1")
    code = "rows.append(4)\ntotal = sum(rows)\ndel tmp\n_scratch = 2\nimport json\nkept"
    output = await run(tools, "run_python", code=code)
    first = output.text.splitlines()[0]
    assert first == (
        "kernel: changed `rows`: list (len 3) → (len 4); created `total`: int = 10; deleted `tmp`"
    )
    nothing = await run(tools, "run_python", code="kept + 1")
    assert not nothing.text.startswith("kernel:")  # nothing changed, no line


def test_namespace_changes_are_cheap_and_capped() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": range(120), "b": 0})
    before = snapshot({"df": df, "old": 1, "In": [], "np": os}, {})
    assert set(before) == {"df", "old"}  # IPython's own names and modules are left out
    after = snapshot({"df": df[df.a > 1], **{f"v{i}": i for i in range(12)}}, {})
    text = namespace_changes(before, after)
    assert text.startswith("changed `df`: DataFrame (120, 2) → (118, 2); created `v0`: int = 0;")
    assert text.endswith("and 4 more")  # 14 changes: 10 named
    assert namespace_changes(before, before) == ""


async def test_a_traceback_names_the_agents_code_not_a_cell(
    shell: InteractiveShell, tools: dict[str, Any]
) -> None:
    first = await run(tools, "run_python", code="def f():\n    return 1 / 0\n")
    assert first.text == "kernel: created `f`: function"
    failed = await run(tools, "run_python", code="x = 1\nf()")
    numbers = re.findall(r'File "<agent run_python #(\d+)>", line (\d+)', failed.text)
    assert [line for _, line in numbers] == ["2", "2"]  # the call, then f's body
    assert int(numbers[1][0]) == int(numbers[0][0]) - 1  # f came from the run before
    assert "Cell In[" not in failed.text and "ZeroDivisionError" in failed.text
    syntax = await run(tools, "run_python", code="def broken(:\n  pass")
    assert re.search(r'File "<agent run_python #\d+>", line 1', syntax.text)
    # a cell of the user's with the same text is labelled as IPython does, and the
    # function the agent defined still says where it came from
    name = shell.compile.cache("x = 1\nf()", 99)
    try:
        exec(compile("x = 1\nf()", name, "exec"), shell.user_ns)
    except ZeroDivisionError as exc:
        stb = shell.InteractiveTB.structured_traceback(type(exc), exc, exc.__traceback__)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(stb))
    assert "Cell In[99], line 2" in shown
    assert f'File "<agent run_python #{numbers[1][0]}>", line 2' in shown


async def test_an_exception_returns_a_short_traceback(tools: dict[str, Any]) -> None:
    code = "def f():\n    return 1 / 0\nf()"
    output = await run(tools, "run_python", code=code)
    assert output.is_error
    assert "ZeroDivisionError" in output.text and "\x1b" not in output.text
    assert len(output.text.splitlines()) <= 32


async def test_a_syntax_error_is_reported_not_raised(tools: dict[str, Any]) -> None:
    output = await run(tools, "run_python", code="def broken(:\n  pass")
    assert output.is_error and "SyntaxError" in output.text


async def test_interrupting_the_code_stops_the_run(shell: InteractiveShell, tmp_path: Path) -> None:
    model = ScriptedModel([use_tools(call("run_python", {"code": "raise KeyboardInterrupt"}))])
    async with Session(model, tools=notebook_tools(shell, tmp_path), approval="all") as session:
        events = await collect(session, "loop forever")
        done = finished(events)
        assert done.status == "cancelled" and "interrupted" in (done.error or "")
        assert of_type(events, ToolFinished)[0].status == "cancelled"
        model.add(say("ok"))
        assert (await session.ask("next")).status == "completed"


async def test_run_python_needs_approval_and_shows_the_code(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    model = ScriptedModel([use_tools(call("run_python", {"code": "x = 1"})), say("done")])
    async with Session(model, tools=notebook_tools(shell, tmp_path)) as session:
        events = await collect(session, "set x", on_approval=lambda s, r: s.deny(r.tool_call_id))
    (asked,) = of_type(events, ApprovalRequested)
    assert asked.arguments == {"code": "x = 1"} and asked.read_only is False
    assert "x" not in shell.user_ns


async def test_read_only_tools_run_without_asking_in_readonly_mode(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    shell.user_ns["sales"] = [1, 2, 3]
    model = ScriptedModel(
        [use_tools(call("list_variables"), call("describe", {"name": "sales"})), say("ok")]
    )
    async with Session(model, tools=notebook_tools(shell, tmp_path), approval="readonly") as s:
        events = await collect(s, "what do I have", on_approval=None)
    listed, described = (e.result for e in of_type(events, ToolFinished))
    assert "sales: list len 3" in listed
    assert "sales: list of 3 items (int)" in described


async def test_describe_a_dataframe(shell: InteractiveShell, tools: dict[str, Any]) -> None:
    import pandas

    shell.user_ns["df"] = pandas.DataFrame(
        {"month": ["jan", "feb", None], "revenue": [10.5, 20.0, 30.25]}
    )
    text = await run(tools, "describe", name="df")
    assert "shape: (3, 2)" in text
    assert re.search(r"month: (object|str) \(1 null\)", text)
    assert "revenue: float64 (0 null)" in text
    assert "jan" in text and "30.25" in text


async def test_describe_unknown_suggests_close_names(
    shell: InteractiveShell, tools: dict[str, Any]
) -> None:
    shell.user_ns["revenue"] = 1
    with pytest.raises(KeyError, match="Did you mean: revenue"):
        await run(tools, "describe", name="revenu")


async def test_the_environment_is_described_without_values(
    shell: InteractiveShell, tools: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_API_KEY", "sk-should-never-show-123456")
    shell.user_ns["env"] = os.environ
    shell.user_ns["settings"] = {"DB_PASSWORD": "hunter2hunter2", "region": "eu"}
    text = await run(tools, "describe", name="env")
    assert "SOME_API_KEY" in text and "sk-should-never-show" not in text
    settings = await run(tools, "describe", name="settings")
    assert "hunter2" not in settings and "'eu'" in settings


async def test_files_stay_inside_the_notebook_folder(tools: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    outside = tmp_path.parent / f"{tmp_path.name}-secret.txt"
    outside.write_text("secret")
    (tmp_path / "link").symlink_to(outside)
    assert (await run(tools, "read_file", path="data.csv")).startswith("a,b")
    for path in ("../" + outside.name, str(outside), "link", "/etc/passwd"):
        with pytest.raises(ValueError, match="outside the notebook folder"):
            await run(tools, "read_file", path=path)
    listing = await run(tools, "list_files")
    assert "data.csv" in listing and "link" not in listing
    with pytest.raises(ValueError, match="max_bytes must be between 1 and 1,000,000"):
        await run(tools, "read_file", path="data.csv", max_bytes=10**9)


async def test_write_file_shows_a_diff_and_waits_for_approval(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("one\ntwo\n")
    model = ScriptedModel(
        [use_tools(call("write_file", {"path": "notes.txt", "content": "one\nthree\n"})),
         say("written")]
    )  # fmt: skip
    async with Session(model, tools=notebook_tools(shell, tmp_path)) as session:
        seen: list[str] = []

        def check_then_approve(s: Session, request: ApprovalRequested) -> None:
            assert target.read_text() == "one\ntwo\n"  # nothing written before approval
            seen.append(request.preview or "")
            s.approve(request.tool_call_id)

        events = await collect(session, "edit", on_approval=check_then_approve)
    assert "-two" in seen[0] and "+three" in seen[0] and "b/notes.txt" in seen[0]
    assert target.read_text() == "one\nthree\n"
    # the card shows the diff as its preview: the result says what happened, once
    (done,) = of_type(events, ToolFinished)
    assert done.result == "wrote 2 lines to notes.txt (+1 −1)"


async def test_write_file_says_what_it_did_in_one_sentence(tools: dict[str, Any]) -> None:
    assert await run(tools, "write_file", path="new.csv", content="a\nb\nc\n") == (
        "wrote 3 lines to new.csv (a new file)"
    )
    assert await run(tools, "write_file", path="new.csv", content="a\nb\nc\n") == (
        "wrote 3 lines to new.csv (no change)"
    )
    assert await run(tools, "write_file", path="new.csv", content="a\n") == (
        "wrote 1 line to new.csv (+0 −2)"
    )


async def test_notebook_cells_lists_what_the_user_ran(
    shell: InteractiveShell, tools: dict[str, Any]
) -> None:
    shell.run_cell("total = 40 + 2", store_history=True)
    shell.run_cell("total", store_history=True)
    text = await run(tools, "notebook_cells", last=5)
    assert "total = 40 + 2" in text and "Out[" in text and "42" in text


def test_variables_in_a_prompt_become_summaries() -> None:
    text, added = expand_variables(
        "Plot {sales} by month, keep {{braces}} and {unknown}.", {"sales": [3, 1, 2]}
    )
    assert "sales: list of 3 items" in text and "{{braces}}" in text and "{unknown}" in text
    assert added > 20


def test_the_group_is_complete(shell: InteractiveShell, tmp_path: Path) -> None:
    names = [t.name for t in notebook_tools(shell, tmp_path)]
    assert tuple(names) == nbagent.tools.notebook.NOTEBOOK_TOOL_NAMES
    read_only = {t.name for t in notebook_tools(shell, tmp_path) if t.read_only}
    assert read_only == {"list_variables", "describe", "read_file", "list_files", "notebook_cells"}
