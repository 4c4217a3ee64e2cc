"""A real kernel driven by jupyter_client acting as the notebook page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nbagent.testing import ScriptedServer, call, say, stall, use_tools, when

from .frontend import Frontend, running_kernel

pytestmark = pytest.mark.kernel  # each module starts real Jupyter kernels

ADD = '''
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''


@pytest.fixture(scope="module")
def front() -> Iterator[Frontend]:
    with running_kernel() as running:
        running.run(ADD)
        # A session's first answer starts a background title request, which would race
        # the next cell's request for the next scripted reply.
        running.run("%config NBAgent.titles = False")
        yield running


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="

SAVE = r"""
from nbagent.tools import ToolOutput, function_tool

def _save(path: str, content: str) -> ToolOutput:
    "Save a file and show what it holds."
    return ToolOutput(
        text="saved",
        display=(
            {"image/png": "PNG_DATA", "text/plain": "<Figure size 1x1>"},
            {"text/html": "<script>alert(1)</script>", "text/plain": "   a\n0  1"},
        ),
    )

def _diff(a):
    return f"--- a/{a['path']}\n+++ b/{a['path']}\n@@ -0,0 +1 @@\n+{a['content']}"

save = function_tool(_save, name="save")
save.preview = _diff
""".replace("PNG_DATA", PNG)


def agent_cell(server: ScriptedServer, prompt: str, options: str = "") -> str:
    return f"%%agent --api-base {server.url} {options}\n{prompt}"


def test_approve_click_runs_the_tool_and_the_answer_streams(
    front: Frontend, server: ScriptedServer
) -> None:
    server.add(
        use_tools(call("add", {"a": 2, "b": 3}), text="Let me add them."),
        # a pause after four words: what came before it reaches the page as deltas
        stall(0.5, after=4, text="The sum of 2 and 3 is 5, as the add tool computed."),
    )
    msg_id = front.execute(agent_cell(server, "Add 2 and 3 with the tool.", "-s s1 --tools add"))
    view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
    card = front.wait_for("a card waiting for approval", lambda: front.pending_card(view))
    assert card["name"] == "add"
    assert [a[0] for a in card["arguments"]] == ["a", "b"]
    # text that came before the card is part of the synced state
    first = front.state[view]["blocks"][0]
    assert (first["kind"], first["text"]) == ("text", "Let me add them.")
    assert first["html"] == "<p>Let me add them.</p>\n"  # rendered safe by the kernel

    request = front.send_custom(view, {"type": "decide", "id": card["id"], "action": "approve"})
    assert front.ack(view, request)["ok"] is True
    reply = front.reply(msg_id)
    assert reply["content"]["status"] == "ok"

    # coalesced: the four words before the pause arrive in one message, not four
    deltas = [c for c in front.custom[view] if c["type"] == "delta" and c["block"] == 2]
    assert len(deltas) == 1
    assert deltas[0]["text"] == "The sum of 2 "
    assert deltas[0]["block"] == 2  # a new text block after the card
    final = front.final_bundle(msg_id)
    assert "application/vnd.jupyter.widget-view+json" not in final
    assert "The sum of 2 and 3 is 5" in final["text/html"]
    assert "approved by you" in final["text/plain"]
    assert "result: 5" in final["text/plain"]
    assert set(final) >= {"text/plain", "text/html", "text/markdown"}
    assert front.evaluate("_.text") == "The sum of 2 and 3 is 5, as the add tool computed."
    assert front.evaluate("[c.result for c in _.tool_calls]") == "['5']"

    # the next cell continues the same conversation
    server.add(say("You asked me to add 2 and 3."))
    front.run(agent_cell(server, "What did I ask?", "-s s1"))
    messages = server.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
    assert messages[0]["content"] == "Add 2 and 3 with the tool."


def test_reject_and_always_allow(front: Frontend, server: ScriptedServer) -> None:
    server.add(
        use_tools(call("add", {"a": 1, "b": 1})),
        use_tools(call("add", {"a": 2, "b": 2})),
        use_tools(call("add", {"a": 3, "b": 3})),
        say("done"),
    )
    msg_id = front.execute(agent_cell(server, "add things", "-s s2 --tools add"))
    view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
    card = front.wait_for("the first card", lambda: front.pending_card(view))
    front.ack(
        view, front.send_custom(view, {"type": "decide", "id": card["id"], "action": "reject"})
    )
    card2 = front.wait_for(
        "the second card",
        lambda: (c := front.pending_card(view)) and c["id"] != card["id"] and c,
    )
    request = front.send_custom(view, {"type": "decide", "id": card2["id"], "action": "always"})
    assert front.ack(view, request)["ok"]
    front.reply(msg_id)
    plain = front.final_bundle(msg_id)["text/plain"]
    assert "\n  rejected by you\n" in plain and "Denied" not in plain  # said once
    assert "approved by policy: add was always-allowed in this session" in plain
    # a click on a call that is no longer pending is refused with a reason
    request = front.send_custom(view, {"type": "decide", "id": card["id"], "action": "approve"})
    front.pump(0.5)
    acks = [c for c in front.custom[view] if c.get("request") == request]
    assert not acks or acks[0]["ok"] is False


def test_reject_with_a_reason_and_allow_these_arguments(
    front: Frontend, server: ScriptedServer
) -> None:
    server.add(
        use_tools(call("add", {"a": 1, "b": 1})),
        use_tools(call("add", {"a": 2, "b": 2})),
        use_tools(call("add", {"a": 2, "b": 2})),
        use_tools(call("add", {"a": 3, "b": 3})),
        say("done"),
    )
    msg_id = front.execute(agent_cell(server, "add things", "-s s7 --tools add"))
    view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
    seen: list[str] = []

    def next_card() -> dict[str, object]:
        card = front.wait_for(
            "the next card",
            lambda: (c := front.pending_card(view)) and c["id"] not in seen and c,
        )
        seen.append(card["id"])
        return dict(card)

    first = next_card()
    reason = {"type": "decide", "id": first["id"], "action": "reject",
              "reason": "  use bigger numbers  "}  # fmt: skip
    assert front.ack(view, front.send_custom(view, reason))["ok"]
    second = next_card()
    these = {"type": "decide", "id": second["id"], "action": "always_args"}
    assert front.ack(view, front.send_custom(view, these))["ok"]
    fourth = next_card()  # the third call had the same arguments: it ran without asking
    assert fourth["arguments"] == [["a", "json", "3"], ["b", "json", "3"]]
    approve = {"type": "decide", "id": fourth["id"], "action": "approve"}
    assert front.ack(view, front.send_custom(view, approve))["ok"]
    front.reply(msg_id)
    told = [m for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert "The user rejected the call: use bigger numbers. It did not run." in told[-1]["content"]
    plain = front.final_bundle(msg_id)["text/plain"]
    assert "use bigger numbers" in plain
    assert plain.count("always for matching calls, this session") == 1
    assert plain.count("result: 4") == 2 and "result: 6" in plain


def test_stop_button_ends_the_run_and_the_cell(front: Frontend, server: ScriptedServer) -> None:
    server.add(stall(30, after=3, text="This answer will stall after three words"))
    msg_id = front.execute(agent_cell(server, "stall please", "-s s3"))
    view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
    front.wait_for("streamed text", lambda: any(c["type"] == "delta" for c in front.custom[view]))
    assert front.ack(view, front.send_custom(view, {"type": "stop"}))["ok"]
    reply = front.reply(msg_id, timeout=10)
    assert reply["content"]["status"] == "ok"
    final = front.final_bundle(msg_id)
    assert "cancelled" in final["text/plain"]
    assert "This answer will" in final["text/plain"]


def test_kernel_interrupt_stops_the_run_and_the_next_cell_goes_on(
    front: Frontend, server: ScriptedServer
) -> None:
    server.add(stall(30, after=2, text="Interrupt me while I think"))
    msg_id = front.execute(agent_cell(server, "stall please", "-s s4"))
    view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
    front.wait_for("streamed text", lambda: any(c["type"] == "delta" for c in front.custom[view]))
    front.manager.interrupt_kernel()
    reply = front.reply(msg_id, timeout=10)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "RunStopped"
    assert "cancelled" in front.final_bundle(msg_id)["text/plain"]
    assert front.evaluate("__import__('nbagent').__name__") == "nbagent"

    server.add(say("Back again."))
    front.run(agent_cell(server, "are you there?", "-s s4"))
    roles = [m["role"] for m in server.requests[-1]["messages"]]
    assert roles == ["user", "assistant", "user"]  # the partial answer was kept


def test_background_runs_in_two_sessions_do_not_cross(
    front: Frontend, server: ScriptedServer
) -> None:
    # The two runs overlap: each reply answers its own prompt, whichever request comes first.
    server.add(
        *when("one", say("alpha " * 30, words_per_chunk=1)),
        *when("two", say("beta " * 30, words_per_chunk=1)),
    )
    first = front.execute(agent_cell(server, "one", "-s bg1 --mode background"))
    front.reply(first)
    second = front.execute(agent_cell(server, "two", "-s bg2 --mode background"))
    front.reply(second)
    for msg_id, word, other in ((first, "alpha", "beta"), (second, "beta", "alpha")):
        bundle = front.wait_for(
            f"the {word} transcript",
            lambda msg_id=msg_id: (
                (b := front.final_bundle(msg_id)).get("text/plain", "").count("completed") and b
            ),
        )
        assert bundle["text/plain"].count(word) == 30
        assert other not in bundle["text/plain"]
    out = front.evaluate("get_ipython().run_line_magic('agent', 'sessions').to_plain()")
    assert "bg1" in out and "bg2" in out


def test_the_live_view_gets_the_preview_and_the_displayed_image(
    front: Frontend, server: ScriptedServer
) -> None:
    front.run(SAVE)
    server.add(
        use_tools(call("save", {"path": "n.md", "content": "<b>hi</b>"})),
        say("Saved."),
    )
    msg_id = front.execute(agent_cell(server, "save it", "-s s5 --tools save"))
    view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
    card = front.wait_for("a card waiting for approval", lambda: front.pending_card(view))
    assert card["preview"] == [
        ["meta", "--- a/n.md"],
        ["meta", "+++ b/n.md"],
        ["hunk", "@@ -0,0 +1 @@"],
        ["add", "+<b>hi</b>"],
    ]
    request = front.send_custom(view, {"type": "decide", "id": card["id"], "action": "approve"})
    assert front.ack(view, request)["ok"] is True
    assert front.reply(msg_id)["content"]["status"] == "ok"

    state = front.state[view]
    done = next(b for b in state["blocks"] if b.get("kind") == "tool")
    assert done["status"] == "ok" and done["preview"] == card["preview"]
    ref = f"{card['id']}/0"
    assert done["display"] == [
        {"kind": "image", "mime": "image/png", "alt": "<Figure size 1x1>", "ref": ref},
        {"kind": "text", "text": "   a\n0  1"},
    ]
    assert state["media"] == {ref: {"mime": "image/png", "data": PNG}}
    # the image went to the page in one state update, not with every blocks sync
    updates = [
        m["content"]["data"]["state"]
        for m in front.for_cell(msg_id)
        if m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == view
        and m["content"]["data"].get("method") == "update"
    ]
    assert sum("media" in u for u in updates) == 1
    assert all(PNG not in str(u.get("blocks", "")) for u in updates)

    final = front.final_bundle(msg_id)
    # the image is an ordinary output after the transcript, which refers to it
    assert "data:image" not in final["text/html"] + final["text/markdown"]
    assert "<i>[image: shown below]</i>" in final["text/html"]
    assert "*\\[image: shown below\\]*" in final["text/markdown"]
    outputs = front.saved_outputs(msg_id)
    assert "text/html" in outputs[-2]["data"]  # the transcript, then the image
    assert outputs[-1]["data"] == {"image/png": PNG, "text/plain": "<Figure size 1x1>"}
    assert "<script>alert(1)</script>" not in final["text/html"]
    assert '<span class="nbagent-diff-add"' in final["text/html"]


RUNAWAY = " ".join(f"word{i}" for i in range(20_000))


def budget_card(front: Frontend, comm_id: str, seen: int = 0) -> dict[str, Any] | None:
    """The budget card that waits for a decision, after the ``seen`` first ones."""
    cards = [b for b in front.state[comm_id].get("blocks", []) if b.get("kind") == "budget"]
    waiting = [c for c in cards[seen:] if c["awaits_decision"]]
    return dict(waiting[0]) if waiting else None


def test_a_run_at_its_budget_waits_for_continue_or_stop(
    front: Frontend, server: ScriptedServer
) -> None:
    """The page's buttons on the budget card: continue raises the budget by its size and
    the answer streams on; stop ends the run (not failed); a reloaded page sees the card."""
    server.add(say(RUNAWAY))
    msg_id = front.execute(agent_cell(server, "Write forever.", "-s budget --max-tokens 300"))
    view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
    card = front.wait_for("the budget card", lambda: budget_card(front, view))
    assert card["label"] == "budget reached (300 tokens)"
    assert card["buttons"] == [["Continue with another 300 tokens", "continue"], ["Stop", "stop"]]
    assert not front.idle(msg_id)  # the cell waits with its run
    # a page that attaches now (a reload) gets the waiting card from the kernel
    front.attach_widgets()
    assert budget_card(front, view) == card

    request = front.send_custom(view, {"type": "decide", "id": card["id"], "action": "continue"})
    assert front.ack(view, request)["ok"] is True
    second = front.wait_for("the second budget card", lambda: budget_card(front, view, seen=1))
    assert second["label"] == "budget reached (600 tokens)"
    request = front.send_custom(view, {"type": "decide", "id": second["id"], "action": "stop"})
    assert front.ack(view, request)["ok"] is True
    assert front.reply(msg_id)["content"]["status"] == "ok"  # stopped, not failed
    plain = front.final_bundle(msg_id)["text/plain"]
    assert "budget reached (300 tokens) · continued with another 300 tokens by you." in plain
    assert "budget reached (600 tokens) · stopped by you." in plain
    assert front.evaluate("_.status") == "budget_exceeded"
    assert 1_200 < int(front.evaluate("len(_.text)")) < 8_000
    # a click on a decided pause is refused with a reason
    request = front.send_custom(view, {"type": "decide", "id": card["id"], "action": "stop"})
    front.pump(0.5)
    acks = [c for c in front.custom[view] if c.get("request") == request]
    assert not acks or acks[0]["ok"] is False


HOLD_THE_IMPORT = """
import threading
from nbagent import _provider
release = threading.Event()
_real_import = _provider.import_litellm
def _held():
    release.wait(30)
    return _real_import()
