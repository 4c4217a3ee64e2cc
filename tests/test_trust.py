"""Trust of recordings: recorded decisions replay with trust, and the safety rules hold
(trust belongs to entries, live recordings replace what they answer, re-recording does not
launder a foreign entry, resume keeps the untrusted flag, trust is per source notebook and
decided when the recordings are read)."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import nbagent
from conftest import collect, finished, of_type
from nbagent import ApprovalDecided, ApprovalRequested, Session, ToolFinished, tool
from nbagent.approval import ApprovalPolicy, ReplayedCall
from nbagent.events import RecordedDecision
from nbagent.notebook import recordings
from nbagent.replay import RecordBook, Recorded, ReplayModel, arguments_digest
from nbagent.store import SessionStore, restore_session
from nbagent.testing import ScriptedModel, call, say, use_tools

ran: list[str] = []


@tool
def write(path: str) -> str:
    """Write a file (a side effect)."""
    ran.append(path)
    return f"wrote {path}"


@tool(read_only=True)
def look(path: str) -> str:
    """Read a file."""
    return f"{path} reads fine"


def decision(path: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "write", "arguments": arguments_digest({"path": path}),
                               "approved": True, "decided_by": "user"}  # fmt: skip
    base.update(fields)
    return base


async def entries(*paths: str, prompt: str = "write them") -> list[Recorded]:
    """Record a run that writes ``paths`` (one response each), then answers "done"."""
    book = RecordBook()
    replies = [use_tools(call("write", {"path": p}, id=f"w{i}")) for i, p in enumerate(paths)]
    replies.append(say("done"))
    model = ReplayModel(ScriptedModel(replies), book)
    async with Session(model, tools=[write, look], approval="all") as session:
        assert (await session.ask(prompt)).text == "done"
    return book.entries()


def with_decisions(entry: Recorded, *decided: dict[str, object] | None) -> Recorded:
    return dataclasses.replace(entry, decisions=list(decided))


async def replay(book: RecordBook, **options: object) -> list[nbagent.Event]:
    ran.clear()
    model = ReplayModel(ScriptedModel(), book, "replay")
    async with Session(model, tools=[write, look], **options) as session:  # type: ignore[arg-type]
        # a person who is asked says no (so a test sees the question and never hangs)
        return await collect(session, "write them", on_approval=lambda s, r: s.deny(
            r.tool_call_id, reason="asked"))  # fmt: skip


# -- recorded decisions replay ---------------------------------------------------------------


async def test_a_trusted_replay_decides_as_the_person_who_recorded_it() -> None:
    first, last = await entries("a.txt")
    book = RecordBook([with_decisions(first, decision("a.txt")), last], trusted=True,
                      source="nb.ipynb")  # fmt: skip
    events = await replay(book)  # the default policy, `ask`, and nobody to click
    (decided,) = of_type(events, ApprovalDecided)
    assert decided.approved and decided.decided_by == "user" and decided.recorded
    assert not of_type(events, ApprovalRequested) and ran == ["a.txt"]
    assert finished(events).status == "completed"


async def test_a_recorded_rejection_replays_with_its_reason() -> None:
    first, _ = await entries("a.txt")
    rejected = decision("a.txt", approved=False, reason="not that file")
    # the recorded run went on after the rejection: its next response answered the denial
    book = RecordBook([with_decisions(first, rejected)], trusted=True, source="nb.ipynb")
    events = await replay(book)
    (decided,) = of_type(events, ApprovalDecided)
    assert not decided.approved and decided.reason == "not that file" and ran == []
    assert of_type(events, ToolFinished)[0].status == "denied"


async def test_a_recorded_always_allow_covers_the_later_calls_again() -> None:
    first, second, last = await entries("a.txt", "b.txt")
    book = RecordBook([with_decisions(first, decision("a.txt", scope="tool")), second, last],
                      trusted=True, source="nb.ipynb")  # fmt: skip
    events = await replay(book)
    decided = of_type(events, ApprovalDecided)
    assert [(d.decided_by, d.scope) for d in decided] == [("user", "tool"), ("policy", "call")]
    assert decided[1].reason == "write was always-allowed in this session"
    assert ran == ["a.txt", "b.txt"]


async def test_a_call_decided_by_policy_at_record_time_follows_the_current_policy() -> None:
    first, last = await entries("a.txt")
    by_policy = decision("a.txt", decided_by="policy", reason="approval mode 'all'")
    book = RecordBook([with_decisions(first, by_policy), last], trusted=True, source="nb")
    events = await replay(book)  # `ask` now: a person is asked
    assert [r.name for r in of_type(events, ApprovalRequested)] == ["write"]


async def test_a_recorded_decision_for_other_arguments_does_not_apply() -> None:
    first, last = await entries("a.txt")
    book = RecordBook([with_decisions(first, decision("elsewhere.txt")), last], trusted=True,
                      source="nb")  # fmt: skip
    assert of_type(await replay(book), ApprovalRequested)


async def test_without_trust_a_recorded_approval_still_asks() -> None:
    first, last = await entries("a.txt")
    book = RecordBook([with_decisions(first, decision("a.txt")), last], source="theirs")
    events = await replay(book)
    (asked,) = of_type(events, ApprovalRequested)
    assert asked.note is not None and "recording made elsewhere" in asked.note
    assert ran == []


def test_read_only_tools_do_not_ask_under_the_default_policy() -> None:
    policy = ApprovalPolicy()
    assert policy.decide(look, {"path": "x"}).verdict == "allow"
    assert policy.decide(write, {"path": "x"}).verdict == "ask"
    untrusted = ReplayedCall(trusted=False)
    assert policy.decide(look, {"path": "x"}, replayed=untrusted).verdict == "allow"
    assert policy.decide(write, {"path": "x"}, replayed=untrusted).untrusted_replay
    # (an MCP server's readOnlyHint does not make a tool read-only: tests/test_mcp.py)


# -- the safety rules ------------------------------------------------------------------------


async def test_trust_belongs_to_the_entry_not_to_its_fingerprint() -> None:
    first, _ = await entries("a.txt")
    book = RecordBook([first], trusted=True, source="mine.ipynb")
    assert book.trusted(first)
    edited = dataclasses.replace(first, text="Something else entirely.")
    assert edited.fingerprint == first.fingerprint and not book.trusted(edited)
    # a neighbour's entry under the same fingerprint never takes a trusted one's place
    book.add(edited, trusted=False, source="neighbour.ipynb")
    assert book.get(first.fingerprint) is first
    # and a trusted notebook's entry takes the place of an untrusted one
    other = RecordBook([edited], source="neighbour.ipynb")
    other.add(first, trusted=True, source="mine.ipynb")
    assert other.get(first.fingerprint) is first and other.trusted(first)


async def test_a_live_recording_replaces_the_entry_it_answers() -> None:
    first, _ = await entries("a.txt")
    book = RecordBook([first], source="theirs.ipynb")
    live = dataclasses.replace(first, text="mine", tool_calls=[])
    book.add(live, trusted=True)
    assert book.get(first.fingerprint) is live and book.trusted(live)
    assert book.source(first.fingerprint) is None


async def test_re_recording_an_untrusted_cell_does_not_launder_the_foreign_entry() -> None:
    foreign = await entries("evil.txt")
    book = RecordBook(foreign, source="downloaded.ipynb")
    ran.clear()
    # --replay record: a live response that breaks off is not recorded...
    broken = ReplayModel(ScriptedModel([nbagent.testing.cut("partial")]), book, "record")
    async with Session(broken, tools=[write, look]) as session:
        await session.ask("write them")
    # ...so the foreign entry stays foreign: its call still needs a person
    assert of_type(await replay(book), ApprovalRequested) and ran == []
    # a complete live answer replaces it, and that is what replays next
    fresh = ReplayModel(ScriptedModel([say("I will not write anything.")]), book, "record")
    async with Session(fresh, tools=[write, look]) as session:
        await session.ask("write them")
    events = await replay(book)
    assert finished(events).text == "I will not write anything." and ran == []


CHILD = """
import asyncio, sys
import nbagent
from nbagent.replay import RecordBook, Recorded, ReplayModel
from nbagent.store import SessionStore, restore_session
from nbagent.testing import ScriptedModel

