"""The agent loop of one run: model request, tool calls, again, until the model is done.

The loop only emits events; the session folds each one into its conversation (see
``conversation.py``), so nothing here touches the message list. How the run ends (the
``RunFinished``, the caller's future) is the session's job, in a ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import uuid
from dataclasses import dataclass
from typing import Any, Protocol, cast

from ._approvals import Decision
from ._budget import CHARS_PER_TOKEN, Budget
from ._images import ImageMode, ToolImages
from ._redact import redact
from ._tool_calls import RunState, ToolCallRecord, ToolRunner
from .approval import UNTRUSTED_REPLAY
from .conversation import Conversation, UsageTotals
from .errors import (
    ModelError,
    ProviderTransientError,
    ResponseTooLargeError,
    RunInterrupted,
    StreamBrokenError,
)
from .events import (
    BudgetDecided,
    BudgetReached,
    Event,
    ModelResponded,
    ReasoningDelta,
    Retrying,
    RunFinished,
    RunStatus,
    SteerAdded,
    TextDelta,
    ToolCall,
    ToolCallsRefused,
    Usage,
)
from .hooks import Hooks, call_hooks, edit_request
from .model import (
    Model,
    ModelRequest,
    ReasoningChunk,
    ResponseAccumulator,
    ToolCallFragment,
    assistant_message,
)
from .tools import Tool, tool_spec


class OverBudget(Exception):
    """The run is over its budget and goes no further: it stops (not fails)."""


_CHECK_EVERY = 200
"""Characters between two estimates while streaming (about 50 tokens)."""


class _Meter:
    """Counts what a response streamed and enforces the run's limits while it streams:
    the size cap (``max_response_chars``) and the budget (tokens and cost estimated)."""

    __slots__ = ("_host", "_price", "_run", "chars", "next_check", "prompt_tokens")

    def __init__(self, host: LoopHost, run: RunState, request: ModelRequest) -> None:
        self._host = host
        self._run = run
        self._price: tuple[float, float] | None = None
        self.chars = 0
        size = len(json.dumps([request.messages, request.tools], default=str))
        self.prompt_tokens = max(1, size // CHARS_PER_TOKEN)
        self.next_check = min(_CHECK_EVERY, host.max_response_chars + 1)

    @property
    def completion_tokens(self) -> int:
        return -(-self.chars // CHARS_PER_TOKEN)

    def check(self) -> str | None:
        """Raise when the response is over the size cap; say why when the run is over its
        budget (None: it is not)."""
        host = self._host
        limit = host.max_response_chars
        if self.chars > limit:
            raise ResponseTooLargeError(
                f"The response passed {limit:,} characters (max_response_chars) and was "
                "stopped as a runaway answer; its first part is kept."
            )
        self.next_check = min(self.chars + _CHECK_EVERY, limit + 1)
        budget = self._run.budget or host.budget
        if not budget.limited:
            return None
        cost = self._estimated_cost() if budget.max_cost_usd is not None else None
        estimate = Usage(
            run_id=self._run.ctx.run_id,
            model=host.model.name,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            cost_usd=cost or 0.0,
            cost_known=cost is not None,
            estimated=True,
        )
        return budget.exceeded(self._run.usage.add(estimate))

    def _estimated_cost(self) -> float | None:
        if self._price is None:
            prompt = self._host.model.cost(self.prompt_tokens, 0)
            per_million = self._host.model.cost(0, 1_000_000)
            if prompt is None or per_million is None:
                return None
            self._price = (prompt, per_million / 1_000_000)
        prompt_cost, per_token = self._price
        return prompt_cost + per_token * self.completion_tokens


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for rate limits and transient provider errors before the first token."""

    attempts: int = 4
    """Total attempts, the first included."""
    initial_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int, hint: float | None) -> float:
        """Seconds to wait after ``attempt`` failed: the provider's hint if it is a sane
        number, else exponential backoff with jitter; never more than ``max_delay``."""
        if hint is not None and math.isfinite(hint):
            return min(max(hint, 0.0), self.max_delay)
        base = self.initial_delay * self.multiplier ** (attempt - 1)
        return min(base * (0.75 + random.random() / 2), self.max_delay)


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

    @classmethod
    def of(cls, finished: RunFinished, run: RunState) -> RunResult:
        return cls(
            run_id=finished.run_id,
            status=finished.status,
            text=finished.text,
            error=finished.error,
            turns=finished.turns,
            tool_calls=tuple(run.records),
            usage=run.usage,
        )


