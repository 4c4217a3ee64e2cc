"""What a ``run_python`` call leaves in the kernel, said briefly.

:func:`namespace_changes` compares two :func:`snapshot`\\ s of the user's namespace (names,
``id()`` and a type-and-shape signature: cheap, no value is compared) and says which
variables the code created, changed or deleted. :class:`AgentCode` gives the code the
agent runs its own name in tracebacks (``File "<agent run_python #3>", line 2``) instead
of a cell number that does not exist.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any

MAX_LISTED = 10
"""Variables named in one summary; the rest are counted."""
_IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})

Snapshot = dict[str, tuple[int, str]]
"""name -> (id of the value, its signature: ``DataFrame (120, 5)``)."""


def signature(value: Any) -> str:
    """``DataFrame (120, 5)``, ``list (len 3)``, ``int = 42``, ``Axes``: the type and a
    size, never the contents (a scalar number shows its value)."""
    kind = type(value).__name__
    if isinstance(value, (bool, int, float)):
        text = repr(value)
        return f"{kind} = {text}" if len(text) <= 24 else kind
    try:
        shape = getattr(value, "shape", None)
    except Exception:  # a property that fails must not break the run
        shape = None
    if isinstance(shape, tuple):
        return f"{kind} {shape}"
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return f"{kind} (len {len(value):,})"
    return kind


def snapshot(namespace: Mapping[str, Any], hidden: Mapping[str, Any]) -> Snapshot:
    """The user's variables (no ``_`` names, no IPython's own, no modules) by name."""
    out: Snapshot = {}
    for name, value in list(namespace.items()):
        if name.startswith("_") or name in _IPYTHON_NAMES:
            continue
        if (name in hidden and hidden[name] is value) or isinstance(value, types.ModuleType):
            continue
        out[name] = (id(value), signature(value))
    return out


def namespace_changes(before: Snapshot, after: Snapshot) -> str:
    """``created `by_month`: Series (4,); changed `df`: DataFrame (120, 5) → (118, 5);
    deleted `tmp``` (at most :data:`MAX_LISTED`, then ``and 3 more``); empty when
    nothing changed."""
    items = []
    for name, (ident, sig) in after.items():
        old = before.get(name)
        if old is None:
            items.append(f"created `{name}`: {sig}")
        elif old != (ident, sig):
            items.append(f"changed `{name}`: {_change(old[1], sig)}")
    items.extend(f"deleted `{name}`" for name in before if name not in after)
    if len(items) > MAX_LISTED:
        items[MAX_LISTED:] = [f"and {len(items) - MAX_LISTED} more"]
    return "; ".join(items)


def _change(old: str, new: str) -> str:
    """``DataFrame (120, 5) → (118, 5)``: the type once when it stayed."""
    old_kind, _, old_size = old.partition(" ")
    new_kind, _, new_size = new.partition(" ")
    if old == new:
        return new
    if old_kind != new_kind or not (old_size and new_size):
        return f"{old} → {new}"
    if old_size.startswith("= ") and new_size.startswith("= "):
        return f"{new_kind} = {old_size[2:]} → {new_size[2:]}"
    return f"{new_kind} {old_size} → {new_size}"


class AgentCode:
    """Names the code ``run_python`` runs in tracebacks, for good: a function the agent
    defined that fails later, in a cell of yours, still says where it came from.

    Installed once per shell on its compiler (IPython's ``cache`` names each cell's code
    and ``format_code_name`` labels it ``Cell In[7]``); code a person runs afterwards
    under the same name (the same text) is labelled as IPython would again.
    """

    def __init__(self, compiler: Any) -> None:
        self.count = 0
        self.current: str | None = None
        """The label of the code running now (None: a person's cell)."""
        self.labels: dict[str, str] = {}
        cache: Callable[..., str] = compiler.cache
        label_of: Callable[[str], Any] = compiler.format_code_name

        def named_cache(transformed_code: str, number: int = 0, raw_code: Any = None) -> str:
            name = cache(transformed_code, number, raw_code)
            if self.current is None:
                self.labels.pop(name, None)
            else:
                self.labels[name] = self.current
            return name

        def format_code_name(name: str) -> Any:
            label = self.labels.get(name)
            return ("File", f'"{label}"') if label is not None else label_of(name)

        compiler.cache = named_cache
        compiler.format_code_name = format_code_name

    @classmethod
    def of(cls, shell: Any) -> AgentCode:
        compiler = shell.compile
        found = getattr(compiler, "_nbagent_code", None)
        if not isinstance(found, AgentCode):
            found = cls(compiler)
            compiler._nbagent_code = found
        return found

    def next_label(self) -> str:
        self.count += 1
        return f"<agent run_python #{self.count}>"
