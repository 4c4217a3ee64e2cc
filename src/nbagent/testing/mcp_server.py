"""A small MCP server for tests, demos and benchmarks.

Run it over stdio (the default) or streamable HTTP on 127.0.0.1::

    python -m nbagent.testing.mcp_server
    python -m nbagent.testing.mcp_server --transport http --port 8765   # → http://127.0.0.1:8765/mcp

Its tools cover what a client has to survive: ``echo`` (fast, read-only hint), ``add``
(structured result), ``slow`` (sleeps; remembers being cancelled), ``cancellations`` (how
many calls were cancelled so far), ``fail`` (error result), ``image`` (a PNG),
``resource`` (an embedded resource), ``add_tool`` (changes the tool list and notifies),
``env`` (reads one environment variable), ``pid`` and ``hang`` (blocks the server's
event loop so that it answers nothing, not even a cancellation).

Faults at start: ``--exit-on-start`` writes to stderr and exits 3; ``--hang-on-start``
writes to stderr and never answers ``initialize``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import sys
import time
from typing import Any


def start_faults(argv: list[str]) -> None:
    """Act on ``--exit-on-start`` / ``--hang-on-start``, if given."""
    if "--exit-on-start" in argv:
        print("fatal: the test server was told to exit at start", file=sys.stderr, flush=True)
        sys.exit(3)
    if "--hang-on-start" in argv:
        print("the test server will never answer", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    # Before importing the MCP SDK, which takes a second or more on a busy machine: a
    # client's startup timeout then meets the fault it is testing, not a slow import.
    start_faults(sys.argv[1:])

from mcp.server.mcpserver import Context, MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError  # noqa: E402
from mcp.server.mcpserver.utilities.types import Image  # noqa: E402
from mcp_types import EmbeddedResource, TextResourceContents, ToolAnnotations  # noqa: E402

# A 1×1 transparent PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

_cancelled: list[str] = []


def build_server(name: str = "nbagent-test") -> MCPServer[Any]:
    """The test server with all its tools registered."""
    server: MCPServer[Any] = MCPServer(name, log_level="WARNING")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def slow(seconds: float, label: str = "slow") -> str:
        """Sleep for some seconds, then answer; remembers a cancellation."""
        try:
            await asyncio.sleep(seconds)
        except BaseException:
            _cancelled.append(label)
            raise
        return f"{label} done after {seconds:g} s"

    @server.tool()
    def cancellations() -> str:
        """The labels of the calls cancelled so far, comma-separated."""
        return ",".join(_cancelled) or "none"

    @server.tool()
    def fail(message: str = "it failed") -> str:
        """Always fail with the given message."""
        raise ToolError(message)

    @server.tool(structured_output=False)
    def image() -> list[Any]:
        """A tiny PNG image and a caption."""
        return ["a 1x1 pixel", Image(data=PNG, format="png")]

    @server.tool()
    def resource() -> EmbeddedResource:
        """An embedded text resource."""
        return EmbeddedResource(
            resource=TextResourceContents(
                uri="file:///notes.txt", mime_type="text/plain", text="the notes"
            )
        )

    @server.tool()
    async def add_tool(name: str, ctx: Context) -> str:
        """Add a tool called ``name`` that returns its own name, and announce the change."""

        def made() -> str:
            return name

        server.add_tool(made, name=name, description=f"A tool added at run time: {name}.")
        await ctx.notify_tools_changed()
        session = ctx.request_context.session
        send = getattr(session, "send_tool_list_changed", None)
        if send is not None:  # a 2025-era connection hears of changes by notification
            with contextlib.suppress(Exception):
                await send()
        return f"added {name}"

    @server.tool()
    def env(name: str) -> str:
        """The value of one environment variable, or '(unset)'."""
        return os.environ.get(name, "(unset)")

    @server.tool()
    def pid() -> int:
        """This server's process id."""
        return os.getpid()

    @server.tool()
    async def hang(seconds: float = 3600) -> str:
        """Block the whole server (no answers, no cancellation) for some seconds."""
        time.sleep(seconds)  # noqa: ASYNC251 - blocks the event loop, as a wedged server does
        return "woke up"

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nbagent.testing.mcp_server")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--name", default="nbagent-test")
    parser.add_argument("--exit-on-start", action="store_true")
    parser.add_argument("--hang-on-start", action="store_true")
    args = parser.parse_args(argv)
    start_faults(sys.argv[1:] if argv is None else argv)
    server = build_server(args.name)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
