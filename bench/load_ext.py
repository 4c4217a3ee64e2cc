"""``%load_ext nbagent`` time in a fresh kernel (goal: < 150 ms, litellm not imported).

Run: ``python bench/load_ext.py [--kernels 5]``

Each round starts a new kernel and times the magic inside it with ``time.perf_counter``
(what the user waits for after the kernel is up), then checks which heavy modules it
pulled in. Prints every round and the median.
"""

from __future__ import annotations

import argparse
import json
import statistics

from _kernel import fresh_kernel

PROBE = """
import sys, time, json
start = time.perf_counter()
get_ipython().run_line_magic("load_ext", "nbagent")
elapsed = time.perf_counter() - start
heavy = [m for m in ("litellm", "anywidget", "ipywidgets", "mistune") if m in sys.modules]
print(json.dumps({"ms": elapsed * 1000, "heavy": heavy}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kernels", type=int, default=5)
    args = parser.parse_args()
    times = []
    for round_ in range(args.kernels):
        with fresh_kernel() as kernel:
            result = json.loads(kernel.run(PROBE))
        times.append(result["ms"])
        print(
            f"kernel {round_ + 1}: {result['ms']:.1f} ms, heavy modules imported: "
            f"{result['heavy'] or 'none'}"
        )
    median = statistics.median(times)
    print(
        f"median %load_ext nbagent: {median:.1f} ms (goal < 150 ms) — "
        f"{'ok' if median < 150 else 'over the goal'}"
    )


if __name__ == "__main__":
    main()
