"""Per-call overhead of an MCP tool call through nbagent, and first-use startup time.

Both paths talk to the same kind of stdio server (``python -m nbagent.testing.mcp_server``,
its ``echo`` tool), each with a server process of its own, in this one event loop:

* bare:    ``mcp.Client`` over ``stdio_client`` and ``await client.call_tool("echo", …)``;
* nbagent: ``McpTool.invoke`` (validation, deadline, the child task that separates a lost
           connection from a stopped run, and the rendering of the result to a
           ``ToolOutput``), through an ``McpManager`` whose supervisor task owns the session.

Calls alternate in batches so that drift on a noisy machine hits both paths alike. The
goal is nbagent ≤ 1.2 × bare + 1 ms per call. Startup is the wall time from an empty
manager to the tool list (spawn, handshake, ``tools/list``), the first run of the process
(including the ``mcp`` import) and later runs reported apart. It always exits 0.

Run it from the repository root::

    python bench/mcp_overhead.py                  # 2,000 calls per path, 3 startups
    python bench/mcp_overhead.py --calls 5000 --startups 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time

SERVER = [sys.executable, "-m", "nbagent.testing.mcp_server"]


async def startup_times(count: int) -> list[float]:
    from nbagent.tools.mcp import McpManager

    times = []
    for _ in range(count):
        with tempfile.TemporaryDirectory() as directory:
            manager = McpManager(directory, load=False)
            manager.add("bench", command=SERVER[0], args=SERVER[1:])
            started = time.perf_counter()
            await manager.tools_for("mcp:bench")
            times.append(time.perf_counter() - started)
            await manager.aclose()
    return times


async def per_call(calls: int, batch: int) -> tuple[list[float], list[float]]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from nbagent.tools.mcp import McpManager

    params = StdioServerParameters(command=SERVER[0], args=SERVER[1:])
    with tempfile.TemporaryDirectory() as directory, tempfile.TemporaryFile("w") as devnull:
        manager = McpManager(directory, load=False)
        manager.add("bench", command=SERVER[0], args=SERVER[1:])
        [echo] = await manager.tools_for("mcp:bench/echo")
        async with Client(stdio_client(params, errlog=devnull), cache=None) as client:
            arguments = {"text": "hello"}
            for _ in range(50):  # warm both: lazy imports, validators, first-call costs
                await client.call_tool("echo", arguments)
                await echo.invoke(echo.validate(arguments))
            bare: list[float] = []
            ours: list[float] = []
            for _ in range(calls // batch):
                started = time.perf_counter()
                for _ in range(batch):
                    await client.call_tool("echo", arguments)
                bare.append((time.perf_counter() - started) / batch)
                started = time.perf_counter()
                for _ in range(batch):
                    await echo.invoke(echo.validate(arguments))
                ours.append((time.perf_counter() - started) / batch)
        await manager.aclose()
    return bare, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--startups", type=int, default=3)
    args = parser.parse_args()

    starts = asyncio.run(startup_times(args.startups))
    bare, ours = asyncio.run(per_call(args.calls, args.batch))
    b, o = statistics.median(bare) * 1e3, statistics.median(ours) * 1e3
    goal = 1.2 * b + 1.0
    print(f"per call (median of {len(bare)} batches of {args.batch}):")
    print(f"  bare mcp client  {b:7.3f} ms")
    print(f"  through nbagent  {o:7.3f} ms   ratio {o / b:4.2f}, +{o - b:.3f} ms")
    print(f"  goal             {goal:7.3f} ms   {'met' if o <= goal else 'NOT met'}")
    print("first-use startup (spawn + handshake + tools/list):")
    print(f"  first in process {starts[0] * 1e3:7.0f} ms (includes importing mcp)")
    if len(starts) > 1:
        print(f"  later (median)   {statistics.median(starts[1:]) * 1e3:7.0f} ms")


if __name__ == "__main__":
    main()
