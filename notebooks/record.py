"""Re-record the example notebooks: ``python notebooks/record.py [NAME ...]``.

Each notebook is executed from the top with nbclient, in this folder, against nbagent's
scripted model (``nbagent.testing.ScriptedServer``: a local OpenAI-compatible server that
answers with the replies below), and saved with its outputs. The ``%%agent`` cells' outputs
then carry the recordings that let anyone re-run the notebook offline, without a key
(``pytest --nbval notebooks/quickstart.ipynb``).

Tool calls that ask are approved by a scripted person (``CellRun.scripted_person``: it
clicks **Approve** on every card), so each call's recorded decision is a person's, as
when you run the notebook in JupyterLab and click: a trusted replay decides the same
(``NBAGENT_TRUST=1 pytest --nbval notebooks/quickstart.ipynb``). Read-only tools run
without asking.

The notebooks' cells are the source of truth: edit them in Jupyter, adjust the scripted
replies here if the conversation changed, and run this script. To record with a real model
instead, run the notebook live with ``NBAGENT_REPLAY=record`` (or ``%%agent --replay
record``) and your API key, and save it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from nbagent.testing import Reply, ScriptedServer, call, say, use_tools

HERE = Path(__file__).resolve().parent

PLOT = textwrap.dedent(
    """\
    import matplotlib.pyplot as plt

    by_month = sales.groupby("month")["revenue"].sum()
    ax = by_month.plot(kind="bar", rot=0, color="#4c72b0", figsize=(6, 3.5))
    ax.set_title("Revenue by month")
    ax.set_xlabel("month")
    ax.set_ylabel("revenue")
    plt.tight_layout()
    by_month"""
)

SCRIPTS: dict[str, list[Reply]] = {
    "quickstart": [
        use_tools(
            call("add", {"a": 2, "b": 3}, id="call_add_2_3"),
            text="I will add them with the `add` tool.",
        ),
        say(
            "The `add` tool returned **5**, so 2 + 3 = 5: it adds its two integer "
            "arguments and gives back their sum.",
            words_per_chunk=3,
        ),
        say("5 × 4 = **20**.", words_per_chunk=3),
    ],
    "data-analysis": [
        use_tools(
            call("describe", {"name": "sales"}, id="call_describe_sales"),
            text="Let me look at the table first.",
        ),
        use_tools(
            call("run_python", {"code": PLOT}, id="call_plot_revenue"),
            text="Eight orders over four months, no missing values. Now the totals by "
            "month and a bar chart:",
        ),
        say(
            "`sales` has 8 rows, two orders a month for months 1 to 4: `month` and `units` "
            "(integers) and `revenue` (float), with no missing values.\n\n"
            "Total revenue by month, kept in `by_month`:\n\n"
            "| month | revenue |\n|---:|---:|\n| 1 | 2,100 |\n| 2 | 2,450 |\n"
            "| 3 | 2,750 |\n| 4 | 3,050 |\n\n"
            "Revenue grows every month, by 300 to 350 a month; month 4 is the best.",
            words_per_chunk=4,
        ),
    ],
    "mcp-tools": [
        use_tools(
            call(
                "mcp__time__convert_time",
                {
                    "source_timezone": "Europe/Paris",
                    "time": "12:00",
                    "target_timezone": "Asia/Tokyo",
                },
                id="call_convert_time",
            ),
            text="I will convert it with the time server.",
        ),
        say(
            "When it is 12:00 in Paris it is **20:00** in Tokyo: Tokyo is 8 hours ahead "
            "while Paris is on winter time (7 hours ahead in summer).",
            words_per_chunk=3,
        ),
    ],
}
"""The scripted model's replies, in the order each notebook's agent cells request them."""


def clean(nb: nbformat.NotebookNode) -> None:
    """Drop what changes between runs and says nothing: execution timings."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", ()):
            output.get("metadata", {}).pop("execution", None)
    nb.metadata.pop("widgets", None)


PERSON = """\
from nbagent.notebook.cell import CellRun
CellRun.scripted_person = staticmethod(lambda request: "approve")
"""
"""A hidden first cell: the scripted person who clicks Approve (removed before saving)."""


def execute(
    nb: nbformat.NotebookNode, name: str, env: dict[str, Any], *, person: bool = False
) -> None:
    """Run ``nb`` from the top with nbclient, in this folder, with ``env`` set; the kernel
    is told which notebook it runs (as JupyterLab tells it). ``person``: a scripted
    person clicks Approve on every card (a hidden first cell)."""
    env = {**env, "JPY_SESSION_NAME": f"{name}.ipynb", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    if person:
        nb.cells.insert(0, new_code_cell(PERSON))
    try:
        NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(HERE)}},
        ).execute()
    finally:
        if person:
            nb.cells.pop(0)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def record(name: str) -> Path:
    """Record live against the scripted model, then replay once: what is saved is what
    any later run writes (replayed, in JupyterLab or headless), so running an example
    leaves ``git status`` clean."""
    path = HERE / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    spec = KernelSpecManager().get_kernel_spec("python3")
    # What JupyterLab writes when it saves the notebook.
    nb.metadata["kernelspec"] = {
        "display_name": spec.display_name, "language": spec.language, "name": "python3",
    }  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="nbagent-record-") as home,
        ScriptedServer(SCRIPTS[name]) as server,
    ):
        execute(nb, name, {
            "NBAGENT_API_BASE": server.url,
            "NBAGENT_REPLAY": "record",  # ignore the recordings the notebook holds now
            "NBAGENT_HOME": home,  # the session logs go here, not in notebooks/.nbagent
            "OPENAI_API_KEY": "sk-recording",
        }, person=True)  # fmt: skip
        if server.remaining:
            raise SystemExit(f"{name}: {server.remaining} scripted replies were not used")
    clean(nb)
    nbformat.write(nb, path)
    with tempfile.TemporaryDirectory(prefix="nbagent-replay-") as home:
        execute(nb, name, {
            "NBAGENT_API_BASE": "http://127.0.0.1:9/v1",  # nothing listens: replay only
            "NBAGENT_REPLAY": "replay",
            "NBAGENT_TRUST": "1",
            "NBAGENT_HOME": home,  # a log made anew takes the session id the outputs name
            "OPENAI_API_KEY": "sk-recording",
        })  # fmt: skip
    clean(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path


def main(argv: list[str]) -> None:
    names = argv or sorted(SCRIPTS)
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        raise SystemExit(f"no script for {', '.join(unknown)}; known: {', '.join(SCRIPTS)}")
    for name in names:
        print(f"recorded {record(name).relative_to(HERE.parent)}")


if __name__ == "__main__":
    main(sys.argv[1:])
