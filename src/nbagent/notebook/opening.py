"""``SessionOpener``: from a cell's options to a session ready to run in it.

A session comes from the kernel's registry, else from its log beside the notebook
(restored with the tools it used), else new; the cell's options then adjust it. Every
session's model answers the notebook's recorded requests (``ReplayModel``), and the tools
named by ``--recorded-tools`` serve their recorded results.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from IPython.core.error import UsageError

from .. import config
from .._images import ImageMode
from ..approval import ApprovalMode
from ..errors import (
    IllegalTransitionError,
    McpError,
    ReplayError,
    SessionLockedError,
    SettingError,
    StoreError,
)
from ..model import LiteLLMModel
from ..replay import RecordBook, RecordedTool, ReplayMode, ReplayModel
from ..session import Budget, Session, SessionState
from ..store import (
    SessionStore,
    default_store_root,
    restore_session,
    rewind_before_tag,
    rewind_to_seq,
)
from ..tools.notebook import expand_variables, recent_cells
from . import following, recordings
from .cell import AgentResult, CellRun
from .frontend import RunMode, batch_run, cell_id, notebook_path, pick_mode
from .registry import KernelRegistry
from .tool_specs import mcp_selectors, resolve_tools, restore_tools

if TYPE_CHECKING:
    from ..tools.mcp import McpManager


@dataclass(frozen=True)
class CellOptions:
    """The options of a ``%%agent`` line (None: not given, the setting applies)."""

    model: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    timeout: float | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    param: list[str] | None = None
    """``KEY=VALUE`` model parameters (values read as JSON when they parse)."""
    effort: Literal["low", "medium", "high"] | None = None
    images: ImageMode | None = None
    """Show the model the images tool calls display: auto (when it can see), on, off."""
    session: str | None = None
    tools: str | None = None
    approve: ApprovalMode | None = None
    max_turns: int | None = None
    mode: config.Mode | None = None
    system: str | None = None
    context: Literal["cells"] | None = None
    replay: ReplayMode | None = None
    recorded_tools: str | None = None
    allow_errors: bool = False


class SessionOpener:
    """Opens, restores and rewires the kernel's sessions for cells and line commands."""

    def __init__(self, shell: Any, configurable: config.NBAgent, registry: KernelRegistry) -> None:
        self.shell = shell
        self.configurable = configurable
        """``%config NBAgent``: resolved with the environment by :meth:`settings`."""
        self.registry = registry
        self._book_trust = False
        """Whether trust was given when the recordings were read."""

    def settings(self) -> config.Settings:
        """The settings now (``%config NBAgent`` > environment > defaults)."""
        try:
            return config.resolve(self.configurable)
        except SettingError as exc:
            raise UsageError(str(exc)) from None

    def store(self, settings: config.Settings) -> SessionStore:
        notebook = notebook_path(self.shell)
        root = default_store_root(notebook, home=settings.store_dir)
        if root not in self.registry.followed:
            # Once per folder and kernel: a renamed, moved or copied notebook takes its
            # sessions along (``following``).
            self.registry.followed.add(root)
            note = following.adopt(root, notebook, Path.cwd())
            if note:
                print(f"nbagent: {note}", file=sys.stderr)
        return SessionStore(root)

    # -- a cell ---------------------------------------------------------------------------

    def cell_run(
        self, options: CellOptions, prompt: str
    ) -> Coroutine[Any, Any, AgentResult | None]:
        """Prepare the run of a ``%%agent`` cell; the coroutine starts it."""
        if not prompt:
            raise UsageError("write the message to the agent below the %%agent line")
        if options.max_turns is not None and options.max_turns < 1:
            raise UsageError("--max-turns must be at least 1")
        settings = self.settings()
        budget, params = run_limits(options, settings)
        registry = self.registry
        name = options.session or registry.current
        mode = pick_mode(options.mode or settings.mode, self.shell)
        if batch_run(self.shell) and name not in registry.sessions:
            # nbclient, nbval, papermill execute the whole notebook: its conversation starts
            # over, as after "Restart and run all" (the earlier turns stay in the log).
            registry.fresh.add(name)
        session = self.session_for(name, options, settings)
        recorded = [p.strip() for p in (options.recorded_tools or "").split(",") if p.strip()]
        self.replayable(name, session, options.replay or settings.replay, settings,
                        recorded + list(settings.recorded_tools))  # fmt: skip
        self.check_capacity(name, settings)
        tag = cell_id(self.shell)
        self.prepare_log(name, session, tag, settings, mode)
        namespace = self.shell.user_ns if self.shell is not None else {}
        message, added = expand_variables(prompt, namespace)
        if options.context == "cells":
            context = recent_cells(self.shell)
            message += f"\n\nContext: the notebook cells run so far.\n```python\n{context}\n```"
            added += len(context)
        fail_on_error = settings.fail_headless and not options.allow_errors
        run = self.new_run(name, session, message, mode, settings, shown_prompt=prompt, tag=tag,
                           fail_on_error=fail_on_error, budget=budget,
                           model_params=params)  # fmt: skip
        run.transcript.context_tokens = added // 4
        selectors = mcp_selectors(options.tools)
        if selectors:
            return self._with_mcp(name, session, selectors, run.start())
        return run.start()

    def new_run(
        self, name: str, session: Session, message: str, mode: RunMode,
        settings: config.Settings, **options: Any,
    ) -> CellRun:  # fmt: skip
        return CellRun(
            self.registry, name, session, message, mode=mode,
            flush_interval=settings.flush_interval,
            text_sync_interval=settings.text_sync_interval,
            notebook_known=notebook_path(self.shell) is not None,
            trustable=recordings.kernel_notebook(notebook_path(self.shell)), **options,
        )  # fmt: skip

    def check_capacity(self, name: str, settings: config.Settings) -> None:
        busy = [n for n in self.registry.running() if n != name]
        if len(busy) >= settings.max_running:
            raise UsageError(
                f"{len(busy)} sessions are already running in this kernel ({', '.join(busy)}; "
                f"limit {settings.max_running}, %config NBAgent.max_running): stop one with "
                "%agent stop NAME or wait for it"
            )

    def prepare_log(
        self, name: str, session: Session, tag: str | None, settings: config.Settings, mode: str
    ) -> None:
        """Titles only where someone reads them; a re-run cell replaces its old turn."""
        recorder = self.registry.recorders.get(name)
        if recorder is None:
            return
        recorder.titles = settings.titles and mode != "headless"
        if tag is None or session.state is not SessionState.IDLE:
            return
        try:
            rewind_before_tag(recorder, tag)
        except (IllegalTransitionError, StoreError) as exc:
            print(f"nbagent: the earlier turn of this cell stays ({exc})", file=sys.stderr)

    # -- sessions -------------------------------------------------------------------------

    def session_for(self, name: str, options: CellOptions, settings: config.Settings) -> Session:
        """The session ``name`` with the cell's options applied."""
        tools = resolve_tools(options.tools, self.shell, self.registry) if options.tools else {}
        session = self.registry.sessions.get(name)
        if session is not None and session.state is SessionState.CLOSED:
            self.registry.forget(name)
            session = None
        connection = model_connection(options, settings)
        if session is None:
            session = self.open_session(name, options.model, settings, {
                "tools": tools.values(),
                "approval": options.approve or settings.approve,
                "system": options.system if options.system is not None else settings.system,
                "max_turns": options.max_turns or settings.max_turns,
                "max_calls_per_response": settings.max_calls_per_response,
                "images": options.images or settings.images,
                **connection,
            })  # fmt: skip
            self.registry.sessions[name] = session
            return session
        current = getattr(session.model, "inner", session.model)
        wanted = options.model or session.model.name
        reached = {key: getattr(current, key, None) for key in connection}
        asked = options.model or options.api_base or options.api_key_env or options.timeout
        if asked and (current.name != wanted or reached != connection):
            # Another model or server: a new recorder, which replays none of the old one's.
            session.model = LiteLLMModel(wanted, **connection)
        session.tools.update(tools)
        session.images = options.images or settings.images
        session.max_calls_per_response = settings.max_calls_per_response
        if options.approve:
            session.policy.mode = options.approve
        if options.max_turns:
            session.max_turns = options.max_turns
        if options.system is not None:
            session.system = options.system
        return session

    def open_session(
        self, name: str, model: str | None, settings: config.Settings, options: dict[str, Any]
    ) -> Session:
        """The session from its log beside the notebook (or a new one); memory only when
        persistence is off or the folder cannot be written."""
        if settings.persist:
            try:
                store = self.store(settings)
                notebook = notebook_path(self.shell)
                known = None if store.exists(name) else following.recorded_session_id(
                    notebook, Path.cwd(), name
                )  # fmt: skip
                session, recorder, state = restore_session(
                    store, name, model=model, default_model=settings.model,
                    session_id=known, **options,
                )  # fmt: skip
            except SessionLockedError as exc:
                raise UsageError(str(exc)) from None
            except StoreError as exc:
                print(f"nbagent: session {name!r} is not saved: {exc}", file=sys.stderr)
            else:
                self.registry.recorders[name] = recorder
                restore_tools(session, state.tools, self.shell, self.registry)
                if name in self.registry.fresh:
                    self.registry.fresh.discard(name)
                    if recorder.log.next_seq > 1:  # the old conversation stays in the log
                        rewind_to_seq(recorder, 0, reason="new")
                return session
        return Session(model or settings.model, **options)

    def named(self, name: str | None) -> tuple[str, Session]:
        """A session in memory, by name (default: the current one)."""
        name = name or self.registry.current
        session = self.registry.sessions.get(name)
        if session is None:
            known = ", ".join(sorted(self.registry.sessions)) or "none yet"
            raise UsageError(f"no session named {name!r} (sessions: {known})")
        return name, session

    def loaded(self, name: str | None) -> tuple[str, Session]:
        """A session in memory, opened from its log when needed."""
        name = name or self.registry.current
        if name not in self.registry.sessions:
            settings = self.settings()
            store = self.store(settings) if settings.persist else None
            if store is None or not store.exists(name):
                return self.named(name)
            options = {
                "approval": settings.approve,
                "system": settings.system,
                "max_turns": settings.max_turns,
                "max_calls_per_response": settings.max_calls_per_response,
                **model_connection(CellOptions(), settings),
            }
            self.registry.sessions[name] = self.open_session(name, None, settings, options)
        return name, self.registry.sessions[name]

    # -- recordings -----------------------------------------------------------------------

    def replayable(
        self, name: str, session: Session, mode: ReplayMode, settings: config.Settings,
        recorded: list[str],
    ) -> None:  # fmt: skip
        """Answer recorded requests from the notebook's recordings; record live ones. Tools
        named in ``recorded`` replay their recorded results instead of running again."""
        model = session.model
        book = self.book(settings.trust)
        if not isinstance(model, ReplayModel):
            model = ReplayModel(model, book, mode, own_only=True)
            session.model = model
        model.mode = mode
        patterns = self.registry.recorded_tools.setdefault(name, set())
        patterns.update(recorded)
        serve_recorded(session, patterns, model.book, mode)

    def book(self, trust: bool = False) -> RecordBook:
        """The recordings of this notebook (read once, then grown by live runs). Trust is
        decided when they are read: setting it later (a code cell that sets NBAGENT_TRUST
        or ``%config NBAgent.trust``) does not trust what is loaded, and says so."""
        if self.registry.book is None:
            try:
                self.registry.book = recordings.kernel_book(notebook_path(self.shell),
                                                            trust=trust)  # fmt: skip
            except ReplayError as exc:
                raise UsageError(str(exc)) from None
            self._book_trust = trust
        elif trust and not self._book_trust:
            self._book_trust = True  # say it once
            print(recordings.LATE_TRUST, file=sys.stderr)
        return self.registry.book

    # -- MCP ------------------------------------------------------------------------------

    def mcp(self) -> McpManager:
        """The kernel's MCP servers (``mcp.json`` beside the notebook), made on first use."""
        if self.registry.mcp is None:
            from ..tools.mcp import McpManager

            try:
                self.registry.mcp = McpManager(directory=os.getcwd())
            except McpError as exc:
                raise UsageError(str(exc)) from None
        return self.registry.mcp

    async def _with_mcp(
        self, name: str, session: Session, selectors: list[str],
        start: Coroutine[Any, Any, AgentResult | None],
    ) -> AgentResult | None:  # fmt: skip
        try:
            session.tools.update(await self.mcp().resolve(selectors))
        except (McpError, UsageError) as exc:
            start.close()
            raise UsageError(str(exc)) from None
        model = session.model
        if isinstance(model, ReplayModel):
            patterns = self.registry.recorded_tools.get(name, set())
            serve_recorded(session, patterns, model.book, model.mode)
        return await start


