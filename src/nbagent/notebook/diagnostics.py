"""The ``%agent`` commands that look at the kernel's set-up: ``tools``, ``doctor``, ``mcp``,
and the code a session ran (for ``%agent code``)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from .. import config
from ..errors import McpError, ProviderAuthError, SettingError
from ..render import Table
from ..tools import REGISTRY
from .frontend import ipykernel_version, pick_mode

if TYPE_CHECKING:
    from ..tools.mcp import McpManager
    from .opening import SessionOpener

MCP_USAGE = """\
%agent mcp               MCP servers (mcp.json beside the notebook): state, tools, errors
%agent mcp add NAME -- COMMAND ARGS...   or   %agent mcp add NAME --url URL
%agent mcp start|stop|restart|remove NAME    %agent mcp reload"""


def tools(opener: SessionOpener) -> Table:
    sessions = opener.registry.sessions
    used = {t: n for n, s in sessions.items() for t in s.tools}
    rows: list[tuple[str, ...]] = []
    for name in sorted(set(REGISTRY) | set(used)):
        tool = REGISTRY.get(name) or sessions[used[name]].tools[name]
        rows.append((
            name, "registered" if name in REGISTRY else f"session {used[name]}",
            "yes" if tool.read_only else "no", tool.policy or "session",
            (tool.description.splitlines() or [""])[0][:80],
        ))  # fmt: skip
    return Table(["tool", "from", "read-only", "approval", "description"], rows)


DOCTOR_TIMEOUT_S = 3.0
"""How long ``%agent doctor`` waits for the api base to answer."""


def doctor(opener: SessionOpener) -> Table:
    from ..model import LiteLLMModel, import_litellm

    rows: list[tuple[str, str, str]] = []
    try:
        settings = config.resolve(opener.configurable)
    except SettingError as exc:
        return Table(["check", "result", "detail"], [("settings", "FAIL", str(exc))])
    registry = opener.registry
    session = registry.sessions.get(registry.current)
    model = session.model.name if session is not None else settings.model
    reached = getattr(session.model, "inner", session.model) if session is not None else None
    api_base = getattr(reached, "api_base", None) or settings.api_base
    api_key_env = getattr(reached, "api_key_env", None) or settings.api_key_env
    litellm = import_litellm()
    provider: str | None
    try:
        _, provider, _, _ = litellm.get_llm_provider(model, api_base=api_base)
        rows.append(("model", "ok", f"{model} (provider {provider})"))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        rows.append(("model", "FAIL", f"{model} does not resolve: {first}"))
        provider = None
    if provider is not None:
        probe = LiteLLMModel(model, api_base=api_base, api_key_env=api_key_env)
        try:
            key, source = probe.credentials()
        except ProviderAuthError as exc:
            rows.append(("API key", "FAIL", str(exc)))
        else:
            where = source or "the provider's key variables are set (or it needs none)"
            if key is not None and source == api_key_env:
                where = f"read from {source}"
            rows.append(("API key", "ok", where))
    problems = []
    in_use = session.tools if session is not None else {}
    for name, tool in in_use.items():
        try:
            tool.parameters  # noqa: B018 - the schema is what a model request needs
        except Exception as exc:
            problems.append(f"{name}: {exc}")
    listed = (", ".join(sorted(in_use)) or "none in use") + (
        f"; registered: {', '.join(sorted(REGISTRY)) or 'none'}"
    )
    rows.append(("tools", "FAIL" if problems else "ok", "; ".join(problems) or listed))
    version = ipykernel_version()
    picked = pick_mode(settings.mode, opener.shell)
    rows.append((
        "kernel", "ok",
        f"ipykernel {'.'.join(map(str, version or ())) or 'absent'}; "
        f"mode {settings.mode} runs cells as {picked}",
    ))  # fmt: skip
    rows.append(api_base_check(api_base, api_key_env))
    if provider is not None:
        rows.append(model_check(litellm, model))
    return Table(["check", "result", "detail"], rows)


def api_base_check(api_base: str | None, api_key_env: str | None) -> tuple[str, str, str]:
    """Whether the server in use answers: its model list, asked with a bounded wait."""
    if not api_base:
        return ("api base", "ok", "the provider's default")
    import httpx

    key = os.environ.get(api_key_env or "", "").strip() if api_key_env else ""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = api_base.rstrip("/") + "/models"
    try:
        response = httpx.get(url, headers=headers, timeout=DOCTOR_TIMEOUT_S)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        return ("api base", "FAIL", f"{api_base} does not answer: {reason}")
    if response.status_code == 200:
        try:
            count = len(response.json().get("data") or [])
        except (ValueError, AttributeError):
            count = 0
        return ("api base", "ok", f"{api_base} answers ({count} models listed)")
    return ("api base", "ok", f"{api_base} answers (HTTP {response.status_code} for /models)")


def model_check(litellm: Any, model: str) -> tuple[str, str, str]:
    """What litellm knows of the model: context window, tools, vision."""
    try:
        info = litellm.get_model_info(model)
    except Exception:
        return ("model info", "ok", f"{model} is not in litellm's model map (no price, limits)")
    window = info.get("max_input_tokens")
    tools = "yes" if info.get("supports_function_calling") else "no"
    vision = "yes" if info.get("supports_vision") else "no"
    context = f"{window:,} tokens" if isinstance(window, int) else "unknown"
    return ("model info", "ok", f"context {context}; tools {tools}; vision {vision}")


def mcp(opener: SessionOpener, *words: str) -> Any:
    manager = opener.mcp()
    action, rest = (words[0], list(words[1:])) if words else ("list", [])
    try:
        if action == "list" and not rest:
            rows = [
                (s.name, s.state.value if hasattr(s.state, "value") else str(s.state),
                 s.reason or "", "" if s.tools is None else s.tools, s.last_error or "",
                 s.target, s.source)
                for s in manager.status()
            ]  # fmt: skip
            return Table(["server", "state", "reason", "tools", "last error", "target",
                          "source"], rows)  # fmt: skip
        if action == "add":
            _add(manager, rest)
            return None
        if action in ("restart", "stop", "start") and len(rest) == 1:
            return getattr(manager, action)(rest[0])
        if action == "remove" and len(rest) == 1:
            manager.remove(rest[0])
            print(f"removed MCP server {rest[0]!r}")
            return None
        if action == "reload" and not rest:
            names = manager.reload()
            print(f"MCP servers from the config files: {', '.join(names) or 'none'}")
            return None
    except McpError as exc:
        raise UsageError(str(exc)) from None
    raise UsageError(
        "%agent mcp [list] | add NAME -- COMMAND ARGS... | add NAME --url URL | "
        "start|stop|restart|remove NAME | reload"
    )


def _add(manager: McpManager, words: list[str]) -> None:
    if len(words) >= 3 and words[1] == "--":
        manager.add(words[0], command=words[2], args=words[3:])
    elif len(words) == 3 and words[1] == "--url":
        manager.add(words[0], url=words[2])
    else:
        raise UsageError(
            "%agent mcp add NAME -- COMMAND ARGS...  or  %agent mcp add NAME --url URL"
        )
    print(f"added MCP server {words[0]!r}; use it with --tools mcp:{words[0]}")


def code_from_messages(messages: list[dict[str, Any]]) -> list[str]:
    """The code of every ``run_python`` call that ran, in order."""
    results = {
        m.get("tool_call_id"): str(m.get("content", ""))
        for m in messages
        if m.get("role") == "tool"
    }
    blocks = []
    for message in messages:
        for raw in message.get("tool_calls") or ():
            function = raw.get("function") or {}
            if function.get("name") != "run_python":
                continue
            outcome = results.get(raw.get("id"), "")
            if outcome.startswith(("The call was denied", "The tool call was cancelled")):
                continue
            try:
                code = json.loads(function.get("arguments") or "{}").get("code", "")
            except (ValueError, AttributeError):
                continue
            blocks.append(str(code))
    return blocks
