"""Read a session log and rebuild the session it describes.

The records are typed (``_records``). The state at a point is the fold of the *active
chain*: walking back from the end, each ``rewind`` jumps to its ``to_seq``. Nothing is ever
copied or rewritten. Events go through the same :class:`~nbagent.conversation.Conversation`
fold as a live session, so a restored session is the live one.
"""

from __future__ import annotations

import bisect
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from ..conversation import Conversation, UsageTotals, as_chat
from ..errors import LogFormatError, LogSchemaError
from ..events import ApprovalRequested, BudgetReached, RunStarted
from ._records import (
    SCHEMA,
    CheckpointRecord,
    CompactionRecord,
    EventRecord,
    HeaderRecord,
    LogRecord,
    MetaRecord,
    RecordingRecord,
    RewindRecord,
    record_from_json,
)


@dataclass(frozen=True)
class Checkpoint:
    """A point the session can be rewound or forked to."""

    id: str
    seq: int
    parent: str | None
    run_id: str | None
    model: str | None
    reason: str
    turn: int
    summary: str
    at: float
    active: bool = True
    """Whether the checkpoint is on the session's current branch."""


@dataclass
class LogState:
    """A session rebuilt from its log."""

    session_id: str
    name: str
    conversation: Conversation = field(default_factory=Conversation)
    title: str | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    pending: list[ApprovalRequested] = field(default_factory=list)
    """Approvals that were waiting when the log ended (asked again on resume)."""
    budget_pause: BudgetReached | None = None
    """The run waited at its budget for a person when the log ended (asked again on
    resume)."""
    interrupted_run: str | None = None
    """The run that never finished (the kernel stopped during it), if any."""
    run_starts: list[tuple[str | None, int]] = field(default_factory=list)
    """(tag, seq just before the run) for each run on the active chain, in order."""
    last_seq: int = -1
    forked_from: dict[str, Any] | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.conversation.messages  # type: ignore[return-value]

    @property
    def usage(self) -> UsageTotals:
        return self.conversation.usage

    @property
    def runs(self) -> int:
        return self.conversation.runs

    @property
    def model(self) -> str | None:
        return self.conversation.model

    @property
    def tools(self) -> tuple[str, ...]:
        """The tool names of the latest run (tools are code: the notebook finds them)."""
        return self.conversation.tools


def parse_lines(
    lines: list[bytes], source: str, *, skip_bad_lines: bool = False
) -> list[LogRecord]:
    """Parse log lines into typed records; a torn last line is dropped with a warning."""
    records: list[LogRecord] = []
    last = len(lines) - 1
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{source}:{number + 1}"
        try:
            data = json.loads(line)
            if not isinstance(data, dict) or "type" not in data:
                raise ValueError("not a record")
        except (ValueError, RecursionError):
            if number == last and not line.endswith(b"\n"):
                warnings.warn(
                    f"{source}: the last line was cut off (the kernel stopped while writing "
                    "it); it is ignored",
                    stacklevel=3,
                )
                break
            if skip_bad_lines:
                warnings.warn(f"{where}: not a log record; skipped", stacklevel=3)
                continue
            raise LogFormatError(
                f"{where} is not a session log record. The log was edited or "
                "damaged; move that line out of the file, or load with skip_bad_lines=True."
            ) from None
        schema = data.get("schema", SCHEMA)
        if not isinstance(schema, int) or schema > SCHEMA:
            raise LogSchemaError(
                f"{source} was written by a newer nbagent (log schema {schema}; this version "
                f"reads schema {SCHEMA}). Upgrade nbagent to open it."
            )
        try:
            records.append(record_from_json(data, where))
        except LogFormatError:
            if not skip_bad_lines:
                raise
            warnings.warn(f"{where}: not a valid log record; skipped", stacklevel=3)
    return records


def active_records(records: list[LogRecord], upto: int | None = None) -> list[LogRecord]:
    """The records on the active chain ending at ``upto`` (default: the end)."""
    by_seq = {r.seq: i for i, r in enumerate(records)}
    rewinds = [i for i, r in enumerate(records) if isinstance(r, RewindRecord)]
    position = len(records) - 1 if upto is None else by_seq.get(upto, _index_at(records, upto))
    segments: list[tuple[int, int]] = []
    while position >= 0:
        at = bisect.bisect_right(rewinds, position) - 1
        if at < 0:
            segments.append((0, position))
            break
        rewind_index = rewinds[at]
        rewind = records[rewind_index]
        assert isinstance(rewind, RewindRecord)
        segments.append((rewind_index + 1, position))
        position = by_seq.get(rewind.to_seq, _index_at(records, rewind.to_seq))
        if position >= rewind_index:
            raise LogFormatError(f"a rewind at seq {rewind.seq} points forward")
    chain: list[LogRecord] = []
    for start, end in reversed(segments):
        chain.extend(records[start : end + 1])
    return chain


def _index_at(records: list[LogRecord], seq: int) -> int:
    """Index of the last record with ``seq`` at or before ``seq`` (-1 if none)."""
    seqs = [r.seq for r in records]
    return bisect.bisect_right(seqs, seq) - 1


class Folder:
    """Applies records to a :class:`LogState`, one at a time."""

    def __init__(self, state: LogState) -> None:
        self.state = state
        self._previous_seq = -1

    def apply(self, record: LogRecord) -> None:
        state = self.state
        match record:
            case EventRecord(event=event):
                if isinstance(event, RunStarted):
                    state.run_starts.append((event.tag, self._previous_seq))
                state.conversation.apply(event)
            case CompactionRecord(messages=messages):
                state.conversation.reset(as_chat(messages))
            case MetaRecord(title=title):
                state.title = title or state.title
            case HeaderRecord(session_id=session_id):
                state.session_id = session_id or state.session_id
            case CheckpointRecord() | RewindRecord() | RecordingRecord():
                pass
        self._previous_seq = record.seq
        state.last_seq = record.seq

    def finish(self) -> LogState:
        """Close the fold: a run that never finished is left ready to resume."""
        state = self.state
        conversation = state.conversation
        if conversation.run_id is not None:
            state.interrupted_run = conversation.run_id
            state.pending = list(conversation.pending.values())
            state.budget_pause = conversation.budget_pause  # asked again on resume
            conversation.close_interrupted()
            conversation.run_id = None
            conversation.pending.clear()
        return state


def checkpoint_from(record: CheckpointRecord, active: bool) -> Checkpoint:
    return Checkpoint(
        id=record.id,
        seq=record.seq,
        parent=record.parent,
        run_id=record.run_id,
        model=record.model,
        reason=record.reason,
        turn=record.turn,
        summary=record.summary,
        at=record.at,
        active=active,
    )
