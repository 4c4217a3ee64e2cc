"""Headless runs: nbclient (allow_stdin=False) and nbval get static output only."""

from __future__ import annotations

from collections.abc import Iterator

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from nbagent.testing import ScriptedServer, call, http_error, say, use_tools

from .frontend import kernel_env

pytestmark = pytest.mark.kernel  # each module starts real Jupyter kernels


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in kernel_env().items():
        if key != "PATH":
            monkeypatch.setenv(key, value)


def run_notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    return nb


def outputs_text(cell: nbformat.NotebookNode, mime: str) -> str:
    return "".join(str(o.get("data", {}).get(mime, "")) for o in cell.outputs)


ADD = "def add(a: int, b: int) -> int:\n    'Add.'\n    return a + b"


def test_nbclient_gets_the_static_transcript_and_a_denial(server: ScriptedServer) -> None:
    server.add(
        use_tools(call("add", {"a": 2, "b": 3}), text="Adding."),
        say("I could not run the tool, so I will not guess."),
    )
    nb = run_notebook(
        "%load_ext nbagent", ADD, f"%%agent --api-base {server.url} --tools add\nAdd 2 and 3."
    )
    cell = nb.cells[2]
    html = outputs_text(cell, "text/html")
    assert "I could not run the tool" in html
    assert "denied by policy: nobody can click Approve in a headless run" in html
    assert "headless run" in outputs_text(cell, "text/markdown")
    assert all(
        "application/vnd.jupyter.widget-view+json" not in o.get("data", {}) for o in cell.outputs
    )
    assert "widgets" not in nb.metadata
    # the model was told the call was denied
    tool_message = server.requests[-1]["messages"][-1]
    assert tool_message["role"] == "tool" and "denied" in tool_message["content"]


def test_a_failed_run_fails_the_headless_cell_unless_allowed(server: ScriptedServer) -> None:
    server.add(http_error(401, "bad key"))
    with pytest.raises(CellExecutionError) as failure:
        run_notebook("%load_ext nbagent", f"%%agent --api-base {server.url}\nhello")
    assert "RunFailed" in str(failure.value)
    assert "credentials" in str(failure.value)

    server.add(http_error(401, "bad key"))
    nb = run_notebook("%load_ext nbagent", f"%%agent --api-base {server.url} --allow-errors\nhi")
    assert "credentials" in outputs_text(nb.cells[1], "text/plain")


# The example notebooks (quickstart included) replay under nbval in tests/test_examples.py.
