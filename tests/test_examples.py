"""The example notebooks replay offline: each .ipynb, copied alone into an empty folder,
passes ``pytest --nbval`` with no API key and no model server, with one trust decision
(``NBAGENT_TRUST=1``, or ``nbagent trust`` once); untrusted, nothing side-effecting runs.

Re-record them with ``python notebooks/record.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from nbagent.notebook.recordings import read_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXAMPLES = sorted(NOTEBOOKS.glob("*.ipynb"))


def test_there_are_example_notebooks() -> None:
    names = {path.stem for path in EXAMPLES}
    assert {"quickstart", "data-analysis", "mcp-tools"} <= names


@pytest.mark.parametrize("notebook", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_the_committed_notebook_holds_recordings_and_no_secrets(notebook: Path) -> None:
    assert len(read_notebook(notebook)) > 0
    text = notebook.read_text(encoding="utf-8")
    assert "sk-recording" not in text
    assert "127.0.0.1" not in text  # the scripted server's address is not saved either
    nb = nbformat.read(notebook, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown"
    assert "scripted model" in nb.cells[0].source and "--replay record" in nb.cells[0].source
    assert any(cell.source.startswith("%load_ext nbagent") for cell in nb.cells)
    for cell in nb.cells:  # recorded and saved with outputs, no timings
        assert "execution" not in cell.metadata
        if cell.cell_type == "code":
            assert cell.execution_count is not None, cell.source
    # every call that asks was approved by a person when recorded, and that is recorded
    decided = [
        (d["name"], d["decided_by"], d["approved"])
        for cell in nb.cells
        for output in cell.get("outputs", ())
        for entry in output.get("metadata", {}).get("nbagent", {}).get("recording", ())
        for d in entry.get("decisions", ())
        if d is not None
    ]
    asks = {"quickstart": "add", "data-analysis": "run_python",
            "mcp-tools": "mcp__time__convert_time"}  # fmt: skip
    assert (asks[notebook.stem], "user", True) in decided
    assert all(by == "user" or name == "describe" for name, by, _ in decided)


def test_the_plot_is_an_ordinary_output_after_the_transcript() -> None:
    """GitHub and nbviewer sanitise HTML and drop ``data:`` images inside it: the figure the
    agent drew is an ``image/png`` output of its own, which the transcript refers to."""
    nb = nbformat.read(NOTEBOOKS / "data-analysis.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if c.source.startswith("%%agent")]
    transcript, image = cell.outputs
    assert "image/png" not in transcript.data and image.output_type == "display_data"
    assert set(image.data) == {"image/png", "text/plain"}
    assert image.data["text/plain"] == "<Figure size 600x350 with 1 Axes>"
    for mime in ("text/html", "text/markdown"):
        assert "data:image" not in transcript.data[mime]
        assert "[image: shown below]" in transcript.data[mime].replace("\\", "")
    assert transcript.data["text/plain"].count("2100.0") == 1  # the value once


def nbval(copy: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``pytest --nbval`` on ``copy`` in its folder, as a reviewer types it: no API key, no
    model server (going live would fail), nothing of nbagent's set but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "NBAGENT"))}
    clean.update(
        NBAGENT_API_BASE="http://127.0.0.1:9/v1",  # nothing listens: going live would fail
        NBAGENT_HOME=str(copy.parent / ".home"),
        NBAGENT_DATA_DIR=str(copy.parent / ".data"),  # this machine's trust: none yet
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", copy.name, "-p", "no:cacheprovider", "-q",
         *plugin_option()],
        cwd=copy.parent, env=clean, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def plugin_option() -> list[str]:
    """nbagent's pytest plugin comes with the installed package (``pytest11``); a checkout
    that is not installed names it."""
    from importlib.metadata import entry_points

    if any(e.value == "nbagent.pytest_plugin" for e in entry_points(group="pytest11")):
        return []
    return ["-p", "nbagent.pytest_plugin"]


def code_cells(notebook: Path) -> int:
    return sum(1 for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")


@pytest.mark.kernel
@pytest.mark.parametrize("notebook", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_a_copy_alone_passes_nbval_with_only_nbagent_trust(notebook: Path, tmp_path: Path) -> None:
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)  # only the .ipynb: no .nbagent/, no mcp.json, no data
    started = time.perf_counter()
    result = nbval(copy, NBAGENT_TRUST="1")  # no NBAGENT_APPROVE: the recorded clicks replay
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{code_cells(notebook)} passed" in result.stdout
    print(f"{notebook.name}: nbval replay {elapsed:.1f} s")


@pytest.mark.kernel
def test_running_an_example_again_writes_the_same_file(tmp_path: Path) -> None:
    """A kernel that is told its notebook (as JupyterLab tells it) replays the quickstart
    from a fresh checkout (no ``.nbagent/``) and saves exactly the committed file: the
    transcript, the log each output names (a new log takes the notebook's session id) and
    the provenance."""
    from nbclient import NotebookClient

    copy = tmp_path / "quickstart.ipynb"
    shutil.copy(NOTEBOOKS / "quickstart.ipynb", copy)
    nb = nbformat.read(copy, as_version=4)
    env = {
        "JPY_SESSION_NAME": copy.name,
        "NBAGENT_API_BASE": "http://127.0.0.1:9/v1",
        "NBAGENT_REPLAY": "replay",
        "NBAGENT_APPROVE": "all",
        "NBAGENT_TRUST": "1",
        "NBAGENT_HOME": str(tmp_path / ".home"),
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    nbformat.write(nb, copy)
    assert copy.read_text(encoding="utf-8") == (NOTEBOOKS / "quickstart.ipynb").read_text(
        encoding="utf-8"
    )


@pytest.mark.parametrize("notebook", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_an_untrusted_copy_runs_nothing_side_effecting_and_says_how_to_trust(
    notebook: Path, tmp_path: Path
) -> None:
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)
    result = nbval(copy)
    assert result.returncode != 0
    # the failures section: under CI (``CI`` set) pytest repeats whole messages in its summary
    out = result.stdout.split("short test summary info")[0]
    # one clear line says where the replay stopped and how to trust; later agent cells do
    # not go live (no provider noise), they say the replay stopped above
    assert out.count("The replay stopped at the call of") == 1
    assert out.count("nbagent trust") == 1 and "NBAGENT_TRUST=1" in out
    assert "Missing credentials" not in out and "InternalServerError" not in out
    assert "APIConnectionError" not in out


@pytest.mark.kernel
def test_nbagent_trust_lets_plain_nbval_pass_until_a_recording_changes(tmp_path: Path) -> None:
    from nbagent.cli import main

    notebook = NOTEBOOKS / "quickstart.ipynb"
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)
    data = tmp_path / ".data"
    os.environ["NBAGENT_DATA_DIR"] = str(data)
    try:
        assert main(["trust", str(copy)]) == 0
    finally:
        del os.environ["NBAGENT_DATA_DIR"]
    assert (data / "trusted").read_text().count("quickstart.ipynb") == 1
    trusted = nbval(copy)
    assert trusted.returncode == 0, trusted.stdout[-4000:]

    edited = nbformat.read(copy, as_version=4)  # someone edits a recorded answer
    meta = next(o.metadata for c in edited.cells for o in c.get("outputs", ())
                if "nbagent" in o.get("metadata", {}))  # fmt: skip
    meta["nbagent"]["recording"][0]["text"] = "I will add them, trust me."
    nbformat.write(edited, copy)
    untrusted = nbval(copy)
    assert untrusted.returncode != 0
    assert "The replay stopped at the call of add" in untrusted.stdout
