"""The public surface is explicit and stable; importing nbagent stays light."""

from __future__ import annotations

import subprocess
import sys

import nbagent


def test_public_names_are_exported_and_exist() -> None:
    for name in nbagent.__all__:
        assert hasattr(nbagent, name), name
    for name in ("Session", "tool", "Hooks", "Budget", "RetryPolicy", "AllowRule", "Event",
                 "TextDelta", "ApprovalRequested", "RunFinished", "NbAgentError"):  # fmt: skip
        assert name in nbagent.__all__


def test_every_error_derives_from_the_one_base() -> None:
    errors = [getattr(nbagent, n) for n in nbagent.__all__ if n.endswith("Error")]
    assert errors and all(issubclass(e, nbagent.NbAgentError) for e in errors)


def test_import_does_not_load_litellm_or_ipython() -> None:
    code = "import sys, nbagent; print('litellm' in sys.modules, 'IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
