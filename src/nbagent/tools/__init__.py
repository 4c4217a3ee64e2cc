"""Tools the agent can call: Python functions, and later notebook and MCP tools."""

from ..errors import ToolArgumentsError
from ._function import (
    REGISTRY,
    FunctionTool,
    Tool,
    ToolLike,
    ToolOutput,
    ToolPolicy,
    function_tool,
    resolve_tools,
    tool,
    tool_spec,
)
from ._text import (
    DEFAULT_MAX_RESULT_CHARS,
    MAX_DISPLAY_BYTES,
    cap_display,
    sanitize,
    to_text,
    truncate,
)

__all__ = [
    "DEFAULT_MAX_RESULT_CHARS",
    "MAX_DISPLAY_BYTES",
    "REGISTRY",
    "FunctionTool",
    "Tool",
    "ToolArgumentsError",
    "ToolLike",
    "ToolOutput",
    "ToolPolicy",
    "cap_display",
    "function_tool",
    "resolve_tools",
    "sanitize",
    "to_text",
    "tool",
    "tool_spec",
    "truncate",
]
