"""A session's lifecycle: its states and the moves allowed between them."""

from __future__ import annotations

import enum


class SessionState(enum.Enum):
    """Where a session is in its lifecycle."""

    IDLE = "idle"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    CANCELLING = "cancelling"
    CLOSED = "closed"


TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.IDLE: frozenset({SessionState.RUNNING, SessionState.CLOSED}),
    SessionState.RUNNING: frozenset(
        {
            SessionState.AWAITING_APPROVAL,
            SessionState.CANCELLING,
            SessionState.IDLE,
            SessionState.CLOSED,
        }
    ),
    SessionState.AWAITING_APPROVAL: frozenset(
        {SessionState.RUNNING, SessionState.CANCELLING, SessionState.IDLE, SessionState.CLOSED}
    ),
    SessionState.CANCELLING: frozenset({SessionState.IDLE, SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}
