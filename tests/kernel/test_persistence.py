"""Sessions beside the notebook, through real kernels: a kernel killed with SIGKILL, a
new kernel that resumes, a re-run cell that replaces its turn; and the notebook tools."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbagent.testing import ScriptedServer, call, say, stall, use_tools

from .frontend import Frontend, running_kernel

pytestmark = pytest.mark.kernel  # each module starts real Jupyter kernels

COUNT = '''
from pathlib import Path

def count(label: str) -> str:
    """Record that this call ran."""
    with Path(COUNT_FILE).open("a") as handle:
        handle.write(label + "\\n")
    return f"counted {label}"
'''


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def log_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    return [
        json.loads(line)["event"]
        for line in lines
        if line.endswith(b"}") and b'"type":"event"' in line
    ]


def wait_until(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def execute_in_cell(front: Frontend, code: str, cell: str) -> str:
    """Run ``code`` as the notebook cell ``cell`` (JupyterLab sends the cell id)."""
    content = {
        "code": code, "silent": False, "store_history": True, "user_expressions": {},
        "allow_stdin": True, "stop_on_error": False,
    }  # fmt: skip
    msg = front.client.session.msg("execute_request", content, metadata={"cellId": cell})
    front.client.shell_channel.send(msg)
    return str(msg["header"]["msg_id"])


def test_a_killed_kernel_comes_back_waiting_for_the_same_approval(
    server: ScriptedServer, tmp_path: Path
) -> None:
    home, count_file = tmp_path / "home", tmp_path / "count.txt"
    log = home / "kernel" / "default.jsonl"
    count_code = COUNT.replace("COUNT_FILE", repr(str(count_file)))
    first, second = (
        call("count", {"label": "first"}, id="c1"),
        call("count", {"label": "second"}, id="c2"),
    )
    server.add(use_tools(first, second), say("Counted both."))
    env = {"NBAGENT_HOME": str(home), "NBAGENT_API_BASE": server.url}
    with running_kernel(**env) as front:
        front.run(count_code)
        front.run("%config NBAgent.titles = False")
        msg_id = front.execute("%%agent --tools count\nCount first and second.")
        view = front.wait_for("the live view", lambda: front.views(msg_id))[0]
        card = front.wait_for("an approval card", lambda: front.pending_card(view))
        assert card["id"] == "c1"
        front.ack(
            view, front.send_custom(view, {"type": "decide", "id": "c1", "action": "approve"})
        )
        wait_until(
            "the log to hold c1's result and c2's request",
            lambda: (
                {("tool_finished", "c1"), ("approval_requested", "c2")}
                <= {(e["kind"], e.get("tool_call_id")) for e in log_events(log)}
            ),
        )
        os.kill(front.manager.provisioner.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    assert count_file.read_text().split() == ["first"]

    with running_kernel(**env) as front:
        front.run(count_code)
        msg_id = front.execute("%agent resume")
        view = front.wait_for("the resumed view", lambda: front.views(msg_id))[0]
        card = front.wait_for("the same approval again", lambda: front.pending_card(view))
        assert card["id"] == "c2" and card["arguments"][0][2] == '"second"'
        front.ack(
            view, front.send_custom(view, {"type": "decide", "id": "c2", "action": "approve"})
        )
        front.reply(msg_id)
        assert "Counted both." in front.final_bundle(msg_id)["text/plain"]
    assert count_file.read_text().split() == ["first", "second"]  # each exactly once


def test_re_running_a_cell_replaces_its_turn(server: ScriptedServer, tmp_path: Path) -> None:
    server.add(say("Paris."), say("About 2 million."), say("Rome."), say("About 2.8 million."))
    env = {"NBAGENT_HOME": str(tmp_path / "home"), "NBAGENT_API_BASE": server.url}
    with running_kernel(**env) as front:
        front.run("%config NBAgent.titles = False")  # no extra model request for a title
        for cell, prompt in (("cell-a", "Capital of France?"), ("cell-b", "Its population?")):
            front.reply(execute_in_cell(front, f"%%agent\n{prompt}", cell))
        # the user edits the first cell and runs the notebook again from there
        front.reply(execute_in_cell(front, "%%agent\nCapital of Italy?", "cell-a"))
        front.reply(execute_in_cell(front, "%%agent\nIts population?", "cell-b"))
    sent = [m["content"] for m in server.requests[-1]["messages"] if m["role"] != "system"]
    assert sent == ["Capital of Italy?", "Rome.", "Its population?"]


def test_notebook_tools_in_a_kernel(server: ScriptedServer, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is a test extra")
    plot = (
        "import matplotlib.pyplot as plt\n"
        "months = ['jan', 'feb', 'mar']\n"
        "plt.plot(months, [3, 5, 4])\n"
        "plt.title('revenue')"
    )
    server.add(
        use_tools(call("run_python", {"code": plot})),
        say("Plotted."),
        use_tools(call("run_python", {"code": "import time\nwhile True: time.sleep(0.05)"})),
    )
    env = {"NBAGENT_HOME": str(tmp_path / "home"), "NBAGENT_API_BASE": server.url}
    with running_kernel(**env) as front:
        front.run("%matplotlib inline")
        msg_id = front.execute("%%agent --tools notebook --approve all\nPlot revenue by month.")
        front.reply(msg_id)
        final = front.final_bundle(msg_id)
        # the figure is an ordinary output after the transcript, which refers to it
        assert "[image: shown below]" in final["text/html"] and "data:" not in final["text/html"]
        outputs = front.saved_outputs(msg_id)
        assert "text/html" in outputs[-2]["data"] and "image/png" in outputs[-1]["data"]
        assert outputs[-1]["data"]["text/plain"].startswith("<Figure size")
        assert sum("image/png" in o.get("data", {}) for o in outputs) == 1  # shown once
        # what changed in the kernel, said once in the result
        assert "kernel: created `months`: list (len 3)" in final["text/plain"]
        assert front.evaluate("months") == "['jan', 'feb', 'mar']"  # defined for later cells

        msg_id = front.execute("%%agent --tools notebook --approve all\nWait forever.")
        front.wait_for(
            "the code to start (its card says running)",
            lambda: any(
                c.get("type") == "patch"
                and any(b.get("status") == "running" for _, b in c["blocks"])
                for view in front.views(msg_id)
                for c in front.custom.get(view, [])
            ),
        )
        front.manager.interrupt_kernel()
        reply = front.reply(msg_id, timeout=20)
        assert reply["content"]["status"] == "error"
        assert front.evaluate("1 + 1") == "2"  # the kernel is fine


def test_unload_ext_stops_a_background_run_and_its_log_ends_it(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(stall(30, after=3, text="This answer will stall after three words"))
    log = tmp_path / "home" / "kernel" / "default.jsonl"
    env = {"NBAGENT_HOME": str(tmp_path / "home"), "NBAGENT_API_BASE": server.url}
    with running_kernel(**env) as front:
        front.run("%config NBAgent.titles = False")
        front.run("%%agent --mode background\nTake your time.")
        wait_until(
            "the run to stream", lambda: any(e["kind"] == "text_delta" for e in log_events(log))
        )
        front.run("%unload_ext nbagent")
        finished = wait_until(
            "the log to end the run",
            lambda: [e for e in log_events(log) if e["kind"] == "run_finished"],
        )
        assert finished[0]["status"] == "cancelled"

        server.add(say("Still here."))
        front.run("%load_ext nbagent")  # the log is free again: the conversation goes on
        msg_id = front.execute("%%agent\nAre you there?")
        front.reply(msg_id)
        assert "Still here." in front.final_bundle(msg_id)["text/plain"]
    assert [m["role"] for m in server.requests[-1]["messages"]] == ["user", "assistant", "user"]


def test_a_kernel_shut_down_ends_the_running_turn_in_its_log(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(stall(30, after=3, text="This answer will stall after three words"))
    log = tmp_path / "home" / "kernel" / "default.jsonl"
    env = {"NBAGENT_HOME": str(tmp_path / "home"), "NBAGENT_API_BASE": server.url}
    with running_kernel(**env) as front:
        front.run("%config NBAgent.titles = False")
        front.run("%%agent --mode background\nTake your time.")
        wait_until(
            "the run to stream", lambda: any(e["kind"] == "text_delta" for e in log_events(log))
        )
        front.manager.shutdown_kernel(now=False)  # the kernel exits: the registry closes
    finished = [e for e in log_events(log) if e["kind"] == "run_finished"]
    assert [e["status"] for e in finished] == ["cancelled"]
