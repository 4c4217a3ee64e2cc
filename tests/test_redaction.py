"""Secrets never leave a tool, the model or the notebook context: one redaction pass at
the source of every event (conversation, log, recordings, live view and transcript all
read events), over secret values in their escaped forms, URL passwords and token shapes."""

from __future__ import annotations

import html
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

import nbagent
from conftest import collect
from nbagent import Session, ToolOutput, tool
from nbagent._redact import REDACTED, redact
from nbagent.model import FinishChunk, ModelChunk, ModelRequest, UsageChunk
from nbagent.replay import RecordBook, ReplayModel
from nbagent.store import SessionStore, restore_session
from nbagent.testing import ScriptedModel, call, say, use_tools
from nbagent.tools import MAX_DISPLAY_BYTES

SECRET = "tok-" + "a\\b\u00e9" + os.urandom(6).hex()
"""A secret with a backslash and a non-ASCII letter: its escaped forms differ from it."""


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", SECRET)
    monkeypatch.setenv("DATABASE_URL", "postgres://admin:pw-db-9f8e7d@db.internal/prod")
    monkeypatch.setenv("GITHUB_PAT", "patvalue-" + "7" * 12)


def forms(secret: str) -> list[str]:
    """The ways text about a value spells it."""
    return [
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(secret)[1:-1])[1:-1],
        html.escape(secret),
        quote(secret, safe=""),
    ]


LEAKS = [
    *forms(SECRET),
    "pw-db-9f8e7d",  # the password of DATABASE_URL, alone
    "patvalue-777777777777",
]

SHAPES = [
    "ghp_" + "A1b2C3d4" * 5,
    "github_pat_11ABCDEFG0_" + "x" * 30,
    "xoxb-1234567890-abcdefghij",
    "xoxp-99999999999-zzzz",
    "AKIAIOSFODNN7EXAMPLE",
    "sk-proj-" + "Z" * 20,
    "glpat-" + "q" * 20,
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----",
]


def leaked(text: str) -> list[str]:
    found = [leak for leak in LEAKS if leak in text]
    found += [shape for shape in SHAPES if shape in text]
    return found


# -- the pattern --------------------------------------------------------------------------


@pytest.mark.parametrize("form", LEAKS, ids=range(len(LEAKS)))
def test_secret_values_are_redacted_in_every_escaped_form(form: str) -> None:
    assert redact(f"before {form} after") == f"before {REDACTED} after"


@pytest.mark.parametrize("shape", SHAPES, ids=range(len(SHAPES)))
def test_well_known_token_shapes_are_redacted(shape: str) -> None:
    assert redact(f"key: {shape}\n") == f"key: {REDACTED}\n"


def test_the_password_of_a_url_is_redacted_and_the_rest_stays() -> None:
    text = "connect to mysql://root:s3cr3t-pass@10.0.0.1:3306/app then"
    assert redact(text) == f"connect to mysql://root:{REDACTED}@10.0.0.1:3306/app then"
    env_url = os.environ["DATABASE_URL"]
    assert redact(env_url) == f"postgres://admin:{REDACTED}@db.internal/prod"


def test_ordinary_text_is_left_alone() -> None:
    text = "task-management, desk-top, https://example.com/a:b, user@host, ask-questions"
    assert redact(text) is text


def test_a_secret_set_later_is_redacted_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact("late-secret-1234") == "late-secret-1234"
    monkeypatch.setenv("LATE_API_KEY", "late-secret-1234")
    assert redact("late-secret-1234") == REDACTED


# -- every place an event goes ------------------------------------------------------------


@tool
def show_env(why: str) -> ToolOutput:
    """Display the environment (a tool gone wrong).

    Args:
        why: The reason.
    """
    env = dict(os.environ)
    bundle = {
        "text/plain": repr(env),
        "text/html": f"<pre>{html.escape(SECRET)}</pre><b>{SHAPES[0]}</b>",
        "text/markdown": f"`{os.environ['DATABASE_URL']}`",
        "application/json": {"env": env, "dumped": json.dumps(SECRET)},
    }
    return ToolOutput("shown", display=(bundle,))


async def test_displays_model_text_and_arguments_are_redacted_everywhere(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            use_tools(call("show_env", {"why": f"compare with {SECRET}"}), text=f"I see {SECRET}"),
            say(f"The key is {SECRET} and {json.dumps(SECRET)} and {SHAPES[2]}"),
        ]
    )
    book = RecordBook()
    replaying = ReplayModel(model, book, "record")
    store = SessionStore(tmp_path)
    session, recorder, _ = restore_session(store, "s", model=replaying, tools=[show_env])
    events = await collect(session, "show me")
    result_text = session.messages[-1]["content"]
    messages = json.dumps(session.messages, ensure_ascii=False)
    await recorder.aclose()
    await session.aclose()
    places = {
        "events": "\n".join(nbagent.event_to_json(e) for e in events),
        "conversation": messages,
        "second model request": json.dumps(model.requests[1].messages, ensure_ascii=False),
        "log": (tmp_path / "s.jsonl").read_text(encoding="utf-8"),
        "recordings": json.dumps([e.to_json() for e in book.entries()], ensure_ascii=False),
    }
    for place, text in places.items():
        assert leaked(text) == [], place
    finished = next(e for e in events if isinstance(e, nbagent.ToolFinished))
    assert REDACTED in finished.display[0]["text/html"]
    assert REDACTED in result_text


async def test_a_large_display_is_replaced_by_a_note_with_its_size() -> None:
    @tool
    def huge() -> ToolOutput:
        """Display a large value."""
        big = "x" * (MAX_DISPLAY_BYTES + 1)
        return ToolOutput("ok", display=({"text/html": big, "text/plain": "<big>"},))

    async with Session(ScriptedModel([use_tools(call("huge")), say("done")]), tools=[huge]) as s:
        events = await collect(s, "go")
    finished = next(e for e in events if isinstance(e, nbagent.ToolFinished))
    (bundle,) = finished.display
    assert "text/html" not in bundle
    assert bundle["text/plain"].startswith("<big>\n[display too large to keep (text/html: ")
    assert f"{MAX_DISPLAY_BYTES + 1:,} bytes" in bundle["text/plain"]
    assert len(nbagent.event_to_json(finished)) < 2_000


class ChunkedModel:
    """Streams ``text`` in pieces of ``size`` characters: a secret arrives in parts."""

    name = "chunked"

    def __init__(self, text: str, size: int) -> None:
        self.text, self.size = text, size

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        for at in range(0, len(self.text), self.size):
            yield self.text[at : at + self.size]
        yield FinishChunk("stop")
        yield UsageChunk(1, 1)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return None


async def test_a_secret_split_across_chunks_never_reaches_a_delta(tmp_path: Path) -> None:
    text = f"Here: {SECRET}\nand {SHAPES[0]}, then the end."
    store = SessionStore(tmp_path)
    session, recorder, _ = restore_session(store, "s", model=ChunkedModel(text, 3))
    events = await collect(session, "go")
    await recorder.aclose()
    await session.aclose()
    deltas = [e.text for e in events if isinstance(e, nbagent.TextDelta)]
    assert len(deltas) > 3
    assert "".join(deltas) == f"Here: {REDACTED}\nand {REDACTED}, then the end."
    for delta in deltas:
        assert not any(part in delta for part in (SECRET[:8], SECRET[-8:], SHAPES[0][:8]))
    assert leaked((tmp_path / "s.jsonl").read_text(encoding="utf-8")) == []
