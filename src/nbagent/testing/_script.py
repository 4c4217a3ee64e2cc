"""Scripted replies: what a test model answers, and the faults it injects.

One script drives both the in-memory :class:`ScriptedModel` and the HTTP
:class:`ScriptedServer`, through the same OpenAI-format deltas.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import TypeAdapter

CallStyle = Literal["fragments", "whole", "index_zero"]
"""How tool calls are streamed: OpenAI-style argument fragments; each call whole in one
delta; or fragments with every parallel call at index 0 (a known provider bug)."""


@dataclass
class ScriptedCall:
    """A tool call the scripted model makes. A ``str`` for ``arguments`` is sent verbatim
    (use it for malformed JSON)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass
class Reply:
    """One scripted model response, or one fault in place of it."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ScriptedCall] = field(default_factory=list)
    words_per_chunk: int = 1
    """How many words go in each streamed text chunk."""
    argument_fragment: int = 7
    """Characters per streamed piece of tool-call arguments."""
    call_style: CallStyle = "fragments"
    finish_reason: str | None = None
    """Defaults to ``tool_calls`` when there are calls, else ``stop``."""
    usage: tuple[int, int] | None = None
    """(prompt, completion) tokens; estimated when not given."""
    status: int | None = None
    """Answer with this HTTP error status instead of a stream."""
    error_message: str = "scripted failure"
    retry_after: float | None = None
    """Sent as a Retry-After header with ``status``."""
    cut_after: int | None = None
    """Cut the connection after this many deltas (no finish, no [DONE])."""
    stall_after: int | None = None
    """Stop sending after this many deltas for ``stall_seconds``."""
    stall_seconds: float = 30.0
    body: str | None = None
    """Answer with this body verbatim (status ``status`` or 200, type ``content_type``)
    instead of a stream: a misconfigured server's HTML page, a whole JSON completion, an
    empty body. Served by :class:`ScriptedServer` only."""
    content_type: str = "text/html"
    when: str | None = None
    """Answer only a request whose last user message contains this text; the first reply
    in the script that fits the request answers it. Sessions that run concurrently
    against one server tag their replies with (part of) their prompt, so it does not
    matter whose request arrives first. ``None`` fits any request."""

    def fits(self, messages: list[dict[str, Any]]) -> bool:
        """Whether this reply may answer a request with these messages."""
        return self.when is None or self.when in last_user_text(messages)


def when(text: str, *replies: Reply) -> list[Reply]:
    """The same replies, each answering only requests whose last user message contains
    ``text``: ``server.add(*when("alpha", say("A")), *when("beta", say("B")))``."""
    return [dataclasses.replace(reply, when=text) for reply in replies]


def take_reply(replies: deque[Reply], messages: list[dict[str, Any]]) -> Reply | None:
    """Remove and return the first reply in ``replies`` that fits a request with
    ``messages`` (see :attr:`Reply.when`), or ``None`` when none does."""
    for index, reply in enumerate(replies):
        if reply.fits(messages):
            del replies[index]
            return reply
    return None


def say(text: str, **options: Any) -> Reply:
    """A plain text answer."""
    return Reply(text=text, **options)


def call(
    name: str, arguments: dict[str, Any] | str | None = None, *, id: str | None = None
) -> ScriptedCall:
    """One tool call for :func:`use_tools`."""
    return ScriptedCall(name=name, arguments={} if arguments is None else arguments, id=id)


def use_tools(*calls: ScriptedCall, text: str = "", **options: Any) -> Reply:
    """A response that calls tools (several calls are parallel calls)."""
    return Reply(text=text, tool_calls=list(calls), **options)


def http_error(
    status: int, message: str = "scripted failure", *, retry_after: float | None = None
) -> Reply:
    """An HTTP error response (429, 500, 401, …) instead of a stream."""
    return Reply(status=status, error_message=message, retry_after=retry_after)


def raw(body: str, *, content_type: str = "text/html", status: int | None = None) -> Reply:
    """A response that is not a stream: ``body`` as is (an HTML page, a JSON document)."""
    return Reply(body=body, content_type=content_type, status=status)


def cut(after: int, text: str = "This answer will be cut off in the middle of a sentence") -> Reply:
    """A stream whose connection breaks after ``after`` deltas."""
    return Reply(text=text, cut_after=after)


def stall(seconds: float, *, after: int = 0, text: str = "Thinking about it") -> Reply:
    """A stream that stops sending for ``seconds`` after ``after`` deltas."""
    return Reply(text=text, stall_after=after, stall_seconds=seconds)


SCRIPT_ADAPTER: TypeAdapter[list[Reply]] = TypeAdapter(list[Reply])


def load_script(data: str | bytes) -> list[Reply]:
    """Parse a JSON list of replies (the CLI's ``--script`` file)."""
    return SCRIPT_ADAPTER.validate_json(data)


_WORD = re.compile(r"\S+\s*|\s+")


def _pieces(text: str, words: int) -> Iterator[str]:
    tokens = _WORD.findall(text)
    step = max(1, words)
    for i in range(0, len(tokens), step):
        yield "".join(tokens[i : i + step])


def stream_deltas(reply: Reply) -> Iterator[dict[str, Any]]:
    """The OpenAI ``choices[0].delta`` dicts of a reply, in order, ending with a dict
    that has only ``finish_reason``."""
    for piece in _pieces(reply.reasoning, reply.words_per_chunk):
        yield {"reasoning_content": piece}
    for piece in _pieces(reply.text, reply.words_per_chunk):
        yield {"content": piece}
    for index, scripted in enumerate(reply.tool_calls):
        call_id = scripted.id or f"call_{uuid.uuid4().hex[:20]}"
        raw = scripted.arguments_json()
        at = 0 if reply.call_style == "index_zero" else index
        if reply.call_style == "whole":
            yield {
                "tool_calls": [
                    {
                        "index": at,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": scripted.name, "arguments": raw},
                    }
                ]
            }
            continue
        yield {
            "tool_calls": [
                {
                    "index": at,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": scripted.name, "arguments": ""},
                }
            ]
        }
        size = max(1, reply.argument_fragment)
        for i in range(0, len(raw), size):
            yield {"tool_calls": [{"index": at, "function": {"arguments": raw[i : i + size]}}]}
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    yield {"finish_reason": finish}


def estimate_usage(reply: Reply, messages: list[dict[str, Any]]) -> tuple[int, int]:
    """Token counts for a reply: given, or about four characters per token."""
    if reply.usage is not None:
        return reply.usage
    prompt = max(1, len(json.dumps(messages)) // 4)
    produced = reply.text + reply.reasoning + "".join(c.arguments_json() for c in reply.tool_calls)
    return prompt, max(1, len(produced) // 4)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""
