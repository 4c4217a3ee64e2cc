"""History repair keeps every tool call answered exactly once."""

from __future__ import annotations

from nbagent.conversation import MISSING_RESULT, is_valid, repair_history


def assistant(*ids: str) -> dict[str, object]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids
    ]}  # fmt: skip


def result(call_id: str, content: str = "ok") -> dict[str, object]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def test_missing_results_are_filled_in_call_order() -> None:
    history = [{"role": "user", "content": "go"}, assistant("a", "b"), result("b")]
    repaired = repair_history(history)
    assert repaired[2:] == [result("a", MISSING_RESULT), result("b")]
    assert is_valid(repaired) and not is_valid(history)


def test_duplicates_and_orphans_are_dropped() -> None:
    history = [result("zz"), assistant("a"), result("a", "first"), result("a", "second"),
               {"role": "user", "content": "next"}, result("a")]  # fmt: skip
    assert repair_history(history) == [
        assistant("a"),
        result("a", "first"),
        {"role": "user", "content": "next"},
    ]


def test_a_valid_history_is_unchanged() -> None:
    history = [{"role": "user", "content": "go"}, assistant("a"), result("a"),
               {"role": "assistant", "content": "done"}]  # fmt: skip
    assert repair_history(history) == history
