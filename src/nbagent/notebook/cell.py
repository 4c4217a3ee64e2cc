"""One ``%%agent`` cell's run: wire a session to a live view (or to static output).

``CellRun`` submits the prompt, forwards the run's events to the view (interactive) or
to a transcript (headless), answers approvals in headless runs by policy, waits with a
10 Hz tick so the notebook's interrupt lands within ~0.1 s, and at the end replaces the
live view by the static transcript, whose output metadata carries the run's recording.
The task that forwards the events belongs to the ``KernelRegistry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .._provider import LOADING_LISTENERS, LOADING_NOTE, litellm_ready
from ..approval import AllowRule, recorded_verdict
from ..errors import NbAgentError, RunFailed, RunStopped
from ..events import (
    ApprovalDecided,
    ApprovalRequested,
    ApprovalScope,
    ModelResponded,
    Provenance,
    RecordedDecision,
    RunFinished,
)
from ..model import LiteLLMModel
from ..render import MimeBundle, ToolInfo, Transcript
from ..replay import Recorded, ReplayModel, arguments_digest
from ..session import Budget, RunHandle, RunResult, Session, ToolCallRecord, UsageTotals
from . import recordings
from .frontend import RunMode
from .registry import KernelRegistry

if TYPE_CHECKING:
    from ..widget import Action, AgentView

TICK_S = 0.1
"""How often a waiting cell wakes up: an interrupt is seen within about this long."""

HEADLESS_DENIAL = (
    "nobody can click Approve in a headless run (nbclient, nbval, papermill); "
    "choose a policy with --approve all|readonly|none or %config NBAgent.approve"
)


def _parsed(arguments: Any) -> dict[str, Any]:
    import json

    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class AgentResult:
    """The value of a ``%%agent`` cell: final text, tool calls, usage; displays as the
    static transcript."""

    def __init__(
        self,
        run: RunResult,
        transcript: Transcript,
        session: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.run = run
        self.transcript = transcript
        self.session = session
        self.metadata = metadata or {}
        """Output metadata: the recording of the run's model responses (for replay)."""
        self._shown_live = False

    @property
    def text(self) -> str:
        return self.run.text

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def error(self) -> str | None:
        return self.run.error

    @property
    def tool_calls(self) -> tuple[ToolCallRecord, ...]:
        return self.run.tool_calls

    @property
    def usage(self) -> UsageTotals:
        return self.run.usage

    def _repr_mimebundle_(self, **_: Any) -> MimeBundle:
        return self.transcript.mimebundle()

    def _ipython_display_(self) -> None:
        # The live view already turned into this transcript: do not show it twice as
        # the cell's value (``_`` and ``Out`` still hold the result).
        if self._shown_live:
            self._shown_live = False
            return
        self.show()

    def show(self) -> None:
        """Display the static transcript, then the images its tools displayed as outputs
        of their own (the transcript refers to them)."""
        from IPython.display import display

        display(self.transcript.mimebundle(), raw=True, metadata=self.metadata)
        show_images(self.transcript)

    def __repr__(self) -> str:
        return (
            f"<AgentResult {self.status} session={self.session!r} "
            f"tool_calls={len(self.tool_calls)} tokens={self.usage.total_tokens}>"
        )


