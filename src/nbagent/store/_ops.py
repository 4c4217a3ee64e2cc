"""What a user does with a recorded session: rewind, undo, compact."""

from __future__ import annotations

import json
from typing import Any

from ..errors import StoreError
from ..model import ModelRequest
from ._recorder import SessionRecorder

COMPACT_PROMPT = (
    "Summarise the conversation so far for your own future reference: the user's goals, "
    "decisions made, facts learned (names, numbers, file paths, variable names), tool "
    "results that matter, and what is still open. Be complete but brief."
)


def _sync(recorder: SessionRecorder) -> None:
    recorder.flush()
    recorder.session.restore(recorder.log.load().conversation)


def rewind_to_seq(recorder: SessionRecorder, seq: int, *, reason: str = "rewind") -> str:
    """Continue the session from the state at ``seq``; later turns stay in the log."""
    recorder.flush()
    checkpoint = recorder.log.rewind(seq, reason=reason, summary=f"rewound to seq {seq}")
    _sync(recorder)
    return checkpoint


def rewind_to_checkpoint(recorder: SessionRecorder, checkpoint_id: str) -> str:
    for checkpoint in recorder.log.checkpoints():
        if checkpoint.id == checkpoint_id:
            return rewind_to_seq(recorder, checkpoint.seq)
    raise StoreError(f"no checkpoint {checkpoint_id!r} in session {recorder.log.name!r}")


def rewind_before_tag(recorder: SessionRecorder, tag: str) -> str | None:
    """If a turn tagged ``tag`` (a notebook cell) is on the current branch, rewind to just
    before it and return the new checkpoint; else return None and change nothing."""
    recorder.flush()
    for run_tag, before in reversed(recorder.log.load().run_starts):
        if run_tag == tag:
            return rewind_to_seq(recorder, before, reason="rewind")
    return None


def undo(recorder: SessionRecorder) -> str:
    """Drop the last turn (it stays in the log as an inactive branch)."""
    recorder.flush()
    starts = recorder.log.load().run_starts
    if not starts:
        raise StoreError("there is no turn to undo")
    return rewind_to_seq(recorder, starts[-1][1], reason="rewind")


async def compact(recorder: SessionRecorder, *, keep_turns: int = 1) -> str:
    """Replace older turns by a summary the model writes; the log keeps everything."""
    session = recorder.session
    messages = session.messages
    user_turns = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if len(user_turns) <= keep_turns:
        raise StoreError(f"nothing to compact: the session has {len(user_turns)} turn(s)")
    cut = user_turns[-keep_turns] if keep_turns else len(messages)
    older, recent = messages[:cut], messages[cut:]
    transcript = json.dumps(older, ensure_ascii=False)[:200_000]
    request = ModelRequest(
        messages=[
            {"role": "system", "content": COMPACT_PROMPT},
            {"role": "user", "content": transcript},
        ],
        tools=[],
    )
    parts: list[str] = []
    stream = session.model.stream(request)
    try:
        async for chunk in stream:
            if isinstance(chunk, str):
                parts.append(chunk)
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    summary = "".join(parts).strip()
    if not summary:
        raise StoreError("the model returned an empty summary; nothing was changed")
    compacted: list[dict[str, Any]] = [
        {"role": "user", "content": f"Summary of the earlier conversation:\n{summary}"},
        {"role": "assistant", "content": "Understood; I will continue from this summary."},
        *recent,
    ]
    recorder.flush()
    checkpoint = recorder.log.compaction(compacted, summary)
    session.replace_history(compacted)
    return checkpoint
