"""What the kernel knows about its frontend, and the run mode a cell gets from it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from nbagent.notebook import frontend
from nbagent.notebook.frontend import batch_run, cell_id, notebook_path, pick_mode


def shell(allow_stdin: bool | None = True, **namespace: Any) -> SimpleNamespace:
    parent = {"metadata": {"cellId": "cell-7"}}
    kernel = (
        None if allow_stdin is None
        else SimpleNamespace(_allow_stdin=allow_stdin, get_parent=lambda: parent)
    )  # fmt: skip
    return SimpleNamespace(kernel=kernel, user_ns=namespace)


def test_without_a_kernel_every_cell_is_headless() -> None:
    assert pick_mode("wait", shell(None)) == "headless"
    assert pick_mode("background", shell(None)) == "headless"


def test_a_program_that_runs_the_notebook_gets_headless_cells() -> None:
    nbclient = shell(allow_stdin=False)
    assert batch_run(nbclient) and pick_mode("auto", nbclient) == "headless"
    assert pick_mode("wait", nbclient) == "headless"
    assert pick_mode("background", nbclient) == "background"  # asked for, explicitly


@pytest.mark.parametrize(
    ("version", "mode"), [((7, 4), "wait"), ((7, 3), "background"), (None, "background")]
)
def test_auto_waits_where_clicks_reach_a_busy_cell(
    monkeypatch: pytest.MonkeyPatch, version: tuple[int, ...] | None, mode: str
) -> None:
    monkeypatch.setattr(frontend, "ipykernel_version", lambda: version)
    lab = shell(allow_stdin=True)
    assert not batch_run(lab)
    assert pick_mode("auto", lab) == mode
    assert pick_mode("wait", lab) == "wait"


def test_the_notebook_and_the_cell_when_the_frontend_says() -> None:
    assert notebook_path(shell(__session__="work/a.ipynb")) == "work/a.ipynb"
    assert notebook_path(shell(__vsc_ipynb_file__="/x/b.ipynb", __session__="a")) == "/x/b.ipynb"
    assert notebook_path(shell(__session__="console-1")) is None
    assert cell_id(shell()) == "cell-7" and cell_id(shell(None)) is None
