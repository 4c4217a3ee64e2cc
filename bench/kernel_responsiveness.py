"""Kernel responsiveness while a background run streams 1,000 tokens/s.

Run: ``python bench/kernel_responsiveness.py [--rate 1000] [--samples 60]``

A fresh kernel; a local SSE server streams one-word chunks at ``--rate`` per second
through the real litellm path into a ``%%agent --mode background`` cell (live widget
attached, as in JupyterLab). The median round trip of a trivial ``execute_request`` is
measured idle, then while the run streams. Goal: the busy median within 2x the idle one.
"""

from __future__ import annotations

import argparse
import statistics
import time

from _kernel import Kernel, PacedServer, fresh_kernel


def sample(kernel: Kernel, n: int) -> list[float]:
    times = []
    for _ in range(n):
        times.append(kernel.round_trip())
        time.sleep(0.02)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--samples", type=int, default=60)
    args = parser.parse_args()
    seconds = args.samples * 0.04 + 8
    server = PacedServer(tokens=int(args.rate * seconds), rate=args.rate)
    with fresh_kernel() as kernel:
        kernel.run("%load_ext nbagent")
        # warm up litellm's import and first call outside the measurement
        warm = PacedServer(tokens=5, rate=1000)
        kernel.run(f"%%agent -s warm --api-base {warm.url}\nwarm up")
        kernel.drain_iopub()
        idle = sample(kernel, args.samples)
        kernel.run(f"%%agent -s bench --mode background --api-base {server.url}\nstream")
        time.sleep(1.0)  # let the stream reach its rate
        busy = sample(kernel, args.samples)
        still = kernel.run(
            "s = get_ipython().find_magic('agent').__self__.registry.sessions['bench']\n"
            "print(s.state.value)"
        ).strip()
        kernel.drain_iopub()
    server.close()
    idle_ms, busy_ms = statistics.median(idle) * 1000, statistics.median(busy) * 1000
    print(f"stream rate: {args.rate:.0f} tokens/s; run still streaming at the end: {still}")
    print(
        f"idle kernel:    median round trip {idle_ms:.2f} ms "
        f"(p90 {statistics.quantiles(idle, n=10)[-1] * 1000:.2f} ms)"
    )
    print(
        f"while streaming: median round trip {busy_ms:.2f} ms "
        f"(p90 {statistics.quantiles(busy, n=10)[-1] * 1000:.2f} ms)"
    )
    ratio = busy_ms / idle_ms
    print(f"ratio {ratio:.2f}x (goal <= 2x) — {'ok' if ratio <= 2 else 'over the goal'}")


if __name__ == "__main__":
    main()