class LoopHost(Protocol):
    """What the loop needs from its session."""

    @property
    def model(self) -> Model: ...

    @property
    def conversation(self) -> Conversation: ...

    tools: dict[str, Tool]
    system: str | None
    max_turns: int
    model_params: dict[str, Any]
    max_response_chars: int
    max_calls_per_response: int
    images: ImageMode
    budget: Budget
    retry: RetryPolicy
    hooks: list[Hooks]

    @property
    def tool_runner(self) -> ToolRunner: ...

    def emit(self, event: Event) -> None: ...

    def take_steers(self) -> list[str]: ...

    async def ask_budget(self, request: BudgetReached) -> Decision: ...


@dataclass(frozen=True)
class RunOutcome:
    status: RunStatus
    error: str | None = None
    failure: BaseException | None = None
    """The exception that failed the run (reported as ``ErrorOccurred``)."""


async def run_loop(host: LoopHost, run: RunState, resumed: bool) -> RunOutcome:
    """Run model requests and tool calls until the model is done or a limit stops it."""
    try:
        await call_hooks(host.hooks, "on_run_start", run.ctx)
        unanswered = host.conversation.unanswered_calls() if resumed else ()
        pause = host.conversation.budget_pause if resumed else None
        if pause is not None:
            # The kernel stopped while the run waited at its budget: ask again.
            run.budget = Budget(pause.max_cost_usd, pause.max_tokens)
            run.budget_step = Budget(pause.step_cost_usd, pause.step_tokens)
            try:
                await _at_budget(host, run, pause.reason)
            except OverBudget as exc:
                host.tool_runner.skip(run, unanswered, str(exc))
                return RunOutcome("budget_exceeded", str(exc))
        if unanswered:
            # The response that proposed them came from where the log says (a replay of
            # an untrusted recording stays untrusted after a kernel death).
            run.replayed = host.conversation.provenance
            if not _too_many(host, run, unanswered):
                await host.tool_runner.run(run, unanswered)
            if (stopped := _refused(host, run)) is not None:
                return stopped
        for turn_number in range(1, host.max_turns + 1):
            run.ctx.turn = turn_number
            response = await _model_turn(host, run)
            if (over := (run.budget or host.budget).exceeded(run.usage)) is not None:
                try:
                    await _at_budget(host, run, over)
                except OverBudget as exc:
                    host.tool_runner.skip(run, response.tool_calls, str(exc))
                    return RunOutcome("budget_exceeded", str(exc))
            if not response.tool_calls:
                return RunOutcome("completed")
            if _too_many(host, run, response.tool_calls):
                continue  # the model reads why, and may try again with fewer calls
            await host.tool_runner.run(run, response.tool_calls)
            if (stopped := _refused(host, run)) is not None:
                return stopped
        return RunOutcome(
            "max_turns",
            f"The run stopped after {host.max_turns} model requests (max_turns). "
            "Send another message to let the agent continue, or raise max_turns.",
        )
    except OverBudget as exc:
        return RunOutcome("budget_exceeded", str(exc))
    except asyncio.CancelledError:
        return RunOutcome("cancelled", "Stopped by the user.")
    except RunInterrupted as exc:
        return RunOutcome("cancelled", f"Interrupted: {exc}")
    except ModelError as exc:
        return RunOutcome("failed", str(exc), exc)
    except Exception as exc:
        return RunOutcome("failed", redact(f"{type(exc).__name__}: {exc}"), exc)


