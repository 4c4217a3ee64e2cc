"""One MCP server per kernel: a supervisor task that opens, watches and closes its session.

The MCP client's context managers hold anyio cancel scopes, which must be entered and
left by the same task ("exit cancel scope in a different task" otherwise). So each server
gets one long-lived supervisor task that enters the client, fetches the tool list, keeps
it fresh on ``list_changed``, watches the process, and leaves the client when told to stop
or when the server dies. Tool calls run from the caller's task (the session's run) in a
child task of their own, so that a transport failure which cancels the request can be told
apart from the user stopping the run.

Lifecycle::

    stopped ──use──▶ starting ──handshake ok──▶ ready ──stop──▶ stopped
                        │                        │
                        └──fails──▶ failed ◀─────┘ crash, hang, lost connection
                                      └──next use──▶ starting   (never retries a call)

    any state ──manager.aclose()──▶ closed   (terminal)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import sys
import tempfile
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ...errors import McpServerError
from ._config import McpServerConfig, expand

if TYPE_CHECKING:
    import mcp_types
    from mcp import Client

log = logging.getLogger("nbagent.mcp")

SAFE_ENV = (
    ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
    + ("TMPDIR", "TEMP", "TMP")
    + (
        (
            "SYSTEMROOT",
            "SYSTEMDRIVE",
            "APPDATA",
            "LOCALAPPDATA",
            "USERPROFILE",
            "PATHEXT",
            "COMSPEC",
            "HOMEDRIVE",
            "HOMEPATH",
            "USERNAME",
        )
        if sys.platform == "win32"
        else ()
    )
)
"""The kernel variables every stdio server gets; anything else must be named in ``env``."""

STOP_TIMEOUT = 8.0
"""Seconds a graceful stop may take (the SDK closes stdin, then TERM, then KILL)."""

_STDERR_TAIL = 2000


class ServerState(str, enum.Enum):
    """Where a server is in its lifecycle (see the module docstring)."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """One row of ``%agent mcp``."""

    name: str
    state: ServerState
    reason: str | None
    """Why the server is failed or stopped, when there is a reason to tell."""
    tools: int | None
    """Tools offered to the agent (after allow/block lists); None until it first started."""
    last_error: str | None
    """The last error a call or the server produced."""
    transport: str
    target: str
    """Command line or URL."""
    source: str
    """The config file, or ``cell``."""
    pid: int | None
    calls: int
    """Tool calls made since the kernel started."""


# -- which process did stdio_client spawn? ----------------------------------------------
# The SDK does not hand out the child process, and we need it to notice a server that dies
# while idle, to kill a hung one at once, and to kill every child at interpreter exit. Its
# spawn function is wrapped (a pure pass-through for anyone else) and reports to the
# supervisor task that set the context variable.

_SPAWNED: ContextVar[list[Any] | None] = ContextVar("nbagent_mcp_spawned", default=None)


def _install_spawn_hook() -> None:
    from mcp.client import stdio

    original = getattr(stdio, "_create_platform_compatible_process", None)
    if original is None or getattr(original, "_nbagent_hook", False):
        return

    async def spawn(*args: Any, **kwargs: Any) -> Any:
        process = await original(*args, **kwargs)
        sink = _SPAWNED.get()
        if sink is not None:
            sink.append(process)
        return process

    spawn._nbagent_hook = True  # type: ignore[attr-defined]
    stdio._create_platform_compatible_process = spawn


class McpServer:
    """The kernel's connection to one configured MCP server."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self.state = ServerState.STOPPED
        self.reason: str | None = None
        self.last_error: str | None = None
        self.calls = 0
        self.pid: int | None = None
        self.remote_tools: list[mcp_types.Tool] | None = None
        """The server's tool list (all of it, before allow/block lists), refreshed on change."""
        self.tools_version = 0
        """Grows each time the tool list is fetched."""
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop: asyncio.Event | None = None
        self._refresh: asyncio.Event | None = None
        self._check: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._process: Any = None
        self._errlog: IO[str] | None = None
        self._stopping = False
        self._generation = 0

    # -- public ---------------------------------------------------------------------------

    def status(self, offered_tools: int | None) -> ServerStatus:
        return ServerStatus(
            name=self.config.name,
            state=self.state,
            reason=self.reason,
            tools=offered_tools,
            last_error=self.last_error,
            transport=self.config.transport,
            target=self.config.target,
            source=self.config.source,
            pid=self.pid if self.state in (ServerState.STARTING, ServerState.READY) else None,
            calls=self.calls,
        )

    async def ensure_ready(self) -> None:
        """Start the server if it is not running (or failed) and wait for its handshake."""
        if self.state is ServerState.READY and self._client is not None:
            return
        if self.state is ServerState.CLOSED:
            raise McpServerError(
                f"the MCP server {self.config.name!r} belongs to a closed manager; "
                "create a new McpManager"
            )
        if self.config.disabled:
            raise McpServerError(
                f"the MCP server {self.config.name!r} is disabled in {self.config.source}; "
                'remove "disabled": true to use it'
            )
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.state is ServerState.READY and self._client is not None:
                return
            await self._finish(STOP_TIMEOUT)
            ready = self._start()
            # The supervisor bounds the handshake; this is a backstop for a wedged spawn.
            try:
                await asyncio.wait_for(asyncio.shield(ready), self.config.startup_timeout + 10)
            except asyncio.TimeoutError:
                self._kill()
                self._fail(f"did not start within {self.config.startup_timeout:g} s")
                await self._finish(STOP_TIMEOUT)
                raise McpServerError(self._startup_message()) from None

    async def call(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Call ``tool`` with a deadline; stopping the caller cancels the call on the server.

        Never retried: a call that did not finish is reported, and a crashed server is
        restarted by the next call.
        """
        await self.ensure_ready()
        client, generation = self._client, self._generation
        assert client is not None
        self.calls += 1
        inner = asyncio.get_running_loop().create_task(
            client.call_tool(tool, arguments, read_timeout_seconds=self.config.timeout)
        )
        try:
            await asyncio.wait({inner})
        except asyncio.CancelledError:
            # The run was stopped: cancelling the request makes the SDK send
            # notifications/cancelled; give it a moment to go out, then stop waiting.
            inner.cancel()
            await asyncio.wait({inner}, timeout=2.0)
            raise
        if inner.cancelled():
            # Nobody cancelled our task: the transport tore the request down (HTTP server gone).
            raise self._lost(generation, tool, "the connection was lost")
        exc = inner.exception()
        if exc is None:
            return inner.result()
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        if isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT:
            self.last_error = f"{tool}: no answer within {self.config.timeout:g} s"
            if self._check is not None and generation == self._generation:
                self._check.set()
            raise McpServerError(
                f"the tool {tool!r} of MCP server {self.config.name!r} did not answer within "
                f"{self.config.timeout:g} s, so the call was cancelled (a slow tool needs a "
                f'larger "timeout" for this server in mcp.json)'
            ) from None
        if (isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED) or _is_transport_error(
            exc
        ):
            raise self._lost(generation, tool, _describe(exc)) from None
        if isinstance(exc, MCPError):
            self.last_error = f"{tool}: {exc.message}"
            raise McpServerError(
                f"the MCP server {self.config.name!r} refused the call to {tool!r}: {exc.message}"
            ) from None
        self.last_error = f"{tool}: {_describe(exc)}"
        raise McpServerError(
            f"the call to {tool!r} on MCP server {self.config.name!r} failed: {_describe(exc)}"
        ) from exc

    async def stop(self, reason: str | None = None, *, final: bool = False) -> None:
        """Stop the server (gracefully, bounded in time); the next use starts it again."""
        self._stopping = True
        if self._stop is not None:
            self._stop.set()
        await self._finish(STOP_TIMEOUT)
        self._stopping = False
        if final:
            self.state = ServerState.CLOSED
        elif self.state is not ServerState.FAILED or reason is not None:
            self.state = ServerState.STOPPED
        if reason is not None:
            self.reason = reason

    def kill_now(self) -> None:
        """Kill the server's process tree at once (interpreter exit; no loop needed)."""
        self._kill()

    # -- supervisor -----------------------------------------------------------------------

    def _start(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        self._generation += 1
        self._ready = ready = loop.create_future()
        ready.add_done_callback(_retrieve)
        self._stop, self._refresh, self._check = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.state, self.reason, self.pid = ServerState.STARTING, None, None
        self._stopping = False
        self._task = loop.create_task(
            self._supervise(ready, self._stop, self._refresh, self._check),
            name=f"nbagent-mcp-{self.config.name}",
        )
        return ready

    async def _supervise(
        self,
        ready: asyncio.Future[None],
        stop: asyncio.Event,
        refresh: asyncio.Event,
        check: asyncio.Event,
    ) -> None:
        import anyio
        from mcp import Client
        from mcp_types import Implementation, ToolListChangedNotification

        from ..._version import __version__

        async def on_message(message: Any) -> None:
            if isinstance(message, ToolListChangedNotification):
                refresh.set()

        spawned: list[Any] = []
        token = _SPAWNED.set(spawned)
        timer: asyncio.TimerHandle | None = None
        try:
            transport = self._transport()
            # A server that hangs in its handshake is killed at the deadline, so its
            # teardown is immediate instead of waiting out the SDK's grace periods.
            timer = asyncio.get_running_loop().call_later(
                self.config.startup_timeout, self._startup_deadline, ready, spawned
            )
            async with Client(
                transport,
                message_handler=on_message,
                read_timeout_seconds=self.config.startup_timeout,
                client_info=Implementation(name="nbagent", version=__version__),
                cache=None,
            ) as client:
                self._process = spawned[0] if spawned else None
                self.pid = getattr(self._process, "pid", None)
                await self._fetch_tools(client)
                timer.cancel()
                self._client = client
                self.state = ServerState.READY
                ready.set_result(None)
                async with anyio.create_task_group() as tg:
                    if self._process is not None:
                        tg.start_soon(self._watch_process, self._process, stop)
                    tg.start_soon(self._listen, client, refresh)
                    tg.start_soon(self._refresher, client, refresh)
                    tg.start_soon(self._checker, client, check, stop)
                    await stop.wait()
                    self._client = None
                    tg.cancel_scope.cancel()
        except BaseException as exc:  # every ending is a state, not a crash
            self._client = None
            task = asyncio.current_task()
            cancelling = getattr(task, "cancelling", lambda: 0)  # Python 3.11+
            cancelled = isinstance(exc, asyncio.CancelledError) and bool(cancelling())
            if not self._stopping and self.state is not ServerState.FAILED:
                self._fail(_describe(exc))
            if not ready.done():
                ready.set_exception(McpServerError(self._startup_message()))
            if cancelled:
                raise
        finally:
            if timer is not None:
                timer.cancel()
            _SPAWNED.reset(token)
            self._client = None
            self._process = None
            if self._errlog is not None:
                self._errlog.close()
                self._errlog = None
            if not ready.done():  # left without an error: stopped during the handshake
                ready.set_exception(McpServerError(f"{self.config.name!r} was stopped"))
            if self.state in (ServerState.STARTING, ServerState.READY):
                self.state = ServerState.STOPPED if self._stopping else ServerState.FAILED
                if self.state is ServerState.FAILED and self.reason is None:
                    self.reason = "the connection ended"

    def _transport(self) -> Any:
        config = self.config
        if config.command is not None:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            _install_spawn_hook()
            env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
            env.update({k: expand(v, f"env.{k}", config) for k, v in config.env.items()})
            args = [expand(a, f"args[{i}]", config) for i, a in enumerate(config.args)]
            self._errlog = tempfile.TemporaryFile(  # noqa: SIM115 - closed by the supervisor
                mode="w+", encoding="utf-8", errors="replace", prefix=f"mcp-{config.name}-"
            )
            params = StdioServerParameters(
                command=os.path.expanduser(config.command), args=args, env=env, cwd=config.cwd
            )
            # stdio_client merges env over the SDK's own defaults; ours is a superset.
            return stdio_client(params, errlog=self._errlog)
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        assert config.url is not None
        headers = {k: expand(v, f"headers.{k}", config) for k, v in config.headers.items()}
        return _http_transport(
            streamable_http_client,
            create_mcp_http_client,
            expand(config.url, "url", config),
            headers,
        )

    async def _fetch_tools(self, client: Client) -> None:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        self.remote_tools = tools
        self.tools_version += 1

    async def _watch_process(self, process: Any, stop: asyncio.Event) -> None:
        code = await process.wait()
        if not self._stopping and not stop.is_set():
            self._fail(f"the server process exited with code {code}")
            stop.set()

    async def _listen(self, client: Client, refresh: asyncio.Event) -> None:
        caps = client.server_capabilities
        if caps.tools is None or not caps.tools.list_changed:
            return
        try:
            async with client.listen(tools_list_changed=True) as events:
                async for _ in events:
                    refresh.set()
        except Exception as exc:  # older protocol: changes arrive as notifications instead
            log.debug("MCP server %s: no listen stream (%s)", self.config.name, exc)

    async def _refresher(self, client: Client, refresh: asyncio.Event) -> None:
        import anyio

        while True:
            await refresh.wait()
            refresh.clear()
            try:
                with anyio.fail_after(self.config.startup_timeout):
                    await self._fetch_tools(client)
            except Exception as exc:
                self.last_error = f"refreshing the tool list: {_describe(exc)}"

    async def _checker(self, client: Client, check: asyncio.Event, stop: asyncio.Event) -> None:
        """After a call timed out, make sure the server still answers; kill it if not."""
        import anyio

        while True:
            await check.wait()
            check.clear()
            limit = max(1.0, min(10.0, self.config.timeout))
            try:  # ping is gone from the 2026 protocol; listing tools is as cheap
                with anyio.fail_after(limit):
                    await self._fetch_tools(client)
            except Exception:
                self._fail(
                    f"stopped answering (no reply within {limit:g} s after a call timed "
                    "out); it was killed and restarts on next use"
                )
                self._kill()
                stop.set()
                return

    # -- faults ---------------------------------------------------------------------------

    def _startup_deadline(self, ready: asyncio.Future[None], spawned: list[Any]) -> None:
        if not ready.done():
            if spawned and self._process is None:
                self._process = spawned[0]
            self._fail(f"did not answer the MCP handshake within {self.config.startup_timeout:g} s")
            self._kill()

    def _fail(self, reason: str) -> None:
        if self.state is ServerState.CLOSED:
            return
        self.state = ServerState.FAILED
        self.reason = reason
        self.last_error = reason

    def _lost(self, generation: int, tool: str, why: str) -> McpServerError:
        if generation == self._generation:
            self._client = None
            if self.state is ServerState.READY:
                self._fail(f"the connection broke during a call to {tool!r} ({why})")
            if self._stop is not None:
                self._stop.set()
        tail = self._stderr_tail()
        message = (
            f"the MCP server {self.config.name!r} went away during the call to {tool!r} "
            f"({why}): it crashed, was killed or closed the connection. The call did not "
            "finish and was not retried; the server restarts on next use."
        )
        if tail:
            message += f"\nLast lines of its stderr:\n{tail}"
        self.last_error = f"{tool}: the server went away ({why})"
        return McpServerError(message)

    def _startup_message(self) -> str:
        config = self.config
        message = f"the MCP server {config.name!r} ({config.target}) could not start: "
        message += self.reason or "unknown reason"
        tail = self._stderr_tail()
        if tail:
            message += f"\nLast lines of its stderr:\n{tail}"
        elif config.transport == "stdio":
            message += "\n(it wrote nothing to stderr)"
        return message

    def _stderr_tail(self) -> str:
        errlog = self._errlog
        if errlog is None or errlog.closed:
            return self._last_tail
        try:
            fd = errlog.fileno()
            size = os.fstat(fd).st_size
            start = max(0, size - _STDERR_TAIL)
            data = os.pread(fd, size - start, start).decode("utf-8", "replace")
        except OSError:
            return self._last_tail
        lines = data.splitlines()[-15:]
        if start > 0 and len(lines) > 1:
            lines = lines[1:]  # the first line is cut
        self._last_tail = "\n".join(line.rstrip() for line in lines).strip()
        return self._last_tail

    _last_tail = ""

    def _kill(self) -> None:
        process = self._process
        if process is None or getattr(process, "returncode", 0) is not None:
            return
        self._stderr_tail()  # keep it: the file goes away with the supervisor
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            if sys.platform == "win32":
                process.kill()
            else:  # the SDK starts each server in its own session: kill its whole tree
                os.killpg(process.pid, signal.SIGKILL)

    async def _finish(self, timeout: float) -> None:
        """Wait for the supervisor task to end; kill and cancel it past ``timeout``."""
        task = self._task
        if task is None:
            return
        if not task.done():
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                self._kill()
                task.cancel()
                await asyncio.wait({task}, timeout=2.0)
        self._task = None


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # a failed start nobody waited for is not worth a warning


@contextlib.asynccontextmanager
async def _http_transport(
    streamable_http_client: Any, create_client: Any, url: str, headers: dict[str, str]
) -> Any:
    http = create_client(headers=headers or None)
    async with http, streamable_http_client(url, http_client=http) as streams:
        yield streams


def _is_transport_error(exc: BaseException) -> bool:
    import anyio

    return isinstance(
        exc,
        (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, ConnectionError),
    )


def _describe(exc: BaseException) -> str:
    """A one-line account of an exception, looking inside exception groups."""
    while getattr(exc, "exceptions", None):  # an exception group: its first leaf
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, asyncio.CancelledError):
        return "the connection was cancelled"
    from mcp.shared.exceptions import MCPError

    if isinstance(exc, MCPError):
        return f"{exc.message} (MCP error {exc.code})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
