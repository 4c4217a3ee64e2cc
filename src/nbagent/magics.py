"""``%%agent`` and ``%agent``: parse, pick the mode, wire a session to the cell.

IPython does not await what a magic returns, so an input transformer turns every
``%%agent`` cell into ``await get_ipython().run_cell_magic('agent', …)``; IPython's
autoawait then drives the run on the kernel's own loop. The run itself lives in
``nbagent._cell`` (imported on the first run, so ``%load_ext`` stays fast).
"""

from __future__ import annotations

import os
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import config
from .approval import APPROVAL_MODES, ApprovalMode
from .errors import ToolDefinitionError
from .model import LiteLLMModel
from .render import Table, format_cost, render_history
from .session import Session, SessionState
from .tools import REGISTRY, Tool, function_tool

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from ._cell import AgentResult, Notebook, RunMode

_CELL_CALL = "get_ipython().run_cell_magic('agent',"

HELP = """\
%%agent [options]      run the cell body as a message to an agent session
  -m/--model NAME        litellm model, e.g. openai/gpt-4o-mini (env NBAGENT_MODEL)
  --api-base URL         OpenAI-compatible server (env NBAGENT_API_BASE)
  -s/--session NAME      conversation to continue (default: the current one, 'default')
  --tools A,B            functions from the notebook or @nbagent.tool names
  --approve MODE         ask | all | none | readonly (env NBAGENT_APPROVE)
  --max-turns N          model requests allowed in this run
  --mode MODE            auto | wait | background (env NBAGENT_MODE)
  --system TEXT          system prompt of the session
  --allow-errors         in headless runs, do not fail the cell when the run fails

%agent sessions          table of sessions: model, turns, state, tokens, cost
%agent use NAME          make NAME the session of cells without --session
%agent new [NAME]        start a fresh session (replacing one of that name)
%agent history [NAME]    the conversation so far
%agent stop [NAME]       stop the running turn
%agent tools             tools registered and in use
%agent doctor            check the model, the API key variable and the tools
%agent help              this text

Defaults: %config NBAgent.model = "..." (also approve, mode, api_base, max_turns, system).
"""


def await_agent_cells(lines: list[str]) -> list[str]:
    """Input transformer: make a ``%%agent`` cell a top-level ``await`` of its run."""
    if lines and lines[0].startswith(_CELL_CALL):
        return ["await " + lines[0], *lines[1:]]
    return lines


def ipykernel_version() -> tuple[int, ...] | None:
    try:
        from importlib.metadata import version

        return tuple(int(p) for p in re.findall(r"\d+", version("ipykernel"))[:2])
    except Exception:
        return None


def pick_mode(requested: config.Mode, shell: Any) -> RunMode:
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


