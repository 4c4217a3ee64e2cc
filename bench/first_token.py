"""Time to the first visible token of a kernel's first live ``%%agent`` cell.

Run: ``python bench/first_token.py [--kernels 3] [--reading 3]``

In fresh kernels driven as JupyterLab drives them (``allow_stdin`` true, so the cell shows
the live view), a local SSE server answers; the bench process records when the server
wrote its first chunk and when the kernel sent the page its first text (the view's first
``delta`` message). Three cases, each in its own fresh kernels:

* first cell run 3 s after ``%load_ext nbagent`` (a person reading, then running a cell);
* first cell run right after ``%load_ext`` ("Run All");
* a later cell (litellm is loaded and warm).

Printed: the median seconds from the server's first byte to the first visible token, and
from the cell's start. Goal: the first case within 0.5 s of the server's first byte.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time
from typing import Any

from _kernel import Kernel, PacedServer, fresh_kernel


class FirstByteServer(PacedServer):
    """A paced server that notes when each response's first chunk went out."""

    def __init__(self, tokens: int, rate: float) -> None:
        super().__init__(tokens, rate)
        self.first_bytes: list[float] = []
        self._lock = threading.Lock()
        handler_class: Any = self.httpd.RequestHandlerClass
        original, stream = handler_class._event, handler_class._stream
        server = self

        def each_response(handler: Any) -> None:
            handler._sent_first = False  # one handler serves a kept-alive connection
            stream(handler)

        def event(handler: Any, payload: dict[str, Any]) -> None:
            if not getattr(handler, "_sent_first", False):
                handler._sent_first = True
                with server._lock:
                    server.first_bytes.append(time.perf_counter())
            original(handler, payload)

        handler_class._event, handler_class._stream = event, each_response


def first_delta(kernel: Kernel, code: str, timeout: float = 60) -> tuple[float, float]:
    """Run ``code`` as JupyterLab would; return (cell start, first delta message) times."""
    started = time.perf_counter()
    msg_id = kernel.client.execute(code, allow_stdin=True)
    seen: float | None = None
    deadline = started + timeout
    while time.perf_counter() < deadline:
        try:
            msg = kernel.client.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        content = msg["content"]
        if seen is None and msg["msg_type"] == "comm_msg" and _shows_text(content):
            seen = time.perf_counter()
        if msg["msg_type"] == "status" and content["execution_state"] == "idle":
            break
    if seen is None:
        raise RuntimeError("the cell showed no streamed text")
    return started, seen


def _shows_text(content: dict[str, Any]) -> bool:
    """A view message that puts answer text on the page: a delta, or a state sync whose
    blocks hold text."""
    data = content.get("data") or {}
    custom = data.get("content")
    if isinstance(custom, dict) and custom.get("type") == "delta" and custom.get("text"):
        return True
    blocks = (data.get("state") or {}).get("blocks") or ()
    return any(b.get("kind") == "text" and b.get("text") for b in blocks)


def one(case: str, reading: float) -> tuple[float, float]:
    server = FirstByteServer(tokens=400, rate=200)
    try:
        with fresh_kernel() as kernel:
            kernel.run("%load_ext nbagent", allow_stdin=True)
            if case == "reading":
                time.sleep(reading)
            cell = f"%%agent --api-base {server.url}\nhello"
            if case == "later":
                kernel.run(f"%%agent -s warm --api-base {server.url}\nwarm up", allow_stdin=True)
            started, seen = first_delta(kernel, cell)
            kernel.drain_iopub()
        return seen - server.first_bytes[-1], seen - started
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", type=int, default=3, help="fresh kernels per case")
    parser.add_argument(
        "--reading", type=float, default=3.0, help="seconds between %%load_ext and the cell"
    )
    args = parser.parse_args()
    cases = {
        "reading": f"first cell, {args.reading:g} s after %load_ext",
        "run-all": "first cell, right after %load_ext",
        "later": "a later cell",
    }
    for case, label in cases.items():
        after_byte, after_start = zip(
            *(one(case, args.reading) for _ in range(args.kernels)), strict=True
        )
        print(
            f"{label:36s} first token {statistics.median(after_byte):.2f} s after the "
            f"server's first byte, {statistics.median(after_start):.2f} s after the cell "
            f"started (median of {args.kernels})"
        )
    print("goal: the first line within 0.5 s of the server's first byte")


if __name__ == "__main__":
    main()
