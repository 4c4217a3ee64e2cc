"""Files confined to the notebook's folder: list, read, write (with a diff preview)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from ..errors import FileAccessError

MAX_READ_BYTES = 1_000_000
MAX_WRITE_BYTES = 5_000_000
MAX_LIST = 500


class NotebookFolder:
    """Resolves paths inside ``root`` only: ``..``, absolute paths elsewhere and symlinks
    that lead out are refused."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = self.root / candidate
        resolved = candidate.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise FileAccessError(
                f"{path!r} is outside the notebook folder {self.root}; only files inside it "
                "can be used"
            )
        return resolved

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path != self.root else "."

    def list_files(self, path: str = ".", pattern: str = "*", recursive: bool = False) -> str:
        folder = self.resolve(path)
        if not folder.is_dir():
            raise FileAccessError(f"{path!r} is not a folder")
        found = folder.rglob(pattern) if recursive else folder.glob(pattern)
        lines = []
        for entry in sorted(found):
            if any(part.startswith(".") for part in entry.relative_to(folder).parts):
                continue
            try:
                inside = self.resolve(str(entry))
            except FileAccessError:
                continue  # a symlink that leads out is not listed
            size = "folder" if inside.is_dir() else f"{inside.stat().st_size:,} bytes"
            lines.append(f"{self.relative(entry)}  ({size})")
            if len(lines) >= MAX_LIST:
                lines.append(f"… more than {MAX_LIST} entries; narrow the pattern")
                break
        return "\n".join(lines) or f"(no files matching {pattern!r} in {path})"

    def read_file(self, path: str, offset: int = 0, max_bytes: int = 100_000) -> str:
        target = self.resolve(path)
        if not target.is_file():
            raise FileAccessError(f"{path!r} is not a file")
        size = target.stat().st_size
        if max_bytes > MAX_READ_BYTES:
            raise FileAccessError(f"max_bytes is limited to {MAX_READ_BYTES:,}")
        with target.open("rb") as handle:
            handle.seek(max(0, offset))
            data = handle.read(max_bytes)
        if b"\x00" in data[:8192]:
            return f"{path} is a binary file of {size:,} bytes; it cannot be shown as text"
        text = data.decode("utf-8", errors="replace")
        end = offset + len(data)
        if end < size:
            text += f"\n[… {size - end:,} more bytes; read again with offset={end}]"
        return text

    def write_plan(self, path: str, content: str) -> tuple[Path, str]:
        """Check a write and return the target and a unified diff of what it changes."""
        if len(content.encode()) > MAX_WRITE_BYTES:
            raise FileAccessError(f"content is larger than {MAX_WRITE_BYTES:,} bytes")
        target = self.resolve(path)
        if target.is_dir():
            raise FileAccessError(f"{path!r} is a folder")
        old = target.read_text(encoding="utf-8", errors="replace") if target.exists() else ""
        diff = "".join(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                content.splitlines(keepends=True),
                fromfile=f"a/{path}" if target.exists() else "/dev/null",
                tofile=f"b/{path}",
            )
        )
        return target, diff or "(no change)"

    def write_file(self, path: str, content: str) -> str:
        target, diff = self.write_plan(path, content)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return write_summary(self.relative(target), content, diff)

    def preview_write(self, arguments: dict[str, Any]) -> str:
        try:
            return self.write_plan(str(arguments["path"]), str(arguments["content"]))[1]
        except (FileAccessError, KeyError, OSError) as exc:
            return f"(cannot preview: {exc})"


def write_summary(path: str, content: str, diff: str) -> str:
    """What a write did, in one sentence (the card already shows the diff, and the model
    sent the content): ``wrote 12 lines to data.csv (+3 −1)``."""
    lines = len(content.splitlines())
    body = [line for line in diff.splitlines() if not line.startswith(("+++ ", "--- "))]
    added = sum(1 for line in body if line.startswith("+"))
    removed = sum(1 for line in body if line.startswith("-"))
    if diff.startswith("--- /dev/null"):
        change = "a new file"
    elif added or removed:
        change = f"+{added} −{removed}"
    else:
        change = "no change"
    return f"wrote {lines:,} line{'s' if lines != 1 else ''} to {path} ({change})"
