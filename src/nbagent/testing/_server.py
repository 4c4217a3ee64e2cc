"""A scripted chat server on 127.0.0.1: real HTTP, real SSE / NDJSON chunks.

It speaks three wire formats, chosen by the request's path (see ``_wire.py``): OpenAI's
``POST …/chat/completions``, Anthropic's ``POST /v1/messages`` and Ollama's native
``POST /api/chat``. Each request gets the next scripted :class:`Reply` (the first
that fits the request, see :attr:`Reply.when`): streamed
(chunked transfer, one SSE event per delta, a usage chunk, ``[DONE]``) or whole, and
injects the reply's faults for real: HTTP error statuses, a connection cut mid-stream
(the chunked body never ends), a stall. It runs in a daemon thread, so it serves sync
tests, async tests and a kernel alike.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._script import Reply, estimate_usage, last_user_text, say, take_reply
from ._wire import content_type, error_body, frames, protocol_of


class ScriptedServer:
    """Serve scripted replies over HTTP. Use as a context manager or ``start``/``stop``.

    ``url`` is the base URL to pass as ``api_base`` for ``openai/…`` models (it ends in
    ``/v1``); ``root`` (no path) is the one for ``anthropic/…`` and ``ollama_chat/…``
    models. ``requests`` holds every request body received, in order.
    """

    def __init__(self, replies: Iterable[Reply] = (), *, echo: bool = False, port: int = 0) -> None:
        self._replies: deque[Reply] = deque(replies)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.echo = echo
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        """The headers of every request, in order (lower-case names)."""
        self.paths: list[str] = []
        """The path of every request, in order (which protocol it spoke)."""
        self._httpd = _QuietServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.scripted = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._replies)

    def start(self) -> ScriptedServer:
        if self._thread is None:
            # A short poll: ``stop`` waits up to one poll for the serving loop to end.
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.02},
                name="nbagent-scripted-server",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, body: dict[str, Any], headers: dict[str, str], path: str) -> Reply | str:
        """The reply to a request, or why there is none."""
        messages = body.get("messages", [])
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.paths.append(path)
            reply = take_reply(self._replies, messages)
            left = len(self._replies)
        if reply is not None:
            return reply
        if self.echo:
            return say(f"You said: {last_user_text(messages)}")
        if left:
            return (
                f"none of the {left} scripted replies left fits this request "
                f"(its last user message: {last_user_text(messages)[:200]!r})"
            )
        return "the scripted server has no reply left"


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a stream stopped at a budget, a refused answer) is
        # normal here; anything else is reported as usual.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nbagent-scripted/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and demos read their own output

    @property
    def scripted(self) -> ScriptedServer:
        return self.server.scripted  # type: ignore[attr-defined, no-any-return]

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "the body is not JSON", "type": "invalid"}})
            return
        protocol = protocol_of(self.path)
        if protocol is None:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.scripted._next(body, headers, self.path)
        if isinstance(reply, str):
            self._json(500, error_body(protocol, 500, reply))
            return
        if reply.body is not None:
            self._raw(reply.status or 200, reply.body.encode(), reply.content_type)
            return
        if reply.status is not None:
            headers = (
                {"Retry-After": f"{reply.retry_after:g}"} if reply.retry_after is not None else {}
            )
            self._json(
                reply.status, error_body(protocol, reply.status, reply.error_message), headers
            )
            return
        if body.get("stream") or (protocol == "ollama" and body.get("stream") is not False):
            self._stream(frames(protocol, reply, body), reply, content_type(protocol))
        elif protocol == "openai":
            self._whole(body, reply)
        else:
            self._json(400, error_body(protocol, 400, "the scripted server only streams"))

    def _raw(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, parts: list[bytes], reply: Reply, kind: str) -> None:
        """Send ``parts`` as a chunked stream, with the reply's cut or stall after
        ``cut_after`` / ``stall_after`` parts."""
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for count, part in enumerate(parts):
            if reply.cut_after is not None and count >= reply.cut_after:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if reply.stall_after is not None and count == reply.stall_after:
                self.scripted._stopping.wait(reply.stall_seconds)
            self._chunk(part)
        self._chunk(b"")

    def _whole(self, body: dict[str, Any], reply: Reply) -> None:
        prompt, completion = estimate_usage(reply, body.get("messages", []))
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id or f"call_{i}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments_json()},
                }
                for i, c in enumerate(reply.tool_calls)
            ]
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        self._json(
            200,
            {
                "id": f"chatcmpl-scripted-{id(reply):x}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "scripted"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
        )
