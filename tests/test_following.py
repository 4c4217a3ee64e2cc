"""Sessions follow the notebook (``nbagent.notebook.following``): a notebook whose session
folder is empty finds its sessions by the log its outputs name, or by its cells' ids in
the logs' run tags, and takes them over (moved after a rename or move, copied for a copy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nbagent.events import RunStarted
from nbagent.notebook import following, recordings
from nbagent.store import EventRecord, SessionStore


def make_log(folder: Path, name: str = "default", tag: str | None = None) -> str:
    """A session log in ``folder``; returns its session id."""
    log = SessionStore(folder).open(name)
    try:
        if tag is not None:
            started = RunStarted(run_id="r1", session_id="s", prompt="hi", model="m", tag=tag)
            log.write([EventRecord(event=started)])
        header: dict[str, str] = json.loads(log.path.read_text().splitlines()[0])
        return header["session_id"]
    finally:
        log.close()


def notebook(path: Path, *, log: dict[str, str] | None = None, cell_id: str = "c1") -> None:
    meta: dict[str, Any] = {"nbagent": {"schema": 1, "session": "default"}}
    if log is not None:
        meta["nbagent"]["log"] = log
    cell = {"cell_type": "code", "id": cell_id, "source": "%%agent\nhi", "metadata": {},
            "outputs": [{"output_type": "display_data", "data": {}, "metadata": meta}],
            "execution_count": 1}  # fmt: skip
    path.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))  # fmt: skip


def test_a_renamed_notebook_takes_its_folder_along(tmp_path: Path) -> None:
    old = tmp_path / ".nbagent" / "Untitled"
    session_id = make_log(old)
    notebook(tmp_path / "analysis.ipynb",
             log=recordings.log_reference("Untitled", "default.jsonl", session_id))  # fmt: skip
    root = tmp_path / ".nbagent" / "analysis"
    note = following.adopt(root, "analysis.ipynb", tmp_path)
    assert note is not None and "moved" in note
    assert (root / "default.jsonl").is_file() and not old.exists()
    assert following.adopt(root, "analysis.ipynb", tmp_path) is None  # it has its logs now


def test_a_copy_beside_the_original_gets_a_copy_of_its_memory(tmp_path: Path) -> None:
    old = tmp_path / ".nbagent" / "analysis"
    session_id = make_log(old)
    ref = recordings.log_reference("analysis", "default.jsonl", session_id)
    notebook(tmp_path / "analysis.ipynb", log=ref)
    notebook(tmp_path / "analysis-copy.ipynb", log=ref)
    root = tmp_path / ".nbagent" / "analysis-copy"
    note = following.adopt(root, "analysis-copy.ipynb", tmp_path)
    assert note is not None and "copied" in note
    assert (root / "default.jsonl").read_bytes() == (old / "default.jsonl").read_bytes()


def test_an_open_session_is_copied_not_moved(tmp_path: Path) -> None:
    old = tmp_path / ".nbagent" / "Untitled"
    session_id = make_log(old)
    notebook(tmp_path / "analysis.ipynb",
             log=recordings.log_reference("Untitled", "default.jsonl", session_id))  # fmt: skip
    held = SessionStore(old).open("default")  # the old kernel still runs
    try:
        note = following.adopt(tmp_path / ".nbagent" / "analysis", "analysis.ipynb", tmp_path)
    finally:
        held.close()
    assert note is not None and "copied" in note and old.is_dir()


def test_without_log_references_the_cell_ids_in_run_tags_find_the_folder(tmp_path: Path) -> None:
    make_log(tmp_path / ".nbagent" / "other", tag="someone-else")
    make_log(tmp_path / ".nbagent" / "Untitled", tag="c1")
    notebook(tmp_path / "analysis.ipynb", cell_id="c1")
    root = tmp_path / ".nbagent" / "analysis"
    note = following.adopt(root, "analysis.ipynb", tmp_path)
    assert note is not None and "1 of the notebook's agent cells" in note
    assert (root / "default.jsonl").is_file()
    assert (tmp_path / ".nbagent" / "other").is_dir()


def test_a_notebook_moved_into_a_subfolder_finds_its_sessions_above(tmp_path: Path) -> None:
    session_id = make_log(tmp_path / ".nbagent" / "analysis")
    sub = tmp_path / "reports"
    sub.mkdir()
    notebook(sub / "analysis.ipynb",
             log=recordings.log_reference("analysis", "default.jsonl", session_id))  # fmt: skip
    root = sub / ".nbagent" / "analysis"
    note = following.adopt(root, "reports/analysis.ipynb", sub)
    assert note is not None and "moved" in note
    assert (root / "default.jsonl").is_file()


def test_a_reference_to_another_session_id_is_not_taken(tmp_path: Path) -> None:
    make_log(tmp_path / ".nbagent" / "Untitled")
    notebook(tmp_path / "analysis.ipynb",
             log=recordings.log_reference("Untitled", "default.jsonl", "not-that-one"))  # fmt: skip
    assert following.adopt(tmp_path / ".nbagent" / "analysis", "analysis.ipynb", tmp_path) is None
    assert following.adopt(tmp_path / ".nbagent" / "x", None, tmp_path) is None


def test_a_log_made_anew_takes_the_session_id_the_outputs_name(tmp_path: Path) -> None:
    ref = recordings.log_reference("analysis", "default.jsonl", "0123abcd")
    notebook(tmp_path / "analysis.ipynb", log=ref)
    assert following.recorded_session_id("analysis.ipynb", tmp_path, "default") == "0123abcd"
    assert following.recorded_session_id("analysis.ipynb", tmp_path, "other") is None
    assert following.recorded_session_id(None, tmp_path, "default") is None
