"""Record a live session into its log: a synchronous, ordered sink of the session's events.

The session hands every event to its sinks before any subscriber sees it, in order, so a
``RunFinished`` is on disk before anyone hears of it and nothing is written twice. Events
are written as they happen, with checkpoints at the run's baseline (the user message is
in), after each model response, after each tool result, on error and at the end. Streamed
deltas are buffered and written by a timer armed on the first buffered delta, never per
token: a killed kernel loses at most one timer period of text.

Titles (``titles=True``): after the first completed run the log gets a title made from
the first prompt's words, with no model request. Only an auxiliary model given as
``aux_model`` is asked for a title (in the background); the session's own model never is.
"""

from __future__ import annotations

import asyncio
import contextlib

from ..events import (
    ErrorOccurred,
    Event,
    ModelResponded,
    ReasoningDelta,
    RunFinished,
    RunStarted,
    StateChanged,
    TextDelta,
    ToolCallsRefused,
    ToolFinished,
)
from ..model import Model, ModelRequest
from ..session import Session
from ._log import SessionLog
from ._records import EventRecord, LogRecord

_Delta = TextDelta | ReasoningDelta


class SessionRecorder:
    """Keeps ``log`` in step with ``session``. Use :func:`attach` to make one."""

    def __init__(
        self, session: Session, log: SessionLog, *, flush_interval: float = 0.25,
        titles: bool = False, aux_model: Model | None = None,
    ) -> None:  # fmt: skip
        self.session = session
        self.log = log
        self.flush_interval = flush_interval
        self.titles = titles
        self.aux_model = aux_model
        """The only model a title is ever requested from (None: the prompt's words)."""
        self._deltas: list[_Delta] = []
        self._timer: asyncio.TimerHandle | None = None
        self._title_task: asyncio.Task[None] | None = None
        self._started: set[str] = set()
        """Runs whose start this recorder wrote (a turn stopped before it started has
        an end and no checkpoints)."""

    # -- the sink -------------------------------------------------------------------------

    def accept(self, event: Event) -> None:
        """Take one event (called by the session, in order, before subscribers see it)."""
        if isinstance(event, (TextDelta, ReasoningDelta)):
            self._deltas.append(event)
            self._arm()
            return
        if isinstance(event, StateChanged):
            return
        if isinstance(event, ModelResponded):
            # the response carries the text: its buffered deltas need not be written
            self._deltas = [d for d in self._deltas if d.run_id != event.run_id]
        self.flush()
        before = self.log.next_seq - 1
        self.log.write([EventRecord(event=event)], fsync=isinstance(event, RunFinished))
        model = self.session.model.name
        runs = self.session.runs
        log = self.log
        if isinstance(event, RunStarted):
            self._started.add(event.run_id)
            log.checkpoint(
                "input", run_id=event.run_id, model=model, turn=runs,
                summary=event.prompt or "(resumed)", before=before,
            )  # fmt: skip
        elif isinstance(event, ModelResponded):
            calls = ", ".join(c.name for c in event.tool_calls)
            log.checkpoint(
                "model_response", run_id=event.run_id, model=model, turn=runs,
                summary=f"calls {calls}" if calls else event.text,
            )  # fmt: skip
        elif isinstance(event, ToolFinished):
            log.checkpoint(
                "tool_results", run_id=event.run_id, model=model, turn=runs,
                summary=f"{event.name}: {event.status}", fsync=True,
            )  # fmt: skip
        elif isinstance(event, ToolCallsRefused):
            log.checkpoint(
                "tool_results", run_id=event.run_id, model=model, turn=runs,
                summary=f"{len(event.tool_call_ids)} calls refused", fsync=True,
            )  # fmt: skip
        elif isinstance(event, ErrorOccurred) and event.run_id is not None:
            log.checkpoint(
                "error", run_id=event.run_id, model=model, turn=runs, summary=event.message,
                fsync=True,
            )  # fmt: skip
        elif isinstance(event, RunFinished) and event.run_id in self._started:
            self._started.discard(event.run_id)
            log.checkpoint(
                "end", run_id=event.run_id, model=model, turn=runs,
                summary=event.text or event.status, fsync=True,
            )  # fmt: skip
            if self.titles and runs == 1 and event.status == "completed":
                self._start_title()

    def _delta_records(self) -> list[LogRecord]:
        """The buffered deltas, consecutive ones of a kind joined into one record."""
        records: list[LogRecord] = []
        parts: list[str] = []
        last: _Delta | None = None
        for delta in self._deltas:
            if last is not None and (type(delta), delta.run_id) != (type(last), last.run_id):
                records.append(
                    EventRecord(event=type(last)(run_id=last.run_id, text="".join(parts)))
                )
                parts = []
            parts.append(delta.text)
            last = delta
        if last is not None:
            records.append(EventRecord(event=type(last)(run_id=last.run_id, text="".join(parts))))
        self._deltas = []
        return records

    def flush(self, *, fsync: bool = False) -> None:
        """Write the buffered deltas now."""
        self._disarm()
        if self._deltas:
            self.log.write(self._delta_records(), fsync=fsync)

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self._timed)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed(self) -> None:
        self._timer = None
        with contextlib.suppress(Exception):  # the next event's write reports write errors
            self.flush()

    # -- titles ---------------------------------------------------------------------------

    def _start_title(self) -> None:
        messages = self.session.messages
        prompt = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
        if self.aux_model is None:
            if title := title_from_words(prompt):
                self.log.meta(title=title)
            return
        self._title_task = asyncio.get_running_loop().create_task(
            self._make_title(self.aux_model, prompt), name=f"nbagent-title-{self.session.id[:8]}"
        )

    async def _make_title(self, model: Model, prompt: str) -> None:
        request = ModelRequest(
            messages=[
                {"role": "system", "content": "Reply with a title of at most six words."},
                {"role": "user", "content": f"Title this conversation:\n{prompt[:2000]}"},
            ],
            tools=[],
        )
        parts: list[str] = []
        stream = model.stream(request)
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
        if title and not self.log.closed:
            self.log.meta(title=title)

    # -- closing --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Let the title job finish (bounded: 2 s), write what is left, release the log."""
        task = self._title_task
        if task is not None and not task.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 2)
        self.close_now()

    def close_now(self) -> None:
        """Detach from the session and release the log at once (no waiting)."""
        task = self._title_task
        if task is not None and not task.done():
            task.cancel()
        self.session.remove_sink(self)
        if not self.log.closed:
            with contextlib.suppress(Exception):
                self.flush(fsync=True)
        self._disarm()
        self.log.close()


def title_from_words(prompt: str, *, words: int = 8, chars: int = 60) -> str:
    """A title from the first words of ``prompt`` (no model request)."""
    text = " ".join(prompt.split()[:words])
    if len(text) > chars:
        text = text[:chars].rsplit(" ", 1)[0] or text[:chars]
    shortened = text != " ".join(prompt.split())
    text = text.strip(" .,;:")
    return text + "…" if shortened and text else text


def attach(session: Session, log: SessionLog, **options: object) -> SessionRecorder:
    """Record ``session`` into ``log`` from now on; returns the recorder (``aclose`` it)."""
    recorder = SessionRecorder(session, log, **options)  # type: ignore[arg-type]
    session.add_sink(recorder)
    return recorder
