"""Python functions as tools: schemas, validation, results as text."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

import nbagent
from nbagent.tools import REGISTRY, function_tool, resolve_tools, sanitize, to_text, truncate


def test_schema_comes_from_hints_defaults_and_docstring() -> None:
    def search(query: str, limit: int = 10, mode: Literal["fast", "exact"] = "fast") -> list[str]:
        """Search the notes.

        Args:
            query: What to look for.
            limit: At most this many hits.
        """
        return []

    made = function_tool(search)
    assert made.description == "Search the notes."
    assert made.parameters == {
        "type": "object",
        "additionalProperties": False,
        "required": ["query"],
        "properties": {
            "query": {"type": "string", "description": "What to look for."},
            "limit": {"type": "integer", "default": 10, "description": "At most this many hits."},
            "mode": {"enum": ["fast", "exact"], "type": "string", "default": "fast"},
        },
    }
    spec = nbagent.tools.tool_spec(made)
    assert spec["function"]["name"] == "search"


def test_numpy_and_sphinx_docstrings_describe_parameters() -> None:
    def numpy_style(x: int) -> int:
        """Double.

        Parameters
        ----------
        x : int
            The number.
        """
        return 2 * x

    def sphinx_style(x: int) -> int:
        """Double.

        :param x: The number.
        """
        return 2 * x

    for func in (numpy_style, sphinx_style):
        made = function_tool(func)
        assert made.parameters["properties"]["x"]["description"] == "The number."


def test_validation_converts_and_explains() -> None:
    made = function_tool(_typed)
    assert made.validate({"n": "3"}) == {"n": 3, "flag": False}
    with pytest.raises(nbagent.tools.ToolArgumentsError, match="missing required argument 'n'"):
        made.validate({})


def _typed(n: int, flag: bool = False) -> int:
    """Typed."""
    return n


def test_bad_definitions_are_refused_with_a_reason() -> None:
    def star(*args: int) -> None: ...

    with pytest.raises(nbagent.ToolDefinitionError, match=r"\*args"):
        function_tool(star)
    with pytest.raises(nbagent.ToolDefinitionError, match="not allowed"):
        function_tool(_typed, name="has spaces")


def test_decorator_registers_by_name_and_keeps_the_function_callable() -> None:
    @nbagent.tool(read_only=True)
    def square(x: int) -> int:
        """Square."""
        return x * x

    assert square(4) == 16
    assert REGISTRY["square"] is square and square.read_only
    assert resolve_tools(["square"]) == {"square": square}
    with pytest.raises(nbagent.ToolDefinitionError, match="no tool named 'cube'"):
        resolve_tools(["cube"])


async def test_async_tools_and_timeouts() -> None:
    @nbagent.tool(timeout=0.05)
    async def sleepy() -> str:
        """Sleep."""
        await asyncio.sleep(5)
        return "late"

    with pytest.raises(TimeoutError, match=r"did not finish within 0\.05 s"):
        await sleepy.invoke({})


def test_results_become_clean_bounded_text() -> None:
    assert to_text({"a": [1, 2]}) == '{"a": [1, 2]}'
    assert to_text(None) == "(no result)"
    assert sanitize("\x1b[1mbold\x1b[0m\r\nline\x00\x1b]0;title\x07") == "bold\nline"
    text, cut = truncate("a" * 50, 20)
    assert (
        cut and text.startswith("a" * 16) and text.endswith("aaaa") and "30 characters cut" in text
    )
    assert truncate("short", 20) == ("short", False)
