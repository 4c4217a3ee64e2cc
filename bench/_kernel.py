"""Shared by the notebook benchmarks: a fresh kernel, and an OpenAI-compatible SSE server
that streams tokens at a fixed rate (the scripted test server streams as fast as it can)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager


class PacedServer:
    """Answers every chat request with ``tokens`` one-word chunks at ``rate`` per second."""

    def __init__(self, tokens: int, rate: float) -> None:
        self.tokens = tokens
        self.rate = rate
        handler = type("Handler", (_Handler,), {"paced": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.httpd.shutdown()


class _Handler(BaseHTTPRequestHandler):
    paced: PacedServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _event(self, payload: dict[str, Any]) -> None:
        data = b"data: " + json.dumps(payload).encode() + b"\n\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def do_POST(self) -> None:
        with contextlib.suppress(ConnectionError):  # the kernel left mid-stream
            self._stream()

    def _stream(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "bench"}
        paced, start = self.paced, time.perf_counter()
        for i in range(paced.tokens):
            due = start + i / paced.rate
            delay = due - time.perf_counter()
            if delay > 0.002:
                self.wfile.flush()
                time.sleep(delay)
            delta = {"content": f"w{i % 1000} "}
            self._event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        usage = {"prompt_tokens": 10, "completion_tokens": paced.tokens, "total_tokens": 0}
        self._event({**base, "choices": [], "usage": usage})
        data = b"data: [DONE]\n\n"
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
        self.wfile.flush()


class Kernel:
    def __init__(self, client: BlockingKernelClient, manager: KernelManager) -> None:
        self.client = client
        self.manager = manager

    def run(
        self,
        code: str,
        *,
        allow_stdin: bool = True,
        timeout: float = 120,
        on_iopub: Callable[[dict[str, Any]], None] | None = None,
    ) -> str:
        """Run a cell, return its stdout; raise if it failed. ``on_iopub`` sees every IOPub
        message of the cell."""
        msg_id = self.client.execute(code, allow_stdin=allow_stdin)
        out: list[str] = []
        deadline = time.monotonic() + timeout
        reply = None
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                msg = None
            if msg and msg["parent_header"].get("msg_id") == msg_id:
                if on_iopub is not None:
                    on_iopub(msg)
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(code)
        reply = self.client.get_shell_msg(timeout=timeout)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=timeout)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("\n".join(reply["content"]["traceback"]))
        return "".join(out)

    def round_trip(self) -> float:
        """Seconds from an execute_request of ``pass`` to its execute_reply."""
        start = time.perf_counter()
        msg_id = self.client.execute("pass", store_history=False)
        while True:
            reply = self.client.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                return time.perf_counter() - start

    def drain_iopub(self) -> None:
        while True:
            try:
                self.client.get_iopub_msg(timeout=0.01)
            except queue.Empty:
                return


@contextmanager
def fresh_kernel() -> Iterator[Kernel]:
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "OPENAI_API_KEY": "sk-bench",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield Kernel(client, manager)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
