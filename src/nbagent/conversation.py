"""The state of a session is a fold of its events.

:class:`Conversation` is pure and synchronous: ``apply(event)`` is the one place that says
what each event means for the conversation (messages, usage totals, run count, pending
approvals, running calls, the current run and its partial text). The live session applies
every event it emits; restoring a session from its log feeds the logged events to the same
fold, so the two cannot disagree.

Providers reject a conversation in which an assistant's tool call has no result, has two,
or a tool result answers no call. :func:`repair_history` makes a history valid (every
call gets exactly one result, right after the message that made it, in call order); the
fold repairs each run's part of the history when the run ends, and requests are built
from a repaired copy.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast

from typing_extensions import NotRequired, assert_never

from ._images import (
    MAX_MODEL_IMAGE_CHARS,
    MAX_MODEL_IMAGES,
    ToolImages,
    display_images,
    shown,
)
from .events import (
    ApprovalDecided,
    ApprovalRequested,
    BudgetDecided,
    BudgetReached,
    ErrorOccurred,
    Event,
    ModelResponded,
    Provenance,
    ReasoningDelta,
    Retrying,
    RunFinished,
    RunStarted,
    RunStatus,
    StateChanged,
    SteerAdded,
    TextDelta,
    ToolCall,
    ToolCallProposed,
    ToolCallsRefused,
    ToolFinished,
    ToolStarted,
    Usage,
)

MISSING_RESULT = (
    "The tool call has no result: the run was stopped before it finished. Do not assume it ran."
)
INTERRUPTED_RESULT = (
    "The kernel stopped while this tool call was running; it may have partly completed. "
    "It was not run again."
)


# -- chat message shapes (OpenAI chat format) --------------------------------------------


class ChatFunction(TypedDict):
    name: str
    arguments: str
    """The arguments as a JSON object, in text."""


class ChatToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: ChatFunction


class SystemMessage(TypedDict):
    role: Literal["system"]
    content: str


class UserMessage(TypedDict):
    role: Literal["user"]
    content: str


class AssistantMessage(TypedDict):
    role: Literal["assistant"]
    content: str | None
    tool_calls: NotRequired[list[ChatToolCall]]


class ToolResultMessage(TypedDict):
    role: Literal["tool"]
    tool_call_id: str
    content: str


ChatMessage = SystemMessage | UserMessage | AssistantMessage | ToolResultMessage
"""One message of a conversation. Messages that come from outside (a log, a hook, the
caller) are read defensively: a damaged one never stops a run."""


def user_message(text: str) -> UserMessage:
    return {"role": "user", "content": text}


def tool_result(tool_call_id: str, content: str) -> ToolResultMessage:
    return {"role": "tool", "tool_call_id": tool_call_id, "content": content}


def as_chat(messages: Any) -> list[ChatMessage]:
    """Messages from outside, as a list (the items are kept as they are)."""
    return [cast(ChatMessage, m) for m in messages if isinstance(m, dict)]


def _calls_of(message: ChatMessage) -> list[dict[str, Any]]:
    """The tool calls of an assistant message; malformed ones are skipped."""
    if message.get("role") != "assistant":
        return []
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [c for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str)]


def repair_history(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Return a valid copy of ``messages`` (the input is not modified)."""
    repaired: list[ChatMessage] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        i += 1
        role = message.get("role")
        if role == "tool":
            continue  # a result that follows no assistant call: orphaned, drop it
        calls = _calls_of(message)
        if role == "assistant" and message.get("tool_calls") is not None and not calls:
            # tool_calls that are not a list of calls (a damaged log): keep the text only
            repaired.append({"role": "assistant", "content": _text(message.get("content"))})
            continue
        repaired.append(message)
        if not calls:
            continue
        results: dict[str, ChatMessage] = {}
        while i < len(messages) and messages[i].get("role") == "tool":
            result = messages[i]
            call_id = result.get("tool_call_id")
            if isinstance(call_id, str) and call_id not in results:
                results[call_id] = result
            i += 1
        for call in calls:
            call_id = call["id"]
            repaired.append(results.get(call_id) or tool_result(call_id, MISSING_RESULT))
    return repaired


