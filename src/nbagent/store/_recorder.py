"""Record a live session into its log, through the session's hooks and events.

Writes happen at the run's baseline (the user message is in), after each model response,
after each tool result, on error and at the end (before ``RunFinished`` reaches anyone,
so a finished run is always on disk). Streamed deltas are coalesced and written on a
short timer, never per token: a killed kernel loses at most one timer period of text.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .._fanout import Subscription
from ..events import (
    Event,
    ModelResponded,
    ReasoningDelta,
    RunFinished,
    TextDelta,
    ToolCall,
    ToolFinished,
    event_adapter,
)
from ..hooks import Hooks, RunContext
from ..model import ModelRequest
from ..session import Session
from ._log import SessionLog

_SKIPPED = frozenset({"state_changed"})


class SessionRecorder(Hooks):
    """Keeps ``log`` in step with ``session``. Use :func:`attach` to make one."""

    def __init__(
        self, session: Session, log: SessionLog, *, flush_interval: float = 0.25,
        titles: bool = False,
    ) -> None:  # fmt: skip
        self.session = session
        self.log = log
        self.flush_interval = flush_interval
        self.titles = titles
        self._events: Subscription = session.subscribe()
        self._written_finish: RunFinished | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._title_task: asyncio.Task[None] | None = None
        self._before_run: int = -1

    # -- buffering ------------------------------------------------------------------------

    def _records(self, events: list[Event]) -> list[dict[str, Any]]:
        """Turn events into records. Consecutive deltas become one record; deltas of a
        response that is complete in the same batch are dropped (it carries the text)."""
        last_response = {e.run_id: i for i, e in enumerate(events) if e.kind == "model_responded"}
        records: list[dict[str, Any]] = []
        texts: list[str] | None = None
        for index, event in enumerate(events):
            kind = event.kind
            if kind in _SKIPPED or event is self._written_finish:
                continue
            if isinstance(event, (TextDelta, ReasoningDelta)):
                if index < last_response.get(event.run_id, -1):
                    continue
                if texts is not None and records[-1]["event"]["kind"] == kind:
                    texts.append(event.text)
                    continue
                texts = [event.text]
                records.append(
                    {
                        "type": "event",
                        "event": {"kind": kind, "run_id": event.run_id, "text": texts},
                    }
                )
                continue
            texts = None
            if kind == "run_started":
                self._before_run = self.log.next_seq + len(records) - 1
            records.append({"type": "event", "event": _as_dict(event)})
        for record in records:
            text = record["event"].get("text")
            if isinstance(text, list):
                record["event"]["text"] = "".join(text)
        return records

    def flush(self, *, fsync: bool = False) -> None:
        """Write every event received so far."""
        records = self._records(self._events.drain())
        if records:
            self.log.write(records, fsync=fsync)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            with contextlib.suppress(Exception):  # the next hook reports write errors
                self.flush()

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    # -- hooks ----------------------------------------------------------------------------

    async def on_run_start(self, ctx: RunContext) -> None:
        self._ensure_ticker()
        self.flush()
        self.log.checkpoint(
            "input", run_id=ctx.run_id, model=self.session.model.name, turn=self.session.runs,
            summary=ctx.prompt or "(resumed)", extra={"before": self._before_run},
        )  # fmt: skip

    async def before_model_request(
        self, ctx: RunContext, request: ModelRequest
    ) -> ModelRequest | None:
        self.flush()
        return None

    async def after_model_response(self, ctx: RunContext, response: ModelResponded) -> None:
        self.flush()
        calls = ", ".join(c.name for c in response.tool_calls)
        self.log.checkpoint(
            "model_response", run_id=ctx.run_id, model=self.session.model.name,
            turn=self.session.runs, summary=f"calls {calls}" if calls else response.text,
        )  # fmt: skip

    async def after_tool_call(
        self, ctx: RunContext, call: ToolCall, finished: ToolFinished
    ) -> None:
        self.flush()
        self.log.checkpoint(
            "tool_results", run_id=ctx.run_id, model=self.session.model.name,
            turn=self.session.runs, summary=f"{call.name}: {finished.status}", fsync=True,
        )  # fmt: skip

    async def on_error(self, ctx: RunContext, error: BaseException) -> None:
        self.flush()
        self.log.checkpoint(
            "error", run_id=ctx.run_id, model=self.session.model.name, turn=self.session.runs,
            summary=str(error), fsync=True,
        )  # fmt: skip

    async def on_run_end(self, ctx: RunContext, finished: RunFinished) -> None:
        self.flush()
        self.log.write([{"type": "event", "event": _as_dict(finished)}])
        self._written_finish = finished
        self.log.checkpoint(
            "end", run_id=ctx.run_id, model=self.session.model.name,
            turn=self.session.runs + 1, summary=finished.text or finished.status, fsync=True,
        )  # fmt: skip
        if self.titles and self.session.runs == 0 and finished.status == "completed":
            self._title_task = asyncio.get_running_loop().create_task(self._make_title(ctx))

    async def _make_title(self, ctx: RunContext) -> None:
        request = ModelRequest(
            messages=[
                {"role": "system", "content": "Reply with a title of at most six words."},
                {"role": "user", "content": f"Title this conversation:\n{ctx.prompt[:2000]}"},
            ],
            tools=[],
        )
        parts: list[str] = []
        stream = self.session.model.stream(request)
        try:
            async for chunk in stream:
                if isinstance(chunk, str):
                    parts.append(chunk)
        except Exception:
            return  # a title is a nicety: the first message stands in for it
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        title = " ".join("".join(parts).split()).strip(" \"'.")[:80]
        if title:
            self.log.meta(title=title)

    async def aclose(self) -> None:
        """Stop the timer and the title job (bounded), write what is left, release the log."""
        for task in (self._ticker, self._title_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 2)
        self.close_now()

    def close_now(self) -> None:
        """Detach from the session and release the log at once (no waiting)."""
        for task in (self._ticker, self._title_task):
            if task is not None and not task.done():
                task.cancel()
        if not self.log.closed:
            with contextlib.suppress(Exception):
                self.flush(fsync=True)
        self._events.close()
        if self in self.session.hooks:
            self.session.hooks.remove(self)
        self.log.close()


def _as_dict(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = event_adapter().dump_python(event, mode="json")
    return data


def attach(session: Session, log: SessionLog, **options: Any) -> SessionRecorder:
    """Record ``session`` into ``log`` from now on; returns the recorder (``aclose`` it)."""
    recorder = SessionRecorder(session, log, **options)
    session.hooks.append(recorder)
    return recorder
