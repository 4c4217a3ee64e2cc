"""The kernel's MCP servers: definitions, lazy start, tools by ``mcp:NAME[/TOOL]``, status."""

from __future__ import annotations

import asyncio
import atexit
import fnmatch
import os
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ...errors import McpConfigError, McpError
from .._function import Tool, ToolPolicy
from ._config import (
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_TIMEOUT,
    McpServerConfig,
    load_config_files,
    server_config,
)
from ._server import McpServer, ServerState, ServerStatus
from ._tool import McpTool, offered

PREFIX = "mcp:"


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``mcp:NAME`` → (NAME, None); ``mcp:NAME/TOOL`` → (NAME, TOOL); TOOL may be a glob."""
    if not spec.startswith(PREFIX) or len(spec) == len(PREFIX):
        raise McpError(f"{spec!r} is not an MCP tool selector: write mcp:SERVER or mcp:SERVER/TOOL")
    name, _, tool = spec[len(PREFIX) :].partition("/")
    return name, (tool or None)


class McpManager:
    """Every MCP server of one kernel, started on first use and reused by all sessions.

    ::

        manager = McpManager(directory=".")              # reads ./mcp.json and ./.mcp.json
        manager.add("time", command="mcp-server-time")   # or define one in code
        tools = await manager.resolve(["mcp:time"])      # starts it, returns name → Tool
        session = Session(model, tools=tools.values())
        ...
        await manager.aclose()                            # stops every server; no orphans
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *, load: bool = True):
        self.directory = Path(directory) if directory is not None else Path.cwd()
        self._servers: dict[str, McpServer] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._closed = False
        self._file_names: set[str] = set()
        _live.add(self)
        if load:
            self.reload()

    # -- definitions ----------------------------------------------------------------------

    def reload(self) -> list[str]:
        """Read the config files again; returns the names they define.

        Servers whose connection settings changed are stopped and start anew on next use;
        servers defined from a cell are kept.
        """
        self._check_open("reload")
        found = load_config_files(self.directory)
        for name in self._file_names - set(found):
            self._forget(name)
        for config in found.values():
            self._define(config)
        self._file_names = set(found)
        return sorted(found)

    def add(
        self,
        name: str,
        *,
        command: str | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        url: str | None = None,
        headers: dict[str, str] | None = None,
        allow_tools: Sequence[str] | None = None,
        block_tools: Sequence[str] = (),
        read_only: bool | Sequence[str] = False,
        approval: ToolPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        max_result_chars: int | None = None,
    ) -> McpServerConfig:
        """Define (or redefine) a server from code or a cell, checked like a config entry."""
        self._check_open("add a server")
        entry: dict[str, Any] = {"timeout": timeout, "startupTimeout": startup_timeout}
        if command is not None:
            entry.update(command=command, args=list(args), env=dict(env or {}))
            if cwd is not None:
                entry["cwd"] = cwd
        if url is not None:
            entry.update(url=url, headers=dict(headers or {}))
        if allow_tools is not None:
            entry["allowTools"] = list(allow_tools)
        if block_tools:
            entry["blockTools"] = list(block_tools)
        entry["readOnly"] = read_only if isinstance(read_only, bool) else list(read_only)
        if approval is not None:
            entry["approval"] = approval
        if max_result_chars is not None:
            entry["maxResultChars"] = max_result_chars
        config = server_config(name, entry, base=self.directory)
        self._file_names.discard(name)
        self._define(config)
        return config

    def remove(self, name: str) -> None:
        """Forget a server; a running one is stopped (in the background, owned here)."""
        self._server(name)
        self._file_names.discard(name)
        self._forget(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._servers)

    def config(self, name: str) -> McpServerConfig:
        return self._server(name).config

    # -- use ------------------------------------------------------------------------------

    async def tools_for(self, spec: str) -> list[McpTool]:
        """The tools ``mcp:NAME`` (all offered) or ``mcp:NAME/TOOL`` (one, or a glob) selects.

        Starts the server if needed. Tools outside the server's allow list, or on its block
        list, are never returned.
        """
        name, pattern = parse_spec(spec)
        server = self._server(name)
        await server.ensure_ready()
        remote = server.remote_tools or []
        visible = [t for t in remote if offered(server.config, t.name)]
        if pattern is not None:
            chosen = [t for t in visible if fnmatch.fnmatchcase(t.name, pattern)]
            if not chosen:
                hidden = [t.name for t in remote if fnmatch.fnmatchcase(t.name, pattern)]
                why = (
                    f"{', '.join(hidden)} is not offered (allowTools/blockTools of {name!r})"
                    if hidden
                    else f"its tools are: {', '.join(t.name for t in visible) or 'none'}"
                )
                raise McpError(f"the MCP server {name!r} has no tool matching {pattern!r}; {why}")
            visible = chosen
        return [McpTool(server, t) for t in visible]

    async def resolve(self, specs: Iterable[str]) -> dict[str, Tool]:
        """Tools for several selectors at once (servers start concurrently), by tool name."""
        specs = list(specs)
        lists = await asyncio.gather(*(self.tools_for(s) for s in specs))
        return {t.name: t for found in lists for t in found}

    async def start(self, name: str) -> ServerStatus:
        """Start a server now (instead of on first use) and return its status."""
        server = self._server(name)
        await server.ensure_ready()
        return self._status(server)

    async def stop(self, name: str) -> None:
        """Stop a server; the next use starts it again."""
        await self._server(name).stop("stopped by the user")

    async def restart(self, name: str) -> ServerStatus:
        """Stop a server and start it again (e.g. after editing mcp.json or its code)."""
        server = self._server(name)
        await server.stop()
        await server.ensure_ready()
        return self._status(server)

    def status(self) -> list[ServerStatus]:
        """One row per server: state (starting, ready, failed + reason), tools, last error."""
        return [self._status(self._servers[n]) for n in sorted(self._servers)]

    async def aclose(self) -> None:
        """Stop every server (concurrently, each bounded in time). Idempotent."""
        if self._closed and not self._retiring:
            return
        self._closed = True
        servers = list(self._servers.values())
        await asyncio.gather(*(s.stop(final=True) for s in servers), return_exceptions=True)
        if self._retiring:
            await asyncio.wait(set(self._retiring))
        _live.discard(self)

    def close_now(self) -> None:
        """Kill every server process at once, without the event loop (interpreter exit)."""
        self._closed = True
        for server in self._servers.values():
            server.kill_now()

    def __repr__(self) -> str:
        states = ", ".join(f"{s.config.name}={s.state.value}" for s in self._servers.values())
        return f"<McpManager {self.directory} [{states}]>"

    # -- internals ------------------------------------------------------------------------

    def _status(self, server: McpServer) -> ServerStatus:
        count = None
        if server.remote_tools is not None:
            count = sum(1 for t in server.remote_tools if offered(server.config, t.name))
        return server.status(count)

    def _server(self, name: str) -> McpServer:
        self._check_open("use a server")
        try:
            return self._servers[name]
        except KeyError:
            known = ", ".join(sorted(self._servers)) or "none"
            raise McpConfigError(
                f"no MCP server named {name!r} (defined: {known}); add it to mcp.json beside "
                f"the notebook ({self.directory}) or with %agent mcp add {name} -- COMMAND"
            ) from None

    def _define(self, config: McpServerConfig) -> None:
        current = self._servers.get(config.name)
        if current is not None and current.config.same_connection(config):
            current.config = config  # policies only: keep the running server
            return
        if current is not None:
            self._retire(current)
        self._servers[config.name] = McpServer(config)

    def _forget(self, name: str) -> None:
        server = self._servers.pop(name, None)
        if server is not None:
            self._retire(server)

    def _retire(self, server: McpServer) -> None:
        if server.state in (ServerState.STOPPED, ServerState.CLOSED) and server._task is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            server.kill_now()
            return
        task = loop.create_task(server.stop("removed", final=True))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _check_open(self, action: str) -> None:
        if self._closed:
            raise McpError(f"cannot {action}: this McpManager was closed; create a new one")


_live: weakref.WeakSet[McpManager] = weakref.WeakSet()


@atexit.register
def _kill_children() -> None:
    """At interpreter exit no loop runs to stop servers gracefully: kill what is left."""
    for manager in list(_live):
        manager.close_now()
