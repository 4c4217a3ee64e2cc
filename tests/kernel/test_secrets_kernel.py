"""A secret in the kernel's environment stays out of everything a notebook run produces:
the model's requests, the saved notebook (HTML, Markdown and plain transcript) and the
session log, whether it comes from a display of ``run_python``, an earlier cell's
``Out[]`` given as context, or the model repeating it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from nbagent.testing import ScriptedServer, call, say, use_tools

from .frontend import kernel_env

pytestmark = pytest.mark.kernel

SECRET = "tok-" + os.urandom(8).hex()
SHOW = (
    "import os\n"
    "from IPython.display import HTML, Markdown, display\n"
    "display(HTML('<b>' + os.environ['MY_SERVICE_TOKEN'] + '</b>'))\n"
    "display(Markdown(repr(os.environ['MY_SERVICE_TOKEN'])))\n"
    "dict(os.environ)"
)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def test_displays_context_cells_and_model_text_never_carry_a_secret(
    server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    for key, value in kernel_env(MY_SERVICE_TOKEN=SECRET, NBAGENT_HOME=str(home)).items():
        if key != "PATH":
            monkeypatch.setenv(key, value)
    server.add(
        use_tools(call("run_python", {"code": SHOW}), text="Looking."),
        say(f"The token is {SECRET}, quoted {json.dumps(SECRET)}."),
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(source)
        for source in (
            "%load_ext nbagent",
            "import os\nos.environ['MY_SERVICE_TOKEN']",
            f"%%agent --api-base {server.url} --tools notebook --approve all --context cells\n"
            "What is in the environment?",
        )
    ]
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    assert SECRET in json.dumps(nb.cells[1].outputs)  # the user's own cell shows it
    agent_outputs = json.dumps(nb.cells[2].outputs)
    assert "The token is [redacted]" in agent_outputs and "[redacted]" in agent_outputs
    assert SECRET not in agent_outputs
    requests = json.dumps(server.requests)
    assert "Out[" in requests and len(server.requests) == 2
    assert SECRET not in requests
    logs = [p for p in home.rglob("*.jsonl")]
    assert logs
    for log in logs:
        assert SECRET not in log.read_text(encoding="utf-8")
