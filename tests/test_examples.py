"""The example notebooks replay offline: each .ipynb, copied alone into an empty folder,
passes ``pytest --nbval`` with no API key and no model server (``NBAGENT_REPLAY=replay``).

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


@pytest.mark.kernel
@pytest.mark.parametrize("notebook", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_the_notebook_replays_offline_with_nbval(notebook: Path, tmp_path: Path) -> None:
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)  # only the .ipynb: no .nbagent/, no mcp.json, no data
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "NBAGENT"))}
    env.update(
        NBAGENT_API_BASE="http://127.0.0.1:9/v1",  # nothing listens: going live would fail
        NBAGENT_REPLAY="replay",  # and it is forbidden anyway
        NBAGENT_APPROVE="all",
        NBAGENT_TRUST="1",  # CI's explicit trust decision for replayed side effects
        NBAGENT_HOME=str(tmp_path / ".home"),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", copy.name, "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    cells = sum(
        1 for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"
    )
    assert f"{cells} passed" in result.stdout
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
