"""MCP servers as tool sources: ``mcp.json`` beside the notebook, supervised per kernel.

    from nbagent.tools.mcp import McpManager

    manager = McpManager(directory=".")            # mcp.json / .mcp.json beside the notebook
    tools = await manager.resolve(["mcp:time"])    # or "mcp:time/get_current_time"
    session = nbagent.Session(model, tools=tools.values())

Tools are named ``mcp__SERVER__TOOL`` for the model. Importing this package does not
import ``mcp``; the SDK loads when the first server starts.
"""

from ._config import (
    CONFIG_FILES,
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_TIMEOUT,
    McpServerConfig,
    find_config_files,
    load_config_file,
    load_config_files,
    parse_config,
)
from ._manager import McpManager, parse_spec
from ._server import SAFE_ENV, McpServer, ServerState, ServerStatus
from ._tool import McpTool, render_result, tool_name

__all__ = [
    "CONFIG_FILES",
    "DEFAULT_STARTUP_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "SAFE_ENV",
    "McpManager",
    "McpServer",
    "McpServerConfig",
    "McpTool",
    "ServerState",
    "ServerStatus",
    "find_config_files",
    "load_config_file",
    "load_config_files",
    "parse_config",
    "parse_spec",
    "render_result",
    "tool_name",
]
