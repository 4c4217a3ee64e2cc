"""Keep a conversation valid for the next model request.

Providers reject a conversation in which an assistant's tool call has no result, has two,
or a tool result answers no call. After a cancel, a crash or an edit by a hook, the
history is repaired before every request: every call gets exactly one result, directly
after the assistant message that made it, in the order of the calls.
"""

from __future__ import annotations

from typing import Any

MISSING_RESULT = (
    "The tool call has no result: the run was stopped before it finished. Do not assume it ran."
)


def repair_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return a valid copy of ``messages`` (the input is not modified)."""
    repaired: list[dict[str, Any]] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        i += 1
        role = message.get("role")
        if role == "tool":
            continue  # a result that follows no assistant call: orphaned, drop it
        repaired.append(message)
        calls = message.get("tool_calls") if role == "assistant" else None
        if not calls:
            continue
        results: dict[str, dict[str, Any]] = {}
        while i < len(messages) and messages[i].get("role") == "tool":
            result = messages[i]
            call_id = result.get("tool_call_id")
            if isinstance(call_id, str) and call_id not in results:
                results[call_id] = result
            i += 1
        for call in calls:
            call_id = call.get("id")
            if call_id in results:
                repaired.append(results[call_id])
            else:
                repaired.append(
                    {"role": "tool", "tool_call_id": call_id, "content": MISSING_RESULT}
                )
    return repaired


def is_valid(messages: list[dict[str, Any]]) -> bool:
    """Whether ``messages`` needs no repair (used by tests and after each run)."""
    return repair_history(messages) == messages
