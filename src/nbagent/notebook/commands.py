"""The ``%agent`` line commands: one table, name → handler with its usage.

Every handler takes the kernel's ``SessionOpener`` and the command's words; it returns
what the line shows (a ``Table``, a bundle) or a coroutine for the commands the input
transformer awaits (``nbagent.magics.AWAITED``). Unknown commands and wrong arguments
are one-line ``UsageError``s that say what is valid.
"""

from __future__ import annotations

import inspect
import shlex
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError

from ..errors import StoreError
from ..render import Table, format_cost, render_history
from ..session import Session, SessionState
from ..store import SessionRecorder, SessionStore, SessionSummary, compact, undo
from . import diagnostics
from .frontend import can_ask, pick_mode
from .opening import SessionOpener

Handler = Callable[..., Any]
"""``handler(opener, *words)``."""


@dataclass(frozen=True)
class Command:
    """One line command: how to call it, what it does, who runs it."""

    usage: str
    summary: str
    handler: Handler


CELL_HELP = """\
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
                         notebook's recordings (env NBAGENT_REPLAY; NBAGENT_TRUST=1 or
                         `nbagent trust NB.ipynb` replays their recorded decisions)
  --allow-errors         in headless runs, do not fail the cell when the run fails
  {name} in the message is replaced by a summary of the variable name ({{ }} escapes)
  --tools notebook       run_python, list_variables, describe, read_file, list_files,
                         write_file, notebook_cells (or name them one by one)
  --tools mcp:NAME       every tool of an MCP server (mcp:NAME/TOOL for one; globs work)
"""

SETTINGS_HELP = """\
Defaults: %config NBAgent.model = "..." (also approve, mode, api_base, max_turns, system,
persist, store_dir, max_running, titles). Sessions are saved in .nbagent/<notebook>/.
"""


