"""``%%agent`` and ``%agent``: parse, pick the mode, wire a session to the cell.

IPython does not await what a magic returns, so an input transformer turns every
``%%agent`` cell into ``await get_ipython().run_cell_magic('agent', …)``; IPython's
autoawait then drives the run on the kernel's own loop. The run itself lives in
``nbagent._cell`` (imported on the first run, so ``%load_ext`` stays fast).
"""

from __future__ import annotations

import fnmatch
import inspect
import os
import re
import shlex
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import config
from .approval import APPROVAL_MODES, ApprovalMode
from .errors import IllegalTransitionError, SessionLockedError, StoreError, ToolDefinitionError
from .model import LiteLLMModel
from .render import Table, format_cost, render_history
from .replay import REPLAY_MODES, RecordBook, RecordedTool, ReplayError, ReplayMode, ReplayModel
from .session import Session, SessionState
from .store import (
    SessionStore,
    compact,
    default_store_root,
    restore_session,
    rewind_before_tag,
    rewind_to_seq,
    undo,
)
from .tools import REGISTRY, Tool, function_tool
from .tools.notebook import NOTEBOOK_TOOL_NAMES, expand_variables, notebook_tools, recent_cells

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
  --context cells        add the recent notebook cells to the message
  --recorded-tools A,B   these tools (names or globs) replay their recorded results instead
                         of running again: for tools that reach outside (web, clock, APIs)
  --replay MODE          auto | replay | live | record: answer recorded requests from the
                         notebook's recordings (env NBAGENT_REPLAY; NBAGENT_TRUST=1 lets
                         replayed side-effecting tool calls run)
  --allow-errors         in headless runs, do not fail the cell when the run fails
  {name} in the message is replaced by a summary of the variable name ({{ }} escapes)
  --tools notebook       run_python, list_variables, describe, read_file, list_files,
                         write_file, notebook_cells (or name them one by one)
  --tools mcp:NAME       every tool of an MCP server (mcp:NAME/TOOL for one; globs work)

%agent sessions          table of sessions: model, turns, state, tokens, cost
%agent use NAME          make NAME the session of cells without --session
%agent new [NAME]        start a fresh session (replacing one of that name)
%agent history [NAME]    the conversation so far
%agent stop [NAME]       stop the running turn
%agent resume [NAME]     continue a turn the kernel lost (pending approvals come back)
%agent undo [NAME]       drop the last turn (it stays in the log)
%agent checkpoints [NAME]  the session's checkpoints: turn, time, reason, summary
%agent fork NEW [--at CHECKPOINT]  a new session from the current one (or a checkpoint)
%agent compact [NAME]    summarise older turns with the model (the log keeps them)
%agent delete NAME [-y]  delete a session and its log (asks first)
%agent code [all]        the code the agent ran (last run, or the whole session)
%agent mcp               MCP servers (mcp.json beside the notebook): state, tools, errors
%agent mcp add NAME -- COMMAND ARGS...   or   %agent mcp add NAME --url URL
%agent mcp start|stop|restart|remove NAME    %agent mcp reload
%agent tools             tools registered and in use
%agent doctor            check the model, the API key variable and the tools
%agent help              this text

Defaults: %config NBAgent.model = "..." (also approve, mode, api_base, max_turns, system,
persist, store_dir, max_running, titles). Sessions are saved in .nbagent/<notebook>/.
"""


_AWAITED_LINE = re.compile(
    r"^get_ipython\(\)\.run_line_magic\('agent', '(resume|compact|mcp (restart|stop|start))\b"
)


def await_agent_cells(lines: list[str]) -> list[str]:
    """Input transformer: make a ``%%agent`` cell, and the ``%agent resume``, ``compact``
    and ``mcp restart|stop|start`` lines, a top-level ``await`` of what they start."""
    if lines and lines[0].startswith(_CELL_CALL):
        return ["await " + lines[0], *lines[1:]]
    return ["await " + line if _AWAITED_LINE.match(line) else line for line in lines]


def _serve_recorded(
    session: Session, patterns: set[str], book: RecordBook, mode: ReplayMode
) -> None:
    """Wrap the session's tools that match ``patterns`` so their recorded results replay."""
    for name, tool in list(session.tools.items()):
        if isinstance(tool, RecordedTool):
            tool.mode = mode
        elif any(fnmatch.fnmatchcase(name, p) for p in patterns):
            session.tools[name] = RecordedTool(tool, book, mode)


