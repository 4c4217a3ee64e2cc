"""The session actor: one asyncio task per session that owns the conversation.

Commands reach the actor through its inbox (a user turn, an approval decision, cancel,
steer, close); the actor runs one turn at a time as a run task it owns and awaits, and
queues the turns submitted meanwhile. Every step of a run is a typed event, fanned out to
any number of subscribers.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ._fanout import EventHub, Subscription
from ._history import repair_history
from ._redact import redact
from .approval import AllowRule, ApprovalMode, ApprovalPolicy, PolicyDecision
from .errors import (
    AlreadyDecidedError,
    HookError,
    IllegalTransitionError,
    ModelError,
    ProviderTransientError,
    RunInterrupted,
    SessionClosedError,
    StreamBrokenError,
    UnknownToolCallError,
)
from .events import (
    ApprovalDecided,
    ApprovalRequested,
    ApprovalScope,
    ErrorOccurred,
    Event,
    ModelResponded,
    ReasoningDelta,
    Retrying,
    RunFinished,
    RunStarted,
    RunStatus,
    StateChanged,
    SteerAdded,
    TextDelta,
    ToolCall,
    ToolCallProposed,
    ToolFinished,
    ToolStarted,
    ToolStatus,
    Usage,
)
from .hooks import Hooks, RunContext
from .model import (
    LiteLLMModel,
    Model,
    ModelRequest,
    ReasoningChunk,
    ResponseAccumulator,
    ToolCallFragment,
    assistant_message,
)
from .tools import (
    DEFAULT_MAX_RESULT_CHARS,
    Tool,
    ToolArgumentsError,
    ToolLike,
    ToolOutput,
    resolve_tools,
    sanitize,
    to_text,
    tool_spec,
    truncate,
)


class SessionState(enum.Enum):
    """Where a session is in its lifecycle."""

    IDLE = "idle"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    CANCELLING = "cancelling"
    CLOSED = "closed"


_TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.IDLE: frozenset({SessionState.RUNNING, SessionState.CLOSED}),
    SessionState.RUNNING: frozenset(
        {
            SessionState.AWAITING_APPROVAL,
            SessionState.CANCELLING,
            SessionState.IDLE,
            SessionState.CLOSED,
        }
    ),
    SessionState.AWAITING_APPROVAL: frozenset(
        {SessionState.RUNNING, SessionState.CANCELLING, SessionState.IDLE, SessionState.CLOSED}
    ),
    SessionState.CANCELLING: frozenset({SessionState.IDLE, SessionState.CLOSED}),
    SessionState.CLOSED: frozenset(),
}


@dataclass(frozen=True)
class Budget:
    """Limits for one run; the run stops with status ``budget_exceeded`` past either.

    The cost limit applies only to models whose price litellm knows (``Usage.cost_known``).
    """

    max_cost_usd: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for rate limits and transient provider errors before the first token."""

    attempts: int = 4
    """Total attempts, the first included."""
    initial_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int, hint: float | None) -> float:
        if hint is not None:
            return min(max(hint, 0.0), self.max_delay)
        base = self.initial_delay * self.multiplier ** (attempt - 1)
        return min(base * (0.75 + random.random() / 2), self.max_delay)


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call of a run, with how it ended."""

    id: str
    name: str
    arguments: dict[str, Any]
    status: ToolStatus
    result: str


@dataclass(frozen=True)
class UsageTotals:
    """Tokens and cost added up over model requests."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    """False if any request's cost was unknown (then ``cost_usd`` is a lower bound)."""
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, usage: Usage) -> UsageTotals:
        return self.add_counts(
            usage.prompt_tokens, usage.completion_tokens, usage.cost_usd, usage.cost_known
        )

    def add_counts(
        self, prompt_tokens: int, completion_tokens: int, cost_usd: float, cost_known: bool
    ) -> UsageTotals:
        """The totals after one more model request."""
        return UsageTotals(
            prompt_tokens=self.prompt_tokens + prompt_tokens,
            completion_tokens=self.completion_tokens + completion_tokens,
            cost_usd=self.cost_usd + cost_usd,
            cost_known=self.cost_known and cost_known,
            requests=self.requests + 1,
        )


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its final text, tool calls and usage."""

    run_id: str
    status: RunStatus
    text: str
    error: str | None
    turns: int
    tool_calls: tuple[ToolCallRecord, ...]
    usage: UsageTotals


class RunHandle:
    """A submitted turn. ``await handle`` gives its :class:`RunResult`."""

    def __init__(
        self,
        run_id: str,
        prompt: str | None,
        future: asyncio.Future[RunResult],
        session: Session,
    ) -> None:
        self.run_id = run_id
        self.prompt = prompt
        self._future = future
        self._session = session

    def cancel(self) -> bool:
        """Stop this turn: a running one stops, a queued one never starts. False if done."""
        if self._future.done():
            return False
        return self._session.cancel(self.run_id)

    @property
    def done(self) -> bool:
        return self._future.done()

    async def result(self) -> RunResult:
        return await asyncio.shield(self._future)

    def __await__(self) -> Generator[Any, None, RunResult]:
        return self.result().__await__()


# Inbox commands ---------------------------------------------------------------------------


@dataclass
class _Turn:
    run_id: str
    prompt: str | None
    """None continues the conversation as it stands (``Session.resume``)."""
    future: asyncio.Future[RunResult]
    tag: str | None = None


@dataclass
class _Decide:
    tool_call_id: str
    approved: bool
    scope: ApprovalScope
    rule: AllowRule | None
    reason: str | None
    decided_by: Literal["user", "policy"] = "user"


@dataclass
class _Cancel:
    run_id: str | None = None
    """Cancel this run (running or queued); None cancels the running one."""


@dataclass
class _Steer:
    text: str


@dataclass
class _Close:
    pass


@dataclass
class _RunDone:
    run_id: str


_Command = _Turn | _Decide | _Cancel | _Steer | _Close | _RunDone


@dataclass
class _Pending:
    request: ApprovalRequested
    future: asyncio.Future[_Decide]
    decided: bool = False


@dataclass
class _RunState:
    """Per-run bookkeeping, owned by the run task."""

    ctx: RunContext
    usage: UsageTotals = field(default_factory=UsageTotals)
    records: list[ToolCallRecord] = field(default_factory=list)
    last_text: str = ""
    untrusted: bool = False
    """The last response was replayed from a recording this kernel did not make."""
    refused_replay: str | None = None
    """A replayed side-effecting call that was not allowed to run (the run stops)."""


DEFAULT_MODEL = "openai/gpt-4o-mini"
UNTRUSTED_REPLAY = (
    "this call was replayed from a recording made elsewhere and is not read-only; trust the "
    "recording with NBAGENT_TRUST=1 (or %config NBAgent.trust = True) to let it run"
)
CANCELLED_RESULT = "The tool call was cancelled before it finished: the user stopped the run."


class Session:
    """A conversation with a model that can call tools, driven from asyncio.

    ``session.run(prompt)`` submits a turn and yields its events until ``RunFinished``;
    ``session.submit(prompt)`` queues a turn and returns a :class:`RunHandle`. Approve or
    deny proposed tool calls with :meth:`approve` / :meth:`deny`, stop with
    :meth:`cancel`, add guidance mid-run with :meth:`steer`. The conversation carries on
    across runs until :meth:`aclose`.
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
        model_params: dict[str, Any] | None = None,
        max_parallel_tools: int = 4,
        max_result_chars: int = DEFAULT_MAX_RESULT_CHARS,
        session_id: str | None = None,
        messages: Iterable[dict[str, Any]] = (),
    ) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        if max_parallel_tools < 1:
            raise ValueError("max_parallel_tools must be at least 1")
        if isinstance(model, str):
            model = LiteLLMModel(model, api_base=api_base, api_key=api_key, params=model_params)
        elif api_base or api_key or model_params:
            raise ValueError("api_base, api_key and model_params apply to a model given by name")
        self.id = session_id or uuid.uuid4().hex
        self.model: Model = model
        self.tools: dict[str, Tool] = resolve_tools(tools)
        self.policy = ApprovalPolicy(mode=approval)
        self.system = system
        self.max_turns = max_turns
        self.budget = budget or Budget()
        self.retry = retry or RetryPolicy()
        self.hooks: list[Hooks] = list(hooks)
        self.max_parallel_tools = max_parallel_tools
        self.max_result_chars = max_result_chars
        self.usage = UsageTotals()
        """Tokens and cost over the whole session."""
        self.runs = 0
        """How many runs have finished."""
        self._messages: list[dict[str, Any]] = list(messages)
        self._state = SessionState.IDLE
        self._hub = EventHub()
        self._inbox: asyncio.Queue[_Command] | None = None
        self._actor: asyncio.Task[None] | None = None
        self._turns: deque[_Turn] = deque()
        self._current: _Turn | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._steers: list[str] = []
        self._pending: dict[str, _Pending] = {}
        self._outstanding = 0
        """Turns submitted and not finished yet (queued, in the inbox or running)."""
        self._closed_calls: dict[str, str] = {}
        """Calls that no longer wait for a decision, with why (for clear errors)."""

    # -- public surface -------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A copy of the conversation (OpenAI chat format, system prompt excluded)."""
        return list(self._messages)

    @property
    def pending_approvals(self) -> list[ApprovalRequested]:
        """The tool calls waiting for a decision, oldest first."""
        return [p.request for p in self._pending.values() if not p.decided]

    def subscribe(self) -> Subscription:
        """Receive every event from now on (use as ``with session.subscribe() as events``)."""
        return self._hub.subscribe()

    def submit(self, prompt: str, *, tag: str | None = None) -> RunHandle:
        """Queue a user turn; it runs when the turns before it have finished.

        ``tag`` is an opaque label carried by ``RunStarted`` (the notebook passes the id
        of the cell the turn came from).
        """
        return self._submit(prompt, tag)

    def resume(self, *, tag: str | None = None) -> RunHandle | None:
        """Continue an interrupted conversation, or return None if nothing is unfinished.

        Unfinished means the last message is a user message nobody answered, or the last
        assistant message has tool calls without results: those calls go through approval
        again and run; calls that already have a result never run again.
        """
        if not _unfinished(self._messages):
            return None
        return self._submit(None, tag)

    def _submit(self, prompt: str | None, tag: str | None) -> RunHandle:
        self._check_open("start a turn")
        loop = self._ensure_actor()
        turn = _Turn(uuid.uuid4().hex, prompt, loop.create_future(), tag)
        self._outstanding += 1
        turn.future.add_done_callback(self._turn_done)
        self._send(turn)
        return RunHandle(turn.run_id, prompt, turn.future, self)

    def replace_history(self, messages: Iterable[dict[str, Any]]) -> None:
        """Set the conversation (rewind, undo, compaction); only while the session is idle."""
        self._check_open("replace the history")
        if self._outstanding:
            raise IllegalTransitionError(
                "cannot replace the history while a turn is queued or running; stop the run first"
            )
        self._messages = list(messages)

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

    def approve(
        self, tool_call_id: str, *, scope: ApprovalScope = "call", rule: AllowRule | None = None
    ) -> None:
        """Approve a pending call: only this one (``call``), every call of this tool for
        the session (``tool``), or every call matching ``rule`` (``rule``)."""
        if scope == "rule" and rule is None:
            raise ValueError("scope='rule' needs rule=AllowRule(tool, {argument: pattern})")
        self._decide(_Decide(tool_call_id, True, scope, rule, None))

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
        self._decide(_Decide(tool_call_id, False, scope, None, reason, decided_by))

    def cancel(self, run_id: str | None = None) -> bool:
        """Stop the running turn, or the turn ``run_id`` (a queued one is dropped before it
        starts). Other queued turns still run. Returns False if there is nothing to stop."""
        self._check_open("cancel")
        if self._outstanding == 0:
            return False
        self._send(_Cancel(run_id))
        return True

    def steer(self, text: str) -> None:
        """Add a user message before the next model request (of this run or the next)."""
        self._check_open("steer")
        self._ensure_actor()
        self._send(_Steer(text))

    async def aclose(self, timeout: float = 5.0) -> None:
        """Cancel any run, end queued turns and stop the actor (bounded by ``timeout``)."""
        if self._state is SessionState.CLOSED:
            return
        actor = self._actor
        if actor is None or actor.done():
            self._mark_closed()
            return
        self._send(_Close())
        try:
            await asyncio.wait_for(asyncio.shield(actor), timeout)
        except asyncio.TimeoutError:
            actor.cancel()
        finally:
            self._mark_closed()

    def _turn_done(self, _: object) -> None:
        self._outstanding -= 1

    def _mark_closed(self) -> None:
        if self._state is not SessionState.CLOSED:
            self._set_state(SessionState.CLOSED)
        self._hub.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<Session {self.id[:8]} model={self.model.name!r} state={self._state.value} "
            f"messages={len(self._messages)}>"
        )

    # -- actor ----------------------------------------------------------------------------

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

    def _send(self, command: _Command) -> None:
        assert self._inbox is not None
        self._inbox.put_nowait(command)

    def _decide(self, decision: _Decide) -> None:
        self._check_open("decide on a tool call")
        pending = self._pending.get(decision.tool_call_id)
        if pending is None:
            if decision.tool_call_id in self._closed_calls:
                raise AlreadyDecidedError(
                    f"tool call {decision.tool_call_id!r} "
                    f"{self._closed_calls[decision.tool_call_id]}"
                )
            waiting = ", ".join(self._pending) or "none"
            raise UnknownToolCallError(
                f"no pending tool call has the id {decision.tool_call_id!r} (pending: {waiting})"
            )
        if pending.decided:
            raise AlreadyDecidedError(f"tool call {decision.tool_call_id!r} was already decided")
        pending.decided = True
        self._send(decision)

    def _set_state(self, state: SessionState, run_id: str | None = None) -> None:
        previous = self._state
        if state is previous:
            return
        if state not in _TRANSITIONS[previous]:
            raise IllegalTransitionError(
                f"a session cannot go from {previous.value} to {state.value}"
            )
        self._state = state
        self._hub.emit(StateChanged(state=state.value, previous=previous.value, run_id=run_id))

    async def _actor_main(self) -> None:
        assert self._inbox is not None
        inbox = self._inbox
        while True:
            command = await inbox.get()
            if isinstance(command, _Turn):
                self._turns.append(command)
                self._start_next()
            elif isinstance(command, _Decide):
                pending = self._pending.get(command.tool_call_id)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(command)
            elif isinstance(command, _Cancel):
                self._apply_cancel(command.run_id)
            elif isinstance(command, _Steer):
                self._steers.append(command.text)
            elif isinstance(command, _RunDone):
                self._current = None
                self._run_task = None
                self._start_next()
            else:  # _Close
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

    def _end_unstarted(self, turn: _Turn, why: str) -> None:
        finished = RunFinished(run_id=turn.run_id, status="cancelled", text="", error=why)
        self._hub.emit(finished)
        if not turn.future.done():
            state = _RunState(RunContext(self, turn.run_id, turn.prompt or ""))
            turn.future.set_result(_result(finished, state))

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

    # -- the agent loop -------------------------------------------------------------------

    async def _run_turn(self, turn: _Turn) -> None:
        run = _RunState(RunContext(session=self, run_id=turn.run_id, prompt=turn.prompt or ""))
        emit = self._hub.emit
        emit(
            RunStarted(
                run_id=turn.run_id,
                session_id=self.id,
                prompt=turn.prompt or "",
                model=self.model.name,
                tag=turn.tag,
                resumed=turn.prompt is None,
                tools=tuple(self.tools),
            )
        )
        if turn.prompt is not None:
            self._messages.append({"role": "user", "content": turn.prompt})
        status: RunStatus = "completed"
        error: str | None = None
        failure: BaseException | None = None
        try:
            await self._call_hooks("on_run_start", run.ctx)
            unanswered = _unanswered_calls(self._messages) if turn.prompt is None else ()
            if unanswered:
                await self._tool_turn(run, unanswered)
            for turn_number in range(1, self.max_turns + 1):
                run.ctx.turn = turn_number
                response = await self._model_turn(run)
                if (over := self._over_budget(run.usage)) is not None:
                    status, error = "budget_exceeded", over
                    self._skip_calls(run, response.tool_calls, over)
                    break
                if not response.tool_calls:
                    break
                await self._tool_turn(run, response.tool_calls)
                if run.refused_replay is not None:
                    # The recording goes on as if the call had run: replaying further
                    # would be fiction, so the run stops here and says how to trust.
                    status = "failed"
                    error = f"The replay stopped at {run.refused_replay}: {UNTRUSTED_REPLAY}."
                    break
            else:
                status = "max_turns"
                error = (
                    f"The run stopped after {self.max_turns} model requests (max_turns). "
                    "Send another message to let the agent continue, or raise max_turns."
                )
        except asyncio.CancelledError:
            status, error = "cancelled", "Stopped by the user."
        except RunInterrupted as exc:
            status, error = "cancelled", f"Interrupted: {exc}"
        except ModelError as exc:
            status, error, failure = "failed", str(exc), exc
        except Exception as exc:
            status, failure = "failed", exc
            error = redact(f"{type(exc).__name__}: {exc}")
        self._messages = repair_history(self._messages)
        if failure is not None:
            emit(
                ErrorOccurred(
                    run_id=turn.run_id, error_type=type(failure).__name__, message=error or ""
                )
            )
            await self._call_hooks_quietly("on_error", run.ctx, failure)
        finished = RunFinished(
            run_id=turn.run_id, status=status, text=run.last_text, error=error, turns=run.ctx.turn
        )
        await self._call_hooks_quietly("on_run_end", run.ctx, finished)
        self.runs += 1
        self._set_state(SessionState.IDLE, turn.run_id)
        emit(finished)
        if not turn.future.done():
            turn.future.set_result(_result(finished, run))
        self._send(_RunDone(turn.run_id))

    def _take_steers(self, run_id: str) -> None:
        for text in self._steers:
            self._messages.append({"role": "user", "content": text})
            self._hub.emit(SteerAdded(run_id=run_id, text=text))
        self._steers.clear()

    async def _model_turn(self, run: _RunState) -> ModelResponded:
        """One model request: build, stream (with retries), record the response."""
        self._take_steers(run.ctx.run_id)
        self._messages = repair_history(self._messages)
        system = [{"role": "system", "content": self.system}] if self.system else []
        request = ModelRequest(
            messages=system + self._messages,
            tools=[tool_spec(t) for t in self.tools.values()],
        )
        for hook in self.hooks:
            edited = await _named(
                hook, "before_model_request", hook.before_model_request(run.ctx, request)
            )
            request = edited or request
        acc = await self._stream(run, request)
        run.untrusted = bool(getattr(self.model, "untrusted_replay", False))
        calls = acc.tool_calls()
        message = assistant_message(acc.text, calls)
        self._messages.append(message)
        run.last_text = acc.text
        response = ModelResponded(
            run_id=run.ctx.run_id,
            turn=run.ctx.turn,
            text=acc.text,
            reasoning=acc.reasoning,
            tool_calls=tuple(calls),
            finish_reason=acc.finish_reason,
            message=message,
        )
        self._hub.emit(response)
        self._record_usage(run, acc)
        await self._call_hooks("after_model_response", run.ctx, response)
        return response

    async def _stream(self, run: _RunState, request: ModelRequest) -> ResponseAccumulator:
        run_id = run.ctx.run_id
        emit = self._hub.emit
        attempt = 0
        while True:
            attempt += 1
            acc = ResponseAccumulator()
            add_text = acc.add_text
            started = False
            stream = self.model.stream(request)
            try:
                async for chunk in stream:
                    if type(chunk) is str:
                        started = True
                        add_text(chunk)
                        emit(TextDelta(run_id=run_id, text=chunk))
                        continue
                    if isinstance(chunk, ReasoningChunk):
                        started = True
                        emit(ReasoningDelta(run_id=run_id, text=chunk.text))
                    elif isinstance(chunk, ToolCallFragment):
                        started = True
                    acc.add(chunk)
                if acc.finish_reason is None:
                    raise ProviderTransientError(
                        "the provider ended the stream without a finish reason "
                        "(the connection was probably cut)"
                    )
                return acc
            except ModelError as exc:
                if started:
                    self._keep_partial(run, acc)
                    raise StreamBrokenError(
                        f"The response broke off after part of it had arrived: {exc}. "
                        "The partial answer is kept; send another message to continue."
                    ) from exc
                if not exc.retryable or attempt >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt, exc.retry_after)
                emit(Retrying(run_id=run_id, attempt=attempt, delay_s=delay, error=str(exc)))
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                if started:
                    self._keep_partial(run, acc)
                raise
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

    def _keep_partial(self, run: _RunState, acc: ResponseAccumulator) -> None:
        """Keep what was shown of a broken response (a response with no finish reason)."""
        if not acc.text:
            return
        message = {"role": "assistant", "content": acc.text}
        self._messages.append(message)
        run.last_text = acc.text
        self._hub.emit(
            ModelResponded(
                run_id=run.ctx.run_id,
                turn=run.ctx.turn,
                text=acc.text,
                reasoning=acc.reasoning,
                tool_calls=(),
                finish_reason=None,
                message=message,
            )
        )

    def _record_usage(self, run: _RunState, acc: ResponseAccumulator) -> None:
        prompt = acc.usage.prompt_tokens if acc.usage else 0
        completion = acc.usage.completion_tokens if acc.usage else 0
        cost = self.model.cost(prompt, completion) if acc.usage else None
        usage = Usage(
            run_id=run.ctx.run_id,
            model=self.model.name,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cost_usd=cost or 0.0,
            cost_known=cost is not None,
        )
        run.usage = run.usage.add(usage)
        self.usage = self.usage.add(usage)
        self._hub.emit(usage)

    def _over_budget(self, usage: UsageTotals) -> str | None:
        budget = self.budget
        if budget.max_tokens is not None and usage.total_tokens > budget.max_tokens:
            return (
                f"The run used {usage.total_tokens:,} tokens, over its budget of "
                f"{budget.max_tokens:,}; it was stopped. Raise the budget to go on."
            )
        if budget.max_cost_usd is not None and usage.cost_usd > budget.max_cost_usd:
            return (
                f"The run cost ${usage.cost_usd:.4f}, over its budget of "
                f"${budget.max_cost_usd:.4f}; it was stopped. Raise the budget to go on."
            )
        return None

    # -- tools ----------------------------------------------------------------------------

    async def _tool_turn(self, run: _RunState, calls: tuple[ToolCall, ...]) -> None:
        """Decide and run the calls of one response, concurrently (bounded)."""
        limit = asyncio.Semaphore(self.max_parallel_tools)
        results: dict[str, str] = {}
        tasks = [asyncio.ensure_future(self._one_call(run, call, limit, results)) for call in calls]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            raise
        finally:
            for call in calls:
                if call.id not in results:
                    self._finish_call(run, call, "cancelled", CANCELLED_RESULT, 0.0, results)
                self._messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": results[call.id]}
                )

    def _skip_calls(self, run: _RunState, calls: tuple[ToolCall, ...], why: str) -> None:
        results: dict[str, str] = {}
        for call in calls:
            self._hub.emit(ToolCallProposed(run_id=run.ctx.run_id, call=call))
            self._finish_call(run, call, "cancelled", f"Not run: {why}", 0.0, results)
            self._messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": results[call.id]}
            )

    def _finish_call(
        self,
        run: _RunState,
        call: ToolCall,
        status: ToolStatus,
        text: str,
        duration: float,
        results: dict[str, str],
        limit: int | None = None,
        display: tuple[dict[str, Any], ...] = (),
    ) -> ToolFinished:
        text, truncated = truncate(redact(sanitize(text)), limit or self.max_result_chars)
        finished = ToolFinished(
            run_id=run.ctx.run_id,
            tool_call_id=call.id,
            name=call.name,
            status=status,
            result=text,
            duration_s=duration,
            truncated=truncated,
            display=display,
        )
        results[call.id] = text
        run.records.append(ToolCallRecord(call.id, call.name, call.arguments, status, text))
        self._hub.emit(finished)
        return finished

    async def _one_call(
        self, run: _RunState, call: ToolCall, limit: asyncio.Semaphore, results: dict[str, str]
    ) -> None:
        emit = self._hub.emit
        emit(ToolCallProposed(run_id=run.ctx.run_id, call=call))
        tool = self.tools.get(call.name)
        if call.error is not None:
            finished = self._finish_call(run, call, "error", call.error, 0.0, results)
        elif tool is None:
            available = ", ".join(sorted(self.tools)) or "none"
            finished = self._finish_call(
                run,
                call,
                "error",
                f"Unknown tool '{call.name}'. Available tools: {available}.",
                0.0,
                results,
            )
        else:
            try:
                arguments = tool.validate(call.arguments)
            except ToolArgumentsError as exc:
                finished = self._finish_call(run, call, "error", str(exc), 0.0, results)
            else:
                finished = await self._approved_call(run, call, tool, arguments, limit, results)
        await self._call_hooks("after_tool_call", run.ctx, call, finished)

    async def _approved_call(
        self,
        run: _RunState,
        call: ToolCall,
        tool: Tool,
        arguments: dict[str, Any],
        limit: asyncio.Semaphore,
        results: dict[str, str],
    ) -> ToolFinished:
        run_id = run.ctx.run_id
        emit = self._hub.emit
        verdict = self.policy.decide(tool, arguments)
        note = None
        if run.untrusted and not tool.read_only and verdict.verdict != "deny":
            # Someone else's recording must not run side effects just because it replays.
            verdict = PolicyDecision("ask", UNTRUSTED_REPLAY)
            note = UNTRUSTED_REPLAY
        if verdict.verdict == "ask":
            decision = await self._ask(run_id, call, tool, note)
        else:
            decision = _Decide(call.id, verdict.verdict == "allow", "call", None, verdict.reason,
                               decided_by="policy")  # fmt: skip
        approved, reason = decision.approved, decision.reason
        emit(
            ApprovalDecided(
                run_id=run_id,
                tool_call_id=call.id,
                name=call.name,
                approved=approved,
                scope=decision.scope,
                decided_by=decision.decided_by,
                reason=reason,
            )
        )
        if not approved:
            if note is not None:
                run.refused_replay = call.name
            note = f" Reason: {reason}." if reason else ""
            return self._finish_call(
                run,
                call,
                "denied",
                f"The call was denied and did not run.{note} Do not retry it unchanged; "
                "ask the user or take another approach.",
                0.0,
                results,
            )
        await self._call_hooks("before_tool_call", run.ctx, call)
        async with limit:
            emit(ToolStarted(run_id=run_id, tool_call_id=call.id, name=call.name))
            started = time.perf_counter()
            status: ToolStatus = "ok"
            display: tuple[dict[str, Any], ...] = ()
            try:
                value = await tool.invoke(arguments)
            except (asyncio.CancelledError, RunInterrupted):
                raise
            except Exception as exc:
                status, text = "error", redact(f"{type(exc).__name__}: {exc}")
            else:
                if isinstance(value, ToolOutput):
                    status = "error" if value.is_error else "ok"
                    text, display = value.text, value.display
                else:
                    text = to_text(value)
            duration = time.perf_counter() - started
        return self._finish_call(
            run, call, status, text, duration, results, tool.max_result_chars, display
        )

    async def _ask(
        self, run_id: str, call: ToolCall, tool: Tool, note: str | None = None
    ) -> _Decide:
        loop = asyncio.get_running_loop()
        request = ApprovalRequested(
            run_id=run_id,
            tool_call_id=call.id,
            name=call.name,
            arguments=call.arguments,
            read_only=tool.read_only,
            preview=_preview(tool, call.arguments),
            note=note,
        )
        pending = _Pending(request, loop.create_future())
        self._pending[call.id] = pending
        if self._state is SessionState.RUNNING:
            self._set_state(SessionState.AWAITING_APPROVAL, run_id)
        self._hub.emit(request)
        decision: _Decide | None = None
        try:
            decision = await pending.future
        finally:
            self._pending.pop(call.id, None)
            self._closed_calls[call.id] = (
                "is no longer pending: its run ended"
                if decision is None
                else "was already approved"
                if decision.approved
                else "was already denied"
            )
            waiting = any(not p.decided for p in self._pending.values())
            if self._state is SessionState.AWAITING_APPROVAL and not waiting:
                self._set_state(SessionState.RUNNING, run_id)
        if decision.approved and decision.scope == "tool":
            self.policy.grant_tool(call.name)
        elif not decision.approved and decision.scope == "tool":
            self.policy.block_tool(call.name)
        elif decision.approved and decision.scope == "rule" and decision.rule is not None:
            self.policy.add_rule(decision.rule)
        if decision.scope != "call":
            self._apply_grants(run_id)
        return decision

    def _apply_grants(self, run_id: str) -> None:
        """After an "always" decision, settle the other pending calls it now covers."""
        for pending in list(self._pending.values()):
            if pending.decided:
                continue
            tool = self.tools.get(pending.request.name)
            if tool is None:
                continue
            verdict = self.policy.decide(tool, pending.request.arguments)
            if verdict.verdict != "ask":
                pending.decided = True
                pending.future.set_result(
                    _Decide(
                        pending.request.tool_call_id,
                        verdict.verdict == "allow",
                        "call",
                        None,
                        verdict.reason,
                        decided_by="policy",
                    )
                )

    # -- hooks ----------------------------------------------------------------------------

    async def _call_hooks(self, name: str, *args: Any) -> None:
        for hook in self.hooks:
            await _named(hook, name, getattr(hook, name)(*args))

    async def _call_hooks_quietly(self, name: str, ctx: RunContext, *args: Any) -> None:
        for hook in self.hooks:
            try:
                await getattr(hook, name)(ctx, *args)
            except Exception as exc:
                self._hub.emit(
                    ErrorOccurred(
                        run_id=ctx.run_id,
                        error_type=type(exc).__name__,
                        message=redact(f"the hook {type(hook).__name__}.{name} failed: {exc}"),
                    )
                )