_provider._LOADED = threading.Event()
_provider.import_litellm = _held
"""


def test_the_status_line_says_the_model_library_loads_then_estimates_while_streaming(
    front: Frontend, server: ScriptedServer
) -> None:
    """A first request that waits for litellm's import says so (not a silent wait); then
    the answer streams with "~" tokens and cost, exact once the server reports usage (it
    does at the end of the stream)."""
    front.run(HOLD_THE_IMPORT)
    front.run("%config NBAgent.text_sync_interval = 0.1")
    server.add(stall(3.0, after=6, text="one two three four five six seven eight"))
    msg_id = front.execute(agent_cell(server, "Count.", "-s status --mode background"))
    view = front.wait_for("the live view", lambda: front.views(msg_id))[0]

    def label() -> str:
        return str(front.state[view].get("status", {}).get("label"))

    front.wait_for("the loading note", lambda: label() == "loading the model library…")
    assert not server.requests
    front.run("release.set()")
    streaming = front.wait_for(
        "an estimate while the answer streams",
        lambda: (s := front.state[view].get("status", {})).get("details", "").startswith("~") and s,
    )
    tokens, cost = streaming["details"].split(" · ")[:2]
    assert streaming["label"] == "running" and tokens.startswith("~") and cost.startswith("~")
    final = front.wait_for(
        "the end of the run", lambda: (s := front.state[view]["status"]).get("finished") and s
    )
    assert "~" not in final["details"], final["details"]
    front.run("%config NBAgent.text_sync_interval = 1.0")
