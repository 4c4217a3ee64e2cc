"""A minimal notebook frontend over jupyter_client: runs cells, keeps every IOPub message,
tracks widget comms, and sends the comm messages a browser's widget manager would send."""

from __future__ import annotations

import os
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

Msg = dict[str, Any]


def kernel_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        HF_HUB_OFFLINE="1",
        OPENAI_API_KEY="sk-test",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    env.update(extra)
    return env


class Frontend:
    """Drive one kernel like JupyterLab does (``allow_stdin=True``) or like nbclient."""

    def __init__(self, client: BlockingKernelClient, manager: KernelManager) -> None:
        self.client = client
        self.manager = manager
        self.iopub: list[Msg] = []
        self.comms: dict[str, Msg] = {}
        """comm_id → its comm_open message."""
        self.state: dict[str, dict[str, Any]] = {}
        """comm_id → the widget state as a browser would hold it."""
        self.custom: dict[str, list[Any]] = {}
        """comm_id → custom messages received, in order."""
        self.updates: dict[str, int] = {}
        """comm_id → state updates received."""
        self._request = 0

    # -- messages --------------------------------------------------------------------------

    def _take(self, msg: Msg) -> None:
        self.iopub.append(msg)
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
            comm_id = content["comm_id"]
            self.comms[comm_id] = msg
            self.state[comm_id] = dict(content["data"].get("state", {}))
            self.custom[comm_id] = []
        elif kind == "comm_msg" and content["comm_id"] in self.state:
            data = content["data"]
            if data.get("method") == "update":
                self.state[content["comm_id"]].update(data.get("state", {}))
                self.updates[content["comm_id"]] = self.updates.get(content["comm_id"], 0) + 1
            elif data.get("method") == "custom":
                custom = data["content"]
                self.custom[content["comm_id"]].append(custom)
                if isinstance(custom, dict) and custom.get("type") == "patch":
                    self._patch(self.state[content["comm_id"]], custom)

    @staticmethod
    def _patch(state: dict[str, Any], patch: dict[str, Any]) -> None:
        """Apply a view's patch message as the page does: the blocks it holds replace
        those at their places."""
        blocks = list(state.get("blocks", []))
        for i, block in patch["blocks"]:
            blocks.extend({} for _ in range(i + 1 - len(blocks)))
            blocks[i] = block
        state["blocks"] = blocks
        state["synced_seq"] = patch["seq"]

    def pump(self, timeout: float = 0.05) -> None:
        """Read every IOPub message available now (waiting up to ``timeout`` for one)."""
        wait = timeout
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=wait)
            except queue.Empty:
                return
            self._take(msg)
            wait = 0.001

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Read IOPub until ``check()`` returns something truthy; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                kinds = [m["msg_type"] for m in self.iopub[-30:]]
                raise AssertionError(f"timed out waiting for {what}; last messages: {kinds}")
            self.pump(0.05)

    def for_cell(self, msg_id: str) -> list[Msg]:
        return [m for m in self.iopub if m["parent_header"].get("msg_id") == msg_id]

    # -- cells -----------------------------------------------------------------------------

    def execute(self, code: str, *, allow_stdin: bool = True) -> str:
        return str(self.client.execute(code, allow_stdin=allow_stdin, stop_on_error=False))

    def execute_cell(self, code: str, cell_id: str) -> str:
        """Run ``code`` as the notebook cell ``cell_id`` (JupyterLab sends the cell's id)."""
        content = {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": True, "stop_on_error": False,
        }  # fmt: skip
        msg = self.client.session.msg("execute_request", content, metadata={"cellId": cell_id})
        self.client.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    def saved_outputs(self, msg_id: str) -> list[dict[str, Any]]:
        """A cell's outputs as JupyterLab saves them in the .ipynb: displays, with each
        ``update_display_data`` replacing the data and metadata of its display."""
        outputs: list[dict[str, Any]] = []
        by_display: dict[str, dict[str, Any]] = {}
        for m in self.for_cell(msg_id):
            kind, content = m["msg_type"], m["content"]
            if kind in ("display_data", "execute_result"):
                output = {"output_type": kind, "data": content["data"],
                          "metadata": content.get("metadata", {})}  # fmt: skip
                if kind == "execute_result":
                    output["execution_count"] = content.get("execution_count")
                outputs.append(output)
                display_id = (content.get("transient") or {}).get("display_id")
                if display_id:
                    by_display[display_id] = output
            elif kind == "update_display_data":
                target = by_display.get((content.get("transient") or {}).get("display_id"))
                if target is not None:
                    target["data"] = content["data"]
                    target["metadata"] = content.get("metadata", {})
            elif kind == "stream":
                outputs.append({"output_type": "stream", "name": content["name"],
                                "text": content["text"]})  # fmt: skip
        return outputs

    def reply(self, msg_id: str, timeout: float = 60.0) -> Msg:
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0)
            try:
                msg = self.client.get_shell_msg(timeout=0.05)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no execute_reply for {msg_id}") from None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                self.wait_for("the cell to go idle", lambda: self.idle(msg_id), 10)
                return msg

    def idle(self, msg_id: str) -> bool:
        return any(
            m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            for m in self.for_cell(msg_id)
        )

    def run(self, code: str, timeout: float = 60.0) -> Msg:
        """Run a cell to the end; fail the test if it raised."""
        msg_id = self.execute(code)
        reply = self.reply(msg_id, timeout)
        if reply["content"]["status"] != "ok":
            raise AssertionError("\n".join(reply["content"].get("traceback", [])))
        return reply

    def stdout(self, msg_id: str) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.for_cell(msg_id)
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )

    def evaluate(self, expression: str) -> str:
        """Print ``expression`` in the kernel and return what it printed."""
        msg_id = self.execute(f"print({expression})")
        self.reply(msg_id)
        return self.stdout(msg_id).strip()

    # -- widgets ---------------------------------------------------------------------------

    def views(self, msg_id: str) -> list[str]:
        """comm ids of the nbagent views opened by a cell."""
        return [
            comm_id
            for comm_id, msg in self.comms.items()
            if msg["parent_header"].get("msg_id") == msg_id
            and "nbagent" in str(msg["content"]["data"]["state"].get("_anywidget_id", ""))
        ]

    def send_custom(self, comm_id: str, content: dict[str, Any]) -> int:
        """Send what ``model.send(content)`` sends from the page; returns the request id."""
        self._request += 1
        content = {**content, "request": self._request}
        msg = self.client.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}}
        )
        self.client.shell_channel.send(msg)
        return self._request

    def ack(self, comm_id: str, request: int, timeout: float = 10.0) -> dict[str, Any]:
        return dict(
            self.wait_for(
                f"the ack of request {request}",
                lambda: next(
                    (
                        c
                        for c in self.custom.get(comm_id, [])
                        if c.get("type") == "ack" and c.get("request") == request
                    ),
                    None,
                ),
                timeout,
            )
        )

    def attach_widgets(self, timeout: float = 10.0) -> list[str]:
        """What a page that opens while the kernel runs does (a reload, a second browser):
        open a ``jupyter.widget.control`` comm and ask it for every widget's state, as
        the widget manager of JupyterLab does. Returns the widgets' comm ids."""
        control = uuid.uuid4().hex
        session = self.client.session
        opening = {"comm_id": control, "target_name": "jupyter.widget.control", "data": {}}
        asking = {"comm_id": control, "data": {"method": "request_states"}}
        self.client.shell_channel.send(
            session.msg("comm_open", opening, metadata={"version": "1.0.0"})
        )
        self.client.shell_channel.send(session.msg("comm_msg", asking))

        def states() -> dict[str, Any] | None:
            for m in self.iopub:
                content = m["content"]
                if m["msg_type"] == "comm_msg" and content.get("comm_id") == control:
                    return dict(content["data"].get("states") or {})
            return None

        found = self.wait_for("the widget states", states, timeout)
        for comm_id, model in found.items():
            self.state[comm_id] = dict(model.get("state") or {})
            self.custom.setdefault(comm_id, [])
        return list(found)

    def request_state(self, comm_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Ask the kernel for a widget's whole state (as a widget manager does) and wait."""
        self.state[comm_id] = {}
        seen = self.updates.get(comm_id, 0)
        msg = self.client.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "request_state"}}
        )
        self.client.shell_channel.send(msg)
        self.wait_for(
            f"the state of {comm_id}", lambda: self.updates.get(comm_id, 0) > seen, timeout
        )
        return dict(self.state[comm_id])

    def pending_card(self, comm_id: str) -> dict[str, Any] | None:
        for block in self.state[comm_id].get("blocks", []):
            if block.get("kind") == "tool" and block.get("status") == "pending":
                return dict(block)
        return None

    def final_bundle(self, msg_id: str) -> dict[str, Any]:
        """The last display data of a cell (the static transcript after a run), not
        counting the images the run shows after its transcript."""
        shown = [
            m["content"]["data"]
            for m in self.for_cell(msg_id)
            if m["msg_type"] in ("display_data", "update_display_data", "execute_result")
            and not {"image/png", "image/jpeg"} & set(m["content"]["data"])
        ]
        assert shown, "the cell displayed nothing"
        return dict(shown[-1])


@contextmanager
def running_kernel(cwd: str | None = None, **env: str) -> Iterator[Frontend]:
    """A kernel with nbagent loaded; ``cwd`` is its working directory (the notebook's
    folder, as JupyterLab starts it)."""
    manager = KernelManager(kernel_name="python3")
    manager.kernel_spec  # noqa: B018 - resolve it before start
    options: dict[str, Any] = {"cwd": cwd} if cwd is not None else {}
    manager.start_kernel(env=kernel_env(**env), extra_arguments=[], **options)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        front = Frontend(client, manager)
        front.run("%load_ext nbagent")
        yield front
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


__all__ = ["Frontend", "kernel_env", "running_kernel"]
