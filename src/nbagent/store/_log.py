"""Session logs on disk: one append-only JSON Lines file per session, in a store folder.

Durability: every batch of records is written and flushed to the operating system at
once (it survives a killed kernel); ``fsync`` runs at the end of each run, on errors and
after tool results (it survives a power cut from there). A write that fails (disk full)
is rolled back to the last whole record and kept in memory to be written with the next
batch, so the file never holds half a record in the middle.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError
from ._fold import Checkpoint, Folder, LogState, active_records, checkpoint_from, parse_lines
from ._lock import SessionLock, is_locked
from ._records import (
    CheckpointRecord,
    CompactionRecord,
    ForkPoint,
    HeaderRecord,
    LogRecord,
    MetaRecord,
    RecordingRecord,
    RewindRecord,
    record_to_line,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def check_name(name: str) -> str:
    if not _NAME.match(name) or name.endswith((".jsonl", ".lock")):
        raise StoreError(
            f"{name!r} is not a valid session name: use up to 64 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return name


def _read_records(path: Path, *, skip_bad_lines: bool = False) -> list[LogRecord]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StoreError(f"cannot read the session log {path}: {exc.strerror}") from exc
    return parse_lines(data.splitlines(keepends=True), str(path), skip_bad_lines=skip_bad_lines)


def _last_record(path: Path) -> dict[str, Any] | None:
    """The last whole record of a log, read from its end (cheap for long logs)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            block = 4096
            while True:
                start = max(0, size - block)
                handle.seek(start)
                lines = handle.read(size - start).splitlines()
                if len(lines) > 1 or start == 0:
                    break
                block *= 4
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise StoreError(f"{path}: the last record cannot be read ({exc})") from exc
            return record if isinstance(record, dict) else None
    return None


def fold_log(
    store_root: Path, name: str, *, upto: int | None = None, skip_bad_lines: bool = False
) -> LogState:
    """Rebuild the session ``name`` from its log (following forks into their sources)."""
    path = store_root / f"{name}.jsonl"
    records = _read_records(path, skip_bad_lines=skip_bad_lines)
    if not records:
        raise StoreError(f"there is no session log {path}")
    header = records[0]
    forked = header.forked_from if isinstance(header, HeaderRecord) else None
    if forked is not None:
        if forked.log == name:
            raise StoreError(f"{path}: the session is a fork of itself; the log was edited")
        base = fold_log(store_root, forked.log, upto=forked.seq)
        base.name, base.checkpoints, base.run_starts = name, [], []
        base.interrupted_run, base.pending, base.last_seq = None, [], -1
        state = base
    else:
        session_id = header.session_id if isinstance(header, HeaderRecord) else ""
        state = LogState(session_id=session_id, name=name)
    state.forked_from = {"log": forked.log, "seq": forked.seq} if forked else None
    chain = active_records(records, upto)
    folder = Folder(state)
    for record in chain:
        folder.apply(record)
    state = folder.finish()
    on_chain = {id(r) for r in chain}
    state.checkpoints = [
        checkpoint_from(r, id(r) in on_chain) for r in records if isinstance(r, CheckpointRecord)
    ]
    state.title = state.title or _last_title(records)
    return state


def _last_title(records: list[LogRecord]) -> str | None:
    for record in reversed(records):
        if isinstance(record, MetaRecord) and record.title:
            return record.title
    return None


