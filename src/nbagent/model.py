"""Models: the ``Model`` protocol, the litellm adapter and our own tool-call accumulator.

A model turns a :class:`ModelRequest` into a stream of chunks. Text arrives as plain
``str`` (the hot path: one per token); everything else as a small dataclass. The agent
loop feeds the chunks to a :class:`ResponseAccumulator`, which assembles text, reasoning
and tool calls whatever order or shape the provider sends them in.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._images import ToolImages, live_form
from ._provider import (
    import_litellm,
    load_litellm,
    missing_key_error,
    missing_key_names,
    provider_error,
    retry_after,
)
from ._redact import register_secret
from .errors import ProviderRequestError, ProviderTransientError
from .events import Provenance, ToolCall


@dataclass(slots=True)
class ModelRequest:
    """What the loop sends to the model; hooks may edit it before it is sent."""

    messages: list[dict[str, Any]]
    """The conversation in OpenAI chat format."""
    tools: list[dict[str, Any]]
    """OpenAI-format tool declarations (empty for none)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Model parameters sent with the request (temperature, top_p, max_tokens, seed,
    reasoning_effort, …); part of the replay fingerprint."""
    images: ToolImages | None = None
    """Images tool calls displayed, shown to the model or noted in text when the request
    is sent (:func:`as_sent`); None: the messages go as they are."""


async def sees_images(model: Any) -> bool:
    """Whether ``model`` can see images (its own ``sees_images``; False when it cannot
    tell)."""
    sees = getattr(model, "sees_images", None)
    return bool(await sees()) if callable(sees) else False


def as_sent(request: ModelRequest, sees: bool) -> ModelRequest:
    """``request`` in the form it is sent in: its images shown or noted (see ``_images``)."""
    if request.images is None:
        return request
    messages = live_form(request.messages, request.images, sees)
    return ModelRequest(messages, request.tools, request.params)


@dataclass(frozen=True, slots=True)
class ReasoningChunk:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallFragment:
    """A piece of a tool call as streamed; any field may be missing."""

    index: int | None = None
    id: str | None = None
    name: str | None = None
    arguments: str | dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class UsageChunk:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class FinishChunk:
    reason: str


ModelChunk = str | ReasoningChunk | ToolCallFragment | UsageChunk | FinishChunk | Provenance
"""One streamed item: ``str`` is answer text; a recording model ends a response with its
:class:`~nbagent.events.Provenance`."""


class Model(Protocol):
    """A chat model that streams. ``stream`` must be an async generator (closable)."""

    @property
    def name(self) -> str: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]: ...

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """The price of a request in USD, or None when the model's price is unknown."""
        ...


@dataclass(slots=True)
class _Slot:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    index: int | None = None


MAX_ARGUMENT_DEPTH = 64
"""Deeper tool-call arguments are refused: everything after parsing (redaction, the log,
the replay fingerprint) walks them, and none needs that depth."""


