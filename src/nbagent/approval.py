"""Who decides whether a tool call runs: session modes, tool policies, grants and rules.

A call is decided in this order:

1. the tool's own policy ``deny`` → denied; ``allow`` → allowed;
2. for a call replayed from a trusted recording, the decision the person who recorded it
   made (approved, always-allowed, rejected with its reason) → that decision again;
3. a grant made in this session ("Always allow" for the tool, or a matching rule) →
   allowed; an "always deny" for the tool → denied;
4. the session's mode: ``all`` allows everything, ``none`` denies everything, ``ask`` and
   ``readonly`` allow tools declared read-only (``@tool(read_only=True)``, or an MCP
   server the user marked ``readOnly``; a server's own hints never count) and ask for the
   rest.

A call replayed from a recording nobody trusted (made elsewhere) never runs a side effect
by policy: unless denied, a call that is not read-only asks a person.

Only a person (through ``Session.approve`` / ``Session.deny``) or one of these policies
can decide; nothing the model sends can approve a call.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .events import ApprovalScope, RecordedDecision
from .tools import Tool

ApprovalMode = Literal["ask", "all", "none", "readonly"]
"""Session-wide approval modes."""

APPROVAL_MODES: tuple[ApprovalMode, ...] = ("ask", "all", "none", "readonly")

Verdict = Literal["allow", "deny", "ask"]


@dataclass(frozen=True, slots=True)
class AllowRule:
    """Allow calls of ``tool`` whose arguments match every pattern in ``arguments``.

    Patterns are shell-style globs (``*``, ``?``, ``[abc]``) matched against the argument's
    value (strings as they are, other values as compact JSON). ``tool`` may be a glob too.
    Example: ``AllowRule("read_file", {"path": "data/*"})``.
    """

    tool: str
    arguments: dict[str, str] = field(default_factory=dict)

    @classmethod
    def exactly(cls, name: str, arguments: dict[str, Any]) -> AllowRule:
        """The rule that allows ``name`` with exactly these arguments, and nothing else
        (every glob character in the values is escaped)."""
        return cls(
            _escape_glob(name),
            {key: _escape_glob(_as_text(value)) for key, value in arguments.items()},
        )

    def matches(self, name: str, arguments: dict[str, Any]) -> bool:
        if not fnmatch.fnmatchcase(name, self.tool):
            return False
        for key, pattern in self.arguments.items():
            if key not in arguments:
                return False
            if not fnmatch.fnmatchcase(_as_text(arguments[key]), pattern):
                return False
        return True


def _as_text(value: Any) -> str:
    """An argument as rules match it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _escape_glob(text: str) -> str:
    """``text`` as a glob that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


UNTRUSTED_REPLAY = (
    "it was replayed from a recording made elsewhere and is not read-only, so it runs only "
    "if you trust the notebook: `nbagent trust NOTEBOOK.ipynb` (then restart the kernel), "
    "or NBAGENT_TRUST=1 for one run"
)


@dataclass(frozen=True, slots=True)
class ReplayedCall:
    """What the policy knows about a call that comes from a recorded response."""

    trusted: bool
    """The recording is trusted (made here, or its notebook was trusted)."""
    recorded: RecordedDecision | None = None
    """How the call was decided when it was recorded, if that was kept."""


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    verdict: Verdict
    reason: str | None
    untrusted_replay: bool = False
    """The call comes from a recording without trust: a person must decide, and if the
    call does not run the replay cannot go on."""
    decided_by: Literal["user", "policy"] = "policy"
    """``user``: the recorded decision of the person who recorded the call."""
    scope: ApprovalScope = "call"
    rule: AllowRule | None = None


@dataclass
class ApprovalPolicy:
    """The session's approval state: its mode plus the grants made while it runs."""

    mode: ApprovalMode = "ask"
    allowed_tools: set[str] = field(default_factory=set)
    denied_tools: set[str] = field(default_factory=set)
    rules: list[AllowRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in APPROVAL_MODES:
            raise ValueError(
                f"approval mode must be one of {', '.join(APPROVAL_MODES)}, not {self.mode!r}"
            )

    def decide(
        self, tool: Tool, arguments: dict[str, Any], *, replayed: ReplayedCall | None = None
    ) -> PolicyDecision:
        """Decide a call by policy, or say that a person must be asked.

        ``replayed``: the call comes from a recorded response. Trusted, the decision
        recorded with it (by a person) decides again; untrusted (made elsewhere, nobody
        trusted it), a call that is not read-only needs a person unless denied anyway
        (someone else's recording must not run side effects because it replays).
        """
        if tool.policy != "deny" and replayed is not None and replayed.trusted:
            recorded = replayed.recorded
            if recorded is not None and recorded.decided_by == "user":
                return recorded_verdict(recorded)
        verdict = self._decide(tool, arguments)
        untrusted = replayed is not None and not replayed.trusted
        if untrusted and not tool.read_only and verdict.verdict != "deny":
            return PolicyDecision("ask", UNTRUSTED_REPLAY, untrusted_replay=True)
        return verdict

    def _decide(self, tool: Tool, arguments: dict[str, Any]) -> PolicyDecision:
        if tool.policy == "deny":
            return PolicyDecision("deny", f"the tool {tool.name} is set to deny")
        if tool.policy == "allow":
            return PolicyDecision("allow", f"the tool {tool.name} is set to allow")
        if tool.name in self.denied_tools:
            return PolicyDecision("deny", f"{tool.name} was denied for this session")
        if tool.name in self.allowed_tools:
            return PolicyDecision("allow", f"{tool.name} was always-allowed in this session")
        for rule in self.rules:
            if rule.matches(tool.name, arguments):
                return PolicyDecision("allow", f"matches the rule {rule}")
        if self.mode == "all":
            return PolicyDecision("allow", "approval mode 'all'")
        if self.mode == "none":
            return PolicyDecision("deny", "approval mode 'none' denies every tool call")
        if self.mode in ("ask", "readonly") and tool.read_only:
            return PolicyDecision("allow", f"{tool.name} is read-only")
        return PolicyDecision("ask", "needs approval")

    def grant_tool(self, name: str) -> None:
        self.denied_tools.discard(name)
        self.allowed_tools.add(name)

    def block_tool(self, name: str) -> None:
        self.allowed_tools.discard(name)
        self.denied_tools.add(name)

    def add_rule(self, rule: AllowRule) -> None:
        if rule not in self.rules:
            self.rules.append(rule)


def recorded_verdict(recorded: RecordedDecision) -> PolicyDecision:
    """The decision a person recorded with a call, to decide that call again."""
    rule = _rule(recorded.rule) if recorded.scope == "rule" else None
    return PolicyDecision(
        "allow" if recorded.approved else "deny",
        recorded.reason,
        decided_by="user",
        scope=recorded.scope if recorded.scope != "rule" or rule else "call",
        rule=rule,
    )


def _rule(data: dict[str, Any] | None) -> AllowRule | None:
    """The allow rule a recorded ``rule`` decision carried (None when unreadable)."""
    if not isinstance(data, dict) or not isinstance(data.get("tool"), str):
        return None
    arguments = data.get("arguments") or {}
    if not isinstance(arguments, dict):
        return None
    return AllowRule(data["tool"], {str(k): str(v) for k, v in arguments.items()})
