"""``nbagent pack`` / ``strip`` / ``info``: recordings in and out of a notebook."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nbagent.notebook.recordings import read_notebook
from nbagent.testing import ScriptedServer, say
from test_reproducible import notebook, record, replay_with_nbval


def nbagent_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbagent.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.kernel
def test_strip_then_pack_moves_the_recordings_into_the_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ScriptedServer([say("Blue."), say("Green.")]) as server:
        path = record(
            notebook("%%agent\nName a colour.", "%%agent\nAnother."), tmp_path / "a", server,
            monkeypatch,
        )  # fmt: skip
    assert "2 recorded model responses" in nbagent_cli("info", str(path)).stdout

    stripped = tmp_path / "stripped.ipynb"
    result = nbagent_cli("strip", str(path), "-o", str(stripped))
    assert result.returncode == 0 and "removed 2" in result.stdout
    assert len(read_notebook(stripped)) == 0
    fails = replay_with_nbval(stripped, tmp_path / "no-recordings", NBAGENT_REPLAY="replay")
    assert fails.returncode != 0 and "no recording matches" in fails.stdout

    packed = nbagent_cli("pack", str(stripped), "--store", str(tmp_path / "a" / ".home" / "kernel"))
    assert packed.returncode == 0, packed.stderr
    assert "packed 2 recorded responses from default" in packed.stdout
    assert len(read_notebook(stripped)) == 2
    passes = replay_with_nbval(stripped, tmp_path / "packed", NBAGENT_REPLAY="replay")
    assert passes.returncode == 0, passes.stdout


def test_pack_without_a_log_says_where_it_looked(tmp_path: Path) -> None:
    path = tmp_path / "empty.ipynb"
    path.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    result = nbagent_cli("pack", str(path))
    assert result.returncode != 0 and "no session log found for empty.ipynb" in result.stderr
    (tmp_path / "plain.json").write_text("[]")
    assert "is not a notebook" in nbagent_cli("strip", str(tmp_path / "plain.json")).stderr
