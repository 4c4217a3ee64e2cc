"""Trusted notebooks on this machine: ``nbagent trust NOTEBOOK`` records a hash of the
notebook's recordings, like ``jupyter trust`` signs a notebook.

The hashes live in one text file, ``trusted`` in nbagent's folder of the user's Jupyter
data directory (``jupyter_core.paths.jupyter_data_dir()/nbagent``, or
``$NBAGENT_DATA_DIR``): one line per trusted notebook, the hash then the path it had. A
notebook is trusted while its recordings hash the same: editing a recording (or adding
one) needs a new decision. The hash covers the recordings only, so running and saving
the notebook again keeps it trusted as long as the recordings stay.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "NBAGENT_DATA_DIR"
"""Overrides the folder of the trust file (tests, CI)."""


def data_dir() -> Path:
    """nbagent's folder in the user's Jupyter data directory."""
    override = os.environ.get(DATA_ENV)
    if override:
        return Path(override)
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "nbagent"


def trust_file() -> Path:
    return data_dir() / "trusted"


def trusted_hashes() -> set[str]:
    """Every recordings hash trusted on this machine."""
    try:
        lines = trust_file().read_text(encoding="utf-8").splitlines()
    except OSError:
        return set()
    return {line.split(maxsplit=1)[0] for line in lines if line.strip()}


def is_trusted(digest: str) -> bool:
    return digest in trusted_hashes()


def trust(digest: str, path: Path) -> bool:
    """Record ``digest`` as trusted (``path`` is kept as a note); False if it already was."""
    if is_trusted(digest):
        return False
    target = trust_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(f"{digest} {path.resolve()}\n")
    return True
