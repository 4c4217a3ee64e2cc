"""Sessions follow the notebook, through real kernels: a notebook renamed after its first
save (``Untitled.ipynb`` → ``analysis.ipynb``) keeps the agent's memory after a kernel
restart, because its saved outputs name the session log they continued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from nbagent.testing import ScriptedServer, say

from .frontend import running_kernel

pytestmark = pytest.mark.kernel  # each module starts real Jupyter kernels


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def kernel_for(notebook: Path, server: ScriptedServer) -> dict[str, str]:
    """What JupyterLab gives a kernel: the notebook's name, its folder as working directory;
    no NBAGENT_HOME, so sessions live in ``.nbagent/`` beside the notebook."""
    return {
        "cwd": str(notebook.parent),
        "JPY_SESSION_NAME": notebook.name,
        "NBAGENT_HOME": "",
        "NBAGENT_API_BASE": server.url,
    }


def test_a_renamed_notebook_keeps_its_sessions_after_a_restart(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(say("I will remember 42."), say("You asked me to remember 42."))
    untitled = tmp_path / "Untitled.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext nbagent", id="load"),
        nbformat.v4.new_code_cell("%%agent\nRemember the number 42.", id="first"),
        nbformat.v4.new_code_cell("%%agent\nWhich number did I ask you to remember?", id="second"),
    ]
    nbformat.write(nb, untitled)

    with running_kernel(**kernel_for(untitled, server)) as front:
        front.run("%config NBAgent.titles = False")
        msg_id = front.execute_cell(nb.cells[1].source, "first")
        front.reply(msg_id)
        nb.cells[1].outputs = [nbformat.from_dict(o) for o in front.saved_outputs(msg_id)]
    nbformat.write(nb, untitled)  # JupyterLab saves; on the first save the user renames it
    assert (tmp_path / ".nbagent" / "Untitled" / "default.jsonl").is_file()
    saved = nbformat.read(untitled, as_version=4).cells[1].outputs[-1].metadata["nbagent"]
    assert saved["log"]["folder"] == "Untitled" and saved["log"]["file"] == "default.jsonl"

    analysis = untitled.rename(tmp_path / "analysis.ipynb")
    with running_kernel(**kernel_for(analysis, server)) as front:  # the kernel restarts
        front.run("%config NBAgent.titles = False")
        listed = front.execute("%agent sessions")
        front.reply(listed)
        table = front.final_bundle(listed)["text/plain"]
        assert "default" in table and "saved" in table
        msg_id = front.execute_cell(nb.cells[2].source, "second")
        front.reply(msg_id)
        assert "You asked me to remember 42." in front.final_bundle(msg_id)["text/plain"]
        note = "".join(
            m["content"]["text"] for m in front.iopub
            if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
        )  # fmt: skip
        assert "moved to" in note
    sent = [(m["role"], m["content"]) for m in server.requests[-1]["messages"]]
    assert sent == [
        ("user", "Remember the number 42."),
        ("assistant", "I will remember 42."),
        ("user", "Which number did I ask you to remember?"),
    ]
    assert not (tmp_path / ".nbagent" / "Untitled").exists()
    log = tmp_path / ".nbagent" / "analysis" / "default.jsonl"
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(1 for r in runs if r.get("event", {}).get("kind") == "run_started") == 2