def _too_many(host: LoopHost, run: RunState, calls: tuple[ToolCall, ...]) -> bool:
    """Refuse every call of a response that proposes more than ``max_calls_per_response``
    (a runaway response): none is asked about or runs, each gets an error result."""
    limit = host.max_calls_per_response
    if len(calls) <= limit:
        return False
    host.emit(
        ToolCallsRefused(
            run_id=run.ctx.run_id,
            tool_call_ids=tuple(call.id for call in calls),
            limit=limit,
            result=(
                f"Not run: the response proposed {len(calls):,} tool calls, more than the "
                f"{limit} one response may propose (max_calls_per_response), so none of them "
                f"ran. Propose at most {limit} calls at once, or fewer, larger steps."
            ),
        )
    )
    return True


def _refused(host: LoopHost, run: RunState) -> RunOutcome | None:
    """A replayed call that was not allowed to run stops the run (the recording goes on as
    if it had run: replaying further would be fiction) and the replay of the session:
    nothing after it goes live pretending to continue the recording."""
    if run.refused_replay is None:
        return None
    halt = getattr(host.model, "halt", None)
    if callable(halt):
        halt(run.refused_replay)
    return RunOutcome(
        "failed", f"The replay stopped at the call of {run.refused_replay}: {UNTRUSTED_REPLAY}."
    )


async def _model_turn(host: LoopHost, run: RunState) -> ModelResponded:
    """One model request: build, stream (with retries), report the response."""
    run_id = run.ctx.run_id
    for text in host.take_steers():
        host.emit(SteerAdded(run_id=run_id, text=text))
    system = [{"role": "system", "content": host.system}] if host.system else []
    conversation = host.conversation
    history = conversation.request_messages()
    images = conversation.latest_images()
    request = ModelRequest(
        messages=system + cast(list[dict[str, Any]], history),
        tools=[tool_spec(t) for t in host.tools.values()],
        params={**host.model_params, **run.model_params},
        images=ToolImages(images, host.images) if images else None,
    )
    request = await edit_request(host.hooks, run.ctx, request)
    acc, meter = await _stream(host, run, request)
    calls = acc.tool_calls()
    provenance = acc.provenance
    run.replayed = provenance
    run.last_text = acc.text
    response = ModelResponded(
        run_id=run_id,
        turn=run.ctx.turn,
        text=acc.text,
        reasoning=acc.reasoning,
        tool_calls=tuple(calls),
        finish_reason=acc.finish_reason,
        message=assistant_message(acc.text, calls),
        provenance=provenance,
    )
    host.emit(response)
    _report_usage(host, run, acc, meter)
    await call_hooks(host.hooks, "after_model_response", run.ctx, response)
    return response


async def _stream(
    host: LoopHost, run: RunState, request: ModelRequest
) -> tuple[ResponseAccumulator, _Meter]:
    """Stream one response (retrying failures before its first output), enforcing the
    budget and the size cap as it arrives.

    Text goes out in whole words: the piece after the last whitespace waits for the next
    chunk (or the end), so a secret is never split across two ``TextDelta`` events, where
    redacting each would miss it."""
    run_id = run.ctx.run_id
    emit = host.emit
    attempt = 0
    while True:
        attempt += 1
        acc = ResponseAccumulator()
        add_text = acc.add_text
        meter = _Meter(host, run, request)
        stream = host.model.stream(request)
        held = ""
        try:
            async for chunk in stream:
                if type(chunk) is str:
                    add_text(chunk)
                    text = held + chunk if held else chunk
                    cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t")) + 1
                    if cut == 0 and len(text) > MAX_HELD_CHARS:
                        cut = len(text)
                    if cut:
                        emit(TextDelta(run_id=run_id, text=text[:cut]))
                    held = text[cut:]
                    meter.chars += len(chunk)
                    if meter.chars >= meter.next_check and (over := meter.check()):
                        await _at_budget(host, run, over)
                    continue
                if isinstance(chunk, ReasoningChunk):
                    emit(ReasoningDelta(run_id=run_id, text=chunk.text))
                    meter.chars += len(chunk.text)
                elif isinstance(chunk, ToolCallFragment):
                    meter.chars += len(str(chunk.arguments or "")) + 1
                acc.add(chunk)
                if meter.chars >= meter.next_check and (over := meter.check()):
                    await _at_budget(host, run, over)
            held = _release(host, run_id, held)
            if acc.finish_reason is None:
                raise ProviderTransientError(
                    "the provider ended the stream without a finish reason "
                    "(the connection was probably cut)"
                )
            return acc, meter
        except (OverBudget, ResponseTooLargeError):
            held = _release(host, run_id, held)
            _keep_partial(host, run, acc, meter)
            raise
        except ModelError as exc:
            held = _release(host, run_id, held)
            if meter.chars:
                _keep_partial(host, run, acc, meter)
                raise StreamBrokenError(
                    f"The response broke off after part of it had arrived: {exc}. "
                    "The partial answer is kept; send another message to continue."
                ) from exc
            if not exc.retryable or attempt >= host.retry.attempts:
                raise
            delay = host.retry.delay(attempt, exc.retry_after)
            emit(Retrying(run_id=run_id, attempt=attempt, delay_s=delay, error=str(exc)))
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            held = _release(host, run_id, held)
            if meter.chars:
                _keep_partial(host, run, acc, meter)
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