def model_connection(options: CellOptions, settings: config.Settings) -> dict[str, Any]:
    """How the session's model is reached: api base, the key's variable, the timeout."""
    connection: dict[str, Any] = {
        "api_base": options.api_base or settings.api_base,
        "api_key_env": options.api_key_env or settings.api_key_env,
    }
    timeout = options.timeout or settings.timeout
    if timeout is not None:
        if timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        connection["timeout"] = timeout
    return connection


def run_limits(
    options: CellOptions, settings: config.Settings
) -> tuple[Budget | None, dict[str, Any] | None]:
    """The run's own budget and model parameters (they apply to this cell's turn only)."""
    max_cost = options.max_cost if options.max_cost is not None else settings.max_cost
    max_tokens = options.max_tokens if options.max_tokens is not None else settings.max_tokens
    if (max_cost is not None and max_cost <= 0) or (max_tokens is not None and max_tokens < 1):
        raise UsageError("--max-cost and --max-tokens must be positive")
    budget = None
    if max_cost is not None or max_tokens is not None:
        budget = Budget(max_cost_usd=max_cost, max_tokens=max_tokens)
    params: dict[str, Any] = {}
    for item in options.param or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-p/--param takes KEY=VALUE (e.g. -p temperature=0.2), not {item!r}")
        try:
            params[key.strip()] = json.loads(raw)
        except ValueError:
            params[key.strip()] = raw
    if options.effort:
        params["reasoning_effort"] = options.effort
    return budget, params or None


def serve_recorded(
    session: Session, patterns: set[str], book: RecordBook, mode: ReplayMode
) -> None:
    """Wrap the session's tools that match ``patterns`` so their recorded results replay."""
    for name, tool in list(session.tools.items()):
        if isinstance(tool, RecordedTool):
            tool.mode = mode
        elif any(fnmatch.fnmatchcase(name, p) for p in patterns):
            session.tools[name] = RecordedTool(tool, book, mode)