async def _named(hook: Hooks, name: str, awaitable: Any) -> Any:
    try:
        return await awaitable
    except (asyncio.CancelledError, ModelError):
        raise
    except Exception as exc:
        raise HookError(f"the hook {type(hook).__name__}.{name} failed: {exc}") from exc


def _preview(tool: Tool, arguments: dict[str, Any]) -> str | None:
    """The tool's own description of what a call would change (optional ``preview``)."""
    preview = getattr(tool, "preview", None)
    if preview is None:
        return None
    try:
        text = preview(arguments)
    except Exception as exc:
        return f"(no preview: {type(exc).__name__}: {exc})"
    return redact(sanitize(str(text))) if text else None


def _unanswered_calls(messages: list[dict[str, Any]]) -> tuple[ToolCall, ...]:
    """The tool calls of the last assistant message that have no result yet."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "tool":
            continue
        if message.get("role") != "assistant" or not message.get("tool_calls"):
            return ()
        answered = {m.get("tool_call_id") for m in messages[index + 1 :]}
        calls = []
        for raw in message["tool_calls"]:
            if raw.get("id") in answered:
                continue
            function = raw.get("function") or {}
            arguments_json = function.get("arguments") or "{}"
            try:
                arguments = json.loads(arguments_json)
            except json.JSONDecodeError:
                arguments = {}
            calls.append(
                ToolCall(
                    id=raw["id"],
                    name=function.get("name", ""),
                    arguments=arguments if isinstance(arguments, dict) else {},
                    arguments_json=arguments_json,
                )
            )
        return tuple(calls)
    return ()


def _unfinished(messages: list[dict[str, Any]]) -> bool:
    if not messages:
        return False
    return messages[-1].get("role") == "user" or bool(_unanswered_calls(messages))


def _result(finished: RunFinished, run: _RunState) -> RunResult:
    return RunResult(
        run_id=finished.run_id,
        status=finished.status,
        text=finished.text,
        error=finished.error,
        turns=finished.turns,
        tool_calls=tuple(run.records),
        usage=run.usage,
    )