@nbagent.tool
def write(path: str) -> str:
    \"\"\"Write a file (a side effect).\"\"\"
    open(path, "w").write("x")
    return "wrote"

@nbagent.tool(read_only=True)
def look(path: str) -> str:
    \"\"\"Read a file.\"\"\"
    return ""

async def main():
    book = RecordBook([Recorded.from_json(e, "x") for e in eval(sys.argv[2])],
                      source="downloaded.ipynb")
    session, recorder, _ = restore_session(SessionStore(sys.argv[1]), "s",
        model=ReplayModel(ScriptedModel(), book, "replay"), tools=[write, look])
    async for event in session.run("write them"):
        pass  # the untrusted call waits for a person until the kernel dies

asyncio.run(main())
"""


async def test_resume_after_a_kernel_death_keeps_the_untrusted_flag(tmp_path: Path) -> None:
    from test_store import wait_for_events

    foreign = await entries(str(tmp_path / "evil.txt"))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    data = repr([e.to_json() for e in foreign])
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), data])
    try:
        wait_for_events(tmp_path / "store" / "s.jsonl", ("approval_requested", "w0"))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # resumed in a new kernel that allows every call by policy: the replayed call asks
    session, recorder, _ = restore_session(
        SessionStore(tmp_path / "store"), "s", model=ScriptedModel(), tools=[write, look],
        approval="all",
    )  # fmt: skip
    handle = session.resume()
    assert handle is not None
    asked: list[ApprovalRequested] = []
    with session.subscribe() as stream:
        async for event in stream:
            if isinstance(event, ApprovalRequested):
                asked.append(event)
                session.deny(event.tool_call_id, reason="not mine")
            if isinstance(event, nbagent.RunFinished):
                break
    result = await handle
    assert [a.name for a in asked] == ["write"] and asked[0].note
    assert not (tmp_path / "evil.txt").exists()
    assert "The replay stopped at the call of write" in (result.error or "")
    await recorder.aclose()
    await session.aclose()


def notebook(path: Path, entry: Recorded) -> Path:
    cell = {"cell_type": "code", "source": "%%agent\nwrite them", "metadata": {},
            "execution_count": 1, "outputs": [{"output_type": "display_data",
            "data": {"text/plain": "x"}, "metadata": {"nbagent": {"recording": [
                entry.to_json()]}}}]}  # fmt: skip
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))  # fmt: skip
    return path


async def test_trust_is_per_source_notebook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBAGENT_DATA_DIR", str(tmp_path / ".data"))
    monkeypatch.delenv("NBAGENT_RECORDINGS", raising=False)
    (mine,) = (await entries("a.txt"))[:1]
    (theirs,) = (await entries("b.txt", prompt="write another"))[:1]
    notebook(tmp_path / "mine.ipynb", mine)
    notebook(tmp_path / "neighbour.ipynb", theirs)

    # NBAGENT_TRUST=1 where the kernel does not know its notebook: nothing is trusted
    book = recordings.kernel_book(None, trust=True)
    assert len(book) == 2 and not book.trusted(mine) and not book.trusted(theirs)
    assert "NBAGENT_RECORDINGS" in capsys.readouterr().err
    # told which notebook runs (the pytest plugin does this for nbval): only that one
    monkeypatch.setenv("NBAGENT_RECORDINGS", "mine.ipynb")
    book = recordings.kernel_book(None, trust=True)
    assert len(book) == 1 and book.trusted(mine)
    monkeypatch.delenv("NBAGENT_RECORDINGS")
    # `nbagent trust mine.ipynb`: its recordings, as they are, and no neighbour's
    from nbagent.cli import main

    assert main(["trust", "mine.ipynb"]) == 0
    book = recordings.kernel_book(None)
    assert book.trusted(mine) and not book.trusted(theirs)
    notebook(tmp_path / "mine.ipynb", dataclasses.replace(mine, text="edited"))
    assert not recordings.notebook_trusted(tmp_path / "mine.ipynb")


def test_the_pytest_plugin_is_declared_and_names_the_notebook() -> None:
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'nbagent = "nbagent.pytest_plugin"' in pyproject
    assert "[project.entry-points.pytest11]" in pyproject


async def test_recorded_decision_shape_round_trips() -> None:
    first, _ = await entries("a.txt")
    rule = {"tool": "write", "arguments": {"path": "*.txt"}}
    entry = with_decisions(first, decision("a.txt", scope="rule", rule=rule))
    again = Recorded.from_json(json.loads(json.dumps(entry.to_json())), "here")
    (recorded,) = again.recorded_decisions()
    assert isinstance(recorded, RecordedDecision) and recorded.rule == rule
    assert again.digest() == entry.digest() != first.digest()


def test_trust_set_after_the_recordings_were_read_does_not_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nbagent.config import NBAgent
    from nbagent.notebook.opening import SessionOpener
    from nbagent.notebook.registry import KernelRegistry

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBAGENT_RECORDINGS", str(notebook(tmp_path / "nb.ipynb", Recorded(
        fingerprint="f", model="m", text="hi"))))  # fmt: skip
    opener = SessionOpener(None, NBAgent(), KernelRegistry())
    book = opener.book(trust=False)
    (entry,) = book.entries()
    assert not book.trusted(entry)
    # a code cell sets NBAGENT_TRUST / %config NBAgent.trust mid-run: it says so, once
    assert opener.book(trust=True) is book and not book.trusted(entry)
    assert opener.book(trust=True) is book
    assert capsys.readouterr().err.count("does not apply to them") == 1


async def test_a_recorded_rule_decision_replays_its_rule() -> None:
    first, second, last = await entries("data/a.txt", "data/b.txt")
    rule = {"tool": "write", "arguments": {"path": "data/*"}}
    recorded = decision("data/a.txt", scope="rule", rule=rule)
    book = RecordBook([with_decisions(first, recorded), second, last], trusted=True,
                      source="nb.ipynb")  # fmt: skip
    events = await replay(book)
    decided = of_type(events, ApprovalDecided)
    assert decided[0].rule == rule and decided[0].scope == "rule"
    assert decided[1].decided_by == "policy" and "matches the rule" in (decided[1].reason or "")
    assert ran == ["data/a.txt", "data/b.txt"]


def test_the_card_of_an_untrusted_replayed_call_says_so_while_it_waits() -> None:
    from nbagent.approval import UNTRUSTED_REPLAY
    from nbagent.render import Transcript

    transcript = Transcript(prompt="go", model="m", session="s")
    proposed = nbagent.ToolCall(id="c", name="write", arguments={"path": "a"},
                                arguments_json='{"path": "a"}')  # fmt: skip
    transcript.add(nbagent.ToolCallProposed(run_id="r", call=proposed))
    transcript.add(ApprovalRequested(run_id="r", tool_call_id="c", name="write",
                                     arguments={"path": "a"}, read_only=False,
                                     note=UNTRUSTED_REPLAY))  # fmt: skip
    assert "replayed from a recording made elsewhere" in transcript.mimebundle()["text/plain"]
    transcript.add(ApprovalDecided(run_id="r", tool_call_id="c", name="write", approved=True,
                                   scope="call", decided_by="user"))  # fmt: skip
    assert "made elsewhere" not in transcript.mimebundle()["text/plain"]  # the same saved
