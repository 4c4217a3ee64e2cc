"""The tool-call accumulator and the provider error mapping."""

from __future__ import annotations

import pytest

import nbagent
from nbagent.model import (
    FinishChunk,
    ResponseAccumulator,
    ToolCallFragment,
    assistant_message,
    provider_error,
)


def assemble(*fragments: ToolCallFragment) -> list[nbagent.ToolCall]:
    acc = ResponseAccumulator()
    for fragment in fragments:
        acc.add(fragment)
    acc.add(FinishChunk("tool_calls"))
    return acc.tool_calls()


def test_fragments_keyed_by_index_assemble_parallel_calls() -> None:
    calls = assemble(
        ToolCallFragment(index=0, id="a", name="add", arguments=""),
        ToolCallFragment(index=1, id="b", name="peek", arguments='{"na'),
        ToolCallFragment(index=0, arguments='{"a": 1,'),
        ToolCallFragment(index=1, arguments='me": "x"}'),
        ToolCallFragment(index=0, arguments=' "b": 2}'),
    )
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("a", "add", {"a": 1, "b": 2}),
        ("b", "peek", {"name": "x"}),
    ]


def test_parallel_calls_all_at_index_zero_are_split_by_id() -> None:
    calls = assemble(
        ToolCallFragment(index=0, id="a", name="add", arguments='{"a": 1}'),
        ToolCallFragment(index=0, id="b", name="add", arguments='{"a": '),
        ToolCallFragment(index=0, arguments="2}"),
    )
    assert [(c.id, c.arguments) for c in calls] == [("a", {"a": 1}), ("b", {"a": 2})]


def test_fragments_without_index_follow_ids_then_the_last_call() -> None:
    calls = assemble(
        ToolCallFragment(id="a", name="add", arguments='{"a"'),
        ToolCallFragment(arguments=": 1}"),
        ToolCallFragment(id="b", name="add", arguments="{}"),
    )
    assert [(c.id, c.arguments) for c in calls] == [("a", {"a": 1}), ("b", {})]


def test_dict_arguments_and_missing_ids_are_accepted() -> None:
    (made,) = assemble(ToolCallFragment(index=0, name="add", arguments={"a": 1, "b": 2}))
    assert made.arguments == {"a": 1, "b": 2} and made.error is None
    assert made.id.startswith("call_")


def test_repeated_names_on_later_fragments_do_not_double() -> None:
    (made,) = assemble(
        ToolCallFragment(index=0, id="a", name="add", arguments='{"a":'),
        ToolCallFragment(index=0, name="add", arguments="1}"),
    )
    assert (made.name, made.arguments) == ("add", {"a": 1})


@pytest.mark.parametrize(
    ("raw", "message"),
    [('{"a": 1,', "not valid JSON"), ("[1, 2]", "must be a JSON object"), ('"x"', "JSON object")],
)
def test_bad_arguments_are_recorded_not_raised(raw: str, message: str) -> None:
    (made,) = assemble(ToolCallFragment(index=0, id="a", name="add", arguments=raw))
    assert made.error is not None and message in made.error
    assert made.arguments == {} and made.arguments_json == raw
    sent = assistant_message("", [made])["tool_calls"][0]["function"]["arguments"]
    assert sent == "{}"


def test_empty_arguments_mean_no_arguments() -> None:
    (made,) = assemble(ToolCallFragment(index=0, id="a", name="now", arguments=""))
    assert made.arguments == {} and made.error is None


class StatusError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (429, nbagent.ProviderRateLimitError, True),
        (500, nbagent.ProviderTransientError, True),
        (503, nbagent.ProviderTransientError, True),
        (401, nbagent.ProviderAuthError, False),
        (400, nbagent.ProviderRequestError, False),
    ],
)
def test_statuses_map_onto_the_error_tree(
    status: int, expected: type[nbagent.ModelError], retryable: bool
) -> None:
    error = provider_error(StatusError(status, "boom"), "openai/gpt-4o-mini")
    assert type(error) is expected and error.retryable is retryable


def test_connection_errors_are_transient() -> None:
    error = provider_error(ConnectionError("reset"), "m")
    assert isinstance(error, nbagent.ProviderTransientError)


def test_auth_error_names_the_variable_and_hides_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    error = provider_error(
        StatusError(401, "invalid x-api-key sk-ant-abcdefghijklmnop"), "anthropic/claude-3-5-sonnet"
    )
    assert "ANTHROPIC_API_KEY" in str(error) and "sk-ant" not in str(error)