def is_valid(messages: list[ChatMessage]) -> bool:
    """Whether ``messages`` needs no repair."""
    return repair_history(messages) == messages


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def unanswered_calls(messages: list[ChatMessage]) -> tuple[ToolCall, ...]:
    """The tool calls of the last assistant message that have no result yet."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "tool":
            continue
        calls = _calls_of(message)
        if not calls:
            return ()
        answered = {m.get("tool_call_id") for m in messages[index + 1 :]}
        unanswered = []
        for raw in calls:
            if raw["id"] in answered:
                continue
            function = raw.get("function")
            function = function if isinstance(function, dict) else {}
            arguments_json = function.get("arguments")
            arguments_json = arguments_json if isinstance(arguments_json, str) else "{}"
            try:
                arguments = json.loads(arguments_json or "{}")
            except (json.JSONDecodeError, RecursionError):
                arguments = {}
            name = function.get("name")
            unanswered.append(
                ToolCall(
                    id=raw["id"],
                    name=name if isinstance(name, str) else "",
                    arguments=arguments if isinstance(arguments, dict) else {},
                    arguments_json=arguments_json,
                )
            )
        return tuple(unanswered)
    return ()


def unfinished(messages: list[ChatMessage]) -> bool:
    """Whether the conversation waits for the model: an unanswered user message, or
    tool calls without results."""
    if not messages:
        return False
    return messages[-1].get("role") == "user" or bool(unanswered_calls(messages))


# -- usage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageTotals:
    """Tokens and cost added up over model requests."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    """False if any request's cost was unknown (then ``cost_usd`` is a lower bound)."""
    requests: int = 0
    estimated: bool = False
    """True if any request's usage was estimated (see ``Usage.estimated``)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, usage: Usage) -> UsageTotals:
        """The totals after one more model request."""
        return UsageTotals(
            prompt_tokens=self.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self.completion_tokens + usage.completion_tokens,
            cost_usd=self.cost_usd + usage.cost_usd,
            cost_known=self.cost_known and usage.cost_known,
            requests=self.requests + 1,
            estimated=self.estimated or usage.estimated,
        )


# -- the fold ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnEnd:
    """A turn that did not complete: stopped, failed, or over a limit (``%agent history``
    marks it after the turn's last message)."""

    after: int
    """The index of the turn's last message in ``messages``."""
    status: RunStatus
    error: str | None
    message: ChatMessage
    """That message (to find it again when the history is replaced)."""


@dataclass
class Conversation:
    """A session's state, folded from its events (see the module docstring)."""

    messages: list[ChatMessage] = field(default_factory=list)
    """The conversation, system prompt excluded."""
    usage: UsageTotals = field(default_factory=UsageTotals)
    """Tokens and cost over the whole session."""
    runs: int = 0
    """How many runs have finished."""
    model: str | None = None
    """The model of the latest run."""
    tools: tuple[str, ...] = ()
    """The tool names of the latest run."""
    run_id: str | None = None
    """The run in progress (None between runs)."""
    pending: dict[str, ApprovalRequested] = field(default_factory=dict)
    """Calls of the current run waiting for a decision, by tool call id."""
    running: dict[str, str] = field(default_factory=dict)
    """Calls of the current run that started and have not finished (id -> tool name)."""
    partial: list[str] = field(default_factory=list)
    """Text streamed since the last complete response of the current run."""
    images: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    """Images tool calls displayed: tool call id -> (tool name, ``data:`` URLs). Sent to
    models that can see (:meth:`request_messages`), never part of ``messages``."""
    provenance: Provenance | None = None
    """Where the latest complete response came from (its calls' trust on resume)."""
    ended: list[TurnEnd] = field(default_factory=list)
    """The turns that did not complete, oldest first."""
    budget_pause: BudgetReached | None = None
    """The current run waits for a person at its budget (continue or stop); in a session
    restored from its log, the run the kernel lost waited there (``resume`` asks again)."""

    def apply(self, event: Event) -> None:
        """Fold one event into the state."""
        match event:
            case TextDelta():
                self.partial.append(event.text)
            case RunStarted():
                if self.run_id is not None:
                    self.close_interrupted()  # the previous run never finished
                self.run_id = event.run_id
                self.model = event.model
                self.tools = event.tools
                if not event.resumed:
                    self.messages.append(user_message(event.prompt))
                    self.budget_pause = None  # a new turn: the lost run's pause is moot
            case SteerAdded():
                self.messages.append(user_message(event.text))
            case ModelResponded():
                self.messages.append(cast(ChatMessage, event.message))
                self.partial.clear()
                self.provenance = event.provenance
            case ApprovalRequested():
                self.pending[event.tool_call_id] = event
            case ApprovalDecided():
                self.pending.pop(event.tool_call_id, None)
            case BudgetReached():
                self.budget_pause = event
            case BudgetDecided():
                self.budget_pause = None
            case ToolStarted():
                self.running[event.tool_call_id] = event.name
            case ToolFinished():
                self.running.pop(event.tool_call_id, None)
                self.pending.pop(event.tool_call_id, None)
                self.messages.append(tool_result(event.tool_call_id, event.result))
                if event.display and (urls := display_images(event.display)):
                    self.images[event.tool_call_id] = (event.name, urls)
            case ToolCallsRefused():
                for call_id in event.tool_call_ids:
                    self.messages.append(tool_result(call_id, event.result))
            case Usage():
                self.usage = self.usage.add(event)
            case RunFinished():
                if event.run_id != self.run_id:
                    return  # a queued turn stopped before it started: nothing happened
                self.runs += 1
                self.messages = repair_history(self.messages)
                if event.status != "completed" and self.messages:
                    last = len(self.messages) - 1
                    self.ended.append(TurnEnd(last, event.status, event.error, self.messages[last]))
                self.run_id = None
                self.partial.clear()
                self.running.clear()
                self.pending.clear()
                self.budget_pause = None
            case ReasoningDelta() | ToolCallProposed() | Retrying() | ErrorOccurred():
                pass
            case StateChanged():
                pass
            case _:
                assert_never(event)

    def reset(self, messages: list[ChatMessage]) -> None:
        """Replace the conversation (rewind, undo, compaction); only between runs."""
        shift = len(messages) - len(self.messages)
        self.messages = list(messages)
        kept = {m.get("tool_call_id") for m in self.messages if m.get("role") == "tool"}
        self.images = {k: v for k, v in self.images.items() if k in kept}
        ended = []
        for end in self.ended:
            # a kept beginning (rewind, undo), else a kept end (compaction)
            for index in (end.after, end.after + shift):
                if 0 <= index < len(self.messages) and self.messages[index] == end.message:
                    ended.append(dataclasses.replace(end, after=index))
                    break
        self.ended = ended

    def close_interrupted(self) -> None:
        """Keep what a run that never finished had shown: its partial text, and a result
        for each call that had started (so that it never runs again)."""
        if self.partial:
            self.messages.append({"role": "assistant", "content": "".join(self.partial)})
            self.partial.clear()
        for call_id in self.running:
            self.messages.append(tool_result(call_id, INTERRUPTED_RESULT))
        self.running.clear()

    def request_messages(self, *, images: bool = False) -> list[ChatMessage]:
        """The history as the next model request sends it (repaired, not modified).

        ``images``: the model can see, so the latest images tool calls displayed follow
        their results as a user message (see :meth:`latest_images`).
        """
        history = repair_history(self.messages)
        chosen = self.latest_images() if images else {}
        if not chosen:
            return history
        raw = cast(list[dict[str, Any]], history)
        return cast(list[ChatMessage], shown(raw, ToolImages(chosen, "on")))

    def latest_images(self) -> dict[str, list[tuple[str, str]]]:
        """The latest images tool calls displayed, by call id (bounded: ``MAX_MODEL_IMAGES``
        images and ``MAX_MODEL_IMAGE_CHARS`` of data, the most recent first)."""
        chosen: dict[str, list[tuple[str, str]]] = {}
        count = chars = 0
        for call_id, (name, urls) in reversed(list(self.images.items())):
            for url in reversed(urls):
                if count >= MAX_MODEL_IMAGES or chars + len(url) > MAX_MODEL_IMAGE_CHARS:
                    return chosen
                chosen.setdefault(call_id, []).insert(0, (name, url))
                count, chars = count + 1, chars + len(url)
        return chosen

    def unanswered_calls(self) -> tuple[ToolCall, ...]:
        return unanswered_calls(self.messages)

    def unfinished(self) -> bool:
        return unfinished(self.messages)