class CellRun:
    """Run one prompt in a session and show it in the cell."""

    scripted_person: ClassVar[Callable[[ApprovalRequested], Action] | None] = None
    """For recording scripts (``notebooks/record.py``): in a headless run, a stand-in for
    the person who clicks. Its decisions count as the person's: the transcript says
    "approved by you" and the recording keeps them, as a run with real clicks would."""

    def __init__(
        self,
        registry: KernelRegistry,
        name: str,
        session: Session,
        prompt: str,
        *,
        mode: RunMode,
        fail_on_error: bool = True,
        flush_interval: float = 0.04,
        text_sync_interval: float = 1.0,
        shown_prompt: str | None = None,
        tag: str | None = None,
        resume: bool = False,
        budget: Budget | None = None,
        model_params: dict[str, Any] | None = None,
        notebook_known: bool = False,
        trustable: Path | None = None,
    ) -> None:
        self.registry = registry
        self.name = name
        self.session = session
        self.prompt = prompt
        """What the model receives (``{name}`` summaries and context included)."""
        self.tag = tag
        self.resume = resume
        self.budget = budget
        """This turn's budget (``--max-cost``, ``--max-tokens``), else the session's."""
        self.model_params = model_params
        """This turn's model parameters (``-p``, ``--effort``), over the session's."""
        self.mode = mode
        self.fail_on_error = fail_on_error
        self.transcript = Transcript(
            prompt=prompt if shown_prompt is None else shown_prompt,
            model=session.model.name,
            session=name,
        )
        self.transcript.tools = {
            tool.name: ToolInfo(tool.description, tool.read_only) for tool in session.tools.values()
        }
        self.view: AgentView | None = None
        self.handle: Any = None
        self.handle_run: RunHandle | None = None
        self.metadata: dict[str, Any] = {}
        self.provenances: list[Provenance] = []
        """Where each response of the run came from (its recording goes in the output)."""
        self.decisions: list[dict[str, RecordedDecision]] = []
        """For each of those responses: how its calls were decided, by tool call id."""
        self.calls: list[tuple[str, ...]] = []
        """For each of those responses: its tool call ids, in order."""
        self.flush_interval = flush_interval
        self.text_sync_interval = text_sync_interval
        self.notebook_known = notebook_known
        """The kernel knows its notebook (JupyterLab, VS Code): its sessions folder is the
        notebook's, and the output names the log."""
        self.trustable = trustable
        """The notebook a card's "Trust this notebook" trusts (the one the kernel runs);
        None: the cards say how to trust instead."""
        self.transcript.can_trust = trustable is not None and mode != "headless"
        self.transcript.price = self.live_price

    # -- callbacks from the view ----------------------------------------------------------

    def decide(self, tool_call_id: str, action: Action, reason: str | None = None) -> None:
        """A click on a card: ``reason`` is what the person typed when rejecting (the model
        reads it)."""
        if action in ("continue", "stop"):  # a run paused at its budget
            self.session.decide_budget(tool_call_id, go_on=action == "continue")
        elif action == "approve":
            self.session.approve(tool_call_id)
        elif action == "always":
            self.session.approve(tool_call_id, scope="tool")
        elif action == "always_args":
            card = self.transcript.cards.get(tool_call_id)
            if card is None:
                raise RuntimeError(f"no tool call {tool_call_id!r} in this run")
            self.session.approve(
                tool_call_id, scope="rule", rule=AllowRule.exactly(card.name, card.arguments)
            )
        elif action == "trust":
            self.trust(tool_call_id)
        else:
            self.session.deny(tool_call_id, reason=reason)  # the model reads who and why

    def trust(self, tool_call_id: str) -> None:
        """Trust the notebook the waiting call was replayed from (as ``nbagent trust``
        does), with the kernel's recordings of it, then decide the call as its recording
        did. Only the page's button calls this; only this kernel's notebook is trusted."""
        model = self.session.model
        found = self._replayed_call(tool_call_id)
        if self.trustable is None or not isinstance(model, ReplayModel) or found is None:
            raise RuntimeError(
                f"tool call {tool_call_id!r} is not a replayed call of this kernel's notebook"
            )
        provenance, position = found
        if provenance.trusted or provenance.source_notebook != str(self.trustable):
            raise RuntimeError(f"tool call {tool_call_id!r} does not wait for trust")
        recordings.trust_notebook(model.book, self.trustable)
        card = self.transcript.cards.get(tool_call_id)
        recorded = provenance.decisions[position] if position < len(provenance.decisions) else None
        if (
            recorded is None
            or card is None
            or recorded.decided_by != "user"
            or (recorded.name, recorded.arguments) != (card.name, arguments_digest(card.arguments))
        ):
            self.session.approve(tool_call_id)  # nobody decided it when it was recorded
            return
        verdict = recorded_verdict(recorded)
        if verdict.verdict == "allow":
            self.session.approve(tool_call_id, scope=verdict.scope, rule=verdict.rule)
        else:
            scope: ApprovalScope = "tool" if verdict.scope == "tool" else "call"
            self.session.deny(tool_call_id, reason=verdict.reason, scope=scope)

    def _replayed_call(self, tool_call_id: str) -> tuple[Provenance, int] | None:
        """The replayed response that proposed the call, and the call's position in it."""
        for provenance, ids in zip(reversed(self.provenances), reversed(self.calls), strict=True):
            if tool_call_id in ids:
                if provenance.source != "replayed":
                    return None
                return provenance, ids.index(tool_call_id)
        return None

    def live_price(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """The model's price for the live estimate while an answer streams; None until
        litellm is ready (a replayed run never imports it for an estimate)."""
        model = self.session.model
        if isinstance(getattr(model, "inner", model), LiteLLMModel) and not litellm_ready():
            return None
        return model.cost(prompt_tokens, completion_tokens)

    def loading(self, waiting: bool) -> None:
        """The run's request waits for the import of litellm (or no longer does): the
        status line says so, never a silent wait."""
        self.transcript.waiting = LOADING_NOTE if waiting else None
        if self.view is not None and self.transcript.finished_at is None:
            self.view.status = self.transcript.status_json()

    def stop(self) -> None:
        transcript = self.transcript
        if transcript.finished_at is not None:
            return
        if transcript.started_at is None:
            raise RuntimeError("this run has not started yet: it waits for the session's run")
        if self.handle_run is not None:
            self.handle_run.cancel()
        else:
            self.session.cancel()

    # -- the run --------------------------------------------------------------------------

    async def start(self) -> AgentResult | None:
        """Start the run; wait for it unless the mode is ``background``."""
        from IPython.display import display

        if self.mode != "headless":
            from ..widget import AgentView  # anywidget loads with the first live view

            self.view = AgentView(
                self.transcript,
                on_decide=self.decide,
                on_stop=self.stop,
                flush_interval=self.flush_interval,
                text_sync_interval=self.text_sync_interval,
            )
            placeholder = self.transcript.placeholder_bundle()
            placeholder.update(self.view.view_bundle())
            self.handle = display(placeholder, raw=True, display_id=True)
        events = self.session.subscribe()
        LOADING_LISTENERS.add(self.loading)
        try:
            if self.resume:
                resumed = self.session.resume(tag=self.tag, ask_budget=self.mode != "headless")
                if resumed is None:
                    events.close()
                    LOADING_LISTENERS.discard(self.loading)
                    self._close_view()
                    print(f"session {self.name!r} has nothing to resume: it is up to date")
                    return None
                run = resumed
            else:
                run = self.session.submit(
                    self.prompt, tag=self.tag, budget=self.budget,
                    model_params=self.model_params, ask_budget=self.mode != "headless",
                )  # fmt: skip
        except BaseException:
            events.close()
            LOADING_LISTENERS.discard(self.loading)
            self._close_view()
            raise
        self.handle_run = run
        pump = self.registry.own(
            self._pump(events, run), f"nbagent-cell-{self.name}-{run.run_id[:8]}"
        )
        if self.mode == "background":
            return None
        try:
            while not pump.done():
                await asyncio.wait({pump}, timeout=TICK_S)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # The notebook's interrupt: ipykernel cancels the cell's task. Stop the run,
            # let it end cleanly (bounded), then fail the cell so "Run All" stops here.
            with contextlib.suppress(Exception):
                self.stop()
            with contextlib.suppress(BaseException):
                await asyncio.wait({pump}, timeout=5.0)
            raise RunStopped(
                "the run was interrupted; the conversation so far is kept "
                "(run another %%agent cell to go on)"
            ) from None
        result: AgentResult = pump.result()
        if self.mode == "headless" and result.status == "failed" and self.fail_on_error:
            result.show()
            raise RunFailed(result.error or "the run failed")
        return result

    async def _pump(self, events: Any, run: RunHandle) -> AgentResult:
        """Forward the run's events until it finishes, then show the static transcript."""
        feed = self.view.feed if self.view is not None else self.transcript.add
        headless = self.mode == "headless"
        run_id = run.run_id
        try:
            async for event in events:
                if getattr(event, "run_id", None) != run_id:
                    continue
                feed(event)
                if isinstance(event, ModelResponded) and event.provenance is not None:
                    self.provenances.append(event.provenance)
                    self.calls.append(tuple(call.id for call in event.tool_calls))
                    self.decisions.append({})
                elif isinstance(event, ApprovalDecided):
                    self._keep_decision(event)
                if headless and isinstance(event, ApprovalRequested):
                    self._deny_headless(event)
                elif isinstance(event, RunFinished):
                    break
        finally:
            events.close()
            LOADING_LISTENERS.discard(self.loading)
        outcome: RunResult | None = None
        try:
            outcome = await asyncio.wait_for(run.result(), 5.0)
        finally:
            self._finish(outcome)
        result = AgentResult(outcome, self.transcript, self.name, self.metadata)
        result._shown_live = self.handle is not None
        self.registry.last_runs[self.name] = outcome
        return result

    def _keep_decision(self, event: ApprovalDecided) -> None:
        """Keep a decision with the response that proposed the call (the latest one that
        has a call of that id), to record it with that response."""
        for ids, decided in zip(reversed(self.calls), reversed(self.decisions), strict=True):
            if event.tool_call_id in ids:
                # a headless run's denial of an `ask` is nobody's decision: at replay the
                # policy of the day decides again
                nobody = (
                    self.mode == "headless"
                    and not event.recorded
                    and CellRun.scripted_person is None
                )
                decided[event.tool_call_id] = RecordedDecision(
                    name=event.name,
                    arguments="",  # filled from the entry's call when recorded
                    approved=event.approved,
                    scope=event.scope,
                    decided_by="policy" if nobody else event.decided_by,
                    reason=event.reason,
                    rule=event.rule,
                )
                return

    def _with_decisions(self, index: int, entry: Recorded) -> Recorded:
        """``entry`` with the decisions this run made on its calls."""
        decided = self.decisions[index]
        ids = self.calls[index]
        out: list[dict[str, Any] | None] = []
        for position, call in enumerate(entry.tool_calls):
            found = decided.get(ids[position]) if position < len(ids) else None
            if found is None:
                out.append(None)
                continue
            arguments = _parsed(call.get("arguments"))
            out.append(dataclasses.asdict(
                dataclasses.replace(found, arguments=arguments_digest(arguments))
            ))  # fmt: skip
        if not any(out):
            out = []
        return entry if out == entry.decisions else dataclasses.replace(entry, decisions=out)

    def _deny_headless(self, event: ApprovalRequested) -> None:
        person = CellRun.scripted_person
        if person is not None:
            with contextlib.suppress(NbAgentError):
                self.decide(event.tool_call_id, person(event))
            return
        reason = f"{HEADLESS_DENIAL}; {event.note}" if event.note else HEADLESS_DENIAL
        with contextlib.suppress(NbAgentError):  # nobody decided: a rule of headless runs
            self.session.deny(event.tool_call_id, reason=reason, decided_by="policy")

    def _finish(self, outcome: RunResult | None = None) -> None:
        model = self.session.model
        recorder = self.registry.recorders.get(self.name)
        log = None
        if recorder is not None and self.notebook_known:
            # The output names its log, so the sessions follow the notebook; a kernel that
            # does not know its notebook keeps them in a folder that is not the notebook's.
            path = recorder.log.path
            log = recordings.log_reference(path.parent.name, path.name, self.session.id)
        used: list[Recorded] = []
        results: list[dict[str, Any]] = []
        if isinstance(model, ReplayModel):
            for index, provenance in enumerate(self.provenances):
                entry = model.book.get(provenance.fingerprint)
                if entry is None:
                    continue
                entry = self._with_decisions(index, entry)
                if provenance.source == "live":
                    model.book.add(entry, trusted=True)  # its decisions replay here too
                used.append(entry)
            if used:
                results = recordings.tool_results(outcome.tool_calls if outcome else ())
                for record in results:
                    model.book.add_tool_result(record)
                if recorder is not None and not recorder.log.closed:
                    # The log keeps them too, for `nbagent pack`.
                    with contextlib.suppress(NbAgentError):
                        recorder.log.recording([entry.to_json() for entry in used])
        if used or log is not None or self.provenances:
            inner = getattr(model, "inner", model)
            made = recordings.run_provenance(
                model.name, dict(getattr(inner, "params", None) or {}),
                [(p.source, p.fingerprint) for p in self.provenances],
            )  # fmt: skip
            self.metadata = recordings.output_metadata(self.name, used, results, log, made)
        if self.handle is not None:
            self.handle.update(self.transcript.mimebundle(), raw=True, metadata=self.metadata)
            show_images(self.transcript)
        if self.view is not None:
            # The view keeps the finished transcript for pages that missed the update.
            self.view.retire()
            self.registry.keep_view(self.view, self.tag)
            self.view = None

    def _close_view(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None


def show_images(transcript: Transcript) -> None:
    """The images of a finished run as ordinary outputs after its transcript: GitHub,
    nbviewer and other renderers that sanitise HTML drop ``data:`` images inside it."""
    from IPython.display import display

    for bundle in transcript.image_outputs():
        display(bundle, raw=True)
