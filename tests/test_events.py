"""Events are one discriminated union that round-trips through JSON."""

from __future__ import annotations

import json
import typing

import pytest

import nbagent
from nbagent import events


def all_event_classes() -> list[type]:
    union = typing.get_args(events.Event)[0]
    return list(typing.get_args(union))


def test_every_event_has_a_unique_kind() -> None:
    kinds = [cls.__dataclass_fields__["kind"].default for cls in all_event_classes()]
    assert len(kinds) == len(set(kinds)) == 18


def test_events_are_frozen() -> None:
    event = nbagent.TextDelta(run_id="r", text="x")
    with pytest.raises(AttributeError):
        event.text = "y"  # type: ignore[misc]


def test_round_trip_keeps_type_and_fields() -> None:
    call = nbagent.ToolCall(id="c1", name="add", arguments={"a": 1}, arguments_json='{"a":1}')
    samples: list[nbagent.Event] = [
        nbagent.ToolCallProposed(run_id="r", call=call),
        nbagent.RunFinished(run_id="r", status="max_turns", text="t", error="e", turns=3),
        nbagent.ApprovalDecided(
            run_id="r",
            tool_call_id="c1",
            name="add",
            approved=False,
            scope="tool",
            decided_by="user",
            reason="no",
        ),
        nbagent.StateChanged(state="idle", previous="running"),
        nbagent.ToolCallsRefused(run_id="r", tool_call_ids=("c1", "c2"), limit=1, result="no"),
    ]
    for event in samples:
        data = nbagent.event_to_json(event)
        assert json.loads(data)["kind"] == event.kind
        assert nbagent.event_from_json(data) == event


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(Exception, match="kind"):
        nbagent.event_from_json('{"kind": "teleport", "run_id": "r"}')
