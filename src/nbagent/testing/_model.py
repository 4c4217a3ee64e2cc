"""An in-memory scripted model for fast unit tests of the agent loop."""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ..errors import ProviderRequestError
from ..model import (
    FinishChunk,
    ModelChunk,
    ModelRequest,
    ReasoningChunk,
    ToolCallFragment,
    UsageChunk,
    as_sent,
    provider_error,
)
from ._script import Reply, estimate_usage, last_user_text, say, stream_deltas, take_reply


class _StatusError(Exception):
    def __init__(self, status_code: int, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class ScriptedModel:
    """Answers each request with the next scripted :class:`Reply` (the first that fits
    the request, see :attr:`Reply.when`), in memory.

    Faults behave as they do over HTTP: a status becomes the same error the litellm path
    raises, a cut raises mid-stream, a stall sleeps (and can be cancelled). ``requests``
    keeps a copy of every request, as sent (tool images shown when ``vision``, else
    noted). With ``echo=True`` an empty script answers with the last user message.
    """

    def __init__(
        self,
        replies: Iterable[Reply] = (),
        *,
        name: str = "scripted",
        usd_per_1k_tokens: float | None = None,
        echo: bool = False,
        vision: bool = False,
    ) -> None:
        self._name = name
        self.vision = vision
        self._replies: deque[Reply] = deque(replies)
        self.requests: list[ModelRequest] = []
        self.usd_per_1k_tokens = usd_per_1k_tokens
        self.echo = echo

    @property
    def name(self) -> str:
        return self._name

    @property
    def remaining(self) -> int:
        return len(self._replies)

    def add(self, *replies: Reply) -> None:
        self._replies.extend(replies)

    async def sees_images(self) -> bool:
        return self.vision

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.usd_per_1k_tokens is None:
            return None
        return (prompt_tokens + completion_tokens) * self.usd_per_1k_tokens / 1000

    def _next(self, messages: list[dict[str, Any]]) -> Reply:
        reply = take_reply(self._replies, messages)
        if reply is not None:
            return reply
        if self.echo:
            return say(f"You said: {last_user_text(messages)}")
        if self._replies:
            message = (
                f"none of the {len(self._replies)} scripted replies left fits this request "
                f"(its last user message: {last_user_text(messages)[:200]!r})"
            )
        else:
            message = "the scripted model has no reply left"
        raise provider_error(_StatusError(400, message, None), self._name)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        request = as_sent(request, self.vision)
        self.requests.append(copy.deepcopy(request))
        reply = self._next(request.messages)
        if reply.body is not None:
            raise ProviderRequestError(
                f"{self._name} answered with {reply.content_type}, not a stream (a raw body)"
            )
        if reply.status is not None:
            raise provider_error(
                _StatusError(reply.status, reply.error_message, reply.retry_after), self._name
            )
        for count, delta in enumerate(stream_deltas(reply)):
            if reply.cut_after is not None and count >= reply.cut_after:
                raise provider_error(
                    ConnectionError("connection cut by the scripted model"), self._name
                )
            if reply.stall_after is not None and count == reply.stall_after:
                await asyncio.sleep(reply.stall_seconds)
            for chunk in delta_chunks(delta):
                yield chunk
            await asyncio.sleep(0)
        prompt, completion = estimate_usage(reply, request.messages)
        yield UsageChunk(prompt, completion)


def delta_chunks(delta: dict[str, Any]) -> list[ModelChunk]:
    """Translate one OpenAI delta dict into model chunks."""
    chunks: list[ModelChunk] = []
    if "reasoning_content" in delta:
        chunks.append(ReasoningChunk(delta["reasoning_content"]))
    if "content" in delta:
        chunks.append(delta["content"])
    for fragment in delta.get("tool_calls", ()):
        function = fragment.get("function", {})
        chunks.append(
            ToolCallFragment(
                index=fragment.get("index"),
                id=fragment.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments"),
            )
        )
    if "finish_reason" in delta:
        chunks.append(FinishChunk(delta["finish_reason"]))
    return chunks
