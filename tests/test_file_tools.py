"""The file tools against hostile folders: credential files, FIFOs, absurd sizes, broken
symlinks and a folder swapped for a symlink while a tool works in it."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import collect
from nbagent import ApprovalRequested, Session, ToolFinished
from nbagent.errors import FileAccessError
from nbagent.testing import ScriptedModel, call, say, use_tools
from nbagent.tools._files import MAX_READ_BYTES, NotebookFolder
from nbagent.tools.notebook import notebook_tools

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs and symlinks (POSIX)")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A notebook folder that is someone's home folder."""
    monkeypatch.delenv("NBAGENT_ALLOW_FILES", raising=False)
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\naws_secret=x")
    (tmp_path / ".netrc").write_text("machine x login y password z")
    (tmp_path / ".env").write_text("TOKEN=abc")
    (tmp_path / "server.pem").write_text("KEY")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "link-to-ssh").symlink_to(tmp_path / ".ssh")
    return tmp_path


# -- 4. secret files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [".ssh/id_ed25519", ".aws/credentials", ".netrc", ".env", "server.pem",
             "link-to-ssh/id_ed25519", "./.ssh/../.env"],
)  # fmt: skip
def test_read_file_refuses_hidden_and_credential_files(home: Path, path: str) -> None:
    folder = NotebookFolder(home)
    with pytest.raises(FileAccessError) as refused:
        folder.read_file(path)
    message = str(refused.value)
    assert "was refused" in message and "credentials" in message
    assert "NBAGENT_ALLOW_FILES=" in message and "\n" not in message
    assert folder.read_file("notes.txt") == "hello"


