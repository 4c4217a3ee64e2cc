"""The live view of a run: an anywidget fed with typed events.

Streamed text is coalesced and sent as small custom messages (``{"type": "delta"}``)
every ``flush_interval`` seconds; the whole state (``blocks``: text blocks and tool cards)
is synced as a trait when a card changes, about once a second while text streams, and
at the end. Cards arrive as the parts the one card walker yields (labels, decisions,
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

from .events import Event, TextDelta
from .render import TextBlock, Transcript

Action = Literal["approve", "reject", "always", "trust", "continue", "stop"]
"""What a card button asks for: approve this call, reject it, always allow the tool, or
trust the notebook the call was replayed from (and decide it as its recording did); on a
run paused at its budget, continue with another budget of the same size, or stop."""
ACTIONS: tuple[Action, ...] = ("approve", "reject", "always", "trust", "continue", "stop")

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
        on_decide: Callable[[str, Action], None] | None = None,
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
        self._media: dict[str, dict[str, str]] = {}
        self.messages_sent = 0
        """Custom messages sent (for tests and benchmarks)."""
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
                self._flush()
            self._pending_block = block
            self._pending.append(event.text)
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(
                    self.flush_interval, self._flush
                )
            return
        changed = transcript.add(event)
        if changed == "blocks":
            self._sync_all()
        elif changed == "status":
            if transcript.finished_at is not None:
                self.finish()
            else:
                self.status = transcript.status_json()

    def _flush(self) -> None:
        """Send the coalesced text as one message; sync the full text about once a second,
        and once more when the stream pauses (the page shows the kernel's HTML of the text,
        and streamed text as plain text until then)."""
        self._timer = None
        if self._pending:
            self._seq += 1
            self.send(
                {
                    "type": "delta",
                    "seq": self._seq,
                    "block": self._pending_block,
                    "text": "".join(self._pending),
                }
            )
            self.messages_sent += 1
            self._pending.clear()
            self._text_dirty = True
        if not self._text_dirty:
            return
        wait = self._last_text_sync + self.text_sync_interval - time.monotonic()
        if wait <= 0:
            self._sync_all(fresh=False)
        elif self._sync_timer is None:
            self._sync_timer = asyncio.get_running_loop().call_later(wait, self._sync_text)

    def _sync_text(self) -> None:
        self._sync_timer = None
        if self._text_dirty:
            self._sync_all(fresh=False)

    def _sync_all(self, *, fresh: bool = True) -> None:
        """Sync the whole state (text included); pending deltas are part of it. While text
        streams (``fresh`` False) its Markdown may be rendered less often than synced."""
        for timer in (self._timer, self._sync_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._sync_timer = None
        if self._pending:
            self._seq += 1
            self._pending.clear()
        self._last_text_sync = time.monotonic()
        self._text_dirty = False
        blocks = [
            block.to_json(fresh=fresh) if isinstance(block, TextBlock) else block.to_json()
            for block in self.transcript.blocks
        ]
        media_changed = self._move_media(blocks)
        with self.hold_sync():
            if media_changed:
                self.media = dict(self._media)
            self.blocks = blocks
            self.synced_seq = self._seq
            self.status = self.transcript.status_json()
        if any(block.get("tail") for block in blocks):
            # Markdown rendering was put off: come back when the stream may have paused.
            self._text_dirty = True
            self._sync_timer = asyncio.get_running_loop().call_later(
                self.text_sync_interval, self._sync_text
            )

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
        self._sync_all()

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
                if self.on_decide is None:
                    raise RuntimeError("this view no longer takes decisions")
                self.on_decide(str(content.get("id")), action)
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
        self._sync_all()
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
