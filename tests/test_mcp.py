"""MCP servers as tools: real subprocess servers over stdio, real streamable HTTP on
127.0.0.1, a real published server from PyPI, and the faults a kernel has to survive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib.util import find_spec

import pytest

import nbagent
from conftest import collect, finished, of_type
from nbagent import Session, ToolFinished, ToolStarted
from nbagent.errors import McpError, McpServerError
from nbagent.testing import ScriptedModel, ScriptedServer, call, say, use_tools
from nbagent.tools import ToolOutput
from nbagent.tools.mcp import McpManager, McpTool, ServerState
from nbagent.tools.mcp._tool import decode_image

# Run by path, not with -m: the server then starts without importing nbagent (~0.4 s).
TEST_SERVER = [sys.executable, str(find_spec("nbagent.testing.mcp_server").origin)]  # type: ignore[union-attr]


@pytest.fixture
async def manager(tmp_path: object) -> AsyncIterator[McpManager]:
    made = McpManager(directory=str(tmp_path), load=False)
    try:
        yield made
    finally:
        await made.aclose()


def add_test_server(manager: McpManager, name: str = "t", *args: str, **options: object) -> None:
    manager.add(name, command=TEST_SERVER[0], args=[*TEST_SERVER[1:], *args], **options)  # type: ignore[arg-type]


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition another task or process brings about (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(0.01)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def deny(session: Session, request: nbagent.ApprovalRequested) -> None:
    session.deny(request.tool_call_id)


async def tools(manager: McpManager, spec: str = "mcp:t") -> dict[str, McpTool]:
    return {t.name: t for t in await manager.tools_for(spec)}


async def result(tool: McpTool, **arguments: object) -> ToolOutput:
    return await tool.invoke(tool.validate(dict(arguments)))


# -- stdio: tools and results ----------------------------------------------------------


async def test_stdio_server_tools_are_namespaced_and_return_text_images_and_data(
    manager: McpManager,
) -> None:
    add_test_server(manager)
    found = await tools(manager)
    assert {"mcp__t__echo", "mcp__t__add", "mcp__t__image", "mcp__t__slow"} <= set(found)
    echo = found["mcp__t__echo"]
    assert echo.source == "mcp:t" and echo.remote_name == "echo"
    assert echo.parameters["required"] == ["text"]
    assert nbagent.tools.tool_spec(echo)["function"]["name"] == "mcp__t__echo"

    assert (await result(echo, text="hi")) == ToolOutput("hi")
    assert (await result(found["mcp__t__add"], a=2, b=3)).text == "5"
    failed = await result(found["mcp__t__fail"], message="disk on fire")
    assert failed.is_error and "disk on fire" in failed.text
    image = await result(found["mcp__t__image"])
    assert "a 1x1 pixel" in image.text and "[image image/png, 70 bytes" in image.text
    assert decode_image(image.display[0]).startswith(b"\x89PNG")
    resource = await result(found["mcp__t__resource"])
    assert resource.text == "[resource file:///notes.txt (text/plain)]\nthe notes"

    with pytest.raises(nbagent.tools.ToolArgumentsError, match="missing required argument 'text'"):
        echo.validate({})
    [status] = manager.status()
    assert (status.state, status.tools, status.transport) == (ServerState.READY, 11, "stdio")
    assert status.pid is not None and alive(status.pid)


async def test_images_reach_the_notebook_view_and_text_reaches_the_model(
    manager: McpManager,
) -> None:
    add_test_server(manager)
    found = await tools(manager, "mcp:t/image")
    model = ScriptedModel([use_tools(call("mcp__t__image")), say("a pixel")])
    async with Session(model, tools=found.values(), approval="all") as session:
        events = await collect(session, "draw")
    [done] = of_type(events, ToolFinished)
    assert done.result.startswith("a 1x1 pixel\n[image image/png")
    assert [sorted(bundle) for bundle in done.display] == [["image/png", "text/plain"]]
    assert "iVBOR" not in done.result  # no base64 in the model's context


async def test_server_hints_are_shown_but_only_the_users_config_makes_a_tool_read_only(
    manager: McpManager,
) -> None:
    add_test_server(manager)
    echo = (await tools(manager, "mcp:t/echo"))["mcp__t__echo"]
    assert echo.annotations == {"read_only_hint": True}
    assert "hints: read-only" in echo.description
    assert echo.read_only is False and echo.policy is None

    model = ScriptedModel([use_tools(call("mcp__t__echo", {"text": "x"})), say("ok")])
    async with Session(model, tools=[echo]) as session:  # the default policy, `ask`
        events = await asyncio.wait_for(collect(session, "go", on_approval=deny), 10)
        # readOnlyHint alone does not skip the question
        assert of_type(events, nbagent.ApprovalRequested)

    add_test_server(manager, read_only=["echo"])
    trusted = (await tools(manager, "mcp:t/echo"))["mcp__t__echo"]
    assert trusted.read_only is True
    model = ScriptedModel([use_tools(call("mcp__t__echo", {"text": "x"})), say("ok")])
    async with Session(model, tools=[trusted], approval="readonly") as session:
        events = await asyncio.wait_for(collect(session, "go", on_approval=deny), 10)
        assert not of_type(events, nbagent.ApprovalRequested)
        assert [f.result for f in of_type(events, ToolFinished)] == ["x"]


async def test_allow_and_block_lists_and_per_server_approval(manager: McpManager) -> None:
    add_test_server(manager, allow_tools=["e*", "a*"], block_tools=["add_tool"], approval="allow")
    found = await tools(manager)
    assert sorted(found) == ["mcp__t__add", "mcp__t__echo", "mcp__t__env"]
    assert all(t.policy == "allow" for t in found.values())
    with pytest.raises(McpError, match="add_tool is not offered"):
        await manager.tools_for("mcp:t/add_tool")
    with pytest.raises(McpError, match="no tool matching 'nope'; its tools are: echo, add, env"):
        await manager.tools_for("mcp:t/nope")
    assert manager.status()[0].tools == 3
    # A policy change keeps the running server.
    pid = manager.status()[0].pid
    add_test_server(manager, approval="deny")
    assert manager.status()[0].pid == pid
    assert all(t.policy == "deny" for t in (await tools(manager)).values())


async def test_servers_get_only_configured_variables(manager: McpManager, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NBAGENT_TEST_SECRET", "s3cret")
    monkeypatch.setenv("NBAGENT_TEST_PASSED", "by-name")
    add_test_server(manager, env={"GIVEN": "yes", "NAMED": "${NBAGENT_TEST_PASSED}"})
    env = (await tools(manager))["mcp__t__env"]
    assert (await result(env, name="NBAGENT_TEST_SECRET")).text == "(unset)"
    assert (await result(env, name="GIVEN")).text == "yes"
    assert (await result(env, name="NAMED")).text == "by-name"
    assert (await result(env, name="PATH")).text == os.environ["PATH"]


async def test_the_tool_list_follows_list_changed(manager: McpManager) -> None:
    add_test_server(manager)
    found = await tools(manager)
    server = found["mcp__t__echo"].server
    version = server.tools_version
    assert "mcp__t__fresh" not in found
    assert (await result(found["mcp__t__add_tool"], name="fresh")).text == "added fresh"
    await wait_until(lambda: server.tools_version > version)
    fresh = (await tools(manager, "mcp:t/fresh"))["mcp__t__fresh"]
    assert (await result(fresh)).text == "fresh"
    assert manager.status()[0].tools == 12


# -- faults ------------------------------------------------------------------------------


async def test_killed_mid_call_gives_a_clear_error_within_a_second_then_restarts(
    manager: McpManager,
) -> None:
    add_test_server(manager)
    found = await tools(manager)
    pid = manager.status()[0].pid
    assert pid is not None
    call_task = asyncio.ensure_future(result(found["mcp__t__slow"], seconds=30))
    await wait_until(lambda: manager.status()[0].calls == 1)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(McpServerError) as info:
        await asyncio.wait_for(call_task, 1.0)
    assert "went away during the call to 'slow'" in str(info.value)
    assert "was not retried" in str(info.value)
    await wait_until(lambda: manager.status()[0].state is ServerState.FAILED)
    assert manager.status()[0].reason

    # The next use restarts it; nothing re-ran the unfinished call.
    assert (await result(found["mcp__t__echo"], text="back")).text == "back"
    status = manager.status()[0]
    assert status.state is ServerState.READY and status.pid != pid
    assert (await result(found["mcp__t__cancellations"])).text == "none"


async def test_a_server_that_dies_while_idle_is_marked_failed(manager: McpManager) -> None:
    add_test_server(manager)
    found = await tools(manager)
    pid = manager.status()[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: manager.status()[0].state is ServerState.FAILED)
    assert manager.status()[0].reason == "the server process exited with code -9"
    assert (await result(found["mcp__t__echo"], text="fine")).text == "fine"


@pytest.mark.slow
async def test_a_hung_server_times_out_is_killed_and_restarts(manager: McpManager) -> None:
    add_test_server(manager, timeout=0.5)
    found = await tools(manager)
    pid = manager.status()[0].pid
    assert pid is not None
    with pytest.raises(McpServerError, match=r"'hang' .* did not answer within 0.5 s"):
        await result(found["mcp__t__hang"])
    await wait_until(lambda: manager.status()[0].state is ServerState.FAILED)
    assert "stopped answering" in (manager.status()[0].reason or "")
    await wait_until(lambda: not alive(pid))
    assert (await result(found["mcp__t__echo"], text="up")).text == "up"


async def test_a_slow_call_past_its_deadline_is_cancelled_on_the_server(
    manager: McpManager,
) -> None:
    add_test_server(manager, timeout=0.5)
    found = await tools(manager)
    server = found["mcp__t__slow"].server
    version = server.tools_version
    with pytest.raises(McpServerError, match=r"did not answer within 0\.5 s"):
        await result(found["mcp__t__slow"], seconds=30, label="late")
    await wait_until(lambda: server.tools_version > version)  # the health probe answered
    assert manager.status()[0].state is ServerState.READY
    assert (await result(found["mcp__t__cancellations"])).text == "late"


async def test_stopping_a_run_cancels_the_call_on_the_server(manager: McpManager) -> None:
    add_test_server(manager)
    found = await tools(manager)
    model = ScriptedModel([use_tools(call("mcp__t__slow", {"seconds": 30, "label": "run"}))])
    async with Session(model, tools=found.values(), approval="all") as session:
        started = asyncio.Event()
        events = session.subscribe()

        async def watch() -> None:
            async for event in events:
                if isinstance(event, ToolStarted):
                    started.set()
                    return

        watcher = asyncio.ensure_future(watch())
        handle = session.submit("go")
        await asyncio.wait_for(started.wait(), 10)
        assert session.cancel()
        assert (await handle).status == "cancelled"
        await watcher
    cancellations = found["mcp__t__cancellations"]

    async def seen() -> bool:
        return (await result(cancellations)).text == "run"

    deadline = time.monotonic() + 5
    while not await seen():
        assert time.monotonic() < deadline, "the server never saw the cancellation"
    assert manager.status()[0].state is ServerState.READY


@pytest.mark.parametrize(
    ("flag", "expected", "timeout"),
    [
        # the exit is noticed at once: a long timeout only keeps a busy machine out of it
        ("--exit-on-start", "fatal: the test server was told to exit at start", 60.0),
        ("--hang-on-start", "the test server will never answer", 4.0),
    ],
)
async def test_a_server_that_never_starts_fails_with_its_stderr(
    manager: McpManager, flag: str, expected: str, timeout: float
) -> None:
    add_test_server(manager, "t", flag, startup_timeout=timeout)
    with pytest.raises(McpServerError) as info:
        await manager.tools_for("mcp:t")
    message = str(info.value)
    assert message.startswith("the MCP server 't' (") and "could not start" in message
    assert expected in message
    if flag == "--hang-on-start":
        assert f"did not answer the MCP handshake within {timeout:g} s" in message
    status = manager.status()[0]
    assert status.state is ServerState.FAILED and status.pid is None


async def test_a_missing_command_is_reported(manager: McpManager) -> None:
    manager.add("gone", command="nbagent-no-such-mcp-server")
    with pytest.raises(McpServerError, match="command not found: nbagent-no-such-mcp-server"):
        await manager.tools_for("mcp:gone")


@pytest.mark.slow
async def test_no_orphans_after_aclose_even_when_a_server_is_busy(tmp_path: object) -> None:
    manager = McpManager(directory=str(tmp_path), load=False)
    add_test_server(manager, "a")
    add_test_server(manager, "b")
    found = await manager.resolve(["mcp:a", "mcp:b"])
    pids = [s.pid for s in manager.status()]
    assert all(pid is not None and alive(pid) for pid in pids)
    busy = asyncio.ensure_future(found["mcp__b__hang"].invoke({"seconds": 60}))
    await wait_until(lambda: manager.status()[1].calls == 1)
    await manager.aclose()
    assert [s.state for s in manager.status()] == [ServerState.CLOSED] * 2
    assert not any(alive(pid) for pid in pids if pid is not None)
    with pytest.raises(McpServerError, match=r"went away|closed manager"):
        await busy
    with pytest.raises(McpError, match="this McpManager was closed"):
        await manager.tools_for("mcp:a")


async def test_stop_and_restart(manager: McpManager) -> None:
    add_test_server(manager)
    await manager.start("t")
    first = manager.status()[0].pid
    assert first is not None
    await manager.stop("t")
    status = manager.status()[0]
    assert (status.state, status.reason) == (ServerState.STOPPED, "stopped by the user")
    assert not alive(first)
    restarted = await manager.restart("t")
    assert restarted.state is ServerState.READY and restarted.pid not in (None, first)


async def test_two_sessions_share_one_server_concurrently(manager: McpManager) -> None:
    add_test_server(manager)
    found = await tools(manager)

    async def one(label: str) -> str:
        model = ScriptedModel(
            [use_tools(call("mcp__t__slow", {"seconds": 0.3, "label": label})), say("done")]
        )
        async with Session(model, tools=found.values(), approval="all") as session:
            events = await collect(session, "go")
            assert finished(events).status == "completed"
            return of_type(events, ToolFinished)[0].result

    results = await asyncio.gather(one("A"), one("B"))
    assert results == ["A done after 0.3 s", "B done after 0.3 s"]
    assert len(manager.status()) == 1 and manager.status()[0].calls == 2


# -- streamable HTTP ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server() -> Iterator[Callable[[], Awaitable[str]]]:
    """Start our test server over HTTP on 127.0.0.1 (again, after a kill); yields a starter."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    async def start() -> str:
        for old in procs:  # a killed server must be gone before its port is taken again
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(old.wait, 10)
        proc = subprocess.Popen(
            [*TEST_SERVER, "--transport", "http", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)

        def listening() -> bool:
            assert proc.poll() is None, "the HTTP test server exited"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return False
            return True

        await wait_until(listening, timeout=15)
        return f"http://127.0.0.1:{port}/mcp"

    start.procs = procs  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


async def test_http_server_calls_crash_and_lazy_restart(
    manager: McpManager, http_server: Callable[[], Awaitable[str]]
) -> None:
    url = await http_server()
    manager.add("web", url=url, headers={"X-Test": "1"})
    found = await tools(manager, "mcp:web")
    assert (await result(found["mcp__web__echo"], text="over http")).text == "over http"
    assert manager.status()[0].transport == "http" and manager.status()[0].pid is None

    call_task = asyncio.ensure_future(result(found["mcp__web__slow"], seconds=30))
    await wait_until(lambda: manager.status()[0].calls == 2)
    http_server.procs[-1].kill()  # type: ignore[attr-defined]
    with pytest.raises(McpServerError, match="went away during the call to 'slow'"):
        await asyncio.wait_for(call_task, 1.0)
    await wait_until(lambda: manager.status()[0].state is ServerState.FAILED)

    await http_server()  # the server comes back on the same port
    assert (await result(found["mcp__web__echo"], text="again")).text == "again"
    assert manager.status()[0].state is ServerState.READY


async def test_http_cancellation_reaches_the_server(
    manager: McpManager, http_server: Callable[[], Awaitable[str]]
) -> None:
    manager.add("web", url=await http_server())
    found = await tools(manager, "mcp:web")
    task = asyncio.ensure_future(result(found["mcp__web__slow"], seconds=30, label="h"))
    await wait_until(lambda: manager.status()[0].calls == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while (await result(found["mcp__web__cancellations"])).text != "h":
        assert time.monotonic() < deadline, "the HTTP server never saw the cancellation"


# -- a real server from PyPI, through the litellm path -------------------------------------


async def test_published_time_server_end_to_end(tmp_path: object) -> None:
    pytest.importorskip("mcp_server_time", reason="install the test extras: mcp-server-time")
    import json
    from pathlib import Path

    Path(str(tmp_path), "mcp.json").write_text(
        json.dumps(
            {
                "mcpServers": {
                    "time": {
                        "command": sys.executable,
                        "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
                    }
                }
            }
        )
    )
    manager = McpManager(directory=str(tmp_path))
    try:
        found = await manager.resolve(["mcp:time"])
        assert "mcp__time__get_current_time" in found
        script = [
            use_tools(call("mcp__time__get_current_time", {"timezone": "Europe/Warsaw"})),
            say("It is late in Warsaw."),
        ]
        with ScriptedServer(script) as server:
            session = Session(
                "openai/gpt-4o-mini",
                api_base=server.url,
                api_key="sk-test",
                tools=found.values(),
            )
            async with session:
                events = await collect(session, "What time is it in Warsaw?")
            declared = [t["function"]["name"] for t in server.requests[0]["tools"]]
            assert "mcp__time__get_current_time" in declared
            assert of_type(events, nbagent.ApprovalRequested)  # asked, then approved
            [done] = of_type(events, ToolFinished)
            assert done.status == "ok" and "Europe/Warsaw" in done.result
            assert '"datetime"' in done.result
            assert finished(events).text == "It is late in Warsaw."
            tool_message = server.requests[1]["messages"][-1]
            assert tool_message["role"] == "tool" and "Europe/Warsaw" in tool_message["content"]
    finally:
        await manager.aclose()