def test_a_refused_file_can_be_allowed_by_name(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBAGENT_ALLOW_FILES", ".env, .aws")
    folder = NotebookFolder(home)
    assert folder.read_file(".env") == "TOKEN=abc"
    assert folder.read_file(".aws/credentials").startswith("[default]")
    with pytest.raises(FileAccessError, match="was refused"):
        folder.read_file(".netrc")


def test_listing_a_hidden_folder_is_refused_and_hidden_entries_are_not_listed(home: Path) -> None:
    folder = NotebookFolder(home)
    with pytest.raises(FileAccessError, match=r"'\.ssh' was refused"):
        folder.list_files(".ssh")
    listing = folder.list_files(recursive=True)
    assert "notes.txt" in listing and ".ssh" not in listing and ".env" not in listing
    assert "id_ed25519" not in listing and "server.pem" not in listing


def test_writes_to_hidden_files_are_refused_too(home: Path) -> None:
    with pytest.raises(FileAccessError, match="was refused"):
        NotebookFolder(home).write_file(".ssh/authorized_keys", "ssh-ed25519 AAAA attacker")
    assert not (home / ".ssh" / "authorized_keys").exists()


# -- 5. FIFOs and other non-regular files ---------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO, and a guard that unblocks a reader stuck on it (so a failing test fails
    instead of hanging): the test checks the guard was never needed."""
    path = tmp_path / "pipe"
    os.mkfifo(path)
    done = threading.Event()
    needed = threading.Event()

    def unblock() -> None:
        if not done.wait(20):
            needed.set()
            fd = os.open(path, os.O_WRONLY)
            os.close(fd)

    guard = threading.Thread(target=unblock, daemon=True)
    guard.start()
    yield path
    done.set()
    guard.join()
    assert not needed.is_set(), "a tool blocked on the FIFO"


async def test_a_write_to_a_fifo_is_refused_without_blocking_the_loop(
    fifo: Path, tmp_path: Path
) -> None:
    model = ScriptedModel([use_tools(call("write_file", {"path": "pipe", "content": "x"})),
                           say("ok")])  # fmt: skip
    previews: list[str] = []

    def look_then_approve(session: Session, request: ApprovalRequested) -> None:
        previews.append(request.preview or "")
        session.approve(request.tool_call_id)

    async with Session(model, tools=notebook_tools(None, tmp_path)) as session:
        events = await collect(session, "write", on_approval=look_then_approve)
    assert "'pipe' is a FIFO (named pipe), not a regular file" in previews[0]
    (result,) = [e for e in events if isinstance(e, ToolFinished)]
    assert result.status == "error"
    assert "'pipe' is a FIFO (named pipe), not a regular file; the file tools only replace" in (
        result.result
    )
    assert fifo.exists() and not fifo.is_file()


def test_reading_a_fifo_is_refused(fifo: Path, tmp_path: Path) -> None:
    with pytest.raises(FileAccessError, match=r"is a FIFO \(named pipe\), not a regular file"):
        NotebookFolder(tmp_path).read_file("pipe")


# -- 6. sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("max_bytes", [-1, 0, MAX_READ_BYTES + 1, 10**12])
def test_max_bytes_is_validated(tmp_path: Path, max_bytes: int) -> None:
    (tmp_path / "big.txt").write_text("x" * 100)
    with pytest.raises(FileAccessError, match="max_bytes must be between 1 and 1,000,000"):
        NotebookFolder(tmp_path).read_file("big.txt", max_bytes=max_bytes)
    with pytest.raises(FileAccessError, match="offset must be at least 0"):
        NotebookFolder(tmp_path).read_file("big.txt", offset=-5)


# -- 7. broken symlinks ---------------------------------------------------------------------


def test_a_dangling_symlink_is_listed_as_broken(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "gone").symlink_to(tmp_path / "nothing-here")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    listing = NotebookFolder(tmp_path).list_files()
    assert "data.csv  (4 bytes)" in listing
    assert "gone  (broken link)" in listing


# -- 8. a folder swapped while a tool opens it ----------------------------------------------


class Swapper:
    """Swaps ``root/d`` between a real folder and a symlink to ``outside``, in a thread,
    one swap per :meth:`pace` of the reader (so both keep running, interleaved as the
    scheduler pleases)."""

    def __init__(self, root: Path, outside: Path) -> None:
        self.root, self.outside = root, outside
        self.stop = False
        self.paces = threading.Semaphore(0)
        self.swaps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def pace(self) -> None:
        self.paces.release()

    def _run(self) -> None:
        real, link, parked = self.outside, self.root / "d", self.root / "d-parked"
        while True:
            self.paces.acquire()
            if self.stop:
                return
            os.rename(link, parked)
            try:
                os.symlink(real, link)
                os.unlink(link)
            except FileExistsError:
                pass  # a write made a new "d" meanwhile (it writes inside, as it should)
            while True:
                try:
                    os.rename(parked, link)
                    break
                except OSError:  # a write's new "d" is in the way: put it aside
                    os.rename(link, self.root / f"made-by-a-write-{self.swaps}")
            self.swaps += 1

    def __enter__(self) -> Swapper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop = True
        self.paces.release()
        self.thread.join()


@pytest.mark.slow
def test_a_concurrent_swap_never_lets_a_read_or_write_escape(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    (root / "d" / "f.txt").write_text("inside")
    (outside / "f.txt").write_text("OUTSIDE")
    folder = NotebookFolder(root)
    escapes = reads = 0
    with Swapper(root, outside) as swapper:
        for attempt in range(50_000):
            if reads >= 1_000:
                break
            if attempt % 2:
                swapper.pace()  # a swap races this read; the next one may find it quiet
            try:
                text = folder.read_file("d/f.txt")
            except (FileAccessError, OSError):  # refused, or "d" was away at that moment
                continue
            reads += 1
            escapes += text == "OUTSIDE"
            if attempt % 3 == 0:
                with contextlib.suppress(FileAccessError, OSError):
                    folder.write_file("d/f.txt", "inside")
    assert escapes == 0
    assert swapper.swaps > 100 and reads >= 200
    assert (outside / "f.txt").read_text() == "OUTSIDE"
    assert sorted(p.name for p in outside.iterdir()) == ["f.txt"]  # no temporary left there