def run_line(opener: SessionOpener, line: str) -> Any:
    """Run one ``%agent`` line."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot read {line!r}: {exc}") from None
    if not words or words[0] in ("-h", "--help"):
        words = ["help"]
    name, rest = words[0], words[1:]
    command = COMMANDS.get(name)
    if command is None:
        raise UsageError(f"unknown %agent command {name!r}; valid commands: {', '.join(COMMANDS)}")
    try:
        inspect.signature(command.handler).bind(opener, *rest)
    except TypeError:
        raise UsageError(f"wrong arguments for %agent {name}; usage: {command.usage}") from None
    result = command.handler(opener, *rest)
    if inspect.iscoroutine(result):
        return _bound(opener, result)
    return result


async def _bound(opener: SessionOpener, work: Coroutine[Any, Any, Any]) -> Any:
    opener.registry.bind_loop()  # what it starts is closed with the kernel's sessions
    return await work


def help_text() -> str:
    lines = [CELL_HELP]
    for command in COMMANDS.values():
        usage, *more = command.usage.split("\n")
        pad = " " * max(2, 25 - len(usage))
        lines.append(f"{usage}{pad}{command.summary}" if command.summary else usage)
        lines.extend(more)
    return "\n".join([*lines, "", SETTINGS_HELP])


# -- the commands -------------------------------------------------------------------------


def show_help(opener: SessionOpener) -> None:
    print(help_text())


def sessions(opener: SessionOpener) -> Table:
    registry = opener.registry
    titles: dict[str, str] = {}
    saved_rows: list[tuple[Any, ...]] = []
    settings = opener.settings()
    store = opener.store(settings) if settings.persist else None
    for saved, summary in _summaries(store):
        titles[saved] = summary.title or ""
        if saved not in registry.sessions:
            saved_rows.append((
                ("* " if saved == registry.current else "  ") + saved, summary.title or "",
                summary.model or "", summary.runs, "saved",
                f"{summary.total_tokens:,}", format_cost(summary.cost_usd, True),
            ))  # fmt: skip
    live = [
        (
            ("* " if name == registry.current else "  ") + name, titles.get(name, ""),
            s.model.name, s.runs, s.state.value, f"{s.usage.total_tokens:,}",
            format_cost(s.usage.cost_usd, s.usage.cost_known),
        )
        for name, s in registry.sessions.items()
    ]  # fmt: skip
    return Table(["name", "title", "model", "turns", "state", "tokens", "cost"], live + saved_rows)


def _summaries(store: SessionStore | None) -> Iterator[tuple[str, SessionSummary]]:
    """The saved sessions of ``store`` that can be read."""
    if store is None:
        return
    for name in store.names():
        try:
            yield name, store.summary(name)
        except StoreError:
            continue


def use(opener: SessionOpener, name: str | None = None) -> None:
    if not name:
        raise UsageError("%agent use NAME: give the session's name")
    opener.registry.current = name
    print(f"cells without --session now use session {name!r}")


def new(opener: SessionOpener, name: str | None = None) -> None:
    registry = opener.registry
    if not name:
        n = len(registry.sessions) + 1
        while f"session-{n}" in registry.sessions:
            n += 1
        name = f"session-{n}"
    registry.forget(name)
    registry.fresh.add(name)
    registry.current = name
    print(f"new session {name!r}; cells without --session now use it")


def history(opener: SessionOpener, name: str | None = None) -> Any:
    name, session = opener.loaded(name)
    ended = {end.after: (end.status, end.error) for end in session.conversation.ended}
    return MimeBundleValue(render_history(name, session.messages, ended))


def stop(opener: SessionOpener, name: str | None = None) -> None:
    name, session = opener.loaded(name)
    if session.state is not SessionState.CLOSED and session.cancel():
        print(f"stopping the run of session {name!r}")
    else:
        print(f"session {name!r} has no run to stop")


def resume(opener: SessionOpener, name: str | None = None) -> Coroutine[Any, Any, Any]:
    name, session = opener.loaded(name)
    settings = opener.settings()
    opener.check_capacity(name, settings)
    run = opener.new_run(
        name, session, "", pick_mode(settings.mode, opener.shell), settings,
        fail_on_error=settings.fail_headless, shown_prompt="(resumed)", resume=True,
    )  # fmt: skip
    return run.start()


def _saved_idle(opener: SessionOpener, name: str | None, action: str) -> tuple[
    str, Session, SessionRecorder
]:  # fmt: skip
    """A session with a log that no run is using."""
    name, session = opener.loaded(name)
    recorder = opener.registry.recorders.get(name)
    if recorder is None:
        raise UsageError(
            f"{action} needs the session's log; session {name!r} is not saved "
            "(NBAgent.persist is off or its folder is not writable)"
        )
    if session.state is not SessionState.IDLE:
        raise UsageError(f"session {name!r} is {session.state.value}: stop it first")
    return name, session, recorder


def undo_turn(opener: SessionOpener, name: str | None = None) -> None:
    name, session, recorder = _saved_idle(opener, name, "undo")
    try:
        undo(recorder)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    print(f"dropped the last turn of session {name!r}; it has {session.runs} turn(s) now")


async def compact_session(opener: SessionOpener, name: str | None = None) -> None:
    name, session, recorder = _saved_idle(opener, name, "compact")
    try:
        await compact(recorder)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    print(f"compacted session {name!r}: {len(session.messages)} messages now")


def _saved(opener: SessionOpener, name: str | None, why: str) -> tuple[str, SessionRecorder]:
    name, _ = opener.loaded(name)
    recorder = opener.registry.recorders.get(name)
    if recorder is None:
        raise UsageError(f"session {name!r} is not saved, so it {why}")
    recorder.flush()
    return name, recorder


def checkpoints(opener: SessionOpener, name: str | None = None) -> Table:
    name, recorder = _saved(opener, name, "has no checkpoints")
    rows = [
        (
            c.id, c.turn, c.reason, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(c.at)),
            c.summary[:60], "" if c.active else "old branch",
        )
        for c in recorder.log.checkpoints()
    ]  # fmt: skip
    return Table(["checkpoint", "turn", "reason", "time", "summary", "branch"], rows)


def fork(opener: SessionOpener, new_name: str, *options: str) -> None:
    at: str | None = None
    if options:
        if len(options) != 2 or options[0] != "--at":
            raise UsageError(f"usage: {COMMANDS['fork'].usage}")
        at = options[1]
    source, recorder = _saved(opener, None, "cannot be forked")
    seq = None
    if at is not None:
        found = [c for c in recorder.log.checkpoints() if c.id == at]
        if not found:
            raise UsageError(f"no checkpoint {at!r}; see %agent checkpoints")
        seq = found[0].seq
    try:
        recorder.log.store.fork(source, new_name, at_seq=seq).close()
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    opener.registry.current = new_name
    where = f"checkpoint {at}" if at else "its latest checkpoint"
    print(f"forked {source!r} at {where} into {new_name!r}; cells without --session use it now")


def delete(opener: SessionOpener, name: str | None = None, *flags: str) -> None:
    if not name:
        raise UsageError(f"usage: {COMMANDS['delete'].usage}")
    settings = opener.settings()
    if not any(f in ("-y", "--yes") for f in flags):
        if not can_ask(opener.shell):
            raise UsageError(f"%agent delete {name} -y: confirm with -y where nobody can answer")
        answer = input(f"Delete session {name!r} and its log? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return
    opener.registry.forget(name)
    if settings.persist:
        try:
            opener.store(settings).delete(name)
        except StoreError as exc:
            raise UsageError(str(exc)) from None
    print(f"deleted session {name!r}")


def code(opener: SessionOpener, which: str | None = None) -> None:
    if which not in (None, "all"):
        raise UsageError(f"usage: {COMMANDS['code'].usage}")
    name, session = opener.loaded(None)
    if which == "all":
        blocks = diagnostics.code_from_messages(session.messages)
    else:
        last = opener.registry.last_runs.get(name)
        blocks = [
            str(r.arguments.get("code", "")) for r in (last.tool_calls if last else ())
            if r.name == "run_python" and r.status in ("ok", "error")
        ]  # fmt: skip
    if not blocks:
        print("the agent ran no code" + (" in this session" if which else " in the last run"))
        return
    text = "\n\n".join(b.strip() for b in blocks if b.strip())
    if opener.shell is not None:
        opener.shell.set_next_input(text, replace=False)
    print(text)


class MimeBundleValue:
    """A line's value that displays as a ready mime bundle."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        return self.bundle

    def __repr__(self) -> str:
        return str(self.bundle.get("text/plain", ""))


