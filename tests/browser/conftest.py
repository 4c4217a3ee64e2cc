"""Fixtures of the browser tests: one headless Chromium and one JupyterLab per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browser._jupyter import chromium, jupyterlab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """JupyterLab in a fresh folder: the URL of a notebook (``{name}``) and the folder."""
    home = tmp_path_factory.mktemp("lab")
    with jupyterlab(home) as url:
        yield url, home


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as running:
        yield running
