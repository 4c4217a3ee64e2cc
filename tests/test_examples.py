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
