"""``--tools a,b,notebook,mcp:NAME``: tool names from a cell → the ``Tool`` objects.

A name is a function of the notebook, an ``@nbagent.tool``, ``notebook`` (the notebook
tool group) or one of its tools; ``mcp:`` selectors are resolved by the MCP manager when
the cell runs (servers start asynchronously).
"""

from __future__ import annotations

import sys
from typing import Any

from IPython.core.error import UsageError

from ..errors import ToolDefinitionError
from ..session import Session
from ..tools import REGISTRY, Tool, function_tool
from ..tools.notebook import NOTEBOOK_TOOL_NAMES, notebook_tools
from .registry import KernelRegistry

MCP_PREFIX = "mcp:"


def split_names(spec: str | None) -> list[str]:
    """The names of a comma-separated list, blanks dropped."""
    return [name.strip() for name in (spec or "").split(",") if name.strip()]


def mcp_selectors(spec: str | None) -> list[str]:
    """The ``mcp:NAME[/TOOL]`` selectors of a ``--tools`` list."""
    return [name for name in split_names(spec) if name.startswith(MCP_PREFIX)]


def builtin_tools(shell: Any, registry: KernelRegistry) -> dict[str, Tool]:
    """The notebook tool group (``run_python``, ``describe``, ...), made once per kernel."""
    tools = registry.builtin_tools
    if not tools:
        tools.update((t.name, t) for t in notebook_tools(shell))
    return tools


def resolve_tools(spec: str, shell: Any, registry: KernelRegistry) -> dict[str, Tool]:
    """The tools a ``--tools`` list names (``mcp:`` selectors excepted)."""
    namespace = shell.user_ns if shell is not None else {}
    found: dict[str, Tool] = {}
    for name in split_names(spec):
        if name == "notebook":
            found.update(builtin_tools(shell, registry))
            continue
        if name.startswith(MCP_PREFIX):
            continue  # MCP servers start asynchronously, in the cell's run
        item = namespace.get(name, REGISTRY.get(name))
        if item is None and name in NOTEBOOK_TOOL_NAMES:
            item = builtin_tools(shell, registry)[name]
        if item is None:
            known = ", ".join(sorted(REGISTRY)) or "none"
            raise UsageError(
                f"no tool named {name!r}: define a function {name} in the notebook or "
                f"register one with @nbagent.tool (registered: {known})"
            )
        try:
            made = item if isinstance(item, Tool) else function_tool(item)
        except ToolDefinitionError as exc:
            raise UsageError(f"{name} cannot be a tool: {exc}") from None
        found[made.name] = made
    return found


def restore_tools(
    session: Session, names: tuple[str, ...], shell: Any, registry: KernelRegistry
) -> None:
    """Give a restored session back the tools it used, where the notebook has them."""
    missing = []
    for name in names:
        if name in session.tools:
            continue
        try:
            session.tools.update(resolve_tools(name, shell, registry))
        except UsageError:
            missing.append(name)
    if missing:
        print(
            f"nbagent: the session used tools this kernel does not have yet: "
            f"{', '.join(missing)} (define them, then pass --tools)",
            file=sys.stderr,
        )
