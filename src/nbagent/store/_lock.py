"""One writer per session: an advisory lock that dies with its process.

``flock`` is released by the kernel when the holder exits, even on ``kill -9``, so a
crashed kernel never leaves a stale lock behind. The lock file names its holder so that
the error seen by a second kernel says who has the session.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from ..errors import SessionLockedError, StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class SessionLock:
    """Hold ``path`` exclusively for as long as this object is open."""

    def __init__(self, path: Path, session_name: str) -> None:
        self.path = path
        self.session_name = session_name
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        try:
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file {self.path}: {exc.strerror}. Set NBAGENT_HOME "
                "(or %config NBAgent.store_dir) to a folder you can write to."
            ) from exc
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe(self.path)
                handle.close()
                raise SessionLockedError(
                    f"the session {self.session_name!r} is open in another process ({holder}). "
                    "Stop it there (shut that kernel down, or `%agent stop`), or use another "
                    "session name (`--session NAME`)."
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(_holder()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('since', '?')}"


def is_locked(path: Path) -> str | None:
    """Who holds ``path`` right now, or None when nobody does."""
    if fcntl is None or not path.exists():
        return None
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(path)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return None