def nested_deeper(value: Any, limit: int) -> bool:
    """Whether lists and dicts in ``value`` nest more than ``limit`` levels (iterative:
    safe on any depth)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in item)
    return False


class ResponseAccumulator:
    """Assembles one streamed response.

    Tool-call fragments are keyed by ``index``; a fragment whose id differs from the id
    already seen at its index starts a new call (providers that put parallel calls all at
    index 0); fragments with neither index nor a new id continue the last call (providers
    that drop ids on later deltas). Arguments may arrive as string pieces or whole dicts.
    """

    __slots__ = ("_reasoning", "_slots", "_text", "finish_reason", "provenance", "usage")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._slots: list[_Slot] = []
        self.finish_reason: str | None = None
        self.usage: UsageChunk | None = None
        self.provenance: Provenance | None = None

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def add_text(self, text: str) -> None:
        self._text.append(text)

    def add(self, chunk: ModelChunk) -> None:
        """Take any non-text chunk (text goes through :meth:`add_text`)."""
        if isinstance(chunk, str):
            self._text.append(chunk)
        elif isinstance(chunk, ToolCallFragment):
            self._add_fragment(chunk)
        elif isinstance(chunk, ReasoningChunk):
            self._reasoning.append(chunk.text)
        elif isinstance(chunk, UsageChunk):
            self.usage = chunk
        elif isinstance(chunk, FinishChunk):
            self.finish_reason = chunk.reason
        elif isinstance(chunk, Provenance):
            self.provenance = chunk

    def _slot_for(self, fragment: ToolCallFragment) -> _Slot:
        if fragment.index is not None:
            for slot in reversed(self._slots):
                if slot.index == fragment.index:
                    if fragment.id and slot.id and fragment.id != slot.id:
                        break  # same index, new id: a new parallel call
                    return slot
        elif fragment.id:
            for slot in self._slots:
                if slot.id == fragment.id:
                    return slot
        elif self._slots:
            return self._slots[-1]
        slot = _Slot(index=fragment.index)
        self._slots.append(slot)
        return slot

    def _add_fragment(self, fragment: ToolCallFragment) -> None:
        slot = self._slot_for(fragment)
        if fragment.id and not slot.id:
            slot.id = fragment.id
        if fragment.name and not slot.name:
            slot.name = fragment.name
        args = fragment.arguments
        if isinstance(args, dict):
            slot.arguments = [json.dumps(args)]
        elif args:
            slot.arguments.append(args)

    def tool_calls(self) -> list[ToolCall]:
        """The complete calls, arguments parsed; bad JSON is recorded in ``call.error``."""
        calls = []
        for slot in self._slots:
            raw = "".join(slot.arguments)
            call_id = slot.id or f"call_{uuid.uuid4().hex[:24]}"
            arguments: dict[str, Any] = {}
            error: str | None = None
            if not slot.name:
                error = "The tool call has no tool name."
            try:
                parsed = json.loads(raw) if raw.strip() else {}
                if nested_deeper(parsed, MAX_ARGUMENT_DEPTH):
                    raise RecursionError
            except json.JSONDecodeError as exc:
                snippet = raw if len(raw) <= 200 else raw[:200] + "…"
                error = (
                    f"The arguments are not valid JSON ({exc.msg} at position {exc.pos}): "
                    f"{snippet}. Send the arguments as one JSON object."
                )
            except RecursionError:
                error = (
                    f"The arguments are nested too deeply (more than {MAX_ARGUMENT_DEPTH} "
                    "levels of lists and objects); send flatter arguments."
                )
            else:
                if isinstance(parsed, dict):
                    arguments = parsed
                else:
                    error = (
                        "The arguments must be a JSON object, not "
                        f"{type(parsed).__name__}: {raw[:200]}"
                    )
            calls.append(
                ToolCall(
                    id=call_id,
                    name=slot.name,
                    arguments=arguments,
                    arguments_json=raw,
                    error=error,
                )
            )
        return calls


def assistant_message(text: str, calls: list[ToolCall]) -> dict[str, Any]:
    """The assistant message for the conversation (OpenAI format).

    Calls whose arguments were not valid JSON are recorded with ``{}`` so that the next
    request stays acceptable to strict providers; the raw text stays in the events.
    """
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name or "unknown",
                    "arguments": json.dumps(call.arguments)
                    if call.error
                    else (call.arguments_json or "{}"),
                },
            }
            for call in calls
        ]
    return message


NO_KEY = "nbagent-no-key"
"""The key sent to a server given by ``api_base`` when no key is set: litellm's
OpenAI-compatible path needs some string, and a local server (llama.cpp, vLLM, Ollama,
LM Studio) ignores it."""

_STREAM_TYPES = ("event-stream", "ndjson", "x-ndjson", "json-seq")

__all__ = [
    "NO_KEY",
    "LiteLLMModel",
    "Model",
    "ModelChunk",
    "ModelRequest",
    "ResponseAccumulator",
    "import_litellm",
    "provider_error",
    "retry_after",
]


class LiteLLMModel:
    """Any litellm model (``provider/model``), streamed through ``litellm.acompletion``.

    The key comes from ``api_key``, else from the variable ``api_key_env`` names (read at
    request time), else from the provider's own variable (``OPENAI_API_KEY``, …). Before
    the first request a missing key fails at once with one line, no request and no retry;
    a server given by ``api_base`` needs no key. Keys stay out of ``repr`` and are
    redacted from every message. ``timeout`` bounds each wait on the provider, including
    a stream that stalls; ``params`` go with every request (see also
    ``ModelRequest.params``).
    """

    def __init__(
        self,
        name: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout: float = 120.0,
        params: dict[str, Any] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        self._name = name
        self.api_base = api_base
        self._api_key = api_key
        register_secret(api_key)
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.params = dict(params or {})

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        base = f", api_base={self.api_base!r}" if self.api_base else ""
        env = f", api_key_env={self.api_key_env!r}" if self.api_key_env else ""
        return f"LiteLLMModel({self._name!r}{base}{env})"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        litellm = import_litellm()
        try:
            prompt_cost, completion_cost = litellm.cost_per_token(
                model=self._name, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
        except Exception:
            return None
        return float(prompt_cost) + float(completion_cost)

    def credentials(self) -> tuple[str | None, str]:
        """The key for the next request and where it came from (for messages; never the
        key itself). Raises ``ProviderAuthError`` when a needed key is not set."""
        if self._api_key:
            return self._api_key, "the key was given in code (api_key=)"
        if self.api_key_env:
            value = os.environ.get(self.api_key_env, "").strip()
            if not value:
                raise missing_key_error([self.api_key_env])
            register_secret(value)
            return value, self.api_key_env
        missing = missing_key_names(self._name)
        if not missing:
            return None, ""
        if self.api_base:
            return NO_KEY, f"no key was sent ({' and '.join(missing)} not set)"
        raise missing_key_error(missing)

    async def sees_images(self) -> bool:
        """What litellm knows: whether the model takes image input."""
        litellm = await load_litellm()
        try:
            return bool(litellm.supports_vision(model=self._name))
        except Exception:
            return False

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        litellm = await load_litellm()
        if request.images is not None:
            request = as_sent(request, await self.sees_images())
        key, source = self.credentials()
        kwargs: dict[str, Any] = {
            **self.params,
            **request.params,
            "model": self._name,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "timeout": self.timeout,
            # The agent loop owns retries (only before the first token, with events);
            # the OpenAI client's own silent retries would hide them.
            "max_retries": 0,
        }
        if request.tools:
            kwargs["tools"] = request.tools
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if key:
            kwargs["api_key"] = key
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise provider_error(exc, self._name, key_source=source or None) from None
        try:
            self._check_stream(response)
            answered = False
            async for chunk in response:
                for item in _translate(chunk):
                    answered = answered or not isinstance(item, FinishChunk)
                    yield item
            if not answered:
                raise ProviderTransientError(
                    f"{self._name} answered with an empty response (no text, no tool call, "
                    "no usage)"
                )
        except Exception as exc:
            raise provider_error(exc, self._name, key_source=source or None) from None
        finally:
            await response.aclose()

    def _check_stream(self, response: Any) -> None:
        """Refuse a 200 answer that is not a stream (an HTML page, a whole JSON body):
        litellm would turn it into an empty, "completed" answer."""
        hidden = getattr(response, "_hidden_params", None) or {}
        headers = hidden.get("additional_headers") or {} if isinstance(hidden, dict) else {}
        kind = str(headers.get("llm_provider-content-type") or "").lower()
        if kind and not any(t in kind for t in _STREAM_TYPES):
            where = self.api_base or "the provider"
            raise ProviderRequestError(
                f"{where} answered {self._name} with {kind.split(';')[0]}, not a stream: "
                "check that api_base is the API's base URL (an OpenAI-compatible one "
                "usually ends in /v1)"
            )


def _translate(chunk: Any) -> list[ModelChunk]:
    items: list[ModelChunk] = []
    choices = getattr(chunk, "choices", None) or []
    if choices:
        choice = choices[0]
        delta = getattr(choice, "delta", None)
        if delta is not None:
            reasoning = getattr(delta, "reasoning_content", None)
            if reasoning:
                items.append(ReasoningChunk(reasoning))
            content = delta.content
            if content:
                items.append(content)
            for call in getattr(delta, "tool_calls", None) or ():
                function = getattr(call, "function", None)
                items.append(
                    ToolCallFragment(
                        index=getattr(call, "index", None),
                        id=getattr(call, "id", None),
                        name=getattr(function, "name", None) if function else None,
                        arguments=getattr(function, "arguments", None) if function else None,
                    )
                )
        if choice.finish_reason:
            items.append(FinishChunk(choice.finish_reason))
    usage = getattr(chunk, "usage", None)
    if usage is not None and getattr(usage, "total_tokens", None):
        items.append(UsageChunk(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)))
    return items
