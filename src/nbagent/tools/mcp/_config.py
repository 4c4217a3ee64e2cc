"""Server definitions: ``mcp.json`` / ``.mcp.json`` beside the notebook, or one line in a cell.

The file is the common format, plus a few nbagent options per server::

    {"mcpServers": {
        "time": {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
        "docs": {"url": "http://127.0.0.1:8765/mcp",
                 "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}},
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."],
                  "allowTools": ["read_*", "list_*"], "readOnly": true, "timeout": 30}
    }}

``${VAR}`` (or ``${VAR:-default}``) in ``env``, ``headers``, ``args`` and ``url`` is taken
from the kernel's environment when the server starts: that is the one way a secret reaches
a server, by name. Nothing here imports ``mcp``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ...errors import McpConfigError
from .._function import ToolPolicy

CONFIG_FILES = ("mcp.json", ".mcp.json")
"""Looked up, in this order, in the notebook's directory; both are read when both exist."""

DEFAULT_TIMEOUT = 60.0
"""Seconds a tool call may take before it is cancelled and reported to the model."""

DEFAULT_STARTUP_TIMEOUT = 30.0
"""Seconds a server has to start and answer the MCP handshake."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,47}$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Keys other clients write into the same file; accepted and ignored.
_FOREIGN = {
    "type",
    "transport",
    "transportType",
    "description",
    "alwaysAllow",
    "autoApprove",
    "autoStart",
    "timeoutMs",
    "envFile",
    "oauth",
}


@dataclass(frozen=True)
class McpServerConfig:
    """How to reach one MCP server, and what nbagent lets the agent do with it."""

    name: str
    """The server's name in ``mcp:NAME`` and in tool names (``mcp__NAME__TOOL``)."""
    command: str | None = None
    """Executable of a stdio server (looked up on ``PATH``)."""
    args: tuple[str, ...] = ()
    """Its arguments."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The only variables the server gets besides a minimal safe set (PATH, HOME, LANG, …)."""
    cwd: str | None = None
    """Working directory of a stdio server (relative paths are relative to the config file)."""
    url: str | None = None
    """Endpoint of a streamable HTTP server."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """HTTP headers sent with every request (e.g. ``Authorization``)."""
    allow_tools: tuple[str, ...] | None = None
    """If set, only tools matching one of these globs are offered to the agent."""
    block_tools: tuple[str, ...] = ()
    """Tools matching these globs are never offered."""
    read_only: bool | tuple[str, ...] = False
    """The user vouches that these tools (all, or those matching the globs) have no side
    effects, so approval mode ``readonly`` runs them without asking. The server's own
    ``readOnlyHint`` is shown but never trusted for this."""
    approval: ToolPolicy | None = None
    """Approval policy for every tool of the server (``ask``, ``allow``, ``deny``)."""
    timeout: float = DEFAULT_TIMEOUT
    """Deadline of one tool call, in seconds."""
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    """Deadline for starting and the MCP handshake, in seconds."""
    max_result_chars: int | None = None
    """Cut results longer than this (default: the session's limit)."""
    disabled: bool = False
    """Keep the definition but never start the server."""
    source: str = "cell"
    """Where the definition came from: a file path, or ``cell``."""

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    @property
    def target(self) -> str:
        """The command line or URL, for status tables (no header or env values)."""
        if self.command is not None:
            return " ".join([self.command, *self.args])
        return self.url or ""

    def same_connection(self, other: McpServerConfig) -> bool:
        """True when a running server can be kept for ``other`` (only policies differ)."""
        keys = ("command", "args", "env", "cwd", "url", "headers", "startup_timeout")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def find_config_files(directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """The config files beside the notebook (``mcp.json``, then ``.mcp.json``)."""
    base = Path(directory) if directory is not None else Path.cwd()
    return [base / name for name in CONFIG_FILES if (base / name).is_file()]


def load_config_files(
    directory: str | os.PathLike[str] | None = None,
) -> dict[str, McpServerConfig]:
    """Read every config file beside the notebook; a name defined twice is an error."""
    servers: dict[str, McpServerConfig] = {}
    for path in find_config_files(directory):
        for name, config in load_config_file(path).items():
            if name in servers:
                raise McpConfigError(
                    f"{path}: mcpServers.{name}: the server {name!r} is also defined in "
                    f"{servers[name].source}; keep one definition"
                )
            servers[name] = config
    return servers


def load_config_file(path: str | os.PathLike[str]) -> dict[str, McpServerConfig]:
    """Parse one ``mcp.json``; errors name the file, the key and what was expected."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise McpConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise McpConfigError(f"{path}: is not UTF-8 text ({exc.reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise McpConfigError(
            f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    return parse_config(data, source=str(path), base=path.parent)


def parse_config(
    data: Any, *, source: str = "cell", base: str | os.PathLike[str] | None = None
) -> dict[str, McpServerConfig]:
    """Turn a decoded ``{"mcpServers": {...}}`` document into server configs."""
    where = f"{source}: " if source != "cell" else ""
    if not isinstance(data, dict):
        raise McpConfigError(f"{where}expected a JSON object with a key 'mcpServers'")
    if "mcpServers" not in data:
        raise McpConfigError(
            f"{where}expected a key 'mcpServers' (an object of servers by name); "
            f"found {', '.join(map(repr, data)) or 'no keys'}"
        )
    servers = data["mcpServers"]
    if not isinstance(servers, dict):
        raise McpConfigError(
            f"{where}mcpServers: expected an object of servers by name, got {_kind(servers)}"
        )
    return {
        name: server_config(name, entry, source=source, base=base)
        for name, entry in servers.items()
    }


_OPTIONS = {
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
    "allowTools",
    "blockTools",
    "readOnly",
    "approval",
    "timeout",
    "startupTimeout",
    "maxResultChars",
    "disabled",
}


def server_config(
    name: str,
    entry: Any,
    *,
    source: str = "cell",
    base: str | os.PathLike[str] | None = None,
) -> McpServerConfig:
    """Check one server entry (``{"command": …}`` or ``{"url": …}``) and build its config."""
    where = f"{source}: " if source != "cell" else ""
    key = f"mcpServers.{name}"

    def bad(sub: str, expected: str, value: Any) -> McpConfigError:
        return McpConfigError(f"{where}{key}.{sub}: expected {expected}, got {_kind(value)}")

    if not isinstance(name, str) or not _NAME.match(name):
        raise McpConfigError(
            f"{where}{key}: a server name must be 1-48 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    if not isinstance(entry, dict):
        raise McpConfigError(
            f"{where}{key}: expected an object with 'command' (stdio) or 'url' (HTTP), "
            f"got {_kind(entry)}"
        )
    for option in entry:
        if option in _OPTIONS or option in _FOREIGN:
            continue
        close = difflib.get_close_matches(option, sorted(_OPTIONS), n=1, cutoff=0.75)
        if close:
            raise McpConfigError(
                f"{where}{key}.{option}: unknown option; did you mean {close[0]!r}?"
            )
    kind = entry.get("type") or entry.get("transport")
    if kind == "sse":
        raise McpConfigError(
            f"{where}{key}.type: the legacy SSE transport is not supported; "
            "use the server's streamable HTTP endpoint ('url')"
        )
    command, url = entry.get("command"), entry.get("url")
    if (command is None) == (url is None):
        raise McpConfigError(
            f"{where}{key}: expected exactly one of 'command' (a stdio server) "
            "or 'url' (a streamable HTTP server)"
        )
    if command is not None and (not isinstance(command, str) or not command.strip()):
        raise bad("command", "a non-empty string", command)
    if url is not None and (not isinstance(url, str) or not re.match(r"^https?://", url)):
        raise bad("url", "an http:// or https:// URL", url)
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise bad("args", "a list of strings", args)
    env = _string_map(entry.get("env", {}), lambda v: bad("env", "an object of strings", v))
    headers = _string_map(
        entry.get("headers", {}), lambda v: bad("headers", "an object of strings", v)
    )
    cwd = entry.get("cwd")
    if cwd is not None:
        if not isinstance(cwd, str):
            raise bad("cwd", "a directory path", cwd)
        if base is not None and not os.path.isabs(os.path.expanduser(cwd)):
            cwd = str(Path(base) / cwd)
    elif base is not None and command is not None:
        cwd = str(base)
    if url is not None and (args or env or entry.get("cwd") is not None):
        raise McpConfigError(
            f"{where}{key}: 'args', 'env' and 'cwd' apply to stdio servers ('command'), "
            "not to an HTTP server ('url')"
        )
    allow = entry.get("allowTools")
    if allow is not None and not _globs(allow):
        raise bad("allowTools", "a list of tool names or globs", allow)
    block = entry.get("blockTools", [])
    if not _globs(block):
        raise bad("blockTools", "a list of tool names or globs", block)
    read_only = entry.get("readOnly", False)
    if not isinstance(read_only, bool) and not _globs(read_only):
        raise bad("readOnly", "true, false or a list of tool names or globs", read_only)
    approval = entry.get("approval")
    if approval is not None and approval not in ("ask", "allow", "deny"):
        raise bad("approval", "'ask', 'allow' or 'deny'", approval)
    timeout = _seconds(
        entry.get("timeout", DEFAULT_TIMEOUT),
        lambda v: bad("timeout", "a positive number of seconds", v),
    )
    startup = _seconds(
        entry.get("startupTimeout", DEFAULT_STARTUP_TIMEOUT),
        lambda v: bad("startupTimeout", "a positive number of seconds", v),
    )
    limit = entry.get("maxResultChars")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise bad("maxResultChars", "a positive integer", limit)
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise bad("disabled", "true or false", disabled)
    return McpServerConfig(
        name=name,
        command=command,
        args=tuple(args),
        env=env,
        cwd=cwd,
        url=url,
        headers=headers,
        allow_tools=tuple(allow) if allow is not None else None,
        block_tools=tuple(block),
        read_only=read_only if isinstance(read_only, bool) else tuple(read_only),
        approval=approval,
        timeout=timeout,
        startup_timeout=startup,
        max_result_chars=limit,
        disabled=disabled,
        source=source,
    )


def expand(value: str, what: str, config: McpServerConfig) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}`` with the kernel's environment."""
    if "${" not in value:
        return value

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is not None:
            return found
        if default is not None:
            return default
        where = f"{config.source}: " if config.source != "cell" else ""
        raise McpConfigError(
            f"{where}mcpServers.{config.name}.{what} uses ${{{name}}}, which is not set in "
            f"the kernel's environment; set it (os.environ[{name!r}] = ...) or give a "
            f"default with ${{{name}:-...}}"
        )

    return _VAR.sub(sub, value)


def _string_map(value: Any, error: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise error(value)
    return dict(value)


def _globs(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _seconds(value: Any, error: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise error(value)
    return float(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 40 else "a string"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
