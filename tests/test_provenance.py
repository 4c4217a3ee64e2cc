"""Replays are visible and scoped; the output metadata says how a run was made.

A response served from a recording is marked in the live status and in the output
metadata (``responses``: each one's source), never in the saved transcript: a notebook
run live and saved must replay to the same outputs. A session never silently reuses what
another session of the kernel recorded live (after ``%agent new``, or another server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import nbagent
from nbagent.events import ModelResponded, Provenance, RunFinished, RunStarted
from nbagent.render import Transcript
from nbagent.testing import ScriptedServer, say


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "nbagent")
    yield ip
    ip.run_line_magic("unload_ext", "nbagent")


@pytest.fixture(autouse=True)
def _fresh(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NBAGENT_MODEL", "NBAGENT_API_BASE", "NBAGENT_REPLAY", "NBAGENT_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    shell.run_line_magic("config", "NBAgent.titles = False")
    shell.run_line_magic("agent", "new default")


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


HELLO = f"Hello from {__name__}."
"""A message no other test's recordings answer (the kernel's book outlives a test)."""


def run(shell: InteractiveShell, code: str) -> Any:
    result = shell.run_cell(code)
    if result.error_before_exec or result.error_in_exec:
        raise result.error_before_exec or result.error_in_exec
    return result.result


def test_a_new_session_does_not_reuse_what_the_old_one_recorded(
    shell: InteractiveShell, server: ScriptedServer
) -> None:
    server.add(say("First answer."), say("A fresh answer."))
    assert run(shell, f"%%agent --api-base {server.url}\n{HELLO}").text == "First answer."
    shell.run_line_magic("agent", "new default")
    again = run(shell, f"%%agent --api-base {server.url}\n{HELLO}")
    assert again.text == "A fresh answer." and len(server.requests) == 2
    assert again.metadata["nbagent"]["provenance"]["responses"][0]["source"] == "live"


def test_another_session_on_another_server_goes_live(shell: InteractiveShell) -> None:
    with ScriptedServer([say("From one.")]) as one, ScriptedServer([say("From two.")]) as two:
        assert run(shell, f"%%agent -s one --api-base {one.url}\n{HELLO}").text == "From one."
        assert run(shell, f"%%agent -s two --api-base {two.url}\n{HELLO}").text == "From two."
        assert len(two.requests) == 1


def test_replay_live_never_replays(shell: InteractiveShell, server: ScriptedServer) -> None:
    server.add(say("One."), say("Two."))
    run(shell, f"%%agent --api-base {server.url}\n{HELLO}")
    shell.run_line_magic("agent", "undo")
    live = run(shell, f"%%agent --api-base {server.url} --replay live\n{HELLO}")
    assert live.text == "Two." and len(server.requests) == 2


def test_a_replayed_response_is_marked_and_the_metadata_says_how_the_run_was_made(
    shell: InteractiveShell, server: ScriptedServer
) -> None:
    server.add(say("Recorded once."))
    first = run(shell, f"%%agent --api-base {server.url}\n{HELLO}")
    shell.run_line_magic("agent", "undo")  # the same request again, in the same session
    second = run(shell, f"%%agent --api-base {server.url}\n{HELLO}")
    assert second.text == "Recorded once." and len(server.requests) == 1
    made = second.metadata["nbagent"]["provenance"]
    assert made["model"] == "openai/gpt-4o-mini" and made["params"] == {}
    assert made["nbagent"] == nbagent.__version__
    assert "litellm" in first.metadata["nbagent"]["provenance"]  # it made the live one
    assert "litellm" not in made  # a replayed run does not depend on it
    assert [r["source"] for r in made["responses"]] == ["replayed"]
    fingerprint = first.metadata["nbagent"]["provenance"]["responses"][0]["fingerprint"]
    assert made["responses"][0]["fingerprint"] == fingerprint
    assert second.transcript.status_json()["details"].endswith("replayed")
    # the saved transcript is the same, live or replayed
    assert second.transcript.mimebundle() == first.transcript.mimebundle()


def test_the_live_status_counts_replayed_responses() -> None:
    transcript = Transcript(model="m", session="s")
    transcript.add(RunStarted(run_id="r", session_id="s", prompt="p", model="m", at=0.0))
    for turn, source in ((1, "replayed"), (2, "live")):
        provenance = Provenance(source=source, fingerprint=f"f{turn}")  # type: ignore[arg-type]
        transcript.add(ModelResponded(run_id="r", turn=turn, text="t", reasoning="",
                                      tool_calls=(), finish_reason="stop", message={},
                                      provenance=provenance))  # fmt: skip
    transcript.add(RunFinished(run_id="r", status="completed", text="t", turns=2, at=1.0))
    assert "1 of 2 responses replayed" in transcript.status_json()["details"]
    assert "replayed" not in transcript.to_plain()
