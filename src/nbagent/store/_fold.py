"""Read a session log and rebuild the session it describes.

A log is JSON Lines; every record has ``schema`` and ``seq`` (its line number) and a
``type``:

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

The state at a point is the fold of the *active chain*: walking back from the end, each
``rewind`` jumps to its ``to_seq``. Nothing is ever copied or rewritten.
"""

from __future__ import annotations

import bisect
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from .._history import repair_history
from ..errors import LogFormatError, LogSchemaError
from ..events import ApprovalRequested
from ..session import UsageTotals

SCHEMA = 1
"""The log schema this nbagent writes and reads."""

INTERRUPTED_RESULT = (
    "The kernel stopped while this tool call was running; it may have partly completed. "
    "It was not run again."
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
    messages: list[dict[str, Any]] = field(default_factory=list)
    usage: UsageTotals = field(default_factory=UsageTotals)
    runs: int = 0
    model: str | None = None
    title: str | None = None
    checkpoints: list[Checkpoint] = field(default_factory=list)
    pending: list[ApprovalRequested] = field(default_factory=list)
    """Approvals that were waiting when the log ended (asked again on resume)."""
    interrupted_run: str | None = None
    """The run that never finished (the kernel stopped during it), if any."""
    tools: tuple[str, ...] = ()
    """The tool names of the latest run (tools are code: the notebook finds them again)."""
    run_starts: list[tuple[str | None, int]] = field(default_factory=list)
    """(tag, seq just before the run) for each run on the active chain, in order."""
    last_seq: int = -1
    forked_from: dict[str, Any] | None = None


def parse_lines(
    lines: list[bytes], source: str, *, skip_bad_lines: bool = False
) -> list[dict[str, Any]]:
    """Parse log lines into records; a torn last line is dropped with a warning."""
    records: list[dict[str, Any]] = []
    last = len(lines) - 1
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "type" not in record:
                raise ValueError("not a record")
        except ValueError:
            if number == last and not line.endswith(b"\n"):
                warnings.warn(
                    f"{source}: the last line was cut off (the kernel stopped while writing "
                    "it); it is ignored",
                    stacklevel=3,
                )
                break
            if skip_bad_lines:
                warnings.warn(f"{source}:{number + 1}: not a log record; skipped", stacklevel=3)
                continue
            raise LogFormatError(
                f"{source}:{number + 1} is not a session log record. The log was edited or "
                "damaged; move that line out of the file, or load with skip_bad_lines=True."
            ) from None
        schema = record.get("schema", SCHEMA)
        if not isinstance(schema, int) or schema > SCHEMA:
            raise LogSchemaError(
                f"{source} was written by a newer nbagent (log schema {schema}; this version "
                f"reads schema {SCHEMA}). Upgrade nbagent to open it."
            )
        records.append(record)
    return records


def active_records(records: list[dict[str, Any]], upto: int | None = None) -> list[dict[str, Any]]:
    """The records on the active chain ending at ``upto`` (default: the end)."""
    by_seq = {r["seq"]: i for i, r in enumerate(records)}
    rewinds = [i for i, r in enumerate(records) if r["type"] == "rewind"]
    position = len(records) - 1 if upto is None else by_seq.get(upto, _index_at(records, upto))
    segments: list[tuple[int, int]] = []
    while position >= 0:
        at = bisect.bisect_right(rewinds, position) - 1
        if at < 0:
            segments.append((0, position))
            break
        rewind_index = rewinds[at]
        segments.append((rewind_index + 1, position))
        target = int(records[rewind_index]["to_seq"])
        position = by_seq.get(target, _index_at(records, target))
        if position >= rewind_index:
            raise LogFormatError(f"a rewind at seq {records[rewind_index]['seq']} points forward")
    chain: list[dict[str, Any]] = []
    for start, end in reversed(segments):
        chain.extend(records[start : end + 1])
    return chain


def _index_at(records: list[dict[str, Any]], seq: int) -> int:
    """Index of the last record with ``seq`` at or before ``seq`` (-1 if none)."""
    seqs = [r["seq"] for r in records]
    return bisect.bisect_right(seqs, seq) - 1


class Folder:
    """Applies records to a :class:`LogState`, one at a time."""

    def __init__(self, state: LogState) -> None:
        self.state = state
        self._run: str | None = None
        self._run_start = 0
        self._partial: list[str] = []
        self._started: dict[str, str] = {}
        self._pending: dict[str, ApprovalRequested] = {}
        self._previous_seq = -1

    def apply(self, record: dict[str, Any]) -> None:
        kind = record["type"]
        state = self.state
        if kind == "event":
            self._event(record["event"], record["seq"])
        elif kind == "compaction":
            state.messages = list(record["messages"])
        elif kind == "meta":
            state.title = record.get("title", state.title)
        elif kind == "header":
            state.session_id = record.get("session_id", state.session_id)
        self._previous_seq = record["seq"]
        state.last_seq = record["seq"]

    def _event(self, event: dict[str, Any], seq: int) -> None:
        state = self.state
        messages = state.messages
        kind = event.get("kind")
        if kind == "text_delta":
            self._partial.append(event["text"])
        elif kind == "run_started":
            if self._run is not None:
                self._close_interrupted()  # the kernel stopped during the previous run
            else:
                self._run_start = len(messages)
            self._run = event["run_id"]
            state.model = event.get("model", state.model)
            state.tools = tuple(event.get("tools") or ())
            state.run_starts.append((event.get("tag"), self._previous_seq))
            if not event.get("resumed"):
                messages.append({"role": "user", "content": event["prompt"]})
        elif kind == "steer_added":
            messages.append({"role": "user", "content": event["text"]})
        elif kind == "model_responded":
            messages.append(event["message"])
            self._partial = []
        elif kind == "tool_started":
            self._started[event["tool_call_id"]] = event["name"]
        elif kind == "tool_finished":
            self._started.pop(event["tool_call_id"], None)
            self._pending.pop(event["tool_call_id"], None)
            messages.append(
                {"role": "tool", "tool_call_id": event["tool_call_id"], "content": event["result"]}
            )
        elif kind == "approval_requested":
            self._pending[event["tool_call_id"]] = ApprovalRequested(
                run_id=event["run_id"],
                tool_call_id=event["tool_call_id"],
                name=event["name"],
                arguments=event["arguments"],
                read_only=event["read_only"],
            )
        elif kind == "approval_decided":
            self._pending.pop(event["tool_call_id"], None)
        elif kind == "usage":
            state.usage = state.usage.add_counts(
                event["prompt_tokens"],
                event["completion_tokens"],
                event["cost_usd"],
                event["cost_known"],
            )
        elif kind == "run_finished":
            state.runs += 1
            state.messages[self._run_start :] = repair_history(messages[self._run_start :])
            self._run = None
            self._partial = []
            self._started.clear()
            self._pending.clear()

    def _close_interrupted(self) -> None:
        """Keep what a run that never finished had shown: its partial text, and a result
        for each call that had started (so that it never runs again)."""
        messages = self.state.messages
        if self._partial:
            messages.append({"role": "assistant", "content": "".join(self._partial)})
            self._partial = []
        for call_id in self._started:
            messages.append(
                {"role": "tool", "tool_call_id": call_id, "content": INTERRUPTED_RESULT}
            )
        self._started.clear()

    def finish(self) -> LogState:
        """Close the fold: a run that never finished is left ready to resume."""
        state = self.state
        if self._run is not None:
            state.interrupted_run = self._run
            state.pending = list(self._pending.values())
            self._close_interrupted()
        return state


def checkpoint_from(record: dict[str, Any], active: bool) -> Checkpoint:
    return Checkpoint(
        id=record["id"],
        seq=record["seq"],
        parent=record.get("parent"),
        run_id=record.get("run_id"),
        model=record.get("model"),
        reason=record.get("reason", ""),
        turn=int(record.get("turn", 0)),
        summary=record.get("summary", ""),
        at=float(record.get("at", 0.0)),
        active=active,
    )
