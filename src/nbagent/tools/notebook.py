"""Built-in notebook tools: the agent works in the kernel it lives in.

``notebook_tools(shell)`` returns ``run_python`` (runs code in the user's namespace; needs
approval), ``list_variables`` and ``describe`` (read-only), ``read_file`` and
``list_files`` (read-only) and ``write_file`` (needs approval; its card shows a diff), all
confined to the notebook's folder, and ``notebook_cells`` (read-only: what the user ran).

This module imports IPython only when a tool runs; the runtime below it never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import re
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .._redact import redact
from ..errors import FileAccessError, RunInterrupted
from ._files import NotebookFolder
from ._function import FunctionTool, ToolOutput, function_tool
from ._inspect import describe_value, short_repr, variable_rows
from ._runs import AgentCode, namespace_changes, snapshot
from ._text import sanitize

NOTEBOOK_TOOL_NAMES = (
    "run_python",
    "list_variables",
    "describe",
    "read_file",
    "list_files",
    "write_file",
    "notebook_cells",
)
"""The ``notebook`` tool group, in the order the model sees them."""

IMAGE_MIMES = ("image/png", "image/jpeg")
"""The displays a card shows as images (everything else: its text, in the result)."""
MAX_STREAM_CHARS = 8_000
MAX_TRACEBACK_LINES = 30


async def execute_in_shell(shell: Any, code: str) -> ToolOutput:
    """Run ``code`` like a cell (variables stay), capturing everything it shows.

    Runs on the kernel's own thread so matplotlib, widgets and the user's objects behave
    as in a cell, and so a kernel interrupt lands in the code (it then stops the run).
    """
    from IPython.utils.capture import capture_output

    tracebacks: list[list[str]] = []

    def keep_traceback(etype: Any, value: Any, stb: list[str]) -> None:
        tracebacks.append(stb)

    # The code may block the loop until it ends: first let the live view say "running"
    # (its feed runs when the event loop gets a turn).
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    transformed = shell.transform_cell(code)
    hidden = getattr(shell, "user_ns_hidden", {})
    before = snapshot(shell.user_ns, hidden)
    names = AgentCode.of(shell)
    names.current = names.next_label()
    shell._showtraceback = keep_traceback
    try:
        with capture_output(stdout=True, stderr=True, display=True) as captured:
            trap = shell.display_trap
            saved_hook = trap.hook
            trap.hook = sys.displayhook  # the capturing hook: the last value is captured too
            try:
                with _interruptible():
                    result = await shell.run_cell_async(
                        code, store_history=False, silent=False, transformed_cell=transformed
                    )
                _show_inline_figures()
            finally:
                trap.hook = saved_hook
    finally:
        names.current = None
        del shell._showtraceback
    error = result.error_in_exec or result.error_before_exec
    if isinstance(error, KeyboardInterrupt):
        raise RunInterrupted("the code was interrupted (KeyboardInterrupt)")
    bundles = _distinct(dict(output.data) for output in captured.outputs)
    changes = namespace_changes(before, snapshot(shell.user_ns, hidden))
    return ToolOutput(
        text=summarize_execution(
            captured.stdout, captured.stderr, bundles, tracebacks, error, changes=changes
        ),
        is_error=error is not None,
        # the text carries every display's text/plain: the card shows the images only
        display=tuple(b for b in bundles if any(mime in b for mime in IMAGE_MIMES)),
    )


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """While the code runs, a kernel interrupt raises KeyboardInterrupt in it, as in a
    cell, and still reaches the handler it had before: ipykernel's handler for a cell that
    awaits (as ``%%agent`` does) cancels the cell's task once the loop runs again, which
    alone would wait for code that holds the loop to end by itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        if callable(previous):
            previous(signum, frame)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _distinct(bundles: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The bundles, each image once (a figure that is the code's value is displayed again
    by the inline backend when the code ends)."""
    seen: set[str] = set()
    out = []
    for bundle in bundles:
        image = next((str(bundle[m]) for m in IMAGE_MIMES if m in bundle), None)
        if image is not None:
            if image in seen:
                continue
            seen.add(image)
        out.append(bundle)
    return tuple(out)


def _show_inline_figures() -> None:
    """Show the figures the code drew, as a cell would with the inline backend (the
    kernel only flushes them when the whole ``%%agent`` cell ends, outside the card)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None or "inline" not in str(pyplot.get_backend()):
        return
    from IPython.display import display

    for number in pyplot.get_fignums():
        display(pyplot.figure(number))
    pyplot.close("all")


def _tail(text: str, limit: int) -> str:
    return (
        text
        if len(text) <= limit
        else f"[… {len(text) - limit:,} characters cut]\n" + text[-limit:]
    )


def summarize_execution(
    stdout: str,
    stderr: str,
    bundles: tuple[dict[str, Any], ...],
    tracebacks: list[list[str]],
    error: BaseException | None,
    *,
    changes: str = "",
) -> str:
    """What the model reads about a run: what changed in the kernel's variables, output
    streams, displays and a short traceback."""
    parts = [f"kernel: {changes}"] if changes else []
    if stdout:
        parts.append("stdout:\n" + _tail(stdout, MAX_STREAM_CHARS))
    if stderr:
        parts.append("stderr:\n" + _tail(stderr, MAX_STREAM_CHARS // 2))
    for bundle in bundles:
        rich = sorted(k for k in bundle if k != "text/plain")
        text = str(bundle.get("text/plain", ""))
        label = f"displayed ({', '.join(rich)})" if rich else "value"
        parts.append(f"{label}:\n{_tail(text, 2_000)}")
    if error is not None:
        lines = sanitize("\n".join(line for stb in tracebacks for line in stb)).splitlines()
        short = lines[-MAX_TRACEBACK_LINES:] if lines else [f"{type(error).__name__}: {error}"]
        parts.append("error:\n" + "\n".join(short))
    return "\n\n".join(parts) or "(the code ran and showed nothing)"


def expand_variables(text: str, namespace: Mapping[str, Any]) -> tuple[str, int]:
    """Replace ``{name}`` by a summary of the variable (``{{`` and unknown names stay).

    Returns the new text and how many characters the summaries added.
    """
    added = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal added
        name = match.group(1)
        if name not in namespace:
            return match.group(0)
        summary = f"\n```text\n{describe_value(name, namespace[name])}\n```\n"
        added += len(summary)
        return summary

    expanded = re.sub(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})", replace, text)
    return redact(expanded), added


def recent_cells(shell: Any, last: int = 20) -> str:
    """The code and summarised outputs of the cells run so far (agent cells left out),
    redacted: it goes into a prompt (``--context cells``) or a tool result."""
    raw = list(getattr(shell.history_manager, "input_hist_raw", []))
    outputs = shell.user_ns.get("Out", {})
    lines = []
    for number in range(max(1, len(raw) - last), len(raw)):
        code = raw[number].strip()
        if not code or code.startswith(("%%agent", "%agent", "%load_ext nbagent")):
            continue
        entry = f"In [{number}]:\n{code}"
        if number in outputs:
            entry += f"\nOut[{number}]: {short_repr(outputs[number], 500)}"
        lines.append(entry)
    return redact("\n\n".join(lines)) or "(no cells have run yet)"


def notebook_tools(shell: Any, root: str | Path | None = None) -> list[FunctionTool]:
    """The notebook tool group for ``shell`` (an IPython shell), files under ``root``."""
    folder = NotebookFolder(root or os.getcwd())

    async def run_python(code: str) -> ToolOutput:
        """Run Python code in the user's notebook kernel, like a new cell.

        Variables it defines stay for later cells. Returns what it printed, the value of
        its last expression, what it displayed (tables, figures) and a short traceback if
        it failed. Prefer small steps; inspect data before changing it.

        Args:
            code: The Python code to run (IPython syntax such as %magics is allowed).
        """
        return await execute_in_shell(shell, code)

    def list_variables() -> str:
        """List the user's variables with their types and sizes."""
        rows = variable_rows(shell.user_ns, getattr(shell, "user_ns_hidden", {}))
        if not rows:
            return "(no variables yet)"
        return "\n".join(f"{name}: {kind} {size}".rstrip() for name, kind, size in rows)

    def describe(name: str) -> str:
        """Describe one variable: DataFrame columns, dtypes, nulls and head; array shape
        and range; the keys of a dict; the signature of a function.

        Args:
            name: The variable's name in the notebook.
        """
        namespace = shell.user_ns
        if name not in namespace:
            close = difflib.get_close_matches(name, [n for n in namespace if n[:1] != "_"], 5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise KeyError(f"no variable named {name!r}.{hint}")
        return describe_value(name, namespace[name])

    def read_file(path: str, offset: int = 0, max_bytes: int = 100_000) -> str:
        """Read a text file from the notebook's folder.

        Args:
            path: Path relative to the notebook's folder.
            offset: Byte offset to start at (to read a large file in parts).
            max_bytes: How many bytes to read at most.
        """
        return folder.read_file(path, offset, max_bytes)

    def list_files(path: str = ".", pattern: str = "*", recursive: bool = False) -> str:
        """List files in the notebook's folder.

        Args:
            path: Folder relative to the notebook's folder.
            pattern: Glob pattern such as '*.csv'.
            recursive: Whether to look into subfolders.
        """
        return folder.list_files(path, pattern, recursive)

    def write_file(path: str, content: str) -> str:
        """Create or overwrite a text file in the notebook's folder.

        Args:
            path: Path relative to the notebook's folder.
            content: The whole new content of the file.
        """
        return folder.write_file(path, content)

    def notebook_cells(last: int = 20) -> str:
        """The code and outputs of the notebook cells the user has run, oldest first.

        Args:
            last: How many of the most recent cells to include.
        """
        return recent_cells(shell, last)

    writer = function_tool(write_file)  # file I/O off the loop, as reads
    writer.preview = folder.preview_write
    return [
        function_tool(run_python, run_in_thread=False),
        function_tool(list_variables, read_only=True, run_in_thread=False),
        function_tool(describe, read_only=True, run_in_thread=False),
        function_tool(read_file, read_only=True),
        function_tool(list_files, read_only=True),
        writer,
        function_tool(notebook_cells, read_only=True, run_in_thread=False),
    ]


__all__ = [
    "NOTEBOOK_TOOL_NAMES",
    "FileAccessError",
    "NotebookFolder",
    "execute_in_shell",
    "expand_variables",
    "notebook_tools",
    "recent_cells",
    "summarize_execution",
]
