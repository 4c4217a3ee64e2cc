"""``nbagent``: the command line for recordings.

nbagent pack NOTEBOOK [--session NAME] [--store DIR]   put a session's recordings in
                                                       the notebook (its metadata)
nbagent strip NOTEBOOK [--output OUT]                  remove every recording
nbagent info NOTEBOOK                                  count what a notebook carries
nbagent trust NOTEBOOK                                 trust the notebook's recordings
                                                       on this machine (their side
                                                       effects replay without asking)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import NbAgentError
from .notebook import recordings
from .notebook import trust as trust_store
from .store import SessionStore, default_store_root


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"nbagent: cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or "cells" not in data:
        raise SystemExit(f"nbagent: {path} is not a notebook")
    return data


def _write(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _stores(notebook: Path, store: str | None) -> list[SessionStore]:
    if store:
        return [SessionStore(store)]
    return [SessionStore(default_store_root(str(notebook.resolve())))]


def pack(notebook: Path, session: str | None, store: str | None) -> int:
    """Merge the recordings of a session's log into the notebook's metadata."""
    data = _read(notebook)
    entries: dict[str, dict[str, Any]] = {}
    found_sessions = []
    for folder in _stores(notebook, store):
        names = [session] if session else folder.names()
        for name in names:
            if not folder.exists(name):
                continue
            found_sessions.append(name)
            for entry in folder.recordings(name):
                entries.setdefault(str(entry.get("fingerprint")), entry)
    if not found_sessions:
        where = ", ".join(str(s.root) for s in _stores(notebook, store))
        raise SystemExit(
            f"nbagent: no session log found for {notebook.name} (looked in {where}); when the "
            "kernel did not know the notebook's name its sessions are in .nbagent/kernel: "
            "pass --store .nbagent/kernel"
        )
    total = recordings.pack(data, entries.values())
    _write(data, notebook)
    print(f"packed {len(entries)} recorded responses from {', '.join(found_sessions)} "
          f"into {notebook} ({total} in its metadata)")  # fmt: skip
    return 0


def strip(notebook: Path, output: Path | None) -> int:
    """Remove recordings from the notebook's metadata and from every cell output."""
    data = _read(notebook)
    removed = recordings.strip(data)
    _write(data, output or notebook)
    print(f"removed {removed} recorded responses; {output or notebook} replays nothing now")
    return 0


def info(notebook: Path) -> int:
    try:
        book = recordings.read_notebook(notebook)
    except NbAgentError as exc:
        raise SystemExit(f"nbagent: {exc}") from None
    print(f"{notebook}: {len(book)} recorded model responses")
    return 0


def trust(notebook: Path) -> int:
    """Trust the notebook's recordings as they are now (a hash in the user's data folder)."""
    data = _read(notebook)
    try:
        found = len(recordings.read_notebook(notebook))
    except NbAgentError as exc:
        raise SystemExit(f"nbagent: {exc}") from None
    if not found:
        raise SystemExit(f"nbagent: {notebook} holds no recordings: there is nothing to trust")
    digest = recordings.recordings_digest(data)
    new = trust_store.trust(digest, notebook)
    state = "now trusted" if new else "already trusted"
    print(f"{notebook}: the {found} recorded responses and their tool-call decisions are "
          f"{state} on this machine ({trust_store.trust_file()}); they replay with the "
          "decisions recorded in them. Editing a recording needs a new decision.")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbagent", description="Recordings in notebooks.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="put a session's recordings in the notebook")
    p.add_argument("notebook", type=Path)
    p.add_argument("--session", help="session name (default: every session of the notebook)")
    p.add_argument("--store", help="session folder (default: .nbagent/<notebook> beside it)")
    s = commands.add_parser("strip", help="remove every recording from a notebook")
    s.add_argument("notebook", type=Path)
    s.add_argument("--output", "-o", type=Path, help="write here instead of in place")
    i = commands.add_parser("info", help="count the recordings a notebook carries")
    i.add_argument("notebook", type=Path)
    t = commands.add_parser("trust", help="trust a notebook's recordings on this machine")
    t.add_argument("notebook", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        return pack(args.notebook, args.session, args.store)
    if args.command == "strip":
        return strip(args.notebook, args.output)
    if args.command == "trust":
        return trust(args.notebook)
    return info(args.notebook)


if __name__ == "__main__":
    sys.exit(main())
