"""The session actor: one asyncio task per session that owns the conversation.

Commands reach the actor through its inbox (a user turn, an approval decision, cancel,
steer, close); the actor runs one turn at a time as a run task it owns and awaits, and
queues the turns submitted meanwhile. Every step of a run is a typed event: the session
folds it into its :class:`~nbagent.conversation.Conversation`, hands it to its sinks (the
session log) in order, then fans it out to any number of subscribers.

Ownership: ``async with Session(...)`` starts the actor and closes it on exit; a session
used without ``async with`` starts its actor on first use and must be closed with
:meth:`Session.aclose` (the notebook's registry does this for notebook sessions). A run's
ending (its ``RunFinished``, its result, the actor's next turn) sits in a ``finally``.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal, Protocol, cast

from ._approvals import ApprovalGate, Decision
from ._budget import Budget
from ._fanout import EventHub, Subscription
from ._images import ImageMode
from ._inbox import Cancel, Close, Command, Decide, RunDone, RunHandle, Steer, Turn
from ._lifecycle import TRANSITIONS, SessionState
from ._loop import RetryPolicy, RunOutcome, RunResult, run_loop
from ._redact import redact, redact_event
from ._tool_calls import RunState, ToolCallRecord, ToolRunner
from .approval import AllowRule, ApprovalMode, ApprovalPolicy
from .conversation import Conversation, UsageTotals, as_chat
from .errors import IllegalTransitionError, SessionClosedError
from .events import (
    ApprovalRequested,
    ApprovalScope,
    BudgetReached,
    ErrorOccurred,
    Event,
    RunFinished,
    RunStarted,
    StateChanged,
)
from .hooks import Hooks, RunContext, call_hooks_quietly
from .model import LiteLLMModel, Model
from .tools import DEFAULT_MAX_RESULT_CHARS, Tool, ToolLike, resolve_tools

__all__ = [
    "DEFAULT_MAX_CALLS_PER_RESPONSE",
    "DEFAULT_MAX_RESPONSE_CHARS",
    "DEFAULT_MODEL",
    "Budget",
    "EventSink",
    "RetryPolicy",
    "RunHandle",
    "RunResult",
    "Session",
    "SessionState",
    "ToolCallRecord",
    "UsageTotals",
]

DEFAULT_MODEL = "openai/gpt-4o-mini"
DEFAULT_MAX_RESPONSE_CHARS = 1_000_000
"""The size cap of one model response, in characters (a runaway stream ends there)."""
DEFAULT_MAX_CALLS_PER_RESPONSE = 64
"""The most tool calls one response may propose (more: all are refused, none asks)."""


class EventSink(Protocol):
    """Receives every run event of a session, in order, before any subscriber; synchronous
    (``StateChanged``, the lifecycle, goes to subscribers only).

    An exception from ``accept`` during a run fails that run (a log that cannot be
    written is a failure the user must see)."""

    def accept(self, event: Event) -> None: ...


class Session:
    """A conversation with a model that can call tools, driven from asyncio.

    ``session.run(prompt)`` submits a turn and yields its events until ``RunFinished``;
    ``session.submit(prompt)`` queues a turn and returns a :class:`RunHandle`. Approve or
    deny proposed tool calls with :meth:`approve` / :meth:`deny`, stop with
    :meth:`cancel`, add guidance mid-run with :meth:`steer`. The conversation carries on
    across runs until :meth:`aclose` (or the end of ``async with``).

    A model given by name is a :class:`~nbagent.model.LiteLLMModel` with ``api_base``,
    ``api_key`` or ``api_key_env`` (the variable to read the key from) and ``timeout``
    (seconds to wait for the provider). ``model_params`` go with every request of any
    model; ``budget`` and ``max_response_chars`` are enforced while answers stream.
    """

    def __init__(
        self,
        model: str | Model = DEFAULT_MODEL,
        *,
        tools: Iterable[ToolLike] = (),
        approval: ApprovalMode = "ask",
        system: str | None = None,
        max_turns: int = 25,
        budget: Budget | None = None,
        retry: RetryPolicy | None = None,
        hooks: Iterable[Hooks] = (),
        api_base: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        timeout: float | None = None,
        model_params: dict[str, Any] | None = None,
        max_response_chars: int = DEFAULT_MAX_RESPONSE_CHARS,
        images: ImageMode = "auto",
        max_parallel_tools: int = 4,
        max_calls_per_response: int = DEFAULT_MAX_CALLS_PER_RESPONSE,
        max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
        session_id: str | None = None,
        messages: Iterable[dict[str, Any]] = (),
        conversation: Conversation | None = None,
    ) -> None:
        limits = {"max_turns": max_turns, "max_parallel_tools": max_parallel_tools,
                  "max_response_chars": max_response_chars,
                  "max_calls_per_response": max_calls_per_response}  # fmt: skip
        if low := [limit for limit, value in limits.items() if value < 1]:
            raise ValueError(f"{low[0]} must be at least 1")
        if isinstance(model, str):
            connection: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
            model = LiteLLMModel(
                model, api_base=api_base, api_key=api_key, api_key_env=api_key_env, **connection
            )
        elif api_base or api_key or api_key_env or timeout is not None:
            raise ValueError(
                "api_base, api_key, api_key_env and timeout apply to a model given by name"
            )
        self.id = session_id or uuid.uuid4().hex
        self.model: Model = model
        self.tools: dict[str, Tool] = resolve_tools(tools)
        self.policy = ApprovalPolicy(mode=approval)
        self.system = system
        self.max_turns = max_turns
        self.model_params: dict[str, Any] = dict(model_params or {})
        """Sent with every model request (temperature, top_p, max_tokens, seed,
        reasoning_effort, …) and part of the replay fingerprint."""
        self.max_response_chars = max_response_chars
        self.images: ImageMode = images
        """Show the model the images tool calls displayed: ``auto`` when the model can see
        (litellm says so, asked only for live requests), ``on`` always, ``off`` never;
        images not shown are noted in the calls' results."""
        self.budget = budget or Budget()
        self.retry = retry or RetryPolicy()
        self.hooks: list[Hooks] = list(hooks)
        self.max_parallel_tools = max_parallel_tools
        self.max_calls_per_response = max_calls_per_response
        """A response that proposes more tool calls is refused: none runs or asks."""
        self.max_result_chars = max_result_chars
        self._conversation = conversation or Conversation(messages=as_chat(messages))
        self._state = SessionState.IDLE
        self._hub = EventHub()
        self._sinks: list[EventSink] = []
        self._gate = ApprovalGate(self.policy, self.tools, self.emit, self._on_waiting)
        self._inbox: asyncio.Queue[Command] | None = None
        self._actor: asyncio.Task[None] | None = None
        self._turns: deque[Turn] = deque()
        self._current: Turn | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._steers: list[str] = []
        self._outstanding = 0
        """Turns submitted and not finished yet (queued, in the inbox or running)."""

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def conversation(self) -> Conversation:
        """The session's state, folded from its events (read it; never edit it)."""
        return self._conversation

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A copy of the conversation (OpenAI chat format, system prompt excluded)."""
        return cast(list[dict[str, Any]], list(self._conversation.messages))

    @property
    def usage(self) -> UsageTotals:
        """Tokens and cost over the whole session."""
        return self._conversation.usage

    @property
    def runs(self) -> int:
        """How many runs have finished."""
        return self._conversation.runs

    @property
    def pending_approvals(self) -> list[ApprovalRequested]:
        """The tool calls waiting for a decision, oldest first."""
        return self._gate.waiting

    @property
    def tool_runner(self) -> ToolRunner:
        return ToolRunner(
            self.tools, self._gate, self.hooks, self.emit,
            max_parallel=self.max_parallel_tools, max_result_chars=self.max_result_chars,
        )  # fmt: skip

    # -- events ---------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """Receive every event from now on (use as ``with session.subscribe() as events``)."""
        return self._hub.subscribe()

    def add_sink(self, sink: EventSink) -> None:
        """Hand every event to ``sink`` first, in order (the session log is one)."""
        self._sinks.append(sink)

    def remove_sink(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def emit(self, event: Event) -> None:
        """Redact ``event``, fold it into the conversation, give it to the sinks, then
        broadcast it."""
        event = redact_event(event)
        self._conversation.apply(event)
        try:
            for sink in self._sinks:
                sink.accept(event)
        finally:
            self._hub.emit(event)

    def take_steers(self) -> list[str]:
        steers, self._steers = self._steers, []
        return steers

    # -- turns ----------------------------------------------------------------------------

    def submit(
        self,
        prompt: str,
        *,
        tag: str | None = None,
        budget: Budget | None = None,
        model_params: dict[str, Any] | None = None,
        ask_budget: bool = False,
    ) -> RunHandle:
        """Queue a user turn; it runs when the turns before it have finished.

        ``tag`` is an opaque label carried by ``RunStarted`` (the notebook passes the id
        of the cell the turn came from). ``budget`` replaces the session's budget for this
        turn; ``model_params`` are merged over the session's for its requests (a cell's
        own options, which must not leak into the turns queued around it). With
        ``ask_budget`` the turn pauses at its budget (``BudgetReached``) until
        :meth:`decide_budget`; without, it stops there.
        """
        return self._submit(prompt, tag, budget, model_params, ask_budget)

    def resume(self, *, tag: str | None = None, ask_budget: bool = False) -> RunHandle | None:
        """Continue an interrupted conversation, or return None if nothing is unfinished.

        Unfinished means the last message is a user message nobody answered, or the last
        assistant message has tool calls without results: those calls go through approval
        again and run; calls that already have a result never run again. A run that
        waited at its budget asks again first (``ask_budget``, as for :meth:`submit`;
        without it the run stops there).
        """
        conversation = self._conversation
        if not conversation.unfinished() and conversation.budget_pause is None:
            return None
        return self._submit(None, tag, ask_budget=ask_budget)

    def _submit(
        self,
        prompt: str | None,
        tag: str | None,
        budget: Budget | None = None,
        model_params: dict[str, Any] | None = None,
        ask_budget: bool = False,
    ) -> RunHandle:
        self._check_open("start a turn")
        loop = self._ensure_actor()
        params = dict(model_params or {})
        turn = Turn(uuid.uuid4().hex, prompt, loop.create_future(), tag, budget, params, ask_budget)
        self._outstanding += 1
        self._send(turn)
        return RunHandle(turn.run_id, prompt, turn.future, self.cancel)

    def replace_history(self, messages: Iterable[dict[str, Any]]) -> None:
        """Set the conversation (rewind, undo, compaction); only while the session is idle."""
        self._check_idle("replace the history")
        self._conversation.reset(as_chat(messages))

    def restore(self, conversation: Conversation) -> None:
        """Take ``conversation`` as the session's state (a log rewound or reloaded)."""
        self._check_idle("restore the conversation")
        self._conversation = conversation

    def _check_idle(self, action: str) -> None:
        self._check_open(action)
        if self._outstanding:
            raise IllegalTransitionError(
                f"cannot {action} while a turn is queued or running; stop the run first"
            )

    async def run(self, prompt: str, *, tag: str | None = None) -> AsyncIterator[Event]:
        """Submit a turn and yield its events, ending with ``RunFinished``.

        Leaving the loop early does not stop the run; call :meth:`cancel` for that.
        """
        with self.subscribe() as events:
            handle = self.submit(prompt, tag=tag)
            async for event in events:
                if getattr(event, "run_id", None) != handle.run_id:
                    continue
                yield event
                if isinstance(event, RunFinished):
                    return

    async def ask(self, prompt: str) -> RunResult:
        """Submit a turn and wait for its result (approvals must come from elsewhere)."""
        return await self.submit(prompt)

    # -- decisions and control ------------------------------------------------------------

    def approve(
        self, tool_call_id: str, *, scope: ApprovalScope = "call", rule: AllowRule | None = None
    ) -> None:
        """Approve a pending call: only this one (``call``), every call of this tool for
        the session (``tool``), or every call matching ``rule`` (``rule``)."""
        if scope == "rule" and rule is None:
            raise ValueError("scope='rule' needs rule=AllowRule(tool, {argument: pattern})")
        self._decide(Decision(tool_call_id, True, scope, rule))

    def deny(
        self,
        tool_call_id: str,
        *,
        reason: str | None = None,
        scope: ApprovalScope = "call",
        decided_by: Literal["user", "policy"] = "user",
    ) -> None:
        """Deny a pending call; ``reason`` is shown to the model. ``scope='tool'`` denies
        the tool for the rest of the session. ``decided_by='policy'`` records that a rule
        of the caller (such as a headless run's) decided, not a person."""
        if scope == "rule":
            raise ValueError("rules can only allow; deny with scope 'call' or 'tool'")
        self._decide(Decision(tool_call_id, False, scope, None, reason, decided_by))

    def decide_budget(self, decision_id: str, *, go_on: bool) -> None:
        """Answer a run paused at its budget (``BudgetReached.decision_id``): ``go_on``
        raises the budget by its first size and the run continues; else it stops."""
        self._decide(Decision(decision_id, go_on))

    async def ask_budget(self, request: BudgetReached) -> Decision:
        return await self._gate.ask_budget(request)

    def _decide(self, decision: Decision) -> None:
        self._check_open("decide on a tool call")
        self._gate.check(decision)
        self._send(Decide(decision))

    def cancel(self, run_id: str | None = None) -> bool:
        """Stop the running turn, or the turn ``run_id`` (a queued one is dropped before it
        starts). Other queued turns still run. Returns False if there is nothing to stop."""
        self._check_open("cancel")
        if self._outstanding == 0:
            return False
        self._send(Cancel(run_id))
        return True

    def steer(self, text: str) -> None:
        """Add a user message before the next model request (of this run or the next)."""
        self._check_open("steer")
        self._ensure_actor()
        self._send(Steer(text))

    async def aclose(self, timeout: float = 5.0) -> None:
        """Cancel any run, end queued turns and stop the actor (bounded by ``timeout``)."""
        if self._state is SessionState.CLOSED:
            return
        actor = self._actor
        if actor is None or actor.done():
            self._mark_closed()
            return
        self._send(Close())
        try:
            await asyncio.wait_for(asyncio.shield(actor), timeout)
        except asyncio.TimeoutError:
            actor.cancel()
            await asyncio.wait({actor}, timeout=1.0)
        finally:
            self._mark_closed()

    async def __aenter__(self) -> Session:
        self._ensure_actor()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<Session {self.id[:8]} model={self.model.name!r} state={self._state.value} "
            f"messages={len(self._conversation.messages)}>"
        )

    # -- the actor ------------------------------------------------------------------------

    def _mark_closed(self) -> None:
        if self._state is not SessionState.CLOSED:
            self._set_state(SessionState.CLOSED)
        self._hub.close()

    def _check_open(self, action: str) -> None:
        if self._state is SessionState.CLOSED:
            raise SessionClosedError(
                f"cannot {action}: the session is closed; create a new Session to go on"
            )

    def _ensure_actor(self) -> asyncio.AbstractEventLoop:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "a Session runs on an asyncio event loop: use it from async code "
                "(a notebook cell, or a coroutine under asyncio.run)"
            ) from None
        if self._actor is None:
            self._inbox = asyncio.Queue()
            self._actor = loop.create_task(
                self._actor_main(), name=f"nbagent-session-{self.id[:8]}"
            )
        return loop

    def _send(self, command: Command) -> None:
        assert self._inbox is not None
        self._inbox.put_nowait(command)

    def _set_state(self, state: SessionState, run_id: str | None = None) -> None:
        previous = self._state
        if state is previous:
            return
        if state not in TRANSITIONS[previous]:
            raise IllegalTransitionError(
                f"a session cannot go from {previous.value} to {state.value}"
            )
        self._state = state
        self._hub.emit(StateChanged(state=state.value, previous=previous.value, run_id=run_id))

    def _on_waiting(self, run_id: str, waiting: bool) -> None:
        if waiting and self._state is SessionState.RUNNING:
            self._set_state(SessionState.AWAITING_APPROVAL, run_id)
        elif not waiting and self._state is SessionState.AWAITING_APPROVAL:
            self._set_state(SessionState.RUNNING, run_id)

    async def _actor_main(self) -> None:
        assert self._inbox is not None
        inbox = self._inbox
        while True:
            command = await inbox.get()
            if isinstance(command, Turn):
                self._turns.append(command)
                self._start_next()
            elif isinstance(command, Decide):
                self._gate.deliver(command.decision)
            elif isinstance(command, Cancel):
                self._apply_cancel(command.run_id)
            elif isinstance(command, Steer):
                self._steers.append(command.text)
            elif isinstance(command, RunDone):
                self._current = None
                self._run_task = None
                self._start_next()
            else:  # Close
                await self._shutdown()
                return

    def _apply_cancel(self, run_id: str | None) -> None:
        current = self._current
        if run_id is None or (current is not None and current.run_id == run_id):
            running = (SessionState.RUNNING, SessionState.AWAITING_APPROVAL)
            if self._state in running and self._run_task is not None and current is not None:
                self._set_state(SessionState.CANCELLING, current.run_id)
                self._run_task.cancel()
            return
        for turn in self._turns:
            if turn.run_id == run_id:
                self._turns.remove(turn)
                self._end_unstarted(turn, "Stopped before it started.")
                return

    def _end_unstarted(self, turn: Turn, why: str) -> None:
        finished = RunFinished(run_id=turn.run_id, status="cancelled", text="", error=why)
        self._emit_quietly(finished)
        self._settle(turn, RunResult.of(finished, RunState(RunContext(self, turn.run_id, ""))))

    def _settle(self, turn: Turn, result: RunResult) -> None:
        """Give the caller its result; the turn no longer counts as outstanding from here
        (in the same step, so a subscriber woken by ``RunFinished`` sees the session free)."""
        if not turn.future.done():
            turn.future.set_result(result)
            self._outstanding -= 1

    def _start_next(self) -> None:
        if self._current is not None or not self._turns:
            return
        turn = self._turns.popleft()
        self._current = turn
        self._set_state(SessionState.RUNNING, turn.run_id)
        self._run_task = asyncio.get_running_loop().create_task(
            self._run_turn(turn), name=f"nbagent-run-{turn.run_id[:8]}"
        )

    async def _shutdown(self) -> None:
        task = self._run_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=3.0)
        for turn in self._turns:
            self._end_unstarted(turn, "The session was closed before this turn ran.")
        self._turns.clear()
        self._mark_closed()

    # -- one run --------------------------------------------------------------------------

    async def _run_turn(self, turn: Turn) -> None:
        run = RunState(
            RunContext(session=self, run_id=turn.run_id, prompt=turn.prompt or ""),
            budget=turn.budget,
            model_params=turn.model_params,
            ask_budget=turn.ask_budget,
        )
        outcome = RunOutcome("failed", "The run ended before it started.")
        try:
            self.emit(
                RunStarted(
                    run_id=turn.run_id,
                    session_id=self.id,
                    prompt=turn.prompt or "",
                    model=self.model.name,
                    tag=turn.tag,
                    resumed=turn.prompt is None,
                    tools=tuple(self.tools),
                    params={**self.model_params, **turn.model_params},
                )
            )
            outcome = await run_loop(self, run, resumed=turn.prompt is None)
        except asyncio.CancelledError:
            outcome = RunOutcome("cancelled", "Stopped by the user.")
        except Exception as exc:
            outcome = RunOutcome("failed", f"{type(exc).__name__}: {exc}", exc)
        finally:
            await self._end_run(turn, run, outcome)

    async def _end_run(self, turn: Turn, run: RunState, outcome: RunOutcome) -> None:
        """Report how the run ended, settle its result and start the next turn. Never
        raises: whatever fails here, the caller's future and the actor are released."""
        finished = RunFinished(
            run_id=turn.run_id,
            status=outcome.status,
            text=redact(run.last_text),
            error=outcome.error,
            turns=run.ctx.turn,
        )
        try:
            if outcome.failure is not None:
                failure = outcome.failure
                self._emit_quietly(
                    ErrorOccurred(
                        run_id=turn.run_id,
                        error_type=type(failure).__name__,
                        message=outcome.error or "",
                    )
                )
                await call_hooks_quietly(self.hooks, "on_error", run.ctx, self.emit, failure)
            await call_hooks_quietly(self.hooks, "on_run_end", run.ctx, self.emit, finished)
        except BaseException as exc:  # a second cancel, or a hook that emitted and failed
            warnings.warn(f"nbagent: ending run {turn.run_id[:8]}: {exc!r}", stacklevel=1)
        finally:
            if self._state is not SessionState.CLOSED:
                self._set_state(SessionState.IDLE, turn.run_id)
            self._emit_quietly(finished)
            self._settle(turn, RunResult.of(finished, run))
            if self._inbox is not None:
                self._send(RunDone(turn.run_id))

    def _emit_quietly(self, event: Event) -> None:
        """Emit where a sink's failure must not stop the run from ending (it is warned
        about; the log writes what it kept with its next record)."""
        try:
            self.emit(event)
        except Exception as exc:
            warnings.warn(f"nbagent: {type(exc).__name__}: {exc}", stacklevel=2)
