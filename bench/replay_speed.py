"""Replay time of a 20-turn recorded session (the agent part only).

Run: ``python bench/replay_speed.py [--turns 20]``

A session of N turns (each: a tool call, its result, an answer) is recorded through the
in-memory scripted model, then replayed from the recordings alone, as a shared notebook
replays (the recordings untrusted, the tool read-only). Reports the median time per
replayed turn (goal: well under 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import nbagent
from nbagent.replay import RecordBook, ReplayModel
from nbagent.testing import ScriptedModel, call, say, use_tools


@nbagent.tool(read_only=True)
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def prompts(turns: int) -> list[str]:
    return [f"Turn {i}: look up key-{i} and summarise it in a sentence." for i in range(turns)]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    replies = []
    for i in range(args.turns):
        replies += [use_tools(call("lookup", {"key": f"key-{i}"})),
                    say(f"Key {i} holds its value; " + "details " * 40)]  # fmt: skip
    book = RecordBook()
    live = ReplayModel(ScriptedModel(replies), book)
    async with nbagent.Session(live, tools=[lookup], approval="readonly") as session:
        for prompt in prompts(args.turns):
            await session.ask(prompt)
    shared = RecordBook(book.entries())  # as read from a notebook: not trusted
    replay = ReplayModel(ScriptedModel(), shared, "replay")
    durations = []
    async with nbagent.Session(replay, tools=[lookup], approval="readonly") as session:
        for prompt in prompts(args.turns):
            started = time.perf_counter()
            result = await session.ask(prompt)
            durations.append(time.perf_counter() - started)
            assert result.status == "completed", result.error
    print(f"replayed {args.turns} turns ({len(shared)} recorded responses)")
    print(f"per turn: median {statistics.median(durations) * 1000:.2f} ms, "
          f"max {max(durations) * 1000:.2f} ms (goal: well under 50 ms)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
