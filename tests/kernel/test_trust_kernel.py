"""The quickstart in a kernel driven like JupyterLab: untrusted, the replayed call's card
says where it comes from and waits for a click; after ``nbagent trust`` the recorded
decision replays without a card, and the transcript reads the same either way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from nbagent.cli import main
from nbagent.notebook import recordings

from .frontend import running_kernel

pytestmark = pytest.mark.kernel

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"


def cells() -> tuple[str, str]:
    nb = nbformat.read(QUICKSTART, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    tool = next(c for c in code if "@nbagent.tool" in c)
    agent = next(c for c in code if c.startswith("%%agent"))
    return tool, agent


def saved_plain() -> str:
    nb = nbformat.read(QUICKSTART, as_version=4)
    agent = next(c for c in nb.cells if c.source.startswith("%%agent"))
    return "".join(agent.outputs[0]["data"]["text/plain"])


def test_untrusted_asks_with_a_note_then_trusted_replays_the_recorded_click(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "quickstart.ipynb"
    shutil.copy(QUICKSTART, copy)
    env = {
        "NBAGENT_RECORDINGS": str(copy),  # what JupyterLab's notebook path tells a kernel
        "NBAGENT_DATA_DIR": str(tmp_path / ".data"),
        "NBAGENT_HOME": str(tmp_path / ".home"),
        "NBAGENT_API_BASE": "http://127.0.0.1:9/v1",  # going live would fail
    }
    tool, agent = cells()
    with running_kernel(**env) as front:
        front.run(tool)
        msg_id = front.execute(agent)
        view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
        card = front.wait_for("a card waiting for approval", lambda: front.pending_card(view))
        assert "replayed from a recording made elsewhere" in (card.get("problem") or "")
        request = front.send_custom(view, {"type": "decide", "id": card["id"],
                                           "action": "approve"})  # fmt: skip
        assert front.ack(view, request)["ok"] is True
        assert front.reply(msg_id)["content"]["status"] == "ok"
        clicked = front.final_bundle(msg_id)["text/plain"]
    assert clicked == saved_plain()  # a click here reads as the recorded click did

    monkeypatch.setenv("NBAGENT_DATA_DIR", env["NBAGENT_DATA_DIR"])
    assert main(["trust", str(copy)]) == 0
    env["NBAGENT_HOME"] = str(tmp_path / ".home2")  # a fresh session: the same requests
    with running_kernel(**env) as front:
        front.run(tool)
        msg_id = front.execute(agent)
        assert front.reply(msg_id)["content"]["status"] == "ok"
        views = front.views(msg_id)
        assert views and front.pending_card(views[0]) is None
        assert not any(
            b.get("status") == "pending" for b in front.state[views[0]].get("blocks", [])
        )
        replayed = front.final_bundle(msg_id)["text/plain"]
    assert replayed == saved_plain()  # "approved by you", replayed without a card


def test_trust_this_notebook_from_the_card(tmp_path: Path) -> None:
    copy = tmp_path / "quickstart.ipynb"
    shutil.copy(QUICKSTART, copy)
    data = tmp_path / ".data"
    env = {
        "NBAGENT_RECORDINGS": str(copy),
        "NBAGENT_DATA_DIR": str(data),
        "NBAGENT_HOME": str(tmp_path / ".home"),
        "NBAGENT_API_BASE": "http://127.0.0.1:9/v1",  # going live would fail
    }
    tool, agent = cells()
    with running_kernel(**env) as front:
        front.run(tool)
        msg_id = front.execute(agent)
        view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
        card = front.wait_for("a card waiting for approval", lambda: front.pending_card(view))
        assert card["trust_label"] == "Trust this notebook"
        assert not (data / "trusted").exists()
        request = front.send_custom(view, {"type": "decide", "id": "nope", "action": "trust"})
        refused = front.ack(view, request)
        assert refused["ok"] is False and "not a replayed call" in refused["error"]
        assert not (data / "trusted").exists()
        request = front.send_custom(view, {"type": "decide", "id": card["id"],
                                           "action": "trust"})  # fmt: skip
        assert front.ack(view, request)["ok"] is True
        assert front.reply(msg_id)["content"]["status"] == "ok"
        assert front.final_bundle(msg_id)["text/plain"] == saved_plain()
        digest = recordings.recordings_digest(json.loads(copy.read_text(encoding="utf-8")))
        assert (data / "trusted").read_text(encoding="utf-8").split()[0] == digest

        # the same requests in another session now replay the recorded click, no card
        again = front.execute(agent.replace("--tools add", "--tools add --session again"))
        assert front.reply(again)["content"]["status"] == "ok"
        views = front.views(again)
        assert views and front.pending_card(views[0]) is None
        assert front.final_bundle(again)["text/plain"] == saved_plain().replace(
            "session default", "session again"
        )