@magics_class
class AgentMagics(Magics):  # type: ignore[misc]
    """The ``%%agent`` cell magic and the ``%agent`` line commands."""

    def __init__(self, shell: InteractiveShell, settings: config.NBAgent) -> None:
        super().__init__(shell)
        self.settings = settings
        self._notebook: Notebook | None = None

    @property
    def notebook(self) -> Notebook:
        if self._notebook is None:
            from ._cell import Notebook

            self._notebook = Notebook()
        return self._notebook

    @magic_arguments()
    @argument("-m", "--model", help="litellm model name")
    @argument("--api-base", help="base URL of an OpenAI-compatible server")
    @argument("-s", "--session", help="session name")
    @argument("--tools", help="comma-separated tool names")
    @argument("--approve", choices=APPROVAL_MODES, help="approval mode")
    @argument("--max-turns", type=int, help="model requests allowed per run")
    @argument("--mode", choices=config.MODES, help="auto, wait or background")
    @argument("--system", help="system prompt")
    @argument("--allow-errors", action="store_true", help="headless: do not fail the cell")
    @line_cell_magic
    def agent(self, line: str, cell: str | None = None) -> Any:
        """Talk to an agent: ``%%agent [options]`` + the prompt; ``%agent help`` lists the
        line commands."""
        if cell is None:
            return self._command(line)
        return self._cell(line, cell)

    # -- the cell -------------------------------------------------------------------------

    def _cell(self, line: str, cell: str) -> Coroutine[Any, Any, AgentResult | None]:
        args = parse_argstring(self.agent, line)
        prompt = cell.strip()
        if not prompt:
            raise UsageError("write the message to the agent below the %%agent line")
        if args.max_turns is not None and args.max_turns < 1:
            raise UsageError("--max-turns must be at least 1")
        try:
            settings = config.resolve(self.settings)
        except config.SettingError as exc:
            raise UsageError(str(exc)) from None
        name = args.session or self.notebook.current
        session = self._session_for(name, args, settings)
        mode = pick_mode(args.mode or settings.mode, self.shell)
        from ._cell import CellRun

        run = CellRun(
            self.notebook,
            name,
            session,
            prompt,
            mode=mode,
            fail_on_error=settings.fail_headless and not args.allow_errors,
            flush_interval=settings.flush_interval,
            text_sync_interval=settings.text_sync_interval,
        )
        return run.start()

    def _session_for(self, name: str, args: Any, settings: config.Settings) -> Session:
        tools = self._tools(args.tools) if args.tools else {}
        session = self.notebook.sessions.get(name)
        if session is not None and session.state is SessionState.CLOSED:
            session = None
        api_base = args.api_base or settings.api_base
        if session is None:
            session = Session(
                args.model or settings.model,
                tools=tools.values(),
                approval=cast(ApprovalMode, args.approve or settings.approve),
                system=args.system if args.system is not None else settings.system,
                max_turns=args.max_turns or settings.max_turns,
                api_base=api_base,
            )
            self.notebook.sessions[name] = session
            return session
        if args.model or args.api_base:
            session.model = LiteLLMModel(args.model or session.model.name, api_base=api_base)
        session.tools.update(tools)
        if args.approve:
            session.policy.mode = args.approve
        if args.max_turns:
            session.max_turns = args.max_turns
        if args.system is not None:
            session.system = args.system
        return session

    def _tools(self, spec: str) -> dict[str, Tool]:
        namespace = self.shell.user_ns if self.shell is not None else {}
        found: dict[str, Tool] = {}
        for name in (n.strip() for n in spec.split(",")):
            if not name:
                continue
            item = namespace.get(name, REGISTRY.get(name))
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

    # -- line commands --------------------------------------------------------------------

    def _command(self, line: str) -> Any:
        words = line.split()
        if not words or words[0] in ("help", "-h", "--help"):
            print(HELP)
            return None
        command, rest = words[0], words[1:]
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise UsageError(f"unknown %agent command {command!r}; try %agent help")
        if len(rest) > 1:
            raise UsageError(f"%agent {command} takes at most one argument")
        return handler(*rest)

    def _named(self, name: str | None) -> tuple[str, Session]:
        name = name or self.notebook.current
        session = self.notebook.sessions.get(name)
        if session is None:
            known = ", ".join(sorted(self.notebook.sessions)) or "none yet"
            raise UsageError(f"no session named {name!r} (sessions: {known})")
        return name, session

    def _cmd_sessions(self) -> Table:
        nb = self.notebook
        rows = [
            (
                ("* " if name == nb.current else "  ") + name,
                s.model.name,
                s.runs,
                s.state.value,
                f"{s.usage.total_tokens:,}",
                format_cost(s.usage.cost_usd, s.usage.cost_known),
            )
            for name, s in nb.sessions.items()
        ]
        return Table(["name", "model", "turns", "state", "tokens", "cost"], rows)

    def _cmd_use(self, name: str | None = None) -> None:
        if not name:
            raise UsageError("%agent use NAME: give the session's name")
        self.notebook.current = name
        print(f"cells without --session now use session {name!r}")

    def _cmd_new(self, name: str | None = None) -> None:
        nb = self.notebook
        if not name:
            n = len(nb.sessions) + 1
            while f"session-{n}" in nb.sessions:
                n += 1
            name = f"session-{n}"
        nb.forget(name)
        nb.current = name
        print(f"new session {name!r}; cells without --session now use it")

    def _cmd_history(self, name: str | None = None) -> Any:
        name, session = self._named(name)
        return _Bundle(render_history(name, session.messages))

    def _cmd_stop(self, name: str | None = None) -> None:
        name, session = self._named(name)
        if session.state is not SessionState.CLOSED and session.cancel():
            print(f"stopping the run of session {name!r}")
        else:
            print(f"session {name!r} has no run to stop")

    def _cmd_tools(self) -> Table:
        rows: list[tuple[str, ...]] = []
        used = {t: n for n, s in self.notebook.sessions.items() for t in s.tools}
        names = sorted(set(REGISTRY) | set(used))
        for tool_name in names:
            tool = REGISTRY.get(tool_name) or next(
                s.tools[tool_name] for s in self.notebook.sessions.values() if tool_name in s.tools
            )
            rows.append(
                (
                    tool_name,
                    "registered" if tool_name in REGISTRY else f"session {used[tool_name]}",
                    "yes" if tool.read_only else "no",
                    tool.policy or "session",
                    (tool.description.splitlines() or [""])[0][:80],
                )
            )
        return Table(["tool", "from", "read-only", "approval", "description"], rows)

    def _cmd_doctor(self) -> Table:
        from .model import import_litellm

        rows: list[tuple[str, str, str]] = []
        try:
            settings = config.resolve(self.settings)
        except config.SettingError as exc:
            return Table(["check", "result", "detail"], [("settings", "FAIL", str(exc))])
        session = self.notebook.sessions.get(self.notebook.current)
        model = session.model.name if session is not None else settings.model
        litellm = import_litellm()
        try:
            _, provider, _, _ = litellm.get_llm_provider(model, api_base=settings.api_base)
            rows.append(("model", "ok", f"{model} (provider {provider})"))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            rows.append(("model", "FAIL", f"{model} does not resolve: {first}"))
            provider = None
        if provider is not None:
            try:
                env = litellm.validate_environment(model)
            except Exception:
                env = {"keys_in_environment": False, "missing_keys": []}
            missing = list(env.get("missing_keys") or [])
            if env.get("keys_in_environment") or not missing:
                rows.append(("API key", "ok", "the provider's key variable is set"))
            else:
                rows.append(
                    ("API key", "FAIL", f"set {' or '.join(missing)} in the kernel's environment")
                )
        problems = []
        tools = session.tools if session is not None else {}
        for tool_name, tool in tools.items():
            try:
                tool.parameters  # noqa: B018 - the schema is what a model request needs
            except Exception as exc:
                problems.append(f"{tool_name}: {exc}")
        rows.append(
            (
                "tools",
                "FAIL" if problems else "ok",
                "; ".join(problems)
                or (", ".join(sorted(tools)) or "none in use")
                + f"; registered: {', '.join(sorted(REGISTRY)) or 'none'}",
            )
        )
        version = ipykernel_version()
        picked = pick_mode(settings.mode, self.shell)
        rows.append(
            (
                "kernel",
                "ok",
                f"ipykernel {'.'.join(map(str, version or ())) or 'absent'}; "
                f"mode {settings.mode} runs cells as {picked}",
            )
        )
        rows.append(("api base", "ok", settings.api_base or "provider default"))
        return Table(["check", "result", "detail"], rows)


class _Bundle:
    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        return self.bundle

    def __repr__(self) -> str:
        return str(self.bundle.get("text/plain", ""))


def load(shell: InteractiveShell) -> None:
    """Register the magics, the ``%%agent`` transformer and ``%config NBAgent``."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    settings = next((c for c in shell.configurables if isinstance(c, config.NBAgent)), None)
    if settings is None:
        settings = config.NBAgent(parent=shell)
        shell.configurables.append(settings)
    shell.register_magics(AgentMagics(shell, settings))
    if await_agent_cells not in shell.input_transformers_post:
        shell.input_transformers_post.append(await_agent_cells)


def unload(shell: InteractiveShell) -> None:
    """Remove the transformer and stop every session of the notebook."""
    if await_agent_cells in shell.input_transformers_post:
        shell.input_transformers_post.remove(await_agent_cells)
    magics = shell.magics_manager.registry.get("AgentMagics")
    if isinstance(magics, AgentMagics) and magics._notebook is not None:
        for name in list(magics._notebook.sessions):
            magics._notebook.forget(name)
    shell.magics_manager.magics["line"].pop("agent", None)
    shell.magics_manager.magics["cell"].pop("agent", None)
