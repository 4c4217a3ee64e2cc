"""Record and replay model responses, keyed by a fingerprint of the request.

Every live model response is recorded with the fingerprint of the request that produced it
(model, messages, tools and parameters, canonicalised: tool-call ids are numbered by order
of appearance, JSON arguments are re-serialised with sorted keys). A request whose
fingerprint was recorded is answered from the recording, instantly and offline.

Recordings travel inside the notebook (each ``%%agent`` cell's output carries the entries
its run used; ``nbagent pack`` puts a whole session's in the notebook's metadata): the
format inside the .ipynb is ``nbagent.notebook.recordings``.

A request that was never recorded goes live in ``auto`` mode and fails in ``replay`` mode
with an error that names the closest recording and the first message that differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ._images import replay_forms
from ._redact import redact
from .errors import ReplayError
from .events import Provenance, RecordedDecision
from .model import (
    FinishChunk,
    Model,
    ModelChunk,
    ModelRequest,
    ReasoningChunk,
    ResponseAccumulator,
    ToolCallFragment,
    UsageChunk,
    as_sent,
    sees_images,
)

SCHEMA = 1
"""The recording format this nbagent writes and reads."""

ReplayMode = Literal["auto", "replay", "live", "record"]
"""``auto``: recorded requests replay, others go live and are recorded; ``replay``: only
recordings, anything else is an error; ``live``: ignore recordings, record nothing;
``record``: ignore recordings and record afresh."""

REPLAY_MODES: tuple[ReplayMode, ...] = ("auto", "replay", "live", "record")


def _digest(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _canonical_arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or nested too deeply
            return raw
    return raw


def canonical_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with tool-call ids numbered by appearance and arguments parsed."""
    ids: dict[str, str] = {}

    def number(call_id: Any) -> str:
        return ids.setdefault(str(call_id), f"call_{len(ids)}")

    out = []
    for message in messages:
        item: dict[str, Any] = {"role": message.get("role"), "content": message.get("content")}
        if message.get("tool_calls"):
            item["tool_calls"] = [
                {
                    "id": number(c.get("id")),
                    "name": (c.get("function") or {}).get("name"),
                    "arguments": _canonical_arguments((c.get("function") or {}).get("arguments")),
                }
                for c in message["tool_calls"]
            ]
        if message.get("tool_call_id") is not None:
            item["tool_call_id"] = number(message["tool_call_id"])
        out.append(item)
    return out


def message_shape(message: dict[str, Any]) -> list[str]:
    """[role, hash of content, hash of tool calls] — enough to say what differs."""
    return [
        str(message.get("role")),
        _digest(message.get("content")),
        _digest([message.get("tool_calls"), message.get("tool_call_id")]),
    ]


@dataclass
class RequestKey:
    """The fingerprint of a request and the shape used to explain a mismatch."""

    fingerprint: str
    shape: list[list[str]]
    tools: str
    params: str

    @classmethod
    def of(cls, model: str, request: ModelRequest) -> RequestKey:
        messages = canonical_messages(request.messages)
        tools = _digest(sorted(request.tools, key=lambda t: json.dumps(t, sort_keys=True)))
        params = _digest(request.params)
        shape = [message_shape(m) for m in messages]
        return cls(_digest([model, messages, tools, params]), shape, tools, params)


