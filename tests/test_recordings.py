"""The recording format inside a notebook: read, written at the end of a run, packed,
stripped; and which files a kernel reads its recordings from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nbagent import RunResult, Session
from nbagent.events import ModelResponded
from nbagent.notebook import recordings
from nbagent.notebook.recordings import read_notebook
from nbagent.replay import RecordBook, Recorded, ReplayError, ReplayModel
from nbagent.store import SessionStore
from nbagent.testing import ScriptedModel, call, say, use_tools
from nbagent.tools import function_tool


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def record(book: RecordBook) -> tuple[list[Recorded], RunResult]:
    model = ReplayModel(ScriptedModel([use_tools(call("add", {"a": 2, "b": 3})), say("5")]), book)
    async with Session(model, tools=[function_tool(add)], approval="all") as session:
        with session.subscribe() as events:
            result = await session.ask("2+3?")
            responses = [e for e in events.drain() if isinstance(e, ModelResponded)]
    assert result.text == "5"
    used = [book.get(r.provenance.fingerprint) for r in responses if r.provenance]
    return [e for e in used if e is not None], result


def notebook_with(recording: object, tmp_path: Path, **metadata: object) -> Path:
    path = tmp_path / "shared.ipynb"
    cell = {
        "cell_type": "code", "source": "%%agent\nhi", "metadata": {}, "execution_count": 1,
        "outputs": [{"output_type": "display_data", "data": {"text/plain": "x"},
                     "metadata": {"nbagent": {"recording": recording}}}],
    }  # fmt: skip
    path.write_text(
        json.dumps({"cells": [cell], "metadata": metadata, "nbformat": 4, "nbformat_minor": 5})
    )
    return path


async def test_recordings_load_from_a_notebook_file(tmp_path: Path) -> None:
    entries, _ = await record(RecordBook())
    loaded = read_notebook(notebook_with([e.to_json() for e in entries], tmp_path))
    assert len(loaded) == 2 and not loaded.trusted(entries[0])


async def test_a_runs_output_metadata_reads_back_with_its_tool_results(tmp_path: Path) -> None:
    entries, run = await record(RecordBook())
    results = recordings.tool_results(run.tool_calls)
    metadata = recordings.output_metadata("default", entries, results)
    assert metadata["nbagent"]["session"] == "default"
    path = notebook_with(metadata["nbagent"]["recording"], tmp_path)
    data = json.loads(path.read_text())
    data["cells"][0]["outputs"][0]["metadata"] = metadata
    path.write_text(json.dumps(data))

    book = read_notebook(path)
    assert len(book) == 2
    served = book.tool_result("add", {"a": 2, "b": 3})
    assert served is not None and served["result"] == "5"


@pytest.mark.parametrize(
    ("recording", "message"),
    [
        ([{"schema": 99, "fingerprint": "f"}], "newer nbagent"),
        ([{"schema": 1, "fingerprint": "f", "unexpected": 1}], "malformed"),
        ({"not": "a list"}, "not a list"),
        (["oops"], "must be an object"),
    ],
)
def test_bad_recordings_are_reported_clearly(
    recording: object, message: str, tmp_path: Path
) -> None:
    with pytest.raises(ReplayError, match=message):
        read_notebook(notebook_with(recording, tmp_path))


def test_a_truncated_notebook_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut.ipynb"
    path.write_text('{"cells": [')
    with pytest.raises(ReplayError, match=r"cannot read recordings from .*cut\.ipynb"):
        read_notebook(path)


async def test_pack_merges_a_logs_entries_and_strip_removes_everything(tmp_path: Path) -> None:
    entries, _ = await record(RecordBook())
    store = SessionStore(tmp_path / "store")
    with store.open("default") as log:
        log.recording([e.to_json() for e in entries])
    data = json.loads(notebook_with([entries[0].to_json()], tmp_path).read_text())

    assert recordings.pack(data, store.recordings("default")) == 2
    assert recordings.pack(data, store.recordings("default")) == 2  # no duplicates
    assert len(recordings.packed_entries(data)) == 2
    assert recordings.strip(data) == 3  # two packed, one in the cell's output
    assert "nbagent" not in data["metadata"]
    assert "nbagent" not in data["cells"][0]["outputs"][0]["metadata"]


def test_which_files_a_kernel_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBAGENT_RECORDINGS", raising=False)
    (tmp_path / "b.ipynb").write_text("{}")
    (tmp_path / "a.ipynb").write_text("{}")
    assert recordings.recording_files(None) == [tmp_path / "a.ipynb", tmp_path / "b.ipynb"]
    # JupyterLab's path is relative to the server root: the file in the working directory
    assert recordings.recording_files("work/a.ipynb") == [tmp_path / "a.ipynb"]
    monkeypatch.setenv("NBAGENT_RECORDINGS", f"x.ipynb{os.pathsep}y.ipynb")
    assert recordings.recording_files("a.ipynb") == [Path("x.ipynb"), Path("y.ipynb")]


def test_a_bad_guessed_notebook_is_skipped_a_named_one_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBAGENT_RECORDINGS", raising=False)
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    assert len(recordings.kernel_book(None)) == 0
    assert "recordings skipped" in capsys.readouterr().err
    with pytest.raises(ReplayError, match=r"broken\.ipynb"):
        recordings.kernel_book("broken.ipynb")
