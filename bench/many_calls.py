"""One response with many tool calls, in the live view and headless.

Run: ``python bench/many_calls.py [--calls 1000]``

A fresh kernel; the scripted server answers with ``--calls`` calls of a small tool in one
response, then a short answer; ``--approve all`` runs them without clicks. The same cell
runs as JupyterLab runs it (``allow_stdin=True``: the live view, whose card changes go to
the page as patches of the changed cards) and as nbclient runs it (no view). Reported:
wall time of each, and the bytes of widget messages (comm_msg) the page received. Goal:
the live view within 2x of headless, a few MB over the comm.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _kernel import fresh_kernel
from nbagent.testing import ScriptedServer, call, say, use_tools

TOOL = '''
def echo(n: int) -> int:
    """Return n."""
    return n
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    calls = [call("echo", {"n": i}) for i in range(args.calls)]
    with fresh_kernel() as kernel:
        kernel.run("%load_ext nbagent")
        kernel.run(TOOL)
        kernel.run("%config NBAgent.titles = False")
        kernel.run(f"%config NBAgent.max_calls_per_response = {args.calls}")
        with ScriptedServer([say("warm")]) as server:  # litellm's first request is slow
            kernel.run(f"%%agent -s warm --api-base {server.url}\nhi", allow_stdin=False)
        results: dict[str, dict[str, float]] = {}
        for label, live in (("headless", False), ("live view", True)):
            comm_bytes = 0

            def count(msg: dict[str, Any]) -> None:
                nonlocal comm_bytes
                if msg["msg_type"] in ("comm_msg", "comm_open"):
                    comm_bytes += len(json.dumps(msg["content"]))

            with ScriptedServer([use_tools(*calls), say("done")]) as server:
                cell = (
                    f"%%agent -s {label.replace(' ', '-')} --api-base {server.url} "
                    f"--tools echo --approve all\nCall echo."
                )
                start = time.perf_counter()
                kernel.run(cell, allow_stdin=live, timeout=900, on_iopub=count)
                elapsed = time.perf_counter() - start
            results[label] = {"seconds": round(elapsed, 2), "comm_mb": round(comm_bytes / 1e6, 2)}
            print(f"{label:>9}: {elapsed:6.2f} s, {comm_bytes / 1e6:7.2f} MB of widget messages")
        ratio = results["live view"]["seconds"] / results["headless"]["seconds"]
        print(f"live view / headless: {ratio:.2f}x")
        print(json.dumps({"calls": args.calls, **results, "ratio": round(ratio, 2)}))


if __name__ == "__main__":
    main()
