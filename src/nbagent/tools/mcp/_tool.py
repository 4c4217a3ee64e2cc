"""MCP tools as nbagent tools, and MCP results as text for the model plus display bundles.

A tool ``get_time`` of the server ``clock`` is declared to the model as
``mcp__clock__get_time``: providers accept only ``[A-Za-z0-9_-]{1,64}`` as a function
name, and the prefix keeps two servers' tools apart.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from ...errors import ToolArgumentsError
from .._function import ToolOutput, ToolPolicy
from ._config import McpServerConfig

if TYPE_CHECKING:
    import mcp_types

    from ._server import McpServer

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def tool_name(server: str, tool: str) -> str:
    """The name the model sees: ``mcp__SERVER__TOOL``, made provider-safe and ≤ 64 chars."""
    name = f"mcp__{_UNSAFE.sub('_', server)}__{_UNSAFE.sub('_', tool)}"
    if len(name) <= 64:
        return name
    digest = hashlib.sha1(f"{server}/{tool}".encode()).hexdigest()[:8]
    return f"{name[:55]}_{digest}"


def offered(config: McpServerConfig, name: str) -> bool:
    """Whether the server's allow and block lists let the agent see tool ``name``."""
    if config.allow_tools is not None and not any(
        fnmatch.fnmatchcase(name, g) for g in config.allow_tools
    ):
        return False
    return not any(fnmatch.fnmatchcase(name, g) for g in config.block_tools)


def hints(annotations: mcp_types.ToolAnnotations | None) -> tuple[str, ...]:
    """The server's behaviour hints, as words (shown, never trusted)."""
    if annotations is None:
        return ()
    words = []
    if annotations.read_only_hint:
        words.append("read-only")
    elif annotations.destructive_hint is False:
        words.append("non-destructive")
    elif annotations.destructive_hint:
        words.append("destructive")
    if annotations.idempotent_hint:
        words.append("idempotent")
    if annotations.open_world_hint:
        words.append("open-world")
    return tuple(words)


class McpTool:
    """One tool of an MCP server, callable by the agent like any other tool.

    ``read_only`` is True only when the user's config says so (``"readOnly"``); the
    server's own hints are in ``annotations`` and in the description, for people and the
    model to read, and never decide an approval.
    """

    def __init__(self, server: McpServer, remote: mcp_types.Tool) -> None:
        config = server.config
        self.server = server
        self.remote_name = remote.name
        """The tool's name on its server."""
        self.name = tool_name(config.name, remote.name)
        self.source = f"mcp:{config.name}"
        """Where the tool comes from, as ``--tools`` spells it."""
        self.annotations: dict[str, Any] = (
            remote.annotations.model_dump(exclude_none=True) if remote.annotations else {}
        )
        """The server's annotations (``read_only_hint``, ``destructive_hint``, …): untrusted."""
        self.hints = hints(remote.annotations)
        title = remote.title or (remote.annotations.title if remote.annotations else None)
        text = (remote.description or title or f"The tool {remote.name}.").strip()
        if self.hints:
            text += f"\n(MCP server {config.name!r}; its hints: {', '.join(self.hints)})"
        self.description = text
        schema = dict(remote.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        self.parameters: dict[str, Any] = schema
        self.read_only = config.read_only is True or (
            isinstance(config.read_only, tuple)
            and any(fnmatch.fnmatchcase(remote.name, g) for g in config.read_only)
        )
        self.policy: ToolPolicy | None = config.approval
        self.max_result_chars = config.max_result_chars

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Check the shape the model can get wrong cheaply; the server checks the rest."""
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(
                f"Invalid arguments for tool '{self.name}': expected a JSON object."
            )
        properties = self.parameters.get("properties") or {}
        problems = [
            f"missing required argument '{key}'"
            for key in self.parameters.get("required") or ()
            if key not in arguments
        ]
        if self.parameters.get("additionalProperties") is False:
            problems += [f"unexpected argument '{k}'" for k in arguments if k not in properties]
        if problems:
            raise ToolArgumentsError(
                f"Invalid arguments for tool '{self.name}': " + "; ".join(problems) + "."
            )
        return arguments

    async def invoke(self, arguments: dict[str, Any]) -> ToolOutput:
        """Call the tool on its server (starting the server if needed)."""
        result = await self.server.call(self.remote_name, arguments)
        return render_result(result)

    def __repr__(self) -> str:
        return f"<McpTool {self.name} ({self.source}/{self.remote_name})>"


def render_result(result: mcp_types.CallToolResult) -> ToolOutput:
    """Text for the model, images and data as MIME bundles for the notebook."""
    import mcp_types as types

    parts: list[str] = []
    display: list[dict[str, Any]] = []
    blocks: list[Any] = list(result.content)  # Any: newer servers may send newer types
    for block in blocks:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent):
            display.append({block.mime_type: block.data, "text/plain": "[image]"})
            parts.append(f"[image {block.mime_type}, {_size(block.data)}: shown to the user]")
        elif isinstance(block, types.AudioContent):
            parts.append(f"[audio {block.mime_type}, {_size(block.data)}: not shown]")
        elif isinstance(block, types.EmbeddedResource):
            res = block.resource
            mime = res.mime_type or "unknown type"
            if isinstance(res, types.TextResourceContents):
                parts.append(f"[resource {res.uri} ({mime})]\n{res.text}")
            else:
                if res.mime_type and res.mime_type.startswith("image/"):
                    display.append({res.mime_type: res.blob, "text/plain": f"[{res.uri}]"})
                parts.append(f"[binary resource {res.uri} ({mime}), {_size(res.blob)}]")
        elif isinstance(block, types.ResourceLink):
            about = f": {block.description}" if block.description else ""
            mime = f" ({block.mime_type})" if block.mime_type else ""
            parts.append(f"[resource link {block.name} {block.uri}{mime}{about}]")
        else:  # a content type newer than this code: say so rather than drop it
            kind: Any = getattr(block, "type", None) or type(block).__name__
            parts.append(f"[{kind} content]")
    structured = result.structured_content
    if structured is not None and not any(isinstance(b, types.TextContent) for b in blocks):
        # Servers usually repeat structured results as text; when one does not, the model
        # reads the JSON and the notebook can show it as data.
        parts.append(_json(structured))
        display.append({"application/json": structured, "text/plain": _json(structured)})
    text = "\n".join(parts) if parts else "(no result)"
    return ToolOutput(text=text, is_error=bool(result.is_error), display=tuple(display))


def _size(data: str) -> str:
    n = len(data) * 3 // 4 - data[-2:].count("=")
    return f"{n:,} bytes"


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def decode_image(bundle: dict[str, Any]) -> bytes:
    """The raw bytes of an image bundle made by :func:`render_result` (for tests, views)."""
    for key, value in bundle.items():
        if key.startswith("image/"):
            return base64.b64decode(value)
    raise KeyError("no image in this bundle")
