"""The card's "Trust this notebook" button: offered only on the card of a replayed call
that waits because its recording was made elsewhere, and only when the kernel knows its
notebook; a click trusts that notebook's entries, never another notebook's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nbagent
from conftest import collect
from nbagent import ApprovalRequested, Session
from nbagent.notebook import recordings
from nbagent.notebook import trust as trust_store
from nbagent.render import Transcript
from nbagent.render.card import TRUST_LABEL
from nbagent.replay import RecordBook, Recorded
from nbagent.testing import ScriptedModel, call, say, use_tools
from test_trust import decision, entries, replay, with_decisions, write


def trust_labels(events: list[nbagent.Event], *, can_trust: bool = True) -> list[str | None]:
    """The trust button of each card while it waits, as the live view gets it."""
    transcript = Transcript()
    transcript.can_trust = can_trust
    labels: list[str | None] = []
    for event in events:
        transcript.add(event)
        if isinstance(event, ApprovalRequested):
            labels.append(transcript.cards[event.tool_call_id].to_json()["trust_label"])
    return labels


async def test_an_untrusted_replayed_call_offers_trust_when_the_notebook_is_known() -> None:
    first, last = await entries("a.txt")
    book = RecordBook([with_decisions(first, decision("a.txt")), last], source="nb.ipynb")
    events = await replay(book)
    assert trust_labels(events) == [TRUST_LABEL]
    assert trust_labels(events, can_trust=False) == [None]  # the note says how instead


async def test_ordinary_cards_and_trusted_replays_do_not_offer_trust() -> None:
    model = ScriptedModel([use_tools(call("write", {"path": "a.txt"})), say("done")])
    async with Session(model, tools=[write]) as session:
        live = await collect(session, "write it", on_approval=lambda s, r: s.deny(
            r.tool_call_id, reason="no"))  # fmt: skip
    assert trust_labels(live) == [None]
    first, last = await entries("a.txt")
    by_policy = decision("a.txt", decided_by="policy")  # trusted, and a person is asked
    trusted = RecordBook([with_decisions(first, by_policy), last], trusted=True, source="nb")
    assert trust_labels(await replay(trusted)) == [None]


def notebook(path: Path, recorded: list[Recorded]) -> Path:
    meta = {"nbagent": {"recording": [entry.to_json() for entry in recorded]}}
    output = {"output_type": "display_data", "data": {"text/plain": ""}, "metadata": meta}
    cell = {"cell_type": "code", "source": "", "metadata": {}, "execution_count": 1,
            "outputs": [output]}  # fmt: skip
    nb = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


async def test_trusting_a_notebook_trusts_its_entries_and_no_other_notebooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(trust_store.DATA_ENV, str(tmp_path / "data"))
    ours = notebook(tmp_path / "ours.ipynb", await entries("a.txt"))
    theirs = notebook(tmp_path / "theirs.ipynb", await entries("b.txt", prompt="other"))
    book = RecordBook()
    recordings.add_notebook(book, ours)
    recordings.add_notebook(book, theirs)
    assert recordings.trust_notebook(book, ours) == 2
    assert [book.trusted(e) for e in book.entries()] == [True, True, False, False]
    assert recordings.notebook_trusted(ours) and not recordings.notebook_trusted(theirs)
    data = json.loads(ours.read_text(encoding="utf-8"))
    assert trust_store.trusted_hashes() == {recordings.recordings_digest(data)}