@dataclass
class Recorded:
    """One recorded model response."""

    fingerprint: str
    model: str
    text: str
    reasoning: str = ""
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    """[{"id", "name", "arguments"}] with arguments as the model sent them."""
    finish_reason: str = "stop"
    usage: list[int] = field(default_factory=lambda: [0, 0])
    cost: float | None = None
    """What the response cost when it was recorded: a replay shows the same figure (no
    price-map lookup, so prices that changed since do not change the output)."""
    shape: list[list[str]] = field(default_factory=list)
    tools: str = ""
    params: str = ""
    decisions: list[dict[str, Any] | None] = field(default_factory=list)
    """How each tool call was decided in the run that recorded it, by position
    (``RecordedDecision`` fields; None: not decided, e.g. the run stopped first)."""
    schema: int = SCHEMA

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.decisions:
            del data["decisions"]  # entries without calls read as before
        return data

    def digest(self) -> str:
        """A hash of the whole entry: what trust is given to (never the fingerprint
        alone, which another entry with other content may share)."""
        return _digest(self.to_json())

    def recorded_decisions(self) -> tuple[RecordedDecision | None, ...]:
        """The decisions of the entry's calls, read leniently (a bad one is ignored)."""
        out: list[RecordedDecision | None] = []
        for item in self.decisions:
            try:
                out.append(RecordedDecision(**item) if isinstance(item, dict) else None)
            except TypeError:
                out.append(None)
        return tuple(out)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Recorded:
        if not isinstance(data, dict):
            raise ReplayError(f"{where}: a recording entry must be an object")
        schema = data.get("schema", SCHEMA)
        if not isinstance(schema, int) or schema > SCHEMA:
            raise ReplayError(
                f"{where}: the recording was made by a newer nbagent (schema {schema}; this "
                f"version reads {SCHEMA}). Upgrade nbagent, or re-record with --replay record."
            )
        try:
            return cls(**{k: data[k] for k in data if k in cls.__dataclass_fields__})
        except TypeError as exc:
            raise ReplayError(f"{where}: a recording entry is malformed ({exc})") from None

    def chunks(self) -> list[ModelChunk]:
        out: list[ModelChunk] = []
        if self.reasoning:
            out.append(ReasoningChunk(self.reasoning))
        if self.text:
            out.append(self.text)
        for index, call in enumerate(self.tool_calls):
            out.append(
                ToolCallFragment(
                    index=index, id=call["id"], name=call["name"], arguments=call["arguments"]
                )
            )
        out.append(FinishChunk(self.finish_reason or "stop"))
        out.append(UsageChunk(self.usage[0], self.usage[1]))
        return out


