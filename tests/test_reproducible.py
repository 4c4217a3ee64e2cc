"""A notebook with agent cells re-runs offline from the recordings in its outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from nbagent.notebook.recordings import read_notebook
from nbagent.testing import ScriptedServer, call, say, use_tools
from test_examples import plugin_option

pytestmark = pytest.mark.kernel  # nbclient and nbval run real kernels

TOOLS = '''
import nbagent

@nbagent.tool(read_only=True)
def capital(country: str) -> str:
    """The capital of a country."""
    return {"France": "Paris", "Italy": "Rome"}.get(country, "unknown")

@nbagent.tool
def remember(fact: str) -> str:
    """Write a fact down (a side effect)."""
    with open("facts.txt", "a") as handle:
        handle.write(fact + "\\n")
    return "noted"
'''


def notebook(*prompts: str) -> nbformat.NotebookNode:
    cells = [new_code_cell("%load_ext nbagent"), new_code_cell(TOOLS)]
    cells += [new_code_cell(p) for p in prompts]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3",
                                                              "display_name": "Python 3",
                                                              "language": "python"}})  # fmt: skip


def record(
    nb: nbformat.NotebookNode, folder: Path, server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Execute ``nb`` live (against the scripted server) and save it with its outputs."""
    folder.mkdir(parents=True)
    monkeypatch.setenv("NBAGENT_API_BASE", server.url)
    monkeypatch.setenv("NBAGENT_HOME", str(folder / ".home"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-recording-only-123456")
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(folder)}}).execute()
    path = folder / "shared.ipynb"
    nbformat.write(nb, path)
    return path


def replay_with_nbval(
    notebook: Path, folder: Path, extra: tuple[Path, ...] | list[Path] = (), **env: str
) -> subprocess.CompletedProcess[str]:
    """Copy only the .ipynb (and ``extra`` files) to an empty folder and run nbval there:
    no server, no key."""
    folder.mkdir(parents=True)
    copy = folder / notebook.name
    shutil.copy(notebook, copy)
    for path in extra:
        shutil.copy(path, folder / path.name)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "NBAGENT"))}
    clean["NBAGENT_HOME"] = str(folder / ".home")
    clean["NBAGENT_DATA_DIR"] = str(folder / ".data")  # nothing trusted on this "machine"
    clean["NBAGENT_API_BASE"] = "http://127.0.0.1:9/v1"  # nothing listens: going live fails
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", copy.name, "-p", "no:cacheprovider", "-q",
         *plugin_option()],
        cwd=folder, env=clean, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_shared_notebook_passes_nbval_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = notebook(
        "%%agent --tools capital --approve all\nWhat is the capital of France? Use the tool.",
        "%%agent\nSay it in one word.",
    )
    with ScriptedServer(
        [use_tools(call("capital", {"country": "France"})), say("The capital is Paris."),
         say("Paris.")]
    ) as server:  # fmt: skip
        path = record(nb, tmp_path / "author", server, monkeypatch)
    assert len(read_notebook(path)) == 3  # the recording travels in the outputs
    result = replay_with_nbval(path, tmp_path / "reader", NBAGENT_REPLAY="replay")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_someone_elses_side_effects_do_not_run_without_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = notebook("%%agent --tools remember --approve all\nRemember that Paris is in France.")
    with ScriptedServer(
        [use_tools(call("remember", {"fact": "Paris is in France"})), say("Noted.")]
    ) as server:
        path = record(nb, tmp_path / "author", server, monkeypatch)
    assert (tmp_path / "author" / "facts.txt").read_text() == "Paris is in France\n"

    untrusted = replay_with_nbval(path, tmp_path / "reader")
    assert untrusted.returncode != 0  # the output differs: the call was denied, not run
    assert not (tmp_path / "reader" / "facts.txt").exists()
    assert "The replay stopped at the call of remember" in untrusted.stdout
    assert "NBAGENT_TRUST=1" in untrusted.stdout

    trusted = replay_with_nbval(path, tmp_path / "trusting", NBAGENT_TRUST="1")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert (tmp_path / "trusting" / "facts.txt").read_text() == "Paris is in France\n"


def test_an_edited_cell_goes_live_in_auto_and_fails_clearly_in_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = notebook("%%agent\nName a colour.")
    with ScriptedServer([say("Blue.")]) as server:
        path = record(nb, tmp_path / "author", server, monkeypatch)
    edited = nbformat.read(path, as_version=4)
    edited.cells[-1].source = "%%agent\nName a fruit."
    nbformat.write(edited, path)
    strict = replay_with_nbval(path, tmp_path / "strict", NBAGENT_REPLAY="replay")
    assert strict.returncode != 0
    assert "no recording matches" in strict.stdout and "message 1 (user)" in strict.stdout
    with ScriptedServer([say("Apple.")]) as server:
        live = replay_with_nbval(path, tmp_path / "auto", NBAGENT_API_BASE=server.url,
                                 OPENAI_API_KEY="sk-test-123456")  # fmt: skip
        assert len(server.requests) == 1  # the edited cell went live
    assert "Apple." in live.stdout  # nbval shows the changed output


def test_a_neighbours_recording_never_answers_under_this_notebooks_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = "%%agent --tools remember\nWhat should I remember?"
    with ScriptedServer([say("Nothing for now.")]) as server:
        mine = record(notebook(prompt), tmp_path / "mine", server, monkeypatch)
    with ScriptedServer(
        [use_tools(call("remember", {"fact": "the neighbour was here"})), say("Noted.")]
    ) as server:
        theirs = record(notebook(prompt), tmp_path / "theirs", server, monkeypatch)
    folder = tmp_path / "shared"
    folder.mkdir()
    shutil.copy(theirs, folder / "a-downloaded.ipynb")  # read first if the folder were read
    shutil.copy(mine, folder / "shared.ipynb")
    # nbagent's pytest plugin tells the kernel which notebook nbval runs: only its
    # recordings are read, and NBAGENT_TRUST=1 trusts only them
    result = replay_with_nbval(folder / "shared.ipynb", tmp_path / "reader", NBAGENT_TRUST="1",
                               extra=[folder / "a-downloaded.ipynb"])  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "reader" / "facts.txt").exists()
