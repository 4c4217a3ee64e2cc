"""Files confined to the notebook's folder: list, read, write (with a diff preview).

Confinement holds against a folder that changes while a tool works on it: a path is
checked, then opened by walking from the notebook folder one component at a time with
``O_NOFOLLOW`` (``openat``), so a folder swapped for a symlink after the check is refused
instead of followed. Writes go to a temporary file in the target's (opened) folder, then
replace the target by a rename. Only regular files are read or replaced (a FIFO or a
device would block or misbehave), with a byte cap.

Hidden files and folders (``.ssh``, ``.aws``, ``.env``, ``.netrc``, …) and files named like
private keys (``id_rsa``, ``*.pem``, …) often hold credentials: the tools refuse them unless
``NBAGENT_ALLOW_FILES`` names them (comma-separated paths or globs, relative to the
notebook folder).
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import fnmatch
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import FileAccessError

MAX_READ_BYTES = 1_000_000
MAX_WRITE_BYTES = 5_000_000
MAX_DIFF_BYTES = 200_000
"""Larger files (before or after) get a summary instead of a diff: diffing is quadratic
and the preview is made on the kernel's event loop."""
TOO_LARGE_TO_DIFF = "(replaces "
MAX_LIST = 500
ALLOW_ENV = "NBAGENT_ALLOW_FILES"

CREDENTIAL_NAMES = (
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk",
    "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "*.kdbx",
    "credentials", "_netrc",
)  # fmt: skip
"""File names refused like hidden files: private keys and credential stores."""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
_RACE_FREE = os.open in os.supports_dir_fd and bool(_NOFOLLOW)


