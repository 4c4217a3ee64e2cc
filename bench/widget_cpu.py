"""Kernel CPU per streamed token with the live widget attached vs without.

Run: ``python bench/widget_cpu.py [--tokens 2000] [--rate 200] [--rounds 2]``

One kernel, the real litellm path, a local SSE server at ``--rate`` tokens/s. The same
stream runs into a ``%%agent`` cell as JupyterLab runs it (``allow_stdin=True``: live
view, coalesced delta messages, static twin at the end) and as nbclient runs it
(``allow_stdin=False``: no widget, static output only). Kernel CPU (user + system, all
threads, from ``getrusage``) is read before and after each run. Goal: the widget adds
under 10 % per token.
"""

from __future__ import annotations

import argparse
import json
import statistics

from _kernel import PacedServer, fresh_kernel

CPU = "import resource as _r; _u = _r.getrusage(_r.RUSAGE_SELF); _cpu0 = _u.ru_utime + _u.ru_stime"
DONE = (
    "_u = _r.getrusage(_r.RUSAGE_SELF); import json as _j\n"
    "print(_j.dumps({'cpu': _u.ru_utime + _u.ru_stime - _cpu0,\n"
    "                'tokens': _.usage.completion_tokens}))"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server = PacedServer(tokens=args.tokens, rate=args.rate)
    per_token: dict[str, list[float]] = {"widget": [], "no widget": []}
    with fresh_kernel() as kernel:
        kernel.run("%load_ext nbagent")
        kernel.run(f"%%agent -s warm --api-base {server.url}\nwarm up", allow_stdin=False)
        for round_ in range(args.rounds):
            for label, stdin in (("widget", True), ("no widget", False)):
                session = f"{label.replace(' ', '')}{round_}"
                kernel.run(CPU)
                kernel.run(
                    f"%%agent -s {session} --api-base {server.url}\nstream", allow_stdin=stdin
                )
                result = json.loads(kernel.run(DONE).strip().splitlines()[-1])
                micro = result["cpu"] / result["tokens"] * 1e6
                per_token[label].append(micro)
                print(
                    f"round {round_ + 1} {label:>9}: {result['tokens']} tokens, "
                    f"{result['cpu']:.2f} s CPU, {micro:.0f} µs/token"
                )
    server.close()
    with_w = statistics.median(per_token["widget"])
    without = statistics.median(per_token["no widget"])
    extra = (with_w - without) / without * 100
    print(
        f"median kernel CPU per token at {args.rate:.0f} tokens/s: widget {with_w:.0f} µs, "
        f"no widget {without:.0f} µs; the widget adds {extra:+.1f} % (goal < 10 %)"
    )


if __name__ == "__main__":
    main()
