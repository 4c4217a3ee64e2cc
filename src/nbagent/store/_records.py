"""The records of a session log: one tagged union, one adapter.

A log is JSON Lines. Every record has ``type`` (the tag), ``schema`` and ``seq`` (its
line number, written by the log):

``header``      first line: session id, name, creation time, and ``forked_from``
                ({"log": file name, "seq": N} when the session is a fork).
``event``       one typed event (``event``), as ``nbagent.event_to_json`` writes it;
                streamed deltas are coalesced into one record per flush.
``checkpoint``  a named point in the log: ``id``, ``parent`` checkpoint, ``run_id``,
                ``model``, ``reason`` (input / model_response / tool_results / error / end /
                fork / rewind / compact), ``turn``, ``summary``, ``before`` (for ``input``:
                the seq just before the run started).
``rewind``      from here on, the session continues from the state at ``to_seq``; the
                records in between stay in the log as an inactive branch.
``compaction``  the conversation is replaced by ``messages`` (a summary plus recent turns).
``meta``        session metadata such as ``title``.
``recording``   model responses recorded for replay (``entries``; see ``nbagent.replay``),
                collected by ``nbagent pack``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Discriminator, TypeAdapter, ValidationError

from ..errors import LogFormatError
from ..events import Event, event_adapter

SCHEMA = 1
"""The log schema this nbagent writes and reads."""


@dataclass(frozen=True, kw_only=True)
class ForkPoint:
    """Where a forked session branched off: the source log's name and a seq in it."""

    log: str
    seq: int


@dataclass(frozen=True, kw_only=True)
class HeaderRecord:
    session_id: str = ""
    name: str = ""
    created: float = 0.0
    forked_from: ForkPoint | None = None
    seq: int = -1
    type: Literal["header"] = "header"


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    event: Event
    seq: int = -1
    type: Literal["event"] = "event"


@dataclass(frozen=True, kw_only=True)
class CheckpointRecord:
    id: str
    reason: str = ""
    parent: str | None = None
    run_id: str | None = None
    model: str | None = None
    turn: int = 0
    summary: str = ""
    at: float = 0.0
    before: int | None = None
    """For ``input`` checkpoints: the seq just before the run started."""
    seq: int = -1
    type: Literal["checkpoint"] = "checkpoint"


@dataclass(frozen=True, kw_only=True)
class RewindRecord:
    to_seq: int
    seq: int = -1
    type: Literal["rewind"] = "rewind"


@dataclass(frozen=True, kw_only=True)
class CompactionRecord:
    messages: list[dict[str, Any]]
    summary: str = ""
    seq: int = -1
    type: Literal["compaction"] = "compaction"


@dataclass(frozen=True, kw_only=True)
class MetaRecord:
    title: str | None = None
    seq: int = -1
    type: Literal["meta"] = "meta"


@dataclass(frozen=True, kw_only=True)
class RecordingRecord:
    entries: list[dict[str, Any]]
    """Recorded model responses and tool results (see ``nbagent.replay.Recorded``)."""
    seq: int = -1
    type: Literal["recording"] = "recording"


LogRecord = Annotated[
    HeaderRecord
    | EventRecord
    | CheckpointRecord
    | RewindRecord
    | CompactionRecord
    | MetaRecord
    | RecordingRecord,
    Discriminator("type"),
]
"""Any record of a session log."""


@functools.cache
def record_adapter() -> TypeAdapter[LogRecord]:
    """The one TypeAdapter of the record union (built on first use)."""
    event_adapter()
    return TypeAdapter(LogRecord)


def record_to_line(record: LogRecord, seq: int) -> bytes:
    """One JSON line for ``record`` at ``seq`` (schema and seq added)."""
    data: dict[str, Any] = record_adapter().dump_python(record, mode="json")
    _drop_repeated_text(data)
    data["schema"] = SCHEMA
    data["seq"] = seq
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def record_from_json(data: dict[str, Any], where: str) -> LogRecord:
    """A typed record from a parsed line; a record of the wrong shape raises
    :class:`LogFormatError` naming the line and what is wrong."""
    if not isinstance(data.get("seq"), int):
        raise LogFormatError(f"{where} has no valid 'seq'; the log was edited or damaged")
    _restore_repeated_text(data)
    try:
        return record_adapter().validate_python(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem["loc"]) or "record"
        raise LogFormatError(
            f"{where} is not a valid {data.get('type', '?')} record ({field}: {problem['msg']}). "
            "The log was edited or damaged; move that line out of the file, or load with "
            "skip_bad_lines=True."
        ) from None


def _drop_repeated_text(data: dict[str, Any]) -> None:
    """A response's message repeats its text: the line keeps the text once (the reader
    puts it back). Logs written before this keep both, and read as before."""
    event = data.get("event")
    if isinstance(event, dict) and event.get("kind") == "model_responded":
        message = event.get("message")
        if (
            isinstance(message, dict)
            and event.get("text")
            and message.get("content") == (event["text"])
        ):
            del message["content"]


def _restore_repeated_text(data: dict[str, Any]) -> None:
    event = data.get("event")
    if isinstance(event, dict) and event.get("kind") == "model_responded":
        message = event.get("message")
        if isinstance(message, dict) and "content" not in message:
            text = event.get("text")
            message["content"] = text if isinstance(text, str) and text else None