class RecordBook:
    """Every recording a kernel knows, by fingerprint, each with where it came from.

    Trust belongs to an entry (its content hash), not to a fingerprint: an entry recorded
    live here is trusted, one read from a notebook is trusted only when that notebook was
    (``add(..., trusted=True, source=...)``). A live recording replaces the entry it
    answers; an entry read from a file never replaces what is known.
    """

    def __init__(
        self,
        entries: Iterable[Recorded] = (),
        *,
        trusted: bool = False,
        source: str | None = None,
    ) -> None:
        self._entries: dict[str, Recorded] = {}
        self._trusted: set[str] = set()
        """Content hashes of the trusted entries."""
        self._sources: dict[str, str] = {}
        """Fingerprint → the notebook its entry was read from (none: recorded here)."""
        self._tool_results: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in entries:
            self.add(entry, trusted=trusted, source=source)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: Recorded, *, trusted: bool, source: str | None = None) -> None:
        """Keep ``entry``. One recorded live here (``trusted``, no ``source``) replaces the
        entry it answers; one read from a file (``source``, or untrusted) never replaces a
        trusted entry, and is trusted only if ``trusted`` (its notebook was)."""
        if trusted and source is None:
            self._entries[entry.fingerprint] = entry
            self._sources.pop(entry.fingerprint, None)
            self._trusted.add(entry.digest())
            return
        known = self._entries.get(entry.fingerprint)
        if known is not None and (self.trusted(known) or not trusted):
            return  # a trusted notebook's entry may take the place of an untrusted one
        self._entries[entry.fingerprint] = entry
        self._sources[entry.fingerprint] = source or "a file"
        if trusted:
            self._trusted.add(entry.digest())

    def entries(self) -> list[Recorded]:
        """Every recorded response, in the order they were added."""
        return list(self._entries.values())

    def get(self, fingerprint: str) -> Recorded | None:
        return self._entries.get(fingerprint)

    def source(self, fingerprint: str) -> str | None:
        """The notebook the entry for ``fingerprint`` was read from (None: made here)."""
        return self._sources.get(fingerprint)

    def add_tool_result(self, record: dict[str, Any]) -> None:
        """Keep a tool's recorded result: {"name", "arguments" (digest), "result", "status"}."""
        key = (str(record.get("name")), str(record.get("arguments")))
        self._tool_results.setdefault(key, record)

    def tool_result(self, name: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
        return self._tool_results.get((name, arguments_digest(arguments)))

    def trust_source(self, source: str, digests: set[str]) -> int:
        """Trust the entries read from the notebook ``source`` whose content hash is in
        ``digests`` (what its trust decision covered); returns how many. Entries of
        other notebooks and entries edited since are left as they are."""
        trusted = 0
        for fingerprint, entry in self._entries.items():
            if self._sources.get(fingerprint) == source and entry.digest() in digests:
                self._trusted.add(entry.digest())
                trusted += 1
        return trusted

    def trusted(self, entry: Recorded) -> bool:
        """Recorded live here, or read from a notebook that was trusted — this very
        content: an entry edited since, or another entry under the same fingerprint, is
        not."""
        return entry.digest() in self._trusted

    def explain(self, key: RequestKey, model: str, messages: list[dict[str, Any]]) -> str:
        """Why ``key`` has no recording: the closest one and what differs first."""
        if not self._entries:
            return "there are no recordings (run the notebook live once, or check its outputs)"
        best, best_score = None, -1
        for entry in self._entries.values():
            score = 0
            for mine, theirs in zip(key.shape, entry.shape, strict=False):
                if mine != theirs:
                    break
                score += 1
            if score > best_score:
                best, best_score = entry, score
        assert best is not None
        if best.model != model:
            return f"the closest recording used the model {best.model!r}, this request {model!r}"
        if best_score < min(len(key.shape), len(best.shape)):
            index = best_score
            role, content, calls = key.shape[index]
            fields = [
                name
                for name, mine, theirs in zip(
                    ("role", "content", "tool calls"),
                    (role, content, calls),
                    best.shape[index],
                    strict=False,
                )
                if mine != theirs
            ]
            preview = json.dumps(messages[index].get("content"), ensure_ascii=False)[:300]
            return (
                f"message {index + 1} ({role}) differs from the closest recording in its "
                f"{' and '.join(fields)}; it now reads: {preview}"
            )
        if len(key.shape) != len(best.shape):
            return (
                f"the closest recording had {len(best.shape)} messages, this request has "
                f"{len(key.shape)}"
            )
        if key.tools != best.tools:
            return "the tools offered to the model differ from the closest recording"
        return "the request parameters differ from the closest recording"


def arguments_digest(arguments: dict[str, Any]) -> str:
    """How a tool call's arguments are matched with a recorded result."""
    return _digest(arguments)


def tool_result_record(
    name: str, arguments: dict[str, Any], result: str, status: str
) -> dict[str, Any]:
    return {"name": name, "arguments": arguments_digest(arguments), "result": result,
            "status": status}  # fmt: skip


class RecordedTool:
    """A tool whose recorded result is served in replay instead of running it again: for
    tools that reach outside (web, paid APIs, the clock). Live, it runs as usual."""

    def __init__(self, inner: Any, book: RecordBook, mode: ReplayMode = "auto") -> None:
        self.inner = inner
        self.book = book
        self.mode: ReplayMode = mode
        self.name: str = inner.name
        self.description: str = inner.description
        self.parameters: dict[str, Any] = inner.parameters
        self.read_only: bool = inner.read_only
        self.policy = inner.policy
        self.max_result_chars = inner.max_result_chars

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.inner.validate(arguments)
        return result

    async def invoke(self, arguments: dict[str, Any]) -> Any:
        from .tools import ToolOutput

        if self.mode in ("auto", "replay"):
            recorded = self.book.tool_result(self.name, arguments)
            if recorded is not None:
                return ToolOutput(
                    text=str(recorded.get("result", "")), is_error=recorded.get("status") == "error"
                )
            if self.mode == "replay":
                raise ReplayError(
                    f"no recorded result of {self.name} for these arguments (--replay replay); "
                    "run with --replay auto to call it live"
                )
        return await self.inner.invoke(arguments)


class ReplayModel:
    """Wraps a model: answers recorded requests from the book, records live ones.

    Each response ends with its :class:`~nbagent.events.Provenance` (replayed or live, the
    fingerprint it is recorded under, whether it is trusted, its recorded cost), which the
    session keeps in ``ModelResponded``; the model itself keeps no per-response state.
    """

    def __init__(
        self,
        inner: Model,
        book: RecordBook,
        mode: ReplayMode = "auto",
        *,
        own_only: bool = False,
    ) -> None:
        self.inner = inner
        self.book = book
        self.mode: ReplayMode = mode
        self.own_only = own_only
        """Replay what was read from files and what this model recorded, never what another
        model sharing the book recorded live (the notebook: another session, the one
        before ``%agent new``, another ``--api-base``)."""
        self.recorded: set[str] = set()
        """Fingerprints this model recorded live."""
        self.halted: str | None = None
        """Set when a replayed call was refused: the session's replay stopped there."""

    def halt(self, tool: str) -> None:
        """The replay stopped at a refused call of ``tool``: from now on a request without
        a recording fails instead of going live (it would continue someone else's
        recording as if it were the user's). ``--replay live`` / ``record`` still go live."""
        self.halted = tool

    @property
    def name(self) -> str:
        return self.inner.name

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        return self.inner.cost(prompt_tokens, completion_tokens)

    def _someone_elses(self, fingerprint: str) -> bool:
        """Recorded live in this kernel, by another model sharing the book."""
        return self.book.source(fingerprint) is None and fingerprint not in self.recorded

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        # The wrapped model's own parameters change its answers too: they are part of
        # the fingerprint, as the request's are.
        inner_params = getattr(self.inner, "params", None)
        params = (
            {**inner_params, **request.params}
            if isinstance(inner_params, dict) and inner_params
            else request.params
        )

        def key_of(messages: list[dict[str, Any]]) -> RequestKey:
            return RequestKey.of(self.name, ModelRequest(messages, request.tools, params))

        if self.mode in ("auto", "replay"):
            # A request with tool images may have been recorded in any of its forms
            # (shown, noted, or from before notes existed): no need to ask litellm.
            keys = [key_of(form) for form in replay_forms(request.messages, request.images)]
            key, hit = keys[0], None
            for candidate in keys:
                found = self.book.get(candidate.fingerprint)
                if (
                    found is not None
                    and self.own_only
                    and self._someone_elses(candidate.fingerprint)
                ):
                    if self.mode == "replay":
                        raise ReplayError(
                            "the recording of this request was made live by another session "
                            "of this kernel, and is not reused (--replay replay); run the "
                            "cell with --replay auto to go live"
                        )
                    found = None
                if found is not None:
                    key, hit = candidate, found
                    break
            if hit is not None:
                for chunk in hit.chunks():
                    yield chunk
                yield Provenance(
                    source="replayed",
                    fingerprint=key.fingerprint,
                    trusted=self.book.trusted(hit),
                    cost_usd=hit.cost,
                    decisions=hit.recorded_decisions(),
                    source_notebook=self.book.source(key.fingerprint),
                )
                return
            if self.halted is not None:
                raise ReplayError(
                    f"not run: the replay of this session stopped at the call of "
                    f"{self.halted} (see the cell above), and this request has no "
                    "recording; going live would continue someone else's recording as if "
                    "it were yours (run the cell with --replay live to go live anyway)"
                )
            if self.mode == "replay":
                raise ReplayError(
                    "no recording matches this model request (--replay replay): "
                    + self.book.explain(key, self.name, canonical_messages(request.messages))
                    + ". Run the cell with --replay auto to go live and record it."
                )
        if request.images is not None:
            request = as_sent(request, await sees_images(self.inner))
        key = key_of(request.messages)
        acc = ResponseAccumulator()
        stream = self.inner.stream(request)
        try:
            async for chunk in stream:
                acc.add(chunk)
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        if acc.finish_reason is None or self.mode == "live":
            return  # a broken stream is not recorded; live mode records nothing
        usage = [acc.usage.prompt_tokens, acc.usage.completion_tokens] if acc.usage else [0, 0]
        entry = Recorded(
            fingerprint=key.fingerprint,
            model=self.name,
            # as the session's events say it (redacted), so a replay reads the same
            text=redact(acc.text),
            reasoning=redact(acc.reasoning),
            tool_calls=[
                {"id": c.id, "name": c.name, "arguments": redact(c.arguments_json)}
                for c in acc.tool_calls()
            ],
            finish_reason=acc.finish_reason,
            usage=usage,
            cost=self.inner.cost(usage[0], usage[1]) if acc.usage else None,
            shape=key.shape,
            tools=key.tools,
            params=key.params,
        )
        self.book.add(entry, trusted=True)
        self.recorded.add(key.fingerprint)
        yield Provenance(source="live", fingerprint=key.fingerprint, cost_usd=entry.cost)
