"""CPU overhead of an nbagent run over a bare ``litellm.acompletion`` stream.

The scripted server (``python -m nbagent.testing``) runs in a separate process and streams
a long answer (5,000 one-word chunks by default) as fast as it can. In this process we
alternate, on the same kind of stream and with the same request:

* bare:    ``litellm.acompletion(..., stream=True)`` and ``async for chunk in resp``,
           touching ``chunk.choices[0].delta.content``;
* nbagent: a fresh ``nbagent.Session`` and ``async for event in session.run(prompt)``,
           reading every event as the notebook widget would.

Each run's CPU time (``time.process_time()``, this process only: the server's CPU does not
count) is recorded; the script prints the medians and the nbagent/litellm ratio. The goal is
a ratio of at most 1.10. It is a benchmark: it always exits 0.

Run it from the repository root::

    python bench/stream_overhead.py                # 7 repetitions of each path
    python bench/stream_overhead.py --reps 15 --tokens 5000
    python bench/stream_overhead.py --profile      # also cProfile both paths, top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import litellm  # after LITELLM_LOCAL_MODEL_COST_MAP is set

import nbagent
from nbagent.events import RunFinished, TextDelta

litellm.suppress_debug_info = True  # as nbagent's own import_litellm() does

MODEL = "openai/gpt-4o-mini"
API_KEY = "sk-bench"
PROMPT = "Stream a long answer, please."
TIMEOUT = 120.0  # what nbagent's LiteLLMModel sends; the bare call sends the same
URL_LINE = re.compile(r"scripted server listening on (http://\S+)")


@dataclass(frozen=True)
class Sample:
    """One measured run."""

    cpu_s: float
    wall_s: float
    chunks: int
    """Stream chunks received (bare) or text-delta events received (nbagent)."""
    events: int
    """Every item the consumer saw (chunks for bare, all events for nbagent)."""
    text_len: int


def _answer(tokens: int) -> str:
    return " ".join(f"tok{i}" for i in range(tokens))


@contextmanager
def scripted_server(replies: int, tokens: int) -> Iterator[str]:
    """Start ``python -m nbagent.testing`` in a subprocess with ``replies`` identical long
    answers; yield its base URL."""
    reply = {"text": _answer(tokens), "words_per_chunk": 1}
    with tempfile.TemporaryDirectory(prefix="nbagent-bench-") as tmp:
        script = Path(tmp) / "script.json"
        script.write_text(json.dumps([reply] * replies))
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbagent.testing", "--script", str(script), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = URL_LINE.search(line)
            if match is None:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"the scripted server did not start: {line!r} {err}")
            yield match.group(1)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def bare_run(url: str) -> tuple[int, int, int]:
    """One bare litellm stream; returns (content chunks, all chunks, text length)."""
    resp = await litellm.acompletion(
        model=MODEL,
        api_base=url,
        api_key=API_KEY,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
        timeout=TIMEOUT,
        max_retries=0,
    )
    content_chunks = 0
    all_chunks = 0
    parts: list[str] = []
    async for chunk in resp:
        all_chunks += 1
        choices = chunk.choices
        if choices:
            content = choices[0].delta.content
            if content:
                content_chunks += 1
                parts.append(content)
    return content_chunks, all_chunks, len("".join(parts))


async def nbagent_run(url: str) -> tuple[int, int, int]:
    """One nbagent run on a fresh session; returns (text deltas, all events, text length)."""
    session = nbagent.Session(MODEL, api_base=url, api_key=API_KEY)
    deltas = 0
    events = 0
    parts: list[str] = []
    status = "?"
    try:
        async for event in session.run(PROMPT):
            events += 1
            # A consumer that looks at every event, as the notebook widget does.
            if isinstance(event, TextDelta):
                deltas += 1
                parts.append(event.text)
            elif isinstance(event, RunFinished):
                status = event.status
    finally:
        await session.aclose()
    if status != "completed":
        raise RuntimeError(f"the nbagent run ended with status {status!r}")
    return deltas, events, len("".join(parts))


Runner = Callable[[str], Awaitable[tuple[int, int, int]]]


async def measure(runner: Runner, url: str) -> Sample:
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    chunks, events, text_len = await runner(url)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    return Sample(cpu1 - cpu0, wall1 - wall0, chunks, events, text_len)


async def profile(runner: Runner, url: str, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    await runner(url)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    out.write("--- of which in nbagent and asyncio (by own time) ---\n")
    stats.print_stats(r"nbagent|asyncio", top)
    return out.getvalue()


async def bench(url: str, reps: int, profile_top: int) -> tuple[list[Sample], list[Sample]]:
    # Warm up both paths (imports, litellm's client cache, first-request costs).
    await bare_run(url)
    await nbagent_run(url)
    bare: list[Sample] = []
    agent: list[Sample] = []
    for rep in range(reps):
        # Alternate which path goes first so drift (CPU clocks, caches) hits both alike.
        if rep % 2 == 0:
            bare.append(await measure(bare_run, url))
            agent.append(await measure(nbagent_run, url))
        else:
            agent.append(await measure(nbagent_run, url))
            bare.append(await measure(bare_run, url))
        print(
            f"  rep {rep + 1:>2}: bare {bare[-1].cpu_s * 1000:8.1f} ms   "
            f"nbagent {agent[-1].cpu_s * 1000:8.1f} ms   "
            f"ratio {agent[-1].cpu_s / bare[-1].cpu_s:5.2f}",
            flush=True,
        )
    if profile_top:
        print("\n=== cProfile: bare litellm (by own time) ===")
        print(await profile(bare_run, url, profile_top))
        print("=== cProfile: nbagent run (by own time) ===")
        print(await profile(nbagent_run, url, profile_top))
    return bare, agent


def _median(samples: list[Sample], attr: str) -> float:
    values: list[float] = [float(getattr(s, attr)) for s in samples]
    return statistics.median(values)


def report(bare: list[Sample], agent: list[Sample], tokens: int) -> float:
    rows: list[tuple[str, list[Sample]]] = [("bare litellm", bare), ("nbagent run", agent)]
    print()
    print(
        f"{'path':<14}{'CPU ms (median)':>16}{'min':>9}{'max':>9}{'wall ms':>10}"
        f"{'µs/chunk':>10}{'chunks':>8}{'events':>8}"
    )
    for name, samples in rows:
        cpu = _median(samples, "cpu_s")
        chunks = int(_median(samples, "chunks"))
        print(
            f"{name:<14}{cpu * 1000:>16.1f}"
            f"{min(s.cpu_s for s in samples) * 1000:>9.1f}"
            f"{max(s.cpu_s for s in samples) * 1000:>9.1f}"
            f"{_median(samples, 'wall_s') * 1000:>10.1f}"
            f"{cpu / max(chunks, 1) * 1e6:>10.1f}"
            f"{chunks:>8}{int(_median(samples, 'events')):>8}"
        )
    lengths = {s.text_len for s in bare + agent}
    if len(lengths) != 1 or any(s.chunks != tokens for s in bare + agent):
        print(f"WARNING: the paths did not see the same stream (text lengths {sorted(lengths)})")
    per_rep = sorted(a.cpu_s / b.cpu_s for b, a in zip(bare, agent, strict=True))
    print(
        f"per-repetition ratios: {', '.join(f'{r:.2f}' for r in per_rep)} "
        f"(median {statistics.median(per_rep):.2f})"
    )
    ratio = _median(agent, "cpu_s") / _median(bare, "cpu_s")
    extra = (_median(agent, "cpu_s") - _median(bare, "cpu_s")) / max(tokens, 1)
    print(f"nbagent adds {extra * 1e6:.1f} µs of CPU per streamed chunk (medians)")
    print(f"nbagent/litellm CPU ratio: {ratio:.2f} (goal <= 1.10)")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=7, help="measured runs of each path")
    parser.add_argument("--tokens", type=int, default=5000, help="streamed chunks per answer")
    parser.add_argument(
        "--profile",
        nargs="?",
        type=int,
        const=25,
        default=0,
        metavar="TOP",
        help="after measuring, cProfile one run of each path and print the TOP functions",
    )
    args = parser.parse_args(argv)
    reps = max(1, args.reps)
    replies = 2 * reps + 2 + (2 if args.profile else 0)
    print(
        f"nbagent {getattr(nbagent, '__version__', '?')}, litellm "
        f"{_version('litellm')}, Python {sys.version.split()[0]}: "
        f"{reps} repetitions x {args.tokens} chunks"
    )
    with scripted_server(replies, args.tokens) as url:
        bare, agent = asyncio.run(bench(url, reps, args.profile))
    report(bare, agent, args.tokens)
    return 0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