async def _at_budget(host: LoopHost, run: RunState, over: str) -> None:
    """The run reached its budget: a run that can ask a person waits for "continue" (the
    budget grows by its first size, and the run goes on) or "stop"; any other stops here.
    Raises :class:`OverBudget` when the run stops."""
    budget = run.budget or host.budget
    if not run.ask_budget:
        raise OverBudget(over)
    step = run.budget_step or budget
    request = BudgetReached(
        run_id=run.ctx.run_id,
        decision_id=f"budget-{uuid.uuid4().hex[:12]}",
        reason=over,
        max_cost_usd=budget.max_cost_usd,
        max_tokens=budget.max_tokens,
        step_cost_usd=step.max_cost_usd,
        step_tokens=step.max_tokens,
    )
    decision = await host.ask_budget(request)
    now = budget.raised(step) if decision.approved else budget
    host.emit(
        BudgetDecided(
            run_id=run.ctx.run_id,
            decision_id=request.decision_id,
            go_on=decision.approved,
            max_cost_usd=now.max_cost_usd,
            max_tokens=now.max_tokens,
        )
    )
    if not decision.approved:
        raise OverBudget(f"Stopped at the budget ({budget.label()}) by you. {over.split(';')[0]}.")
    run.budget, run.budget_step = now, step


MAX_HELD_CHARS = 200
"""A word longer than this goes out without waiting for its end."""


def _release(host: LoopHost, run_id: str, held: str) -> str:
    """Emit the text held back for the end of its word; returns what is held now (none)."""
    if held:
        host.emit(TextDelta(run_id=run_id, text=held))
    return ""


def _keep_partial(host: LoopHost, run: RunState, acc: ResponseAccumulator, meter: _Meter) -> None:
    """Keep what was shown of a response that did not complete (stopped, broken, over a
    limit), and the usage it consumed (estimated when the provider did not report it)."""
    if acc.text:
        run.last_text = acc.text
        host.emit(
            ModelResponded(
                run_id=run.ctx.run_id,
                turn=run.ctx.turn,
                text=acc.text,
                reasoning=acc.reasoning,
                tool_calls=(),
                finish_reason=None,
                message={"role": "assistant", "content": acc.text},
            )
        )
    _report_usage(host, run, acc, meter)


def _report_usage(host: LoopHost, run: RunState, acc: ResponseAccumulator, meter: _Meter) -> None:
    estimated = acc.usage is None
    if acc.usage is not None:
        prompt, completion = acc.usage.prompt_tokens, acc.usage.completion_tokens
    else:
        prompt, completion = meter.prompt_tokens, meter.completion_tokens
    recorded = acc.provenance.cost_usd if acc.provenance is not None else None
    cost = recorded if recorded is not None else host.model.cost(prompt, completion)
    usage = Usage(
        run_id=run.ctx.run_id,
        model=host.model.name,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost_usd=cost or 0.0,
        cost_known=cost is not None,
        estimated=estimated,
    )
    run.usage = run.usage.add(usage)
    host.emit(usage)
