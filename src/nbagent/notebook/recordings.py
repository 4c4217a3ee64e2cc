"""The recording format inside a notebook: the one module that knows where it lives.

A notebook carries recorded model responses (``nbagent.replay.Recorded``) in two places:

- each ``%%agent`` cell's output metadata, ``{"nbagent": {"schema", "session", "log",
  "recording": [entry, ...], "tool_results": [record, ...]}}``: what that cell's run used,
  and ``log`` = ``{"folder", "file", "session_id"}``, the session log it continued (the
  folder under ``.nbagent/``), so that a renamed, moved or copied notebook finds its
  sessions again (``nbagent.notebook.following``);
- the notebook metadata, ``{"nbagent": {"schema", "recordings": [entry, ...]}}``: what
  ``nbagent pack`` copied from a session's log.

Each entry may carry ``decisions``: how its tool calls were decided in the run that
recorded it (``nbagent.events.RecordedDecision``), which a trusted replay decides again.

A session's log keeps them too, as ``recording`` records (``SessionLog.recording``,
read back by ``SessionStore.recordings``).

Which files a kernel reads (:func:`recording_files`): those named in
``$NBAGENT_RECORDINGS`` (nbagent's pytest plugin sets it for ``pytest --nbval``; set it
yourself for nbclient and papermill), else the notebook it runs (JupyterLab, VS Code),
else every notebook of its working directory. Trust is per source notebook
(:func:`kernel_book`): ``NBAGENT_TRUST=1`` trusts the notebook being executed — named, or
known to the kernel — and ``nbagent trust NOTEBOOK`` trusts a notebook's recordings as they
are now (``nbagent.notebook.trust``); a neighbour's recordings are never trusted for
another notebook.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ReplayError
from ..replay import SCHEMA, RecordBook, Recorded, tool_result_record
from . import trust as trust_store

KEY = "nbagent"
"""The metadata key of everything nbagent writes into a notebook."""

RECORDINGS_ENV = "NBAGENT_RECORDINGS"
"""Files to read recordings from, separated by ``os.pathsep``."""

NotebookJson = dict[str, Any]


def recording_files(notebook: str | None) -> list[Path]:
    """Where recordings come from: ``$NBAGENT_RECORDINGS``, else the notebook when the
    kernel knows it, else every notebook in the working directory."""
    listed = os.environ.get(RECORDINGS_ENV)
    if listed:
        return [Path(p) for p in listed.split(os.pathsep) if p]
    if notebook is not None:
        path = Path(notebook)
        candidates = [path, Path.cwd() / path.name]
        return [next((p for p in candidates if p.is_file()), path)]
    return sorted(Path.cwd().glob("*.ipynb"))


def _load(path: str | Path) -> NotebookJson:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReplayError(f"cannot read recordings from {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ReplayError(f"cannot read recordings from {path}: not a notebook")
    return data


def recordings_digest(notebook: NotebookJson) -> str:
    """A hash of everything the notebook's recordings say (entries with their decisions,
    tool results), in order: what ``nbagent trust`` records."""
    parts: list[Any] = [packed_entries(notebook)]
    for cell in notebook.get("cells") or ():
        for output in cell.get("outputs") or ():
            meta = (output.get("metadata") or {}).get(KEY) or {}
            if "recording" in meta:
                parts.append([meta.get("recording"), meta.get("tool_results")])
    data = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def kernel_notebook(notebook: str | None) -> Path | None:
    """The one notebook the kernel runs, when it knows (``$NBAGENT_RECORDINGS`` naming a
    single notebook, else the frontend's path): what a click can trust. None when it
    reads a folder's notebooks or several named ones."""
    named = [Path(p) for p in os.environ.get(RECORDINGS_ENV, "").split(os.pathsep) if p]
    if named:
        return named[0].resolve() if len(named) == 1 else None
    if notebook is None:
        return None
    return recording_files(notebook)[0].resolve()


def trust_notebook(book: RecordBook, path: Path) -> int:
    """Trust the notebook's recordings as ``nbagent trust`` does (the same hash in the same
    file), and the entries of ``book`` read from it that the hash covers; returns how
    many of those there are. Recordings of other notebooks stay as they are."""
    data = _load(path)
    current = RecordBook()
    if not add_notebook(current, path, notebook=data):
        raise ReplayError(f"{path} holds no recordings: there is nothing to trust")
    trust_store.trust(recordings_digest(data), path)
    digests = {entry.digest() for entry in current.entries()}
    return book.trust_source(str(path.resolve()), digests)


def notebook_trusted(path: str | Path) -> bool:
    """Whether ``nbagent trust`` was given for the notebook's recordings as they are."""
    return trust_store.is_trusted(recordings_digest(_load(path)))


def add_notebook(
    book: RecordBook,
    path: str | Path,
    *,
    trusted: bool = False,
    notebook: NotebookJson | None = None,
) -> int:
    """Add the recordings of a notebook file to ``book``, trusted only if ``trusted`` (the
    caller's decision for this notebook); returns how many model responses it held."""
    where = str(path)
    notebook = _load(path) if notebook is None else notebook
    source = str(Path(path).resolve())
    found = 0
    for item in packed_entries(notebook):
        entry = Recorded.from_json(item, f"{where} (notebook metadata)")
        book.add(entry, trusted=trusted, source=source)
        found += 1
    for number, cell in enumerate(notebook.get("cells") or (), start=1):
        for output in cell.get("outputs") or ():
            meta = (output.get("metadata") or {}).get(KEY) or {}
            recording = meta.get("recording")
            if recording is None:
                continue
            if not isinstance(recording, list):
                raise ReplayError(f"{where}, cell {number}: the recording is not a list")
            for item in recording:
                entry = Recorded.from_json(item, f"{where}, cell {number}")
                book.add(entry, trusted=trusted, source=source)
                found += 1
            for result in meta.get("tool_results") or ():
                if isinstance(result, dict):
                    book.add_tool_result(result)
    return found


def read_notebook(path: str | Path) -> RecordBook:
    """Every recording a notebook file carries (untrusted)."""
    book = RecordBook()
    add_notebook(book, path)
    return book


UNKNOWN_NOTEBOOK = (
    "nbagent: NBAGENT_TRUST applies to the notebook being executed, and this kernel was not "
    "told which one it is (nbclient and papermill do not say): its recordings stay "
    "untrusted. Set NBAGENT_RECORDINGS=NOTEBOOK.ipynb for the run, or run "
    "`nbagent trust NOTEBOOK.ipynb` once."
)


LATE_TRUST = (
    "nbagent: trust was turned on after this kernel read the notebook's recordings; it "
    "does not apply to them (a cell must not trust the recordings it runs). Restart the "
    "kernel with NBAGENT_TRUST=1, or run `nbagent trust NOTEBOOK.ipynb` and restart it."
)


def kernel_book(notebook: str | None, *, trust: bool = False) -> RecordBook:
    """The recordings a kernel starts from (see :func:`recording_files`).

    Trust is per source notebook: with ``trust`` (``NBAGENT_TRUST``, decided when the
    recordings are loaded) the notebook being executed is trusted when the kernel knows
    which one it is (``$NBAGENT_RECORDINGS`` or its own notebook), never a notebook merely
    found in the folder; any notebook whose recordings ``nbagent trust`` recorded is
    trusted. A file that cannot be read raises ``ReplayError`` when it was named; a
    guessed one is skipped with a note on stderr."""
    book = RecordBook()
    named = notebook is not None or bool(os.environ.get(RECORDINGS_ENV))
    if trust and not named:
        print(UNKNOWN_NOTEBOOK, file=sys.stderr)
    for path in recording_files(notebook):
        try:
            data = _load(path)
            trusted = (trust and named) or trust_store.is_trusted(recordings_digest(data))
            add_notebook(book, path, trusted=trusted, notebook=data)
        except ReplayError as exc:
            if named:
                raise
            print(f"nbagent: recordings skipped: {exc}", file=sys.stderr)
    return book


def output_metadata(
    session: str,
    used: list[Recorded],
    tool_results: list[dict[str, Any]],
    log: dict[str, str] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata of an agent cell's final output: the session log it continued (see
    :func:`log_reference`), how the run was made (see :func:`run_provenance`), the entries
    its run used and the results of its tool calls (served again by ``--recorded-tools``)."""
    meta: dict[str, Any] = {"schema": SCHEMA, "session": session}
    if log is not None:
        meta["log"] = log
    if provenance is not None:
        meta["provenance"] = provenance
    if used:
        meta["recording"] = [entry.to_json() for entry in used]
        meta["tool_results"] = tool_results
    return {KEY: meta}


def run_provenance(
    model: str, params: dict[str, Any], sources: Iterable[tuple[str, str]]
) -> dict[str, Any]:
    """How a run was made: ``model``, its ``params``, the ``nbagent`` version, the
    ``litellm`` version when a response of the run came from it (live; litellm is never
    imported for this, and a replayed run does not name it: a background title request
    may have imported it, which says nothing of the run), and
    ``responses``: each model response's ``source`` (``live`` or ``replayed``) and the
    ``fingerprint`` it is recorded under. Parameters that look like secrets (keys,
    tokens, headers) are left out."""
    from .._version import __version__

    secret = ("key", "token", "secret", "password", "header", "auth")
    params = {k: v for k, v in params.items() if not any(w in k.lower() for w in secret)}
    sources = list(sources)
    made: dict[str, Any] = {"model": model, "params": params, "nbagent": __version__}
    if "litellm" in sys.modules and any(source == "live" for source, _ in sources):
        from importlib.metadata import PackageNotFoundError, version

        with contextlib.suppress(PackageNotFoundError):
            made["litellm"] = version("litellm")
    made["responses"] = [{"source": src, "fingerprint": fp} for src, fp in sources]
    return made


def log_reference(folder: str, file: str, session_id: str) -> dict[str, str]:
    """How an output names its session log: the store folder (``.nbagent/<folder>/``, the
    notebook's name when it ran), the log's file name and the session's id."""
    return {"folder": folder, "file": file, "session_id": session_id}


def log_references(notebook: NotebookJson) -> list[dict[str, str]]:
    """The session logs a notebook's agent cells name, in cell order, without repeats."""
    found: list[dict[str, str]] = []
    for cell in notebook.get("cells") or ():
        for output in cell.get("outputs") or ():
            log = ((output.get("metadata") or {}).get(KEY) or {}).get("log")
            if (
                isinstance(log, dict)
                and all(isinstance(log.get(k), str) for k in ("folder", "file", "session_id"))
                and log not in found
            ):
                found.append({k: log[k] for k in ("folder", "file", "session_id")})
    return found


def agent_cell_ids(notebook: NotebookJson) -> list[str]:
    """The ids of the notebook's ``%%agent`` cells (a session log tags each run with the
    id of the cell that started it)."""
    ids = []
    for cell in notebook.get("cells") or ():
        source = cell.get("source") or ""
        text = "".join(source) if isinstance(source, list) else str(source)
        agent = cell.get("cell_type") == "code" and text.lstrip().startswith("%%agent")
        if agent and isinstance(cell.get("id"), str):
            ids.append(cell["id"])
    return ids


def tool_results(calls: Iterable[Any]) -> list[dict[str, Any]]:
    """Records of the tool calls that ran (``ToolCallRecord``-like: name, arguments,
    result, status)."""
    return [
        tool_result_record(c.name, c.arguments, c.result, c.status)
        for c in calls
        if c.status in ("ok", "error")
    ]


def packed_entries(notebook: NotebookJson) -> list[dict[str, Any]]:
    """The entries in the notebook's metadata."""
    meta = (notebook.get("metadata") or {}).get(KEY) or {}
    return list(meta.get("recordings") or ())


def pack(notebook: NotebookJson, entries: Iterable[dict[str, Any]]) -> int:
    """Merge ``entries`` into the notebook's metadata; returns how many it holds now."""
    meta = notebook.setdefault("metadata", {}).setdefault(KEY, {})
    known = {e["fingerprint"]: e for e in meta.get("recordings") or ()}
    known.update((e["fingerprint"], e) for e in entries)
    meta["schema"] = SCHEMA
    meta["recordings"] = list(known.values())
    return len(known)


def strip(notebook: NotebookJson) -> int:
    """Remove every recording (metadata and outputs); returns how many entries went."""
    removed = len(packed_entries(notebook))
    (notebook.get("metadata") or {}).pop(KEY, None)
    for cell in notebook.get("cells") or ():
        for output in cell.get("outputs") or ():
            meta = output.get("metadata") or {}
            removed += len((meta.pop(KEY, None) or {}).get("recording") or ())
    return removed