class SessionLog:
    """The open, locked log of one session. Only the holder of the lock appends."""

    def __init__(self, store: SessionStore, name: str) -> None:
        self.store = store
        self.name = check_name(name)
        self.path = store.root / f"{name}.jsonl"
        self._lock = SessionLock(store.root / f"{name}.lock", name)
        self._file: Any = None
        self._next_seq = 0
        self._good_size = 0
        self._unwritten: list[bytes] = []
        """Lines a failed write could not append yet (written with the next batch)."""
        self.last_checkpoint: str | None = None

    # -- opening --------------------------------------------------------------------------

    def _open(self, header: HeaderRecord) -> None:
        self._lock.acquire()
        try:
            self._repair_tail()
            last = _last_record(self.path)
            if last is not None:
                parse_lines([json.dumps(last).encode() + b"\n"], str(self.path))  # schema check
            self._next_seq = last["seq"] + 1 if last else 0
            try:
                self._file = open(self.path, "ab")  # noqa: SIM115 - kept open while held
            except OSError as exc:
                raise StoreError(f"cannot write {self.path}: {exc.strerror}") from exc
            self._good_size = self._file.tell()
            if last is None:
                self.write([header], fsync=True)
        except BaseException:
            self.close()
            raise

    def _repair_tail(self) -> None:
        """Cut a torn last line (the kernel died mid-write) so appends start clean."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            warnings.warn(
                f"{self.path}: the last line was cut off when the kernel stopped; removed",
                stacklevel=4,
            )
            with open(self.path, "r+b") as handle:
                handle.truncate(keep)

    # -- writing --------------------------------------------------------------------------

    def write(self, records: list[LogRecord], *, fsync: bool = False) -> None:
        """Append ``records`` (each gets ``schema`` and ``seq``); raise StoreError if the
        disk refuses, keeping them to retry with the next write."""
        if self._file is None:
            raise StoreError(f"the session log {self.path} is closed")
        for record in records:
            self._unwritten.append(record_to_line(record, self._next_seq))
            self._next_seq += 1
        lines = b"".join(self._unwritten)
        try:
            self._file.write(lines)
            self._file.flush()
            if fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            self._roll_back()
            raise StoreError(
                f"could not write the session log {self.path}: {exc.strerror}. The session "
                "is intact in memory; the log catches up at the next write once there is room."
            ) from exc
        self._good_size += len(lines)
        self._unwritten.clear()

    def _roll_back(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with open(self.path, "r+b") as handle:
            handle.truncate(self._good_size)
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open while held

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def checkpoint(
        self,
        reason: str,
        *,
        run_id: str | None = None,
        model: str | None = None,
        turn: int = 0,
        summary: str = "",
        fsync: bool = False,
        before: int | None = None,
    ) -> str:
        """Write a checkpoint record at the current end of the log; return its id."""
        checkpoint_id = f"c{self._next_seq}"
        record = CheckpointRecord(
            id=checkpoint_id,
            parent=self.last_checkpoint,
            run_id=run_id,
            model=model,
            reason=reason,
            turn=turn,
            summary=summary[:120],
            at=time.time(),
            before=before,
        )
        self.write([record], fsync=fsync)
        self.last_checkpoint = checkpoint_id
        return checkpoint_id

    def rewind(self, to_seq: int, *, reason: str = "rewind", summary: str = "") -> str:
        """Continue from the state at ``to_seq``; the records after it stay as a branch."""
        if not 0 <= to_seq < self._next_seq:
            raise StoreError(f"cannot rewind to seq {to_seq}: the log has {self._next_seq}")
        target = self._checkpoint_at(to_seq)
        self.write([RewindRecord(to_seq=to_seq)])
        self.last_checkpoint = target
        return self.checkpoint(reason, summary=summary, fsync=True)

    def _checkpoint_at(self, seq: int) -> str | None:
        found = None
        for record in active_records(_read_records(self.path), seq):
            if isinstance(record, CheckpointRecord):
                found = record.id
        return found

    def compaction(self, messages: list[dict[str, Any]], summary: str) -> str:
        self.write([CompactionRecord(messages=messages, summary=summary)])
        return self.checkpoint("compact", summary=summary, fsync=True)

    def meta(self, *, title: str | None = None) -> None:
        self.write([MetaRecord(title=title)], fsync=True)

    def recording(self, entries: list[dict[str, Any]]) -> None:
        """Keep the recorded model responses of a run (``nbagent pack`` collects them)."""
        self.write([RecordingRecord(entries=entries)])

    # -- reading --------------------------------------------------------------------------

    def load(self, *, skip_bad_lines: bool = False) -> LogState:
        state = fold_log(self.store.root, self.name, skip_bad_lines=skip_bad_lines)
        active = [c for c in state.checkpoints if c.active]
        self.last_checkpoint = active[-1].id if active else None
        return state

    def checkpoints(self) -> list[Checkpoint]:
        return self.load().checkpoints

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                pass
            self._file.close()
            self._file = None
        self._lock.release()

    @property
    def closed(self) -> bool:
        return self._file is None

    def __enter__(self) -> SessionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class SessionSummary:
    """One line of ``%agent sessions``."""

    name: str
    title: str | None
    model: str | None
    runs: int
    total_tokens: int
    cost_usd: float
    updated: float
    held_by: str | None


class SessionStore:
    """A folder of session logs (``.nbagent/<notebook>/`` beside the notebook)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the session folder {self.root}: {exc.strerror}. Set "
                "NBAGENT_HOME (or %config NBAgent.store_dir) to a folder you can write to."
            ) from exc

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.jsonl"))

    def exists(self, name: str) -> bool:
        return (self.root / f"{check_name(name)}.jsonl").exists()

    def open(self, name: str, *, session_id: str | None = None) -> SessionLog:
        """Open (creating if needed) and lock the log of ``name``."""
        self._ensure_root()
        log = SessionLog(self, name)
        log._open(HeaderRecord(session_id=session_id or uuid.uuid4().hex, name=name,
                               created=time.time()))  # fmt: skip
        return log

    def fork(self, source: str, new_name: str, *, at_seq: int | None = None) -> SessionLog:
        """A new session that starts from ``source`` at ``at_seq`` (default: its end)."""
        if self.exists(new_name):
            raise StoreError(f"a session named {new_name!r} already exists; pick another name")
        records = _read_records(self.root / f"{check_name(source)}.jsonl")
        if not records:
            raise StoreError(f"there is no session named {source!r} to fork")
        seq = records[-1].seq if at_seq is None else at_seq
        self._ensure_root()
        log = SessionLog(self, new_name)
        log._open(HeaderRecord(session_id=uuid.uuid4().hex, name=new_name, created=time.time(),
                               forked_from=ForkPoint(log=source, seq=seq)))  # fmt: skip
        log.checkpoint("fork", summary=f"forked from {source} at seq {seq}", fsync=True)
        return log

    def load(self, name: str, *, skip_bad_lines: bool = False) -> LogState:
        """Rebuild session ``name`` without opening it for writing (no lock needed)."""
        return fold_log(self.root, check_name(name), skip_bad_lines=skip_bad_lines)

    def recordings(self, name: str) -> list[dict[str, Any]]:
        """Every recorded entry in the log of ``name``, oldest first (all branches)."""
        records = _read_records(self.root / f"{check_name(name)}.jsonl", skip_bad_lines=True)
        return [e for r in records if isinstance(r, RecordingRecord) for e in r.entries]

    def summary(self, name: str) -> SessionSummary:
        state = fold_log(self.root, name, skip_bad_lines=True)
        path = self.root / f"{name}.jsonl"
        return SessionSummary(
            name=name,
            title=state.title,
            model=state.model,
            runs=state.runs,
            total_tokens=state.usage.total_tokens,
            cost_usd=state.usage.cost_usd,
            updated=path.stat().st_mtime,
            held_by=is_locked(self.root / f"{name}.lock"),
        )

    def delete(self, name: str) -> None:
        """Remove a session's log. Refused while another process holds it."""
        lock_path = self.root / f"{check_name(name)}.lock"
        log = SessionLog(self, name)
        log._lock.acquire()  # raises SessionLockedError naming the holder
        try:
            (self.root / f"{name}.jsonl").unlink(missing_ok=True)
        finally:
            log._lock.release()
            lock_path.unlink(missing_ok=True)
