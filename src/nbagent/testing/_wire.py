"""The wire formats the scripted server speaks: one scripted reply as the frames of a
streamed response, and an error as each protocol's error body.

- OpenAI chat completions (``…/chat/completions``): SSE ``data:`` events of
  ``chat.completion.chunk`` objects, a usage chunk, ``data: [DONE]``.
- Anthropic Messages (``/v1/messages``): SSE with an ``event:`` line per event:
  ``message_start`` (input tokens), per content block ``content_block_start`` /
  ``content_block_delta`` (``text_delta``, ``thinking_delta``, ``input_json_delta``) /
  ``content_block_stop``, then ``message_delta`` (``stop_reason``, output tokens) and
  ``message_stop``.
- Ollama's native chat (``/api/chat``): NDJSON, one ``{"message": {...}, "done": false}``
  object per piece, tool calls whole with their arguments as an object, and a last
  ``"done": true`` object with ``done_reason`` and the token counts
  (``prompt_eval_count``, ``eval_count``).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from ._script import Reply, _pieces, estimate_usage, stream_deltas

Protocol = Literal["openai", "anthropic", "ollama"]

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def protocol_of(path: str) -> Protocol | None:
    """Which protocol a request path speaks, or None for an unknown route."""
    path = path.split("?", 1)[0].rstrip("/")
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/v1/messages"):
        return "anthropic"
    if path.endswith("/api/chat"):
        return "ollama"
    return None


def error_body(protocol: Protocol, status: int, message: str) -> dict[str, Any]:
    """The body a real server of ``protocol`` sends with an error status."""
    if protocol == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if protocol == "ollama":
        return {"error": message}
    return {"error": {"message": message, "type": "scripted", "code": status}}


def content_type(protocol: Protocol) -> str:
    return "application/x-ndjson" if protocol == "ollama" else "text/event-stream"


def frames(protocol: Protocol, reply: Reply, body: dict[str, Any]) -> list[bytes]:
    """The streamed response to ``body``, one element per event (or NDJSON line)."""
    if protocol == "anthropic":
        return anthropic_frames(reply, body)
    if protocol == "ollama":
        return ollama_frames(reply, body)
    return openai_frames(reply, body)


def _usage(reply: Reply, body: dict[str, Any]) -> tuple[int, int]:
    messages = list(body.get("messages", []))
    if "system" in body:
        messages.insert(0, {"role": "system", "content": body["system"]})
    return estimate_usage(reply, messages)


def openai_frames(reply: Reply, body: dict[str, Any]) -> list[bytes]:
    base = {
        "id": f"chatcmpl-scripted-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "scripted"),
    }
    out = []
    for delta in stream_deltas(reply):
        finish = delta.pop("finish_reason", None)
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        out.append(_sse(chunk))
    if (body.get("stream_options") or {}).get("include_usage"):
        prompt, completion = _usage(reply, body)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        out.append(_sse({**base, "choices": [], "usage": usage}))
    out.append(b"data: [DONE]\n\n")
    return out


def anthropic_frames(reply: Reply, body: dict[str, Any]) -> list[bytes]:
    prompt, completion = _usage(reply, body)
    message = {
        "id": f"msg_scripted_{uuid.uuid4().hex[:16]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "scripted"),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": 1},
    }
    out = [_event("message_start", {"message": message}), _event("ping", {})]
    index = 0

    def block(start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        nonlocal index
        out.append(_event("content_block_start", {"index": index, "content_block": start}))
        for delta in deltas:
            out.append(_event("content_block_delta", {"index": index, "delta": delta}))
        out.append(_event("content_block_stop", {"index": index}))
        index += 1

    words = reply.words_per_chunk
    if reply.reasoning:
        thinking = [
            {"type": "thinking_delta", "thinking": p} for p in _pieces(reply.reasoning, words)
        ]
        signature = {"type": "signature_delta", "signature": "scripted-signature"}
        block({"type": "thinking", "thinking": "", "signature": ""}, [*thinking, signature])
    if reply.text:
        text = [{"type": "text_delta", "text": p} for p in _pieces(reply.text, words)]
        block({"type": "text", "text": ""}, text)
    size = max(1, reply.argument_fragment)
    for scripted in reply.tool_calls:
        raw = scripted.arguments_json()
        call_id = scripted.id or f"toolu_{uuid.uuid4().hex[:20]}"
        pieces = [
            {"type": "input_json_delta", "partial_json": raw[i : i + size]}
            for i in range(0, len(raw), size)
        ]
        block({"type": "tool_use", "id": call_id, "name": scripted.name, "input": {}}, pieces)
    stop = reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")
    out.append(
        _event(
            "message_delta",
            {
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": completion},
            },
        )
    )
    out.append(_event("message_stop", {}))
    return out


def ollama_frames(reply: Reply, body: dict[str, Any]) -> list[bytes]:
    model = body.get("model", "scripted")

    def line(message: dict[str, Any], **extra: Any) -> bytes:
        data = {
            "model": model,
            "created_at": "2026-01-01T00:00:00.000000Z",
            "message": {"role": "assistant", "content": "", **message},
            "done": False,
            **extra,
        }
        return json.dumps(data).encode() + b"\n"

    out = [line({"thinking": p}) for p in _pieces(reply.reasoning, reply.words_per_chunk)]
    out += [line({"content": p}) for p in _pieces(reply.text, reply.words_per_chunk)]
    if reply.tool_calls:
        calls = [
            {"function": {"name": c.name, "arguments": _arguments_object(c.arguments_json())}}
            for c in reply.tool_calls
        ]
        out.append(line({"tool_calls": calls}))
    prompt, completion = _usage(reply, body)
    out.append(
        line(
            {},
            done=True,
            done_reason=reply.finish_reason or "stop",
            total_duration=1_000_000,
            prompt_eval_count=prompt,
            eval_count=completion,
        )
    )
    return out


def _arguments_object(raw: str) -> Any:
    """Ollama sends arguments as an object; malformed scripted JSON goes as a string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _event(name: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps({"type": name, **payload}).encode()
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