def _recording_files(notebook: str | None) -> list[Path]:
    """Where recordings come from: ``$NBAGENT_RECORDINGS``, else the notebook when the
    kernel knows it, else every notebook in the working directory (nbclient and nbval do
    not tell the kernel which notebook it runs)."""
    listed = os.environ.get("NBAGENT_RECORDINGS")
    if listed:
        return [Path(p) for p in listed.split(os.pathsep) if p]
    if notebook is not None:
        path = Path(notebook)
        candidates = [path, Path.cwd() / path.name]
        return [next((p for p in candidates if p.is_file()), path)]
    return sorted(Path.cwd().glob("*.ipynb"))


def notebook_path(shell: Any) -> str | None:
    """The notebook's path when the frontend tells the kernel (JupyterLab, VS Code)."""
    namespace = getattr(shell, "user_ns", {}) or {}
    for key in ("__vsc_ipynb_file__", "__session__"):
        value = namespace.get(key)
        if isinstance(value, str) and value.endswith(".ipynb"):
            return value
    return None


def cell_id(shell: Any) -> str | None:
    """The id of the cell being run, when the frontend sends one (JupyterLab, nbclient)."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else None
    except Exception:
        return None
    metadata = (parent or {}).get("metadata") or {}
    value = metadata.get("cellId") or metadata.get("cell_id")
    return str(value) if value else None


def ipykernel_version() -> tuple[int, ...] | None:
    try:
        from importlib.metadata import version

        return tuple(int(p) for p in re.findall(r"\d+", version("ipykernel"))[:2])
    except Exception:
        return None


def batch_run(shell: Any) -> bool:
    """A kernel driven by a program that runs the whole notebook (``allow_stdin`` false)."""
    kernel = getattr(shell, "kernel", None)
    return kernel is not None and not getattr(kernel, "_allow_stdin", True)


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
    @argument("--context", choices=["cells"], help="add recent notebook cells to the message")
    @argument("--replay", choices=REPLAY_MODES, help="auto, replay, live or record")
    @argument("--recorded-tools", help="tools whose recorded results replay (names or globs)")
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
        mode = pick_mode(args.mode or settings.mode, self.shell)
        if batch_run(self.shell) and name not in self.notebook.sessions:
            # nbclient, nbval, papermill execute the whole notebook: its conversation starts
            # over, as after "Restart and run all" (the earlier turns stay in the log).
            self.notebook.fresh.add(name)
        session = self._session_for(name, args, settings)
        replay_mode = args.replay or settings.replay
        recorded = [p.strip() for p in (args.recorded_tools or "").split(",") if p.strip()]
        recorded += settings.recorded_tools
        self._replayable(session, replay_mode, settings, recorded)
        self._check_capacity(name, settings)
        tag = cell_id(self.shell)
        self._prepare_log(name, session, tag, settings, mode)
        namespace = self.shell.user_ns if self.shell is not None else {}
        message, added = expand_variables(prompt, namespace)
        if args.context == "cells":
            context = recent_cells(self.shell)
            message += f"\n\nContext: the notebook cells run so far.\n```python\n{context}\n```"
            added += len(context)
        from ._cell import CellRun

        run = CellRun(
            self.notebook,
            name,
            session,
            message,
            mode=mode,
            fail_on_error=settings.fail_headless and not args.allow_errors,
            flush_interval=settings.flush_interval,
            text_sync_interval=settings.text_sync_interval,
            shown_prompt=prompt,
            tag=tag,
        )
        run.transcript.context_tokens = added // 4
        mcp_specs = [
            t.strip() for t in (args.tools or "").split(",") if t.strip().startswith("mcp:")
        ]
        if mcp_specs:
            return self._with_mcp(session, mcp_specs, run.start())
        return run.start()

    def _mcp(self) -> Any:
        """The kernel's MCP servers (``mcp.json`` beside the notebook), made on first use."""
        if self.notebook.mcp is None:
            from .errors import McpError
            from .tools.mcp import McpManager

            try:
                self.notebook.mcp = McpManager(directory=os.getcwd())
            except McpError as exc:
                raise UsageError(str(exc)) from None
        return self.notebook.mcp

    async def _with_mcp(
        self, session: Session, specs: list[str], start: Coroutine[Any, Any, AgentResult | None]
    ) -> AgentResult | None:
        from .errors import McpError

        try:
            session.tools.update(await self._mcp().resolve(specs))
        except McpError as exc:
            start.close()
            raise UsageError(str(exc)) from None
        model = session.model
        if isinstance(model, ReplayModel):
            patterns = self.notebook.recorded_tools.get(id(session), set())
            _serve_recorded(session, patterns, model.book, model.mode)
        return await start

    def _replayable(
        self, session: Session, mode: ReplayMode, settings: config.Settings, recorded: list[str]
    ) -> None:
        """Answer recorded requests from the notebook's recordings; record live ones. Tools
        named in ``recorded`` replay their recorded results instead of running again."""
        model = session.model
        if not isinstance(model, ReplayModel):
            model = ReplayModel(model, self._book(), mode, trust=settings.trust)
            session.model = model
        model.mode = mode
        model.trust = settings.trust
        session_patterns = self.notebook.recorded_tools.setdefault(id(session), set())
        session_patterns.update(recorded)
        _serve_recorded(session, session_patterns, model.book, mode)

    def _book(self) -> RecordBook:
        """The recordings of this notebook (read once, then grown by live runs)."""
        nb = self.notebook
        if nb.book is None:
            book = RecordBook()
            known = notebook_path(self.shell)
            files = _recording_files(known)
            for path in files:
                try:
                    book.load_notebook(path)
                except ReplayError as exc:
                    if known is not None or os.environ.get("NBAGENT_RECORDINGS"):
                        raise UsageError(str(exc)) from None
                    print(f"nbagent: recordings skipped: {exc}", file=sys.stderr)
            nb.book = book
        return nb.book

    def _check_capacity(self, name: str, settings: config.Settings) -> None:
        busy = [n for n in self.notebook.running() if n != name]
        if len(busy) >= settings.max_running:
            raise UsageError(
                f"{len(busy)} sessions are already running in this kernel ({', '.join(busy)}; "
                f"limit {settings.max_running}, %config NBAgent.max_running): stop one with "
                "%agent stop NAME or wait for it"
            )

    def _prepare_log(
        self, name: str, session: Session, tag: str | None, settings: config.Settings, mode: str
    ) -> None:
        """Titles only where someone reads them; a re-run cell replaces its old turn."""
        recorder = self.notebook.recorders.get(name)
        if recorder is None:
            return
        recorder.titles = settings.titles and mode != "headless"
        if tag is None or session.state is not SessionState.IDLE:
            return
        try:
            rewind_before_tag(recorder, tag)
        except (IllegalTransitionError, StoreError) as exc:
            print(f"nbagent: the earlier turn of this cell stays ({exc})", file=sys.stderr)

    def _store(self, settings: config.Settings) -> SessionStore:
        root = default_store_root(notebook_path(self.shell), home=settings.store_dir)
        return SessionStore(root)

    def _session_for(self, name: str, args: Any, settings: config.Settings) -> Session:
        tools = self._tools(args.tools) if args.tools else {}
        session = self.notebook.sessions.get(name)
        if session is not None and session.state is SessionState.CLOSED:
            session = None
        api_base = args.api_base or settings.api_base
        if session is None:
            options: dict[str, Any] = {
                "tools": tools.values(),
                "approval": cast(ApprovalMode, args.approve or settings.approve),
                "system": args.system if args.system is not None else settings.system,
                "max_turns": args.max_turns or settings.max_turns,
                "api_base": api_base,
            }
            session = self._open_session(name, args.model, settings, options)
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

    def _open_session(
        self, name: str, model: str | None, settings: config.Settings, options: dict[str, Any]
    ) -> Session:
        """The session from its log beside the notebook (or a new one); memory only when
        persistence is off or the folder cannot be written."""
        if settings.persist:
            try:
                session, recorder, state = restore_session(
                    self._store(settings), name, model=model, default_model=settings.model,
                    **options,
                )  # fmt: skip
            except SessionLockedError as exc:
                raise UsageError(str(exc)) from None
            except StoreError as exc:
                print(f"nbagent: session {name!r} is not saved: {exc}", file=sys.stderr)
            else:
                self.notebook.recorders[name] = recorder
                self._find_tools(session, state.tools)
                if name in self.notebook.fresh:
                    self.notebook.fresh.discard(name)
                    if recorder.log.next_seq > 1:  # the old conversation stays in the log
                        rewind_to_seq(recorder, 0, reason="new")
                return session
        return Session(model or settings.model, **options)

    def _find_tools(self, session: Session, names: tuple[str, ...]) -> None:
        """Give a restored session back the tools it used, where the notebook has them."""
        missing = []
        for tool_name in names:
            if tool_name in session.tools:
                continue
            try:
                session.tools.update(self._tools(tool_name))
            except UsageError:
                missing.append(tool_name)
        if missing:
            print(
                f"nbagent: the session used tools this kernel does not have yet: "
                f"{', '.join(missing)} (define them, then pass --tools)",
                file=sys.stderr,
            )

    def _notebook_tools(self) -> dict[str, Tool]:
        tools = self.notebook.builtin_tools
        if not tools:
            tools.update((t.name, t) for t in notebook_tools(self.shell))
        return tools

    def _tools(self, spec: str) -> dict[str, Tool]:
        namespace = self.shell.user_ns if self.shell is not None else {}
        found: dict[str, Tool] = {}
        for name in (n.strip() for n in spec.split(",")):
            if not name:
                continue
            if name == "notebook":
                found.update(self._notebook_tools())
                continue
            if name.startswith("mcp:"):
                continue  # MCP servers start asynchronously, in the cell's run
            item = namespace.get(name, REGISTRY.get(name))
            if item is None and name in NOTEBOOK_TOOL_NAMES:
                item = self._notebook_tools()[name]
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
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot read {line!r}: {exc}") from None
        if not words or words[0] in ("help", "-h", "--help"):
            print(HELP)
            return None
        command, rest = words[0], words[1:]
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise UsageError(f"unknown %agent command {command!r}; try %agent help")
        try:
            inspect.signature(handler).bind(*rest)
        except TypeError:
            raise UsageError(f"wrong arguments for %agent {command}; see %agent help") from None
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
        titles: dict[str, str] = {}
        rows: list[tuple[Any, ...]] = []
        settings = config.resolve(self.settings)
        store = self._store(settings) if settings.persist else None
        if store is not None:
            for saved in store.names():
                try:
                    summary = store.summary(saved)
                except StoreError:
                    continue
                titles[saved] = summary.title or ""
                if saved not in nb.sessions:
                    rows.append((
                        ("* " if saved == nb.current else "  ") + saved, summary.title or "",
                        summary.model or "", summary.runs, "saved",
                        f"{summary.total_tokens:,}", format_cost(summary.cost_usd, True),
                    ))  # fmt: skip
        live = [
            (
                ("* " if name == nb.current else "  ") + name,
                titles.get(name, ""),
                s.model.name,
                s.runs,
                s.state.value,
                f"{s.usage.total_tokens:,}",
                format_cost(s.usage.cost_usd, s.usage.cost_known),
            )
            for name, s in nb.sessions.items()
        ]
        return Table(["name", "title", "model", "turns", "state", "tokens", "cost"], live + rows)

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
        nb.fresh.add(name)
        nb.current = name
        print(f"new session {name!r}; cells without --session now use it")

    def _cmd_history(self, name: str | None = None) -> Any:
        name, session = self._loaded(name)
        return _Bundle(render_history(name, session.messages))

    def _cmd_stop(self, name: str | None = None) -> None:
        name, session = self._loaded(name)
        if session.state is not SessionState.CLOSED and session.cancel():
            print(f"stopping the run of session {name!r}")
        else:
            print(f"session {name!r} has no run to stop")

    def _recorder(self, name: str | None, action: str) -> tuple[str, Session, Any]:
        name, session = self._loaded(name)
        recorder = self.notebook.recorders.get(name)
        if recorder is None:
            raise UsageError(
                f"{action} needs the session's log; session {name!r} is not saved "
                "(NBAgent.persist is off or its folder is not writable)"
            )
        if session.state is not SessionState.IDLE:
            raise UsageError(f"session {name!r} is {session.state.value}: stop it first")
        return name, session, recorder

    def _loaded(self, name: str | None) -> tuple[str, Session]:
        """A session in memory, opened from its log when needed."""
        name = name or self.notebook.current
        if name not in self.notebook.sessions:
            settings = config.resolve(self.settings)
            store = self._store(settings) if settings.persist else None
            if store is None or not store.exists(name):
                return self._named(name)
            options = {
                "approval": settings.approve,
                "system": settings.system,
                "max_turns": settings.max_turns,
                "api_base": settings.api_base,
            }
            self.notebook.sessions[name] = self._open_session(name, None, settings, options)
        return name, self.notebook.sessions[name]

    def _cmd_resume(self, name: str | None = None) -> Coroutine[Any, Any, Any]:
        name, session = self._loaded(name)
        settings = config.resolve(self.settings)
        mode = pick_mode(settings.mode, self.shell)
        self._check_capacity(name, settings)
        from ._cell import CellRun

        run = CellRun(
            self.notebook, name, session, "", mode=mode,
            fail_on_error=settings.fail_headless, flush_interval=settings.flush_interval,
            text_sync_interval=settings.text_sync_interval, shown_prompt="(resumed)",
            resume=True,
        )  # fmt: skip
        return run.start()

    def _cmd_undo(self, name: str | None = None) -> None:
        name, session, recorder = self._recorder(name, "undo")
        try:
            undo(recorder)
        except StoreError as exc:
            raise UsageError(str(exc)) from None
        print(f"dropped the last turn of session {name!r}; it has {session.runs} turn(s) now")

    def _cmd_checkpoints(self, name: str | None = None) -> Table:
        name, _ = self._loaded(name)
        recorder = self.notebook.recorders.get(name)
        if recorder is None:
            raise UsageError(f"session {name!r} is not saved, so it has no checkpoints")
        recorder.flush()
        rows = [
            (
                c.id, c.turn, c.reason, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.at)),
                c.summary[:60], "" if c.active else "old branch",
            )
            for c in recorder.log.checkpoints()
        ]  # fmt: skip
        return Table(["checkpoint", "turn", "reason", "time", "summary", "branch"], rows)

    def _cmd_fork(self, new: str, *options: str) -> None:
        at: str | None = None
        if options:
            if len(options) != 2 or options[0] != "--at":
                raise UsageError("%agent fork NEW [--at CHECKPOINT]")
            at = options[1]
        source, _ = self._loaded(None)
        recorder = self.notebook.recorders.get(source)
        if recorder is None:
            raise UsageError(f"session {source!r} is not saved, so it cannot be forked")
        recorder.flush()
        seq = None
        if at is not None:
            found = [c for c in recorder.log.checkpoints() if c.id == at]
            if not found:
                raise UsageError(f"no checkpoint {at!r}; see %agent checkpoints")
            seq = found[0].seq
        try:
            recorder.log.store.fork(source, new, at_seq=seq).close()
        except StoreError as exc:
            raise UsageError(str(exc)) from None
        self.notebook.current = new
        where = f"checkpoint {at}" if at else "its latest checkpoint"
        print(f"forked {source!r} at {where} into {new!r}; cells without --session use it now")

    async def _cmd_compact(self, name: str | None = None) -> None:
        name, session, recorder = self._recorder(name, "compact")
        try:
            await compact(recorder)
        except StoreError as exc:
            raise UsageError(str(exc)) from None
        print(f"compacted session {name!r}: {len(session.messages)} messages now")

    def _cmd_delete(self, name: str | None = None, *flags: str) -> None:
        if not name:
            raise UsageError("%agent delete NAME [-y]")
        yes = any(f in ("-y", "--yes") for f in flags)
        settings = config.resolve(self.settings)
        if not yes:
            kernel = getattr(self.shell, "kernel", None)
            if kernel is None or not getattr(kernel, "_allow_stdin", False):
                raise UsageError(
                    f"%agent delete {name} -y: confirm with -y where nobody can answer"
                )
            answer = input(f"Delete session {name!r} and its log? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("kept")
                return
        self.notebook.forget(name)
        if settings.persist:
            try:
                self._store(settings).delete(name)
            except StoreError as exc:
                raise UsageError(str(exc)) from None
        print(f"deleted session {name!r}")

    def _cmd_code(self, which: str | None = None) -> None:
        name, session = self._loaded(None)
        if which not in (None, "all"):
            raise UsageError("%agent code [all]")
        if which == "all":
            blocks = _code_from_messages(session.messages)
        else:
            result = self.notebook.results.get(name)
            records = result.tool_calls if result is not None else ()
            blocks = [
                str(r.arguments.get("code", "")) for r in records
                if r.name == "run_python" and r.status in ("ok", "error")
            ]  # fmt: skip
        if not blocks:
            print("the agent ran no code" + (" in this session" if which else " in the last run"))
            return
        code = "\n\n".join(b.strip() for b in blocks if b.strip())
        if self.shell is not None:
            self.shell.set_next_input(code, replace=False)
        print(code)

    def _cmd_mcp(self, *words: str) -> Any:
        from .errors import McpError

        manager = self._mcp()
        action, rest = (words[0], list(words[1:])) if words else ("list", [])
        try:
            if action == "list":
                rows = [
                    (s.name, s.state.value if hasattr(s.state, "value") else str(s.state),
                     s.reason or "", "" if s.tools is None else s.tools, s.last_error or "",
                     s.target, s.source)
                    for s in manager.status()
                ]  # fmt: skip
                return Table(["server", "state", "reason", "tools", "last error", "target",
                              "source"], rows)  # fmt: skip
            if action == "add":
                return self._mcp_add(manager, rest)
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

    def _mcp_add(self, manager: Any, words: list[str]) -> None:
        if len(words) >= 3 and words[1] == "--":
            manager.add(words[0], command=words[2], args=words[3:])
        elif len(words) == 3 and words[1] == "--url":
            manager.add(words[0], url=words[2])
        else:
            raise UsageError(
                "%agent mcp add NAME -- COMMAND ARGS...  or  %agent mcp add NAME --url URL"
            )
        print(f"added MCP server {words[0]!r}; use it with --tools mcp:{words[0]}")

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


def _code_from_messages(messages: list[dict[str, Any]]) -> list[str]:
    """The code of every ``run_python`` call that ran, in order."""
    import json

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
        if magics._notebook.mcp is not None:
            magics._notebook.mcp.close_now()
            magics._notebook.mcp = None
    shell.magics_manager.magics["line"].pop("agent", None)
    shell.magics_manager.magics["cell"].pop("agent", None)
