"""nbagent's pytest plugin: tells the kernel of ``pytest --nbval`` which notebook it runs.

nbval starts one kernel per notebook and tells it nothing about the notebook (only its
working directory), so a kernel would read the recordings of every notebook in the
folder. Before each notebook's kernel starts, this plugin sets ``NBAGENT_RECORDINGS`` to
that notebook (unless you set it yourself): the kernel reads its recordings only from the
notebook being executed, and ``NBAGENT_TRUST=1`` applies to that notebook alone.
Registered through the ``pytest11`` entry point; it imports nothing else of nbagent.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

RECORDINGS_ENV = "NBAGENT_RECORDINGS"


def _nbval_file(item: pytest.Item) -> Any:
    parent = item.parent
    if parent is not None and type(parent).__module__.split(".")[0] == "nbval":
        return parent
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Runs before the notebook's collector sets up (where nbval starts the kernel)."""
    notebook = _nbval_file(item)
    if notebook is None:
        return
    config = item.config
    own = config.stash.get(_OWN, None)
    if own is None:
        own = RECORDINGS_ENV not in os.environ  # a value the user set is theirs
        config.stash[_OWN] = own
    if own:
        os.environ[RECORDINGS_ENV] = str(notebook.path)


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_OWN, False):
        os.environ.pop(RECORDINGS_ENV, None)


_OWN = pytest.StashKey[bool]()
