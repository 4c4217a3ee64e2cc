"""Session log costs: append cost per turn as the log grows, load time, bytes per token.

Run: ``python bench/store_costs.py [--turns 30]``

1. Append cost per turn with 10, 1,000 and 10,000 events already in the log: a real
   session with a recorder runs turns (a tool call and an answer each) through the
   in-memory scripted model; the median wall time per turn is compared (goal: largest /
   smallest < 1.5, i.e. writing does not grow with history).
2. Load (resume) time of a session whose log holds 10,000 events (goal: < 300 ms).
3. Log bytes per streamed token for a 5,000-token answer, against one record per delta.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import nbagent
from nbagent.store import EventRecord, LogRecord, SessionStore, restore_session
from nbagent.testing import ScriptedModel, call, say, use_tools


@nbagent.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def turn_replies() -> list[nbagent.testing.Reply]:
    return [use_tools(call("add", {"a": 1, "b": 2})), say("It is three, as expected.")]


def prefill(store: SessionStore, name: str, events: int) -> None:
    """Write ``events`` event records that look like past turns (fast, no model)."""
    log = store.open(name)
    batch: list[LogRecord] = []
    for i in range(events):
        old = nbagent.Retrying(run_id="old", attempt=1, delay_s=0.0, error=f"old event {i}")
        batch.append(EventRecord(event=old))
        if len(batch) == 1_000:
            log.write(batch)
            batch = []
    if batch:
        log.write(batch)
    log.close()


async def time_turns(root: Path, events: int, turns: int) -> float:
    store = SessionStore(root / f"s{events}")
    prefill(store, "s", events)
    model = ScriptedModel([r for _ in range(turns + 1) for r in turn_replies()])
    session, recorder, _ = restore_session(store, "s", model=model, tools=[add], approval="all")
    await session.ask("warm up")
    log = recorder.log
    write = log.write
    spent = [0.0]

    def timed_write(records: list[LogRecord], *, fsync: bool = False) -> None:
        started = time.perf_counter()
        write(records, fsync=fsync)
        spent[0] += time.perf_counter() - started

    log.write = timed_write  # type: ignore[method-assign]
    durations = []
    for _ in range(turns):
        spent[0] = 0.0
        await session.ask("What is 1+2?")
        recorder.flush()
        durations.append(spent[0])
    await recorder.aclose()
    await session.aclose()
    return statistics.median(durations)


def time_load(root: Path, events: int, reps: int = 5) -> float:
    store = SessionStore(root / "load")
    prefill(store, "s", events)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        store.load("s")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def bytes_per_token(root: Path, tokens: int = 5_000) -> tuple[float, float]:
    store = SessionStore(root / "size")
    text = " ".join(f"tok{i}" for i in range(tokens))
    session, recorder, _ = restore_session(store, "s", model=ScriptedModel([say(text)]))
    deltas = []
    async for event in session.run("stream"):
        if isinstance(event, nbagent.TextDelta):
            deltas.append(event)
    await recorder.aclose()
    await session.aclose()
    size = (store.root / "s.jsonl").stat().st_size
    per_delta = sum(len(nbagent.event_to_json(d)) + 40 for d in deltas)  # + record envelope
    return size / tokens, per_delta / tokens


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("log writes per turn (median time in SessionLog.write for a tool call and an")
        print("answer: about 15 records, 4 checkpoints, fsyncs included)")
        medians = {}
        for events in (10, 1_000, 10_000):
            medians[events] = await time_turns(root, events, args.turns)
            print(f"  {events:>6,} events in the log: {medians[events] * 1000:7.2f} ms/turn")
        ratio = max(medians.values()) / min(medians.values())
        print(f"  largest / smallest: {ratio:.2f} (goal < 1.5)")
        load = time_load(root, 10_000)
        print(f"load of a 10,000-event log: {load * 1000:.1f} ms (goal < 300 ms)")
        logged, naive = await bytes_per_token(root)
        print(
            f"log bytes per streamed token: {logged:.1f} (one record per delta would be "
            f"{naive:.1f})"
        )


if __name__ == "__main__":
    asyncio.run(main())
