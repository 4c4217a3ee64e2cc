"""Sessions follow their notebook: a renamed, moved or copied notebook finds its logs.

A notebook's sessions live in ``.nbagent/<notebook name>/``. JupyterLab names a new
notebook ``Untitled.ipynb`` and asks for a name on the first save; after the next kernel
start the folder under the new name is empty. So when the folder of the notebook's current
name holds no log yet, the kernel reads the notebook file itself: each agent cell's output
names the log it continued (folder, file, session id; see ``recordings.log_reference``),
and each log tags its runs with the id of the cell that started them. A folder that
matches is adopted:

- moved to the new name when the notebook it was named after is gone (a rename, or a move
  to a folder next to it);
- copied when that notebook is still there (a copy: each keeps its own memory from here)
  or one of its sessions is open in another kernel.

Where folders are looked for: the ``.nbagent`` folder the store lives in, the ``.nbagent``
folders of the notebook folder's parents (the notebook moved down) and of its
subfolders (it moved up).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store import is_locked
from . import recordings

PARENT_LEVELS = 3
"""How many parent folders' ``.nbagent`` folders are searched."""

MAX_LOG_BYTES = 20_000_000
"""Logs larger than this are not searched for cell ids (the header is still read)."""


@dataclass(frozen=True)
class Found:
    """A folder of session logs that belongs to this notebook, and why we think so."""

    folder: Path
    reason: str


def notebook_file(notebook: str | None, cwd: Path) -> Path | None:
    """The notebook's file, from the path the frontend gave (relative to the server's
    root in JupyterLab, while the kernel runs in the notebook's folder)."""
    if not notebook:
        return None
    path = Path(notebook)
    for candidate in (path, cwd / path.name):
        if candidate.is_file():
            return candidate
    return None


def read_notebook(notebook: str | None, cwd: Path) -> dict[str, Any] | None:
    """The notebook file's JSON, or None when it is unknown or unreadable."""
    path = notebook_file(notebook, cwd)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_session_id(notebook: str | None, cwd: Path, name: str) -> str | None:
    """The id the notebook's outputs give session ``name``: a log made anew for it (a fresh
    checkout, a copy without ``.nbagent/``) takes it, so that running the notebook again
    writes the same outputs."""
    data = read_notebook(notebook, cwd)
    for ref in recordings.log_references(data or {}):
        if ref["file"] == f"{name}.jsonl":
            return ref["session_id"]
    return None


def search_dirs(root: Path, cwd: Path) -> list[Path]:
    """Folders whose subfolders may hold this notebook's sessions (see the module doc)."""
    dirs = [root.parent]
    if root.parent.name == ".nbagent":
        base = root.parent.parent
        dirs += [parent / ".nbagent" for parent in list(base.parents)[:PARENT_LEVELS]]
        with contextlib.suppress(OSError):
            dirs += sorted(p for p in base.glob("*/.nbagent") if p.is_dir())
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d not in seen:
            seen.append(d)
    return seen


def _header_session_id(log: Path) -> str | None:
    try:
        with open(log, "rb") as handle:
            first = handle.readline()
        record = json.loads(first)
    except (OSError, ValueError):
        return None
    value = record.get("session_id") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _tags_in(folder: Path, cell_ids: set[str]) -> int:
    """How many of ``cell_ids`` tag a run in a log of ``folder``."""
    needles = {cid: f'"tag":"{cid}"'.encode() for cid in cell_ids}
    hits: set[str] = set()
    for log in folder.glob("*.jsonl"):
        try:
            if log.stat().st_size > MAX_LOG_BYTES:
                continue
            data = log.read_bytes()
        except OSError:
            continue
        hits.update(cid for cid, needle in needles.items() if needle in data)
    return len(hits)


def find(root: Path, notebook: dict[str, Any], cwd: Path) -> Found | None:
    """The folder of session logs this notebook's outputs (or cell ids) point to."""
    dirs = search_dirs(root, cwd)
    for ref in recordings.log_references(notebook):
        if "/" in ref["folder"] or ref["folder"] in ("", ".", ".."):
            continue
        for d in dirs:
            folder = d / ref["folder"]
            log = folder / ref["file"]
            if folder != root and log.is_file() and _header_session_id(log) == ref["session_id"]:
                return Found(folder, f"its outputs name {ref['file']} in it")
    cell_ids = set(recordings.agent_cell_ids(notebook))
    if not cell_ids:
        return None
    best: tuple[int, Path] | None = None
    for d in dirs:
        for folder in sorted(p for p in d.iterdir() if p.is_dir() and p != root):
            hits = _tags_in(folder, cell_ids)
            if hits and (best is None or hits > best[0]):
                best = (hits, folder)
    if best is None:
        return None
    return Found(best[1], f"its logs hold runs of {best[0]} of the notebook's agent cells")


def _in_use(folder: Path) -> bool:
    return any(is_locked(lock) for lock in folder.glob("*.lock"))


def adopt(root: Path, notebook: str | None, cwd: Path) -> str | None:
    """Give the notebook whose sessions belong in ``root`` the sessions it had under
    another name or place, when ``root`` holds no log yet. Returns what was done (for a
    note to the user), or None."""
    if root.is_dir() and any(root.glob("*.jsonl")):
        return None
    data = read_notebook(notebook, cwd)
    if data is None:
        return None
    found = find(root, data, cwd)
    if found is None:
        return None
    old = found.folder
    named_after = old.parent.parent / f"{old.name}.ipynb"
    if old.parent.name != ".nbagent":
        named_after = cwd / f"{old.name}.ipynb"
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        if root.is_dir():  # no log in it (checked above): only stale lock files, if any
            for stale in root.glob("*.lock"):
                stale.unlink()
            root.rmdir()
        if named_after.exists() or _in_use(old):
            shutil.copytree(old, root, ignore=shutil.ignore_patterns("*.lock"))
            verb = "copied"
        else:
            shutil.move(str(old), str(root))
            for lock in root.glob("*.lock"):
                lock.unlink(missing_ok=True)
            verb = "moved"
    except OSError as exc:
        return f"this notebook's sessions are in {old}, but they could not be taken over: {exc}"
    return f"this notebook's sessions were in {old} ({found.reason}): {verb} to {root}"