def _kind(mode: int) -> str:
    """What a non-regular file is, for an error message."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_regular(path: str, mode: int, action: str) -> FileAccessError:
    return FileAccessError(
        f"{path!r} is {_kind(mode)}, not a regular file; the file tools only {action} regular files"
    )


def _changed(path: str, part: str) -> FileAccessError:
    return FileAccessError(
        f"{path!r} changed while it was being opened ({part!r} is no longer a folder inside "
        "the notebook folder, e.g. it became a symbolic link); nothing was read or written"
    )


class NotebookFolder:
    """Resolves paths inside ``root`` only: ``..``, absolute paths elsewhere and symlinks
    that lead out are refused, and so are hidden and credential files unless ``allow``
    (default: ``$NBAGENT_ALLOW_FILES``) names them."""

    def __init__(self, root: str | Path, allow: tuple[str, ...] | None = None) -> None:
        self.root = Path(root).resolve()
        self._allow = allow

    @property
    def allow(self) -> tuple[str, ...]:
        """The hidden or credential paths (globs) the tools may use anyway."""
        if self._allow is not None:
            return self._allow
        raw = os.environ.get(ALLOW_ENV, "")
        return tuple(p.strip().strip("/") for p in raw.split(",") if p.strip())

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, or changed meanwhile
            raise FileAccessError(f"{path!r} cannot be resolved: {exc}") from None
        if resolved != self.root and self.root not in resolved.parents:
            raise FileAccessError(
                f"{path!r} is outside the notebook folder {self.root}; only files inside it "
                "can be used"
            )
        return resolved

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path != self.root else "."

    # -- what may be used -----------------------------------------------------------------

    def refusal(self, target: Path) -> str | None:
        """Why ``target`` (resolved, inside the root) is refused, or None."""
        if target == self.root:
            return None
        relative = target.relative_to(self.root).as_posix()
        parts = relative.split("/")
        hidden = next((part for part in parts if part.startswith(".")), None)
        credential = any(fnmatch.fnmatchcase(parts[-1], name) for name in CREDENTIAL_NAMES)
        if hidden is None and not credential:
            return None
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, glob) for p in prefixes for glob in self.allow):
            return None
        what = (
            f"it is inside the hidden folder or file {hidden!r}"
            if hidden is not None
            else f"{parts[-1]!r} is named like a private key or credential file"
        )
        return (
            f"{relative!r} was refused: {what}, and such files often hold credentials; "
            f"if the agent needs it, allow it by name with {ALLOW_ENV}={relative!r} "
            "(comma-separated paths or globs, relative to the notebook folder)"
        )

    def target(self, path: str) -> Path:
        """``path`` resolved inside the root and allowed, else a ``FileAccessError``."""
        resolved = self.resolve(path)
        refused = self.refusal(resolved)
        if refused is not None:
            raise FileAccessError(refused)
        return resolved

    # -- race-free opening ----------------------------------------------------------------

    @contextlib.contextmanager
    def _folder_fd(self, path: str, parts: tuple[str, ...], create: bool) -> Iterator[int]:
        """A descriptor of the folder ``root/parts``, walked to without following any
        symlink (folders are made on the way when ``create``)."""
        fd = os.open(self.root, _DIRECTORY)
        try:
            for part in parts:
                try:
                    inner = os.open(part, _DIRECTORY | _NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                    try:
                        inner = os.open(part, _DIRECTORY | _NOFOLLOW, dir_fd=fd)
                    except OSError:
                        raise _changed(path, part) from None
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise _changed(path, part) from None
                    raise
                os.close(fd)
                fd = inner
            yield fd
        finally:
            os.close(fd)

    def _read(
        self, path: str, offset: int, count: int, action: str = "read"
    ) -> tuple[bytes, int] | None:
        """Up to ``count`` bytes of the regular file ``path`` from ``offset``, and its
        size; None when it does not exist."""
        target = self.target(path)
        if target == self.root:
            raise FileAccessError(f"{path!r} is a folder")
        parts = target.relative_to(self.root).parts
        if not _RACE_FREE:  # no openat/O_NOFOLLOW here (Windows): checked, then opened
            return _read_plain(path, target, offset, count, action)
        try:
            with self._folder_fd(path, parts[:-1], create=False) as folder:
                try:
                    info = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
                except FileNotFoundError:
                    return None
                if not stat.S_ISREG(info.st_mode):
                    if stat.S_ISLNK(info.st_mode):
                        raise _changed(path, parts[-1])
                    raise _not_regular(path, info.st_mode, action)
                flags = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
                try:
                    fd = os.open(parts[-1], flags, dir_fd=folder)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise _changed(path, parts[-1]) from None
                    raise
                try:
                    info = os.fstat(fd)
                    if not stat.S_ISREG(info.st_mode):  # swapped between stat and open
                        raise _not_regular(path, info.st_mode, action)
                    return _pread_all(fd, count, offset), info.st_size
                finally:
                    os.close(fd)
        except FileNotFoundError:
            return None

    def _replace(self, path: str, data: bytes) -> Path:
        """Write ``data`` to a temporary file in the target's folder, then rename it over
        the target (a regular file or nothing)."""
        target = self.target(path)
        if target == self.root:
            raise FileAccessError(f"{path!r} is a folder")
        parts = target.relative_to(self.root).parts
        if not _RACE_FREE:
            _write_plain(path, target, data)
            return target
        with self._folder_fd(path, parts[:-1], create=True) as folder:
            name = parts[-1]
            try:
                info: os.stat_result | None = os.stat(name, dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                info = None
            if info is not None and not stat.S_ISREG(info.st_mode):
                raise _not_regular(path, info.st_mode, "replace")
            temporary = f".{name}.{uuid.uuid4().hex[:12]}.nbagent-tmp"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
            fd = os.open(temporary, flags, 0o666, dir_fd=folder)
            try:
                try:
                    if info is not None:
                        os.fchmod(fd, stat.S_IMODE(info.st_mode))
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary, dir_fd=folder)
                raise
        return target

    # -- the tools ------------------------------------------------------------------------

    def list_files(self, path: str = ".", pattern: str = "*", recursive: bool = False) -> str:
        folder = self.target(path)
        if not folder.is_dir():
            raise FileAccessError(f"{path!r} is not a folder")
        found = folder.rglob(pattern) if recursive else folder.glob(pattern)
        lines = []
        for entry in sorted(found):
            if any(part.startswith(".") for part in entry.relative_to(folder).parts):
                continue
            line = self._entry_line(entry)
            if line:
                lines.append(line)
            if len(lines) >= MAX_LIST:
                lines.append(f"… more than {MAX_LIST} entries; narrow the pattern")
                break
        return "\n".join(lines) or f"(no files matching {pattern!r} in {path})"

    def _entry_line(self, entry: Path) -> str:
        """One listing line; a symlink that leads out or to a refused file is left out,
        a broken one says so."""
        try:
            inside = self.resolve(str(entry))
        except (FileAccessError, OSError, RuntimeError):
            return ""  # a symlink that leads out (or loops) is not listed
        if self.refusal(inside) is not None:
            return ""  # nor one that leads to a hidden or credential file
        try:
            info = inside.stat()
        except OSError:
            return f"{self.relative(entry)}  (broken link)"
        size = "folder" if stat.S_ISDIR(info.st_mode) else f"{info.st_size:,} bytes"
        return f"{self.relative(entry)}  ({size})"

    def read_file(self, path: str, offset: int = 0, max_bytes: int = 100_000) -> str:
        _check_int("offset", offset, 0, None)
        _check_int("max_bytes", max_bytes, 1, MAX_READ_BYTES)
        read = self._read(path, offset, max_bytes)
        if read is None:
            raise FileAccessError(f"{path!r} does not exist")
        data, size = read
        if b"\x00" in data[:8192]:
            return f"{path} is a binary file of {size:,} bytes; it cannot be shown as text"
        text = data.decode("utf-8", errors="replace")
        end = offset + len(data)
        if end < size:
            text += f"\n[… {size - end:,} more bytes; read again with offset={end}]"
        return text

    def write_plan(self, path: str, content: str) -> tuple[Path, str]:
        """Check a write and return the target and a unified diff of what it changes
        (the current file is read with a byte cap; only a regular file is read)."""
        if len(content.encode()) > MAX_WRITE_BYTES:
            raise FileAccessError(f"content is larger than {MAX_WRITE_BYTES:,} bytes")
        target = self.target(path)
        if target.is_dir():
            raise FileAccessError(f"{path!r} is a folder")
        current = self._read(path, 0, MAX_DIFF_BYTES + 1, "replace")
        if current is None:
            old, exists = "", False
        else:
            data, size = current
            if size > MAX_DIFF_BYTES or len(content) > MAX_DIFF_BYTES:
                return target, (
                    f"{TOO_LARGE_TO_DIFF}{path}: {size:,} bytes now, "
                    f"{len(content.encode()):,} bytes after; too large to show a diff)"
                )
            old, exists = data.decode("utf-8", errors="replace"), True
        diff = "".join(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                content.splitlines(keepends=True),
                fromfile=f"a/{path}" if exists else "/dev/null",
                tofile=f"b/{path}",
            )
        )
        return target, diff or "(no change)"

    def write_file(self, path: str, content: str) -> str:
        target, diff = self.write_plan(path, content)
        self._replace(path, content.encode("utf-8"))
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
    elif diff.startswith(TOO_LARGE_TO_DIFF):
        change = "replaced; too large to diff"
    elif added or removed:
        change = f"+{added} −{removed}"
    else:
        change = "no change"
    return f"wrote {lines:,} line{'s' if lines != 1 else ''} to {path} ({change})"


def _check_int(name: str, value: Any, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FileAccessError(f"{name} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        limit = f"between {low:,} and {high:,}" if high is not None else f"at least {low:,}"
        raise FileAccessError(f"{name} must be {limit}, not {value:,} ({name} is limited)")


def _pread_all(fd: int, count: int, offset: int) -> bytes:
    parts: list[bytes] = []
    while count > 0:
        chunk = os.pread(fd, count, offset)
        if not chunk:
            break
        parts.append(chunk)
        count -= len(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _read_plain(
    path: str, target: Path, offset: int, count: int, action: str
) -> tuple[bytes, int] | None:
    if not target.exists():
        return None
    info = target.stat()
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(path, info.st_mode, action)
    with target.open("rb") as handle:
        handle.seek(offset)
        return handle.read(count), info.st_size


def _write_plain(path: str, target: Path, data: bytes) -> None:
    if target.exists() and not target.is_file():
        raise _not_regular(path, target.stat().st_mode, "replace")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.nbagent-tmp")
    temporary.write_bytes(data)
    os.replace(temporary, target)
