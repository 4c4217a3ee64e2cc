"""The journey a reviewer's notebook takes: someone runs the quickstart in JupyterLab and
clicks Approve on its card, JupyterLab saves the outputs, and the saved file replays under
``NBAGENT_TRUST=1 pytest --nbval`` with identical outputs."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from .frontend import running_kernel

pytestmark = pytest.mark.kernel

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_a_notebook_run_with_clicks_and_saved_passes_nbval(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from test_examples import nbval
    finally:
        sys.path.pop(0)
    copy = tmp_path / "quickstart.ipynb"
    shutil.copy(NOTEBOOKS / "quickstart.ipynb", copy)
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
            if cell.source.strip() == "%load_ext nbagent":
                continue  # the frontend's kernel has it loaded already (no output either way)
            msg_id = front.execute_cell(cell.source, cell.get("id") or f"cell-{count}")
            if cell.source.startswith("%%agent"):
                view = front.wait_for("the live view", lambda m=msg_id: front.views(m))[0]
                card = front.pending_card(view) if "--tools" in cell.source else None
                if "--tools" in cell.source:
                    card = front.wait_for("a card", lambda v=view: front.pending_card(v))
                if card is not None:  # the person clicks Approve, as in JupyterLab
                    request = front.send_custom(
                        view, {"type": "decide", "id": card["id"], "action": "approve"}
                    )
                    assert front.ack(view, request)["ok"] is True
                    clicks += 1
            assert front.reply(msg_id)["content"]["status"] == "ok"
            cell.outputs = [nbformat.from_dict(o) for o in front.saved_outputs(msg_id)]
    assert clicks == 1
    nbformat.write(nb, copy)  # what JupyterLab saves

    result = nbval(copy, NBAGENT_TRUST="1")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "approved by you" in copy.read_text(encoding="utf-8")
