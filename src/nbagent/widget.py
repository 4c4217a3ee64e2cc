"""The live view of a run: an anywidget fed with typed events.

Streamed text is coalesced and sent as small custom messages (``{"type": "delta"}``)
every ``flush_interval`` seconds. Blocks that changed in that time (a card's new state,
the streaming text's Markdown about once a second) go as one ``{"type": "patch"}`` message
holding those blocks only, so a response with a thousand calls does not re-send every card
at each change; the ``blocks`` trait is updated in place, so a page that connects later
(a reload) gets the current state, and it is synced whole at the start and the end.
Cards arrive as the parts the one card walker yields (labels, decisions,
which sections show; see ``render.parts``) and text blocks with their safe HTML, so the
page lays things out and decides nothing. Images a tool displayed go in ``media``
(synced once, when they arrive); the cards refer to them by key, so the frequent
``blocks`` syncs stay small. The buttons in the page send ``{"type": "decide" | "stop",
"request": n}``; the view calls the callbacks it was given and answers each request with
an ``ack``.
It imports the events and the transcript model only, never the session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import anywidget
import traitlets

from .events import Event, TextDelta, ToolStarted
from .render import TextBlock, Transcript

Action = Literal["approve", "reject", "always", "always_args", "trust", "continue", "stop"]
"""What a card button asks for: approve this call, reject it (with the person's reason),
always allow the tool for the session, always allow the tool with these same arguments,
or trust the notebook the call was replayed from (and decide it as its recording did); on a
run paused at its budget, continue with another budget of the same size, or stop."""

ACTIONS: tuple[Action, ...] = (
    "approve", "reject", "always", "always_args", "trust", "continue", "stop",
)  # fmt: skip

MAX_REASON_CHARS = 2_000
"""The longest reason a person can give for a rejection (the model reads it)."""

_HERE = Path(__file__).resolve().parent


def _esm_path() -> Path:
    """``static/widget.js`` inside the installed package; ``js/widget.js`` in a checkout."""
    packaged = _HERE / "static" / "widget.js"
    if packaged.is_file():
        return packaged
    return _HERE.parents[1] / "js" / "widget.js"


class AgentView(anywidget.AnyWidget):
    """The live view of one run: streamed answer, tool cards with buttons, a status line."""

    _esm = _esm_path()
    blocks: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    """Text blocks (Markdown and safe HTML) and tool cards (walked parts), as JSON."""
    synced_seq = traitlets.Int(0).tag(sync=True)
    """The last delta message whose text ``blocks`` already contains."""
    status = traitlets.Dict().tag(sync=True)
    """State, notices, elapsed time, and the status line around it (``label``, ``details``)."""
    media = traitlets.Dict().tag(sync=True)
    """Images tools displayed, ``{key: {"mime", "data"}}``; cards hold the keys."""

    def __init__(
        self,
        transcript: Transcript,
        *,
        on_decide: Callable[[str, Action, str | None], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        flush_interval: float = 0.04,
        text_sync_interval: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.transcript = transcript
        self.on_decide = on_decide
        self.on_stop = on_stop
        self.flush_interval = flush_interval
        self.text_sync_interval = text_sync_interval
        self._pending: list[str] = []
        self._pending_block = -1
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sync_timer: asyncio.TimerHandle | None = None
        self._last_text_sync = time.monotonic()
        self._text_dirty = False
        self._status_dirty = False
        self._dirty: set[int] = set()
        """Blocks changed since the last patch."""
        self._known = 0
        """Blocks of the transcript the view has seen."""
        self._card_index: dict[str, int] = {}
        self._final = False
        """The end of the run was sent (text rendered whole)."""
        self._last_patch = 0.0
        """When the last patch or status went to the page (monotonic seconds)."""
        self._media: dict[str, dict[str, str]] = {}
        self.messages_sent = 0
        """Delta messages sent (for tests and benchmarks)."""
        self.patches_sent = 0
        """Patch messages sent (for tests and benchmarks)."""
        self.on_msg(self._on_page_msg)
        self._sync_all()

    def view_bundle(self) -> dict[str, Any]:
        """The widget-view MIME entry that shows this view in a cell output."""
        return {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2,
                "version_minor": 1,
                "model_id": self.model_id,
            }
        }

    # -- kernel → page --------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        """Apply one event of the run to the transcript and the page (cheap per token)."""
        transcript = self.transcript
        if type(event) is TextDelta:
            transcript.add(event)
            block = len(transcript.blocks) - 1
            if block != self._pending_block and self._pending:
                self._send_text()
            self._pending_block = block
            self._pending.append(event.text)
            self._schedule()
            return
        changed = transcript.add(event)
        if changed == "blocks":
            self._mark(
                getattr(event, "tool_call_id", None)
                or getattr(event, "decision_id", None)
                or getattr(event, "call", None)
            )
            self._changed(now=type(event) is ToolStarted)
        elif changed == "status":
            if transcript.finished_at is not None:
                self.finish()
            else:
                self._status_dirty = True
                self._changed()

    def _changed(self, *, now: bool = False) -> None:
        """A block or the status changed: send it at once when nothing went out for a
        flush interval, else with the next flush (a burst of changes goes as one patch).
        ``now``: a tool starts, which may block the loop until it ends (``run_python``
        runs in the kernel's thread), and the page should say "running" meanwhile."""
        if now or (
            self._timer is None and time.monotonic() - self._last_patch >= self.flush_interval
        ):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._flush()
        else:
            self._schedule()

    def _mark(self, about: object) -> None:
        """Note which blocks changed: new ones (and the text block before them, which is
        complete now), and the card an event is about."""
        blocks = self.transcript.blocks
        for i in range(self._known, len(blocks)):
            block = blocks[i]
            if isinstance(block, TextBlock):
                continue
            self._card_index[block.id] = i
            if i > 0 and isinstance(blocks[i - 1], TextBlock):
                self._dirty.add(i - 1)
        self._dirty.update(range(self._known, len(blocks)))
        self._known = len(blocks)
        card_id = about if isinstance(about, str) else getattr(about, "id", None)
        if card_id in self._card_index:
            self._dirty.add(self._card_index[card_id])

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # fed outside the kernel's loop: nothing to wait for
            self._flush()
            return
        self._timer = loop.call_later(self.flush_interval, self._flush)

    def _send_text(self) -> None:
        """Send the coalesced text as one delta message (unless a patch of its block is
        about to carry it)."""
        if not self._pending:
            return
        self._seq += 1
        if self._pending_block in self._dirty:
            self._pending.clear()
            return
        self.send(
            {"type": "delta", "seq": self._seq, "block": self._pending_block,
             "text": "".join(self._pending)}
        )  # fmt: skip
        self.messages_sent += 1
        self._pending.clear()
        self._text_dirty = True

    def _flush(self) -> None:
        """Send what changed since the last flush: streamed text as a delta, changed
        blocks as one patch (only those blocks), the status. The streaming text block's
        Markdown is re-rendered about once a second and when the stream pauses (the page
        shows streamed text as plain text until then)."""
        self._timer = None
        self._send_text()
        if self._text_dirty:
            wait = self._last_text_sync + self.text_sync_interval - time.monotonic()
            if wait <= 0:
                self._sync_text(now=True)
            elif self._sync_timer is None:
                self._sync_timer = asyncio.get_running_loop().call_later(wait, self._sync_text)
        self._send_patch()

    def _sync_text(self, *, now: bool = False) -> None:
        """Re-render the streaming text block (a patch of that block alone)."""
        self._sync_timer = None
        if not self._text_dirty:
            return
        self._text_dirty = False
        self._last_text_sync = time.monotonic()
        if self._pending_block >= 0:
            self._dirty.add(self._pending_block)
        if not now:
            self._send_text()
            self._send_patch()

    def _block_json(self, i: int, *, fresh: bool) -> dict[str, Any]:
        block = self.transcript.blocks[i]
        return block.to_json(fresh=fresh) if isinstance(block, TextBlock) else block.to_json()

    def _send_patch(self, *, fresh: bool = False) -> None:
        """Update the changed blocks in the synced state (in place: a page that connects
        later gets them with the state) and send them to the page as one patch."""
        if not self._dirty and not self._status_dirty:
            return
        changed = sorted(self._dirty)
        self._dirty.clear()
        rendered = [(i, self._block_json(i, fresh=fresh)) for i in changed]
        blocks = self.blocks
        for i, block in rendered:
            if i < len(blocks):
                blocks[i] = block
            else:
                blocks.extend({} for _ in range(i + 1 - len(blocks)))
                blocks[i] = block
        media_changed = self._move_media([block for _, block in rendered])
        self._status_dirty = False
        with self.hold_sync():
            if media_changed:
                self.media = dict(self._media)
            self.synced_seq = self._seq
            self.status = self.transcript.status_json()
        self._last_patch = time.monotonic()
        if rendered:
            self.send({"type": "patch", "seq": self._seq, "count": len(blocks),
                       "blocks": [[i, block] for i, block in rendered]})  # fmt: skip
            self.patches_sent += 1
        if any(block.get("tail") for _, block in rendered):
            # Markdown rendering was put off: come back when the stream may have paused.
            self._text_dirty = True
            if self._sync_timer is None:
                self._sync_timer = asyncio.get_running_loop().call_later(
                    self.text_sync_interval, self._sync_text
                )

    def _sync_final(self) -> None:
        """The run ended: every text block rendered now and every changed card, as one
        last patch (the synced state has the rest already)."""
        for timer in (self._timer, self._sync_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._sync_timer = None
        if self._pending:
            self._seq += 1  # the patch of its block holds the pending text
            self._pending.clear()
        self._text_dirty = False
        self._mark(None)
        if not self._final:
            self._final = True
            self._dirty.update(
                i for i, b in enumerate(self.transcript.blocks) if isinstance(b, TextBlock)
            )
            self._status_dirty = True
        self._send_patch(fresh=True)

    def _sync_all(self) -> None:
        """Sync the whole state, every block rendered now (when the view opens)."""
        for timer in (self._timer, self._sync_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._sync_timer = None
        if self._pending:
            self._seq += 1  # the state holds the pending text
            self._pending.clear()
        self._text_dirty = self._status_dirty = False
        self._dirty.clear()
        self._mark(None)
        self._dirty.clear()
        self.blocks[:] = [self._block_json(i, fresh=True) for i in range(self._known)]
        media_changed = self._move_media(self.blocks)
        with self.hold_sync():
            if media_changed:
                self.media = dict(self._media)
            self.synced_seq = self._seq
            self.status = self.transcript.status_json()
        self.send_state("blocks")

    def _move_media(self, blocks: list[dict[str, Any]]) -> bool:
        """Replace image data in ``blocks`` by keys into ``media``; True if media grew."""
        grew = False
        for block in blocks:
            if block.get("kind") != "tool":
                continue
            for i, item in enumerate(block.get("display") or ()):
                if item.get("kind") != "image":
                    continue
                key = f"{block['id']}/{i}"
                data = item.pop("data", "")
                if key not in self._media:
                    self._media[key] = {"mime": item.get("mime", ""), "data": data}
                    grew = True
                item["ref"] = key
        return grew

    def finish(self) -> None:
        """Send the final state (the run ended)."""
        self._sync_final()

    # -- page → kernel --------------------------------------------------------------------

    def _on_page_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        request = content.get("request")
        kind = content.get("type")
        try:
            if kind == "decide":
                action = content.get("action")
                if action not in ACTIONS:
                    raise ValueError(f"unknown action {action!r}")
                reason = content.get("reason")
                if reason is not None and not isinstance(reason, str):
                    raise ValueError("a reason must be text")
                reason = (reason or "").strip()[:MAX_REASON_CHARS] or None
                if self.on_decide is None:
                    raise RuntimeError("this view no longer takes decisions")
                self.on_decide(str(content.get("id")), action, reason)
            elif kind == "stop":
                if self.on_stop is None:
                    raise RuntimeError("this view can no longer stop its run")
                self.on_stop()
            else:
                raise ValueError(f"unknown request {kind!r}")
        except Exception as exc:
            self.send({"type": "ack", "request": request, "ok": False, "error": str(exc)})
        else:
            self.send({"type": "ack", "request": request, "ok": True})

    def retire(self) -> None:
        """The run ended: send the final state and take no more clicks, but stay open, so
        a page reloaded mid-run (or another frontend that attaches later) still gets the
        finished transcript from the kernel. The display it was shown in gets the static
        transcript too, but only pages that knew the display hear of that."""
        self._sync_final()
        for timer in (self._timer, self._sync_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._sync_timer = None
        self.on_decide = None
        self.on_stop = None

    def close(self) -> None:
        for timer in (self._timer, self._sync_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._sync_timer = None
        self.on_decide = None
        self.on_stop = None
        super().close()
