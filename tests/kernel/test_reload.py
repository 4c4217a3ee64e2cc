"""Reload-proof: a page that attaches to the kernel during a run (a reload, or a second
frontend after the first left) gets the live view's state from the kernel, can click in
it, and still sees the final transcript after the run ends; it never receives the final
display update (display ids are not saved), so the view itself must carry the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbagent.testing import ScriptedServer, call, say, use_tools

from .frontend import Frontend, running_kernel

pytestmark = pytest.mark.kernel  # each module starts real Jupyter kernels

ADD = '''
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def test_a_frontend_that_attaches_mid_run_sees_the_final_transcript(
    server: ScriptedServer,
) -> None:
    server.add(use_tools(call("add", {"a": 2, "b": 3}, id="c1")), say("2 + 3 = 5."))
    with running_kernel(NBAGENT_API_BASE=server.url) as first:
        first.run(ADD)
        first.run("%config NBAgent.titles = False")
        msg_id = first.execute("%%agent --tools add\nAdd 2 and 3.")
        view = first.wait_for("the live view", lambda: first.views(msg_id))[0]
        first.wait_for("the approval card", lambda: first.pending_card(view))
        shown = next(m for m in first.for_cell(msg_id) if m["msg_type"] == "display_data")
        # what a page that saves now keeps beside the view: no stale "queued · 0 tokens"
        assert "a live run: its transcript replaces this" in shown["content"]["data"]["text/plain"]
        first.client.stop_channels()  # the page reloads: the first frontend is gone

        client = first.manager.client()
        client.start_channels()
        second = Frontend(client, first.manager)
        try:
            assert view in second.attach_widgets()
            card = second.pending_card(view)  # the reloaded page shows the waiting card
            assert card is not None and card["awaits_decision"]
            ack = second.ack(
                view, second.send_custom(view, {"type": "decide", "id": "c1", "action": "approve"})
            )
            assert ack["ok"]
            second.wait_for("the run to end", lambda: second.state[view].get("status", {})
                            .get("finished"))  # fmt: skip
            state = second.request_state(view)  # and again after the run, as a later reload
            texts = [b["text"] for b in state["blocks"] if b["kind"] == "text"]
            assert "2 + 3 = 5." in texts
            assert state["status"]["label"] == "completed"
            card = next(b for b in state["blocks"] if b["kind"] == "tool")
            assert card["status"] == "ok" and not card["awaits_decision"]
            # A click on the finished view is refused with a reason, not lost.
            late = second.ack(view, second.send_custom(view, {"type": "stop"}))
            assert not late["ok"]
            assert second.evaluate("1 + 1") == "2"  # the cell ended; the kernel is idle
        finally:
            client.stop_channels()
