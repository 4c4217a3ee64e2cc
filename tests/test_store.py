"""Session logs next to the notebook: record, restore, rewind, fork, compact, faults."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import nbagent
from conftest import collect, finished, of_type
from nbagent import ApprovalRequested, Session, tool
from nbagent.conversation import is_valid
from nbagent.errors import LogFormatError, LogSchemaError, SessionLockedError, StoreError
from nbagent.store import (
    EventRecord,
    SessionStore,
    attach,
    compact,
    default_store_root,
    restore_session,
    rewind_before_tag,
    rewind_to_checkpoint,
    undo,
)
from nbagent.testing import ScriptedModel, ScriptedServer, call, say, stall, use_tools


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def event_kinds(path: Path) -> list[str]:
    return [r["event"]["kind"] for r in records(path) if r["type"] == "event"]


async def recorded(store: SessionStore, name: str, model: ScriptedModel, **options: Any):  # type: ignore[no-untyped-def]
    session, recorder, _ = restore_session(store, name, model=model, **options)
    return session, recorder


async def test_a_session_comes_back_as_it_was(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    model = ScriptedModel([use_tools(call("add", {"a": 2, "b": 3})), say("It is 5.")])
    session, recorder = await recorded(store, "default", model, tools=[add])
    await collect(session, "What is 2+3?")
    before = session.messages
    await recorder.aclose()
    await session.aclose()

    again, recorder2, state = restore_session(store, "default", model=ScriptedModel(), tools=[add])
    assert again.messages == before
    assert again.id == session.id and again.runs == 1
    assert again.usage == session.usage
    assert state.interrupted_run is None and state.pending == []
    reasons = [c.reason for c in state.checkpoints]
    assert reasons == ["input", "model_response", "tool_results", "model_response", "end"]
    assert [r["seq"] for r in records(store.root / "default.jsonl")] == list(
        range(len(records(store.root / "default.jsonl")))
    )
    await recorder2.aclose()


async def test_streamed_deltas_are_coalesced_not_written_per_token(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    words = " ".join(f"w{i}" for i in range(2_000))
    session, recorder = await recorded(store, "s", ScriptedModel([say(words)]))
    events = await collect(session, "talk")
    assert len(of_type(events, nbagent.TextDelta)) == 2_000
    await recorder.aclose()
    await session.aclose()
    kinds = event_kinds(store.root / "s.jsonl")
    assert kinds.count("text_delta") < 20
    (response,) = [
        r["event"]
        for r in records(store.root / "s.jsonl")
        if r.get("event", {}).get("kind") == "model_responded"
    ]
    assert response["text"] == words


async def test_rewind_before_a_cell_replaces_its_turn_and_keeps_the_old_branch(
    tmp_path: Path,
) -> None:
    store = SessionStore(tmp_path)
    model = ScriptedModel([say("one"), say("two"), say("one again")])
    session, recorder = await recorded(store, "s", model)
    await session.submit("first", tag="cell-1")
    await session.submit("second", tag="cell-2")
    assert rewind_before_tag(recorder, "cell-1") is not None
    assert session.messages == []
    await session.submit("first, edited", tag="cell-1")
    # cell-2's old turn is on the old branch now: running it again appends
    assert rewind_before_tag(recorder, "cell-2") is None
    await recorder.aclose()
    await session.aclose()
    state = store.load("s")
    assert [m["content"] for m in state.messages] == ["first, edited", "one again"]
    assert event_kinds(store.root / "s.jsonl").count("run_started") == 3  # nothing lost
    inactive = [c for c in state.checkpoints if not c.active]
    assert inactive and all(c.run_id for c in inactive if c.reason != "rewind")


async def test_undo_drops_the_last_turn(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    session, recorder = await recorded(store, "s", ScriptedModel([say("a"), say("b")]))
    await session.ask("1")
    await session.ask("2")
    undo(recorder)
    assert [m["content"] for m in session.messages] == ["1", "a"]
    assert session.runs == 1
    await recorder.aclose()
    await session.aclose()


async def test_fork_starts_from_a_checkpoint_and_leaves_the_source_alone(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    session, recorder = await recorded(store, "main", ScriptedModel([say("a"), say("b")]))
    await session.ask("1")
    after_first = next(c for c in recorder.log.checkpoints() if c.reason == "end")
    await session.ask("2")
    store.fork("main", "experiment", at_seq=after_first.seq).close()
    forked, fork_recorder, _ = restore_session(store, "experiment", model=ScriptedModel([say("c")]))
    assert [m["content"] for m in forked.messages] == ["1", "a"]
    await forked.ask("3 instead")
    await fork_recorder.aclose()
    await forked.aclose()
    assert [m["content"] for m in session.messages] == ["1", "a", "2", "b"]
    assert [m["content"] for m in store.load("experiment").messages] == [
        "1", "a", "3 instead", "c",
    ]  # fmt: skip
    await recorder.aclose()
    await session.aclose()


async def test_rewind_to_a_named_checkpoint(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    session, recorder = await recorded(store, "s", ScriptedModel([say("a"), say("b")]))
    await session.ask("1")
    await session.ask("2")
    first_end = next(c for c in recorder.log.checkpoints() if c.reason == "end")
    rewind_to_checkpoint(recorder, first_end.id)
    assert [m["content"] for m in session.messages] == ["1", "a"]
    with pytest.raises(StoreError, match="no checkpoint"):
        rewind_to_checkpoint(recorder, "c999999")
    await recorder.aclose()
    await session.aclose()


async def test_compact_summarises_older_turns_and_keeps_the_log_whole(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    model = ScriptedModel([say("a"), say("b"), say("The user asked 1 and 2."), say("c")])
    session, recorder = await recorded(store, "s", model)
    await session.ask("1")
    await session.ask("2")
    await compact(recorder, keep_turns=1)
    assert session.messages[0]["content"].startswith("Summary of the earlier conversation:")
    assert [m["content"] for m in session.messages[2:]] == ["2", "b"]
    await session.ask("3")
    await recorder.aclose()
    await session.aclose()
    assert store.load("s").messages == session.messages
    assert event_kinds(store.root / "s.jsonl").count("run_started") == 3


async def test_a_title_comes_from_the_first_prompt_without_a_model_request(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    model = ScriptedModel([say("hello"), say("this reply must stay unused")])
    session, recorder = await recorded(store, "s", model, titles=True)
    await session.ask("  Plot the monthly sales\n by region, please, and explain the trend ")
    await recorder.aclose()
    await session.aclose()
    assert store.summary("s").title == "Plot the monthly sales by region, please, and…"
    assert len(model.requests) == 1 and model.remaining == 1  # no hidden title request


async def test_only_an_aux_model_is_asked_for_a_title(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    model = ScriptedModel([say("hello")])
    aux = ScriptedModel([say("Greeting the notebook")])
    session, recorder = await recorded(store, "s", model, titles=True, aux_model=aux)
    result = await session.ask("hi there")
    assert result.text == "hello"  # the title never delayed the answer
    await recorder.aclose()  # waits (bounded) for the title job
    await session.aclose()
    assert store.summary("s").title == "Greeting the notebook"
    assert len(model.requests) == 1 and len(aux.requests) == 1
    assert "hi there" in aux.requests[0].messages[-1]["content"]


async def test_no_secrets_in_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-proj-" + os.urandom(12).hex()
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-" + os.urandom(8).hex())
    store = SessionStore(tmp_path)

    @tool
    def whoami() -> str:
        """Leak on purpose."""
        return f"key={os.environ['OPENAI_API_KEY']} token={os.environ['MY_SERVICE_TOKEN']}"

    with ScriptedServer([use_tools(call("whoami")), say("done")]) as server:
        session, recorder, _ = restore_session(
            store, "s", model="openai/gpt-4o-mini", api_base=server.url, api_key=secret,
            tools=[whoami], approval="all",
        )  # fmt: skip
        await session.ask("who am I")
        await recorder.aclose()
        await session.aclose()
    text = (store.root / "s.jsonl").read_text()
    assert secret not in text and os.environ["MY_SERVICE_TOKEN"] not in text
    assert "[redacted]" in text


# -- faults -------------------------------------------------------------------------------


async def test_torn_last_line_is_ignored_then_cut(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    session, recorder = await recorded(store, "s", ScriptedModel([say("a"), say("b")]))
    await session.ask("1")
    await recorder.aclose()
    await session.aclose()
    path = store.root / "s.jsonl"
    with open(path, "ab") as handle:
        handle.write(b'{"type": "event", "schema": 1, "seq": 99, "event": {"kind": "te')
    with pytest.warns(UserWarning, match="last line was cut off"):
        session2, recorder2, state = restore_session(store, "s", model=ScriptedModel([say("b")]))
    assert [m["content"] for m in state.messages] == ["1", "a"]
    await session2.ask("2")
    await recorder2.aclose()
    await session2.aclose()
    assert [m["content"] for m in store.load("s").messages] == ["1", "a", "2", "b"]


async def test_garbage_in_the_middle_names_the_line(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    session, recorder = await recorded(store, "s", ScriptedModel([say("a")]))
    await session.ask("1")
    await recorder.aclose()
    await session.aclose()
    path = store.root / "s.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(3, b"this is not json\n")
    path.write_bytes(b"".join(lines))
    with pytest.raises(LogFormatError, match=r"s\.jsonl:4 is not a session log record"):
        store.load("s")
    with pytest.warns(UserWarning, match="skipped"):
        state = store.load("s", skip_bad_lines=True)
    assert [m["content"] for m in state.messages] == ["1", "a"]


def test_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_text('{"type": "header", "schema": 99, "seq": 0}\n')
    with pytest.raises(LogSchemaError, match=r"newer nbagent.*schema 99.*Upgrade"):
        SessionStore(tmp_path).load("s")
    with pytest.raises(LogSchemaError):
        SessionStore(tmp_path).open("s")  # and never appended to


def test_a_folder_that_cannot_be_created_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match=r"cannot create the session folder.*NBAGENT_HOME"):
        SessionStore(blocker / "sub").open("s")


async def test_disk_full_fails_the_run_and_the_log_catches_up(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    model = ScriptedModel([say("a"), say("b"), say("c")])
    session, recorder = await recorded(store, "s", model)
    await session.ask("1")

    real_file = recorder.log._file
    failures = {"left": 1}

    class FullDisk:
        def write(self, data: bytes) -> int:
            if failures["left"]:
                failures["left"] -= 1
                real_file.write(data[: len(data) // 2])  # a torn write, as a full disk leaves
                real_file.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return int(real_file.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(real_file, name)

    recorder.log._file = FullDisk()
    events = await collect(session, "2")
    done = finished(events)
    assert done.status == "failed" and "No space left on device" in (done.error or "")
    assert [m["content"] for m in session.messages][:2] == ["1", "a"]  # intact in memory
    await session.ask("3")  # room again: the next writes carry what was kept
    await recorder.aclose()
    await session.aclose()
    assert store.load("s").messages == session.messages


def test_a_lock_held_by_another_process_names_it(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from nbagent.store import SessionStore
            log = SessionStore({str(tmp_path)!r}).open("shared")
            print("held", flush=True)
            sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(SessionLockedError, match=f"pid {holder.pid}.*another session name"):
            SessionStore(tmp_path).open("shared")
        with pytest.raises(SessionLockedError):
            SessionStore(tmp_path).delete("shared")
    finally:
        holder.kill()
        holder.wait()
    SessionStore(tmp_path).open("shared").close()  # the lock died with its holder


async def test_resume_with_a_model_that_is_gone(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    session, recorder = await recorded(
        store, "s", ScriptedModel([say("a")], name="openai/retired-model")
    )
    await session.ask("1")
    await recorder.aclose()
    await session.aclose()
    with ScriptedServer() as server:
        server.add(nbagent.testing.http_error(404, "The model openai/retired-model does not exist"))
        again, recorder2, state = restore_session(
            store, "s", api_base=server.url, api_key="sk-test-123456"
        )
        assert state.model == again.model.name == "openai/retired-model"
        result = await again.ask("2")
        assert result.status == "failed" and "does not exist" in (result.error or "")
        assert is_valid(again.messages)
        await recorder2.aclose()
        await again.aclose()
    fresh, recorder3, _ = restore_session(store, "s", model=ScriptedModel([say("b")]))
    assert (await fresh.ask("3")).text == "b"
    await recorder3.aclose()
    await fresh.aclose()


# -- the kernel dies: a real process, killed with SIGKILL -----------------------------------

CHILD = """
import asyncio, sys
from pathlib import Path
import nbagent
from nbagent.store import SessionStore, restore_session
from nbagent.testing import ScriptedModel, call, use_tools