COMMANDS: dict[str, Command] = {
    "sessions": Command("%agent sessions", "table of sessions: model, turns, state, tokens, cost",
                        sessions),
    "use": Command("%agent use NAME", "make NAME the session of cells without --session", use),
    "new": Command("%agent new [NAME]", "start a fresh session (replacing one of that name)",
                   new),
    "history": Command("%agent history [NAME]", "the conversation so far", history),
    "stop": Command("%agent stop [NAME]", "stop the running turn", stop),
    "resume": Command("%agent resume [NAME]",
                      "continue a turn the kernel lost (pending approvals come back)", resume),
    "undo": Command("%agent undo [NAME]", "drop the last turn (it stays in the log)", undo_turn),
    "checkpoints": Command("%agent checkpoints [NAME]",
                           "the session's checkpoints: turn, time, reason, summary", checkpoints),
    "fork": Command("%agent fork NEW [--at CHECKPOINT]",
                    "a new session from the current one (or a checkpoint)", fork),
    "compact": Command("%agent compact [NAME]",
                       "summarise older turns with the model (the log keeps them)",
                       compact_session),
    "delete": Command("%agent delete NAME [-y]", "delete a session and its log (asks first)",
                      delete),
    "code": Command("%agent code [all]", "the code the agent ran (last run, or the whole session)",
                    code),
    "mcp": Command(diagnostics.MCP_USAGE, "", diagnostics.mcp),
    "tools": Command("%agent tools", "tools registered and in use", diagnostics.tools),
    "doctor": Command("%agent doctor", "check the model, the API key variable and the tools",
                      diagnostics.doctor),
    "help": Command("%agent help", "this text", show_help),
}  # fmt: skip
"""Every ``%agent`` command, in the order ``%agent help`` lists them."""
