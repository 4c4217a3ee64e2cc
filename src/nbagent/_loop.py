"""The agent loop of one run: model request, tool calls, again, until the model is done.

The loop only emits events; the session folds each one into its conversation (see
``conversation.py``), so nothing here touches the message list. How the run ends (the
``RunFinished``, the caller's future) is the session's job, in a ``finally``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Protocol, cast

from ._redact import redact
from ._tool_calls import RunState, ToolCallRecord, ToolRunner
from .approval import UNTRUSTED_REPLAY
from .conversation import Conversation, UsageTotals
from .errors import ModelError, ProviderTransientError, RunInterrupted, StreamBrokenError
from .events import (
    Event,
    ModelResponded,
    ReasoningDelta,
    Retrying,
    RunFinished,
    RunStatus,
    SteerAdded,
    TextDelta,
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


@dataclass(frozen=True)
class Budget:
    """Limits for one run; the run stops with status ``budget_exceeded`` past either.

    The cost limit applies only to models whose price litellm knows (``Usage.cost_known``).
    """

    max_cost_usd: float | None = None
    max_tokens: int | None = None

    def exceeded(self, usage: UsageTotals) -> str | None:
        """Why ``usage`` is over this budget, or None."""
        if self.max_tokens is not None and usage.total_tokens > self.max_tokens:
            return (
                f"The run used {usage.total_tokens:,} tokens, over its budget of "
                f"{self.max_tokens:,}; it was stopped. Raise the budget to go on."
            )
        if self.max_cost_usd is not None and usage.cost_usd > self.max_cost_usd:
            return (
                f"The run cost ${usage.cost_usd:.4f}, over its budget of "
                f"${self.max_cost_usd:.4f}; it was stopped. Raise the budget to go on."
            )
        return None


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
    budget: Budget
    retry: RetryPolicy
    hooks: list[Hooks]

    @property
    def tool_runner(self) -> ToolRunner: ...

    def emit(self, event: Event) -> None: ...

    def take_steers(self) -> list[str]: ...


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
        if unanswered:
            # The response that proposed them came from where the log says (a replay of
            # an untrusted recording stays untrusted after a kernel death).
            run.replayed = host.conversation.provenance
            await host.tool_runner.run(run, unanswered)
            if (stopped := _refused(host, run)) is not None:
                return stopped
        for turn_number in range(1, host.max_turns + 1):
            run.ctx.turn = turn_number
            response = await _model_turn(host, run)
            if (over := host.budget.exceeded(run.usage)) is not None:
                host.tool_runner.skip(run, response.tool_calls, over)
                return RunOutcome("budget_exceeded", over)
            if not response.tool_calls:
                return RunOutcome("completed")
            await host.tool_runner.run(run, response.tool_calls)
            if (stopped := _refused(host, run)) is not None:
                return stopped
        return RunOutcome(
            "max_turns",
            f"The run stopped after {host.max_turns} model requests (max_turns). "
            "Send another message to let the agent continue, or raise max_turns.",
        )
    except asyncio.CancelledError:
        return RunOutcome("cancelled", "Stopped by the user.")
    except RunInterrupted as exc:
        return RunOutcome("cancelled", f"Interrupted: {exc}")
    except ModelError as exc:
        return RunOutcome("failed", str(exc), exc)
    except Exception as exc:
        return RunOutcome("failed", redact(f"{type(exc).__name__}: {exc}"), exc)


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
    history = cast(list[dict[str, Any]], host.conversation.request_messages())
    request = ModelRequest(
        messages=system + history, tools=[tool_spec(t) for t in host.tools.values()]
    )
    request = await edit_request(host.hooks, run.ctx, request)
    acc = await _stream(host, run, request)
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
    _report_usage(host, run, acc)
    await call_hooks(host.hooks, "after_model_response", run.ctx, response)
    return response


async def _stream(host: LoopHost, run: RunState, request: ModelRequest) -> ResponseAccumulator:
    run_id = run.ctx.run_id
    emit = host.emit
    attempt = 0
    while True:
        attempt += 1
        acc = ResponseAccumulator()
        add_text = acc.add_text
        started = False
        stream = host.model.stream(request)
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
                _keep_partial(host, run, acc)
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
            if started:
                _keep_partial(host, run, acc)
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


def _keep_partial(host: LoopHost, run: RunState, acc: ResponseAccumulator) -> None:
    """Keep what was shown of a broken response (a response with no finish reason)."""
    if not acc.text:
        return
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


def _report_usage(host: LoopHost, run: RunState, acc: ResponseAccumulator) -> None:
    prompt = acc.usage.prompt_tokens if acc.usage else 0
    completion = acc.usage.completion_tokens if acc.usage else 0
    recorded = acc.provenance.cost_usd if acc.provenance is not None else None
    cost = (
        recorded
        if recorded is not None
        else (host.model.cost(prompt, completion) if acc.usage else None)
    )
    usage = Usage(
        run_id=run.ctx.run_id,
        model=host.model.name,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost_usd=cost or 0.0,
        cost_known=cost is not None,
    )
    run.usage = run.usage.add(usage)
    host.emit(usage)
