"""Compact, model-friendly summaries of the user's variables (``describe`` and ``{name}``).

Summaries say what a value is without dumping it: DataFrames give their shape, columns,
dtypes, null counts and head; arrays their shape, dtype and range; mappings their size and
first keys. Mappings that hold the process environment show keys only.
"""

from __future__ import annotations

import inspect
import os
import types
from collections.abc import Mapping
from typing import Any

from .._redact import REDACTED, is_secret_name

_PREVIEW = 300


def short_repr(value: Any, limit: int = _PREVIEW) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the tool
        text = f"<{type(value).__name__}: repr failed: {exc}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return (
        cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    )


def shape_of(value: Any) -> str:
    """A short size description: ``(100, 5)``, ``len 3``, or empty."""
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        return str(shape)
    if isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        return f"len {len(value)}"
    return ""


def _is_environment(value: Any) -> bool:
    return value is os.environ or isinstance(value, os._Environ)


def describe_value(name: str, value: Any, *, rows: int = 5) -> str:
    """A multi-line summary of ``value`` for the model."""
    head = f"{name}: {type_name(value)}"
    if _is_environment(value):
        keys = ", ".join(sorted(value)[:60])
        return f"{head} (the process environment; values are not shown)\nkeys: {keys}"
    module = type(value).__module__.split(".")[0]
    if module == "pandas":
        return head + "\n" + _describe_pandas(value, rows)
    if module == "numpy" and hasattr(value, "dtype"):
        return head + "\n" + _describe_array(value)
    if isinstance(value, types.ModuleType):
        doc = (inspect.getdoc(value) or "").split("\n")[0]
        return f"{head} {value.__name__} ({getattr(value, '__file__', 'built-in')})\n{doc}"
    if inspect.isclass(value) or callable(value):
        try:
            signature = str(inspect.signature(value))
        except (TypeError, ValueError):
            signature = "(…)"
        doc = (inspect.getdoc(value) or "").split("\n")[0]
        return f"{head} {getattr(value, '__name__', name)}{signature}\n{doc}".rstrip()
    if isinstance(value, Mapping):
        items = []
        for key in list(value)[:20]:
            shown = (
                REDACTED
                if isinstance(key, str) and is_secret_name(key)
                else short_repr(value[key], 80)
            )
            items.append(f"  {short_repr(key, 40)}: {shown}")
        more = f"\n  … {len(value) - 20} more keys" if len(value) > 20 else ""
        return f"{head} with {len(value)} keys\n" + "\n".join(items) + more
    if isinstance(value, (list, tuple, set, frozenset)):
        sample = list(value)[:5]
        kinds = sorted({type(v).__name__ for v in value}) if len(value) < 10_000 else []
        return (
            f"{head} of {len(value)} items"
            + (f" ({', '.join(kinds)})" if kinds else "")
            + f"\nfirst: {short_repr(sample)}"
        )
    if isinstance(value, str):
        return f"{head} of {len(value)} characters\n{short_repr(value)}"
    return f"{head}\n{short_repr(value)}"


def _describe_pandas(value: Any, rows: int) -> str:
    lines = [f"shape: {value.shape}"]
    if hasattr(value, "columns"):
        nulls = value.isna().sum()
        columns = [
            f"  {col!s}: {dtype} ({int(nulls[col])} null)" for col, dtype in value.dtypes.items()
        ][:60]
        lines.append("columns:")
        lines.extend(columns)
        if len(value.columns) > 60:
            lines.append(f"  … {len(value.columns) - 60} more columns")
    else:
        lines.append(f"dtype: {value.dtype}, {int(value.isna().sum())} null")
    lines.append(f"head({rows}):")
    lines.append(value.head(rows).to_string(max_cols=20, max_colwidth=40))
    return "\n".join(lines)


def _describe_array(value: Any) -> str:
    lines = [f"shape: {value.shape}, dtype: {value.dtype}"]
    if value.size and value.dtype.kind in "iufb":
        lines.append(f"min {value.min()!r}, max {value.max()!r}, mean {float(value.mean()):.6g}")
    lines.append(short_repr(value))
    return "\n".join(lines)


def variable_rows(
    namespace: Mapping[str, Any], hidden: Mapping[str, Any]
) -> list[tuple[str, str, str]]:
    """(name, type, size) of the user's variables, without IPython's own names."""
    rows = []
    for name, value in namespace.items():
        if name.startswith("_") or (name in hidden and hidden[name] is value):
            continue
        if name in ("In", "Out", "exit", "quit", "get_ipython"):
            continue
        rows.append((name, type_name(value), shape_of(value)))
    return sorted(rows)