count_file = Path(sys.argv[2])

@nbagent.tool
def count(label: str) -> str:
    \"\"\"Record that this call ran.\"\"\"
    with count_file.open("a") as handle:
        handle.write(label + "\\n")
    return f"counted {label}"

async def main():
    model = ScriptedModel([use_tools(call("count", {"label": "first"}, id="c1"),
                                     call("count", {"label": "second"}, id="c2"))])
    session, recorder, _ = restore_session(SessionStore(sys.argv[1]), "s", model=model,
                                           tools=[count])
    async for event in session.run("count twice"):
        if isinstance(event, nbagent.ApprovalRequested) and event.tool_call_id == "c1":
            session.approve("c1")   # c2 stays pending until the kernel dies

asyncio.run(main())
"""


def wait_for_events(path: Path, *wanted: tuple[str, str], timeout: float = 20.0) -> None:
    """Wait until the log holds an event of each (kind, tool_call_id)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = set()
        for line in (path.read_bytes() if path.exists() else b"").splitlines():
            record = json.loads(line) if line.endswith(b"}") else {}
            event = record.get("event", {})
            seen.add((event.get("kind"), event.get("tool_call_id")))
        if set(wanted) <= seen:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never held {wanted}")


async def test_kill_9_at_a_pending_approval_then_resume_runs_each_call_once(
    tmp_path: Path,
) -> None:
    count_file = tmp_path / "count.txt"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "store"), str(count_file)]
    )
    log = tmp_path / "store" / "s.jsonl"
    try:
        wait_for_events(log, ("tool_finished", "c1"), ("approval_requested", "c2"))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert count_file.read_text().split() == ["first"]

    @tool(name="count")
    def count(label: str) -> str:
        """Record that this call ran."""
        with count_file.open("a") as handle:
            handle.write(label + "\n")
        return f"counted {label}"

    store = SessionStore(tmp_path / "store")
    session, recorder, state = restore_session(
        store, "s", model=ScriptedModel([say("Counted both.")]), tools=[count]
    )
    assert state.interrupted_run is not None
    assert [p.tool_call_id for p in state.pending] == ["c2"]
    handle = session.resume()
    assert handle is not None
    asked: list[str] = []
    with session.subscribe() as stream:
        async for event in stream:
            if isinstance(event, ApprovalRequested):
                asked.append(event.tool_call_id)
                session.approve(event.tool_call_id)
            if isinstance(event, nbagent.RunFinished):
                break
    assert asked == ["c2"]
    assert (await handle).text == "Counted both."
    assert count_file.read_text().split() == ["first", "second"]  # each exactly once
    await recorder.aclose()
    await session.aclose()
    reloaded = store.load("s")
    assert reloaded.messages == session.messages and is_valid(reloaded.messages)
    assert reloaded.interrupted_run is None


