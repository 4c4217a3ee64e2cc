"""``python -m nbagent.testing``: run the scripted OpenAI-compatible server."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from ._script import load_script
from ._server import ScriptedServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nbagent.testing",
        description="Serve scripted chat completions on 127.0.0.1 (OpenAI-compatible, SSE).",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free)")
    parser.add_argument("--script", type=Path, help="JSON file with a list of replies")
    parser.add_argument(
        "--echo",
        action="store_true",
        help="when the script is used up, answer with the last user message",
    )
    args = parser.parse_args(argv)
    replies = load_script(args.script.read_bytes()) if args.script else []
    if not replies and not args.echo:
        parser.error("give --script FILE, --echo, or both")
    server = ScriptedServer(replies, echo=args.echo, port=args.port).start()
    print(f"scripted server listening on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
