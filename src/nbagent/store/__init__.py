"""Sessions that live next to the notebook: append-only logs, checkpoints, resume,
rewind, fork and compaction. See ``_fold`` for the log format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..conversation import INTERRUPTED_RESULT
from ..model import Model
from ..session import DEFAULT_MODEL, Session
from ._fold import Checkpoint, LogState
from ._lock import is_locked
from ._log import SessionLog, SessionStore, SessionSummary, fold_log
from ._ops import compact, rewind_before_tag, rewind_to_checkpoint, rewind_to_seq, undo
from ._recorder import SessionRecorder, attach
from ._records import (
    SCHEMA,
    CheckpointRecord,
    CompactionRecord,
    EventRecord,
    ForkPoint,
    HeaderRecord,
    LogRecord,
    MetaRecord,
    RecordingRecord,
    RewindRecord,
    record_adapter,
)

__all__ = [
    "INTERRUPTED_RESULT",
    "SCHEMA",
    "Checkpoint",
    "CheckpointRecord",
    "CompactionRecord",
    "EventRecord",
    "ForkPoint",
    "HeaderRecord",
    "LogRecord",
    "LogState",
    "MetaRecord",
    "RecordingRecord",
    "RewindRecord",
    "SessionLog",
    "SessionRecorder",
    "SessionStore",
    "SessionSummary",
    "attach",
    "compact",
    "default_store_root",
    "fold_log",
    "is_locked",
    "record_adapter",
    "restore_session",
    "rewind_before_tag",
    "rewind_to_checkpoint",
    "rewind_to_seq",
    "undo",
]


def default_store_root(
    notebook: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    home: str | None = None,
) -> Path:
    """Where a notebook's sessions live: ``.nbagent/<notebook name>/``.

    The folder is ``home`` (``%config NBAgent.store_dir``) or ``$NBAGENT_HOME`` when set,
    else ``.nbagent`` beside the notebook when
    its absolute path is known (VS Code), else in the kernel's working directory (which is
    the notebook's folder in JupyterLab, whose ``__session__`` path is relative to the
    server root). One subfolder per notebook keeps two notebooks in a folder apart.
    """
    home = home or os.environ.get("NBAGENT_HOME")
    path = Path(notebook) if notebook else None
    if home:
        root = Path(home).expanduser()
    elif path is not None and path.is_absolute():
        root = path.parent / ".nbagent"
    else:
        root = Path(cwd or os.getcwd()) / ".nbagent"
    return root / (path.stem if path is not None and path.stem else "kernel")


def restore_session(
    store: SessionStore,
    name: str,
    *,
    model: str | Model | None = None,
    default_model: str = DEFAULT_MODEL,
    titles: bool = False,
    aux_model: Model | None = None,
    session_id: str | None = None,
    **session_options: Any,
) -> tuple[Session, SessionRecorder, LogState]:
    """Open (or create) session ``name`` from its log and record it from now on.

    The conversation, usage and run count come back as they were; a run the kernel lost
    is ready to continue with ``session.resume()`` (pending approvals are asked again,
    finished tool calls never run again). ``model`` defaults to the one the log used,
    then to ``default_model``. ``titles`` gives the log a title after the first run (from
    the prompt's words, or from ``aux_model`` when one is given). ``session_id`` is the id
    of a log made anew (default: a new one).
    """
    log = store.open(name, session_id=session_id)
    try:
        state = log.load()
        session = Session(
            model or state.model or default_model,
            session_id=state.session_id or None,
            conversation=state.conversation,
            **session_options,
        )
        recorder = attach(session, log, titles=titles, aux_model=aux_model)
    except BaseException:
        log.close()
        raise
    return session, recorder, state
