"""The journey a reviewer's notebook takes: someone runs an example in JupyterLab and
clicks Approve on each card, JupyterLab saves the outputs, and the saved file replays under
``NBAGENT_TRUST=1 pytest --nbval`` with identical outputs."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest

from .frontend import Frontend, running_kernel

pytestmark = pytest.mark.kernel

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXAMPLES = sorted(NOTEBOOKS.glob("*.ipynb"))


def approve_until_done(front: Frontend, msg_id: str, timeout: float = 60.0) -> int:
    """Click Approve on every card the cell shows until it ends; returns the clicks."""
    clicked: set[str] = set()
    deadline = time.monotonic() + timeout
    while not front.idle(msg_id):
        assert time.monotonic() < deadline, "the cell never ended"
        front.pump()
        for view in front.views(msg_id):
            card = front.pending_card(view)
            if card is None or card["id"] in clicked:
                continue  # the page has not heard of the click yet
            request = front.send_custom(
                view, {"type": "decide", "id": card["id"], "action": "approve"}
            )
            assert front.ack(view, request)["ok"] is True
            clicked.add(card["id"])
    return len(clicked)


@pytest.mark.parametrize("notebook", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_an_example_run_with_clicks_and_saved_passes_nbval(notebook: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from test_examples import nbval
    finally:
        sys.path.pop(0)
    copy = tmp_path / notebook.name
    shutil.copy(notebook, copy)  # only the .ipynb, as it was shared
    nb = nbformat.read(copy, as_version=4)
    env = {
        "NBAGENT_RECORDINGS": str(copy),  # what JupyterLab's notebook path tells a kernel
        "NBAGENT_DATA_DIR": str(tmp_path / ".data"),
        "NBAGENT_HOME": str(tmp_path / ".home-lab"),
        "NBAGENT_API_BASE": "http://127.0.0.1:9/v1",  # going live would fail
    }
    clicks = 0
    with running_kernel(cwd=str(tmp_path), **env) as front:
        for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
            cell.execution_count = count
            # the frontend's kernel has nbagent loaded already (loading prints nothing)
            lines = [line for line in cell.source.splitlines() if line != "%load_ext nbagent"]
            if not lines:
                continue
            msg_id = front.execute_cell("\n".join(lines), cell.get("id") or f"cell-{count}")
            clicks += approve_until_done(front, msg_id)
            assert front.reply(msg_id)["content"]["status"] == "ok"
            cell.outputs = [nbformat.from_dict(o) for o in front.saved_outputs(msg_id)]
    nbformat.write(nb, copy)  # what JupyterLab saves

    result = nbval(copy, NBAGENT_TRUST="1")
    assert result.returncode == 0, result.stdout[-4000:]
    saved = copy.read_text(encoding="utf-8")
    assert saved.count("approved by you") >= clicks > 0 or "approved by" not in saved