async def test_a_call_running_when_the_kernel_died_is_not_run_again(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    model = ScriptedModel([use_tools(call("add", {"a": 1, "b": 1}, id="c1"))])
    session, recorder = await recorded(store, "s", model, tools=[add])
    session.submit("go")
    while not session.pending_approvals:
        await asyncio_sleep()
    recorder.flush()
    # as if the kernel died while the tool ran: the log ends after tool_started
    log = recorder.log
    log.write([EventRecord(event=nbagent.ToolStarted(run_id="r", tool_call_id="c1", name="add"))])
    state = log.load()
    assert state.messages[-1] == {
        "role": "tool", "tool_call_id": "c1", "content": nbagent.store.INTERRUPTED_RESULT,
    }  # fmt: skip
    await session.aclose()
    await recorder.aclose()


async def asyncio_sleep() -> None:
    import asyncio

    await asyncio.sleep(0.001)


def test_store_root_is_per_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBAGENT_HOME", raising=False)
    assert default_store_root("work/analysis.ipynb", tmp_path) == tmp_path / ".nbagent/analysis"
    assert default_store_root("/data/nb/eda.ipynb", tmp_path) == Path("/data/nb/.nbagent/eda")
    assert default_store_root(None, tmp_path) == tmp_path / ".nbagent/kernel"
    monkeypatch.setenv("NBAGENT_HOME", str(tmp_path / "home"))
    assert default_store_root("a.ipynb", "/x") == tmp_path / "home/a"


async def test_stalled_run_state_is_on_disk_within_a_flush_period(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    session, recorder = await recorded(
        store, "s", ScriptedModel([stall(30, after=3, text="a b c d")])
    )
    session.submit("go")
    text = await _wait_async(store.root / "s.jsonl", '"text":"a b c "')
    assert '"text_delta"' in text
    await session.aclose()
    await recorder.aclose()


async def _wait_async(path: Path, needle: str, timeout: float = 10.0) -> str:
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text()
        if needle in text:
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never contained {needle}")


def test_sessions_can_be_listed_summarised_and_deleted(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    store.open("b").close()
    store.open("a").close()
    assert store.names() == ["a", "b"]
    summary = store.summary("a")
    assert (summary.runs, summary.total_tokens, summary.held_by) == (0, 0, None)
    store.delete("a")
    assert store.names() == ["b"]
    with pytest.raises(StoreError, match="not a valid session name"):
        store.open("../escape")


async def test_recording_leaves_the_session_as_it_is(tmp_path: Path) -> None:
    async with Session(ScriptedModel([say("a")])) as session:
        recorder = attach(session, SessionStore(tmp_path).open("s"))
        assert type(session) is nbagent.Session and session.hooks == []
        await session.ask("1")
        await recorder.aclose()
    assert SessionStore(tmp_path).load("s").messages == session.messages


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"type": "compaction", "schema": 1, "seq": 1, "messages": null}', "messages"),
        ('{"type": "event", "schema": 1, "event": {"kind": "usage"}}', "no valid 'seq'"),
        ('{"type": "event", "schema": 1, "seq": 1, "event": {"kind": "nope"}}', "event"),
        ('{"type": "rewind", "schema": 1, "seq": 1, "to_seq": "x"}', "to_seq"),
    ],
)
def test_a_record_of_the_wrong_shape_is_named_in_one_line(
    tmp_path: Path, line: str, says: str
) -> None:
    header = '{"type": "header", "schema": 1, "seq": 0, "session_id": "s"}'
    (tmp_path / "s.jsonl").write_text(f"{header}\n{line}\n")
    with pytest.raises(LogFormatError, match=r"s\.jsonl:2 ") as info:
        SessionStore(tmp_path).load("s")
    assert says in str(info.value) and "\n" not in str(info.value)
    skipped = SessionStore(tmp_path)
    with pytest.warns(UserWarning, match="skipped"):
        assert skipped.load("s", skip_bad_lines=True).messages == []


def test_a_log_that_forks_itself_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s.jsonl").write_text(
        '{"type": "header", "schema": 1, "seq": 0, "forked_from": {"log": "s", "seq": 0}}\n'
    )
    with pytest.raises(StoreError, match="fork of itself"):
        SessionStore(tmp_path).load("s")


async def test_a_response_text_is_stored_once_in_its_record(tmp_path: Path) -> None:
    store = SessionStore(tmp_path)
    answer = "A distinctive answer, stored once."
    session, recorder = await recorded(store, "s", ScriptedModel([say(answer)]))
    await session.ask("hi")
    messages = session.messages
    await recorder.aclose()
    await session.aclose()
    (line,) = [r for r in records(tmp_path / "s.jsonl") if r.get("event", {}).get("kind") ==
               "model_responded"]  # fmt: skip
    assert json.dumps(line).count(answer) == 1
    again, recorder = await recorded(store, "s", ScriptedModel([]))
    assert again.messages == messages
    await recorder.aclose()
    await again.aclose()
