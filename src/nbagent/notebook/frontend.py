"""What the kernel knows about the frontend that drives it, and the run mode that follows.

JupyterLab and VS Code tell the kernel the notebook's path (``__session__``,
``__vsc_ipynb_file__``); nbclient, nbval and papermill tell it nothing and send
``allow_stdin=False``: nobody can answer a question or click a button there.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from ..config import Mode

RunMode = Literal["wait", "background", "headless"]
"""How a cell runs, once ``auto`` is resolved."""


def notebook_path(shell: Any) -> str | None:
    """The notebook's path when the frontend tells the kernel (JupyterLab, VS Code)."""
    namespace = getattr(shell, "user_ns", {}) or {}
    for key in ("__vsc_ipynb_file__", "__session__"):
        value = namespace.get(key)
        if isinstance(value, str) and value.endswith(".ipynb"):
            return value
    return None


def cell_id(shell: Any) -> str | None:
    """The id of the cell being run, when the frontend sends one (JupyterLab, nbclient)."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else None
    except Exception:
        return None
    metadata = (parent or {}).get("metadata") or {}
    value = metadata.get("cellId") or metadata.get("cell_id")
    return str(value) if value else None


def ipykernel_version() -> tuple[int, ...] | None:
    """(major, minor) of the installed ipykernel, or None without one."""
    try:
        from importlib.metadata import version

        return tuple(int(p) for p in re.findall(r"\d+", version("ipykernel"))[:2])
    except Exception:
        return None


def batch_run(shell: Any) -> bool:
    """A kernel driven by a program that runs the whole notebook (``allow_stdin`` false)."""
    kernel = getattr(shell, "kernel", None)
    return kernel is not None and not getattr(kernel, "_allow_stdin", True)


def can_ask(shell: Any) -> bool:
    """Someone can answer ``input()`` in this kernel (a frontend with stdin)."""
    kernel = getattr(shell, "kernel", None)
    return kernel is not None and bool(getattr(kernel, "_allow_stdin", False))


def pick_mode(requested: Mode, shell: Any) -> RunMode:
    """``auto`` → headless when the frontend cannot answer (nbclient, nbval, papermill,
    or no kernel at all), else ``wait`` on ipykernel >= 7.4 (clicks reach a busy cell),
    else ``background``."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return "headless"
    if requested == "background":
        return "background"
    if not getattr(kernel, "_allow_stdin", True):
        return "headless"
    if requested == "wait":
        return "wait"
    version = ipykernel_version()
    return "wait" if version is not None and version >= (7, 4) else "background"
