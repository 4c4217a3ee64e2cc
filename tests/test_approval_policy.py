"""The order in which approval policy decides a call."""

from __future__ import annotations

import pytest

from nbagent import AllowRule, ApprovalPolicy, tool


@tool
def write(path: str) -> str:
    """Write."""
    return path


@tool(read_only=True)
def read(path: str) -> str:
    """Read."""
    return path


@pytest.mark.parametrize(
    ("mode", "writes", "reads"),
    [("ask", "ask", "allow"), ("all", "allow", "allow"), ("none", "deny", "deny"),
     ("readonly", "ask", "allow")],
)  # fmt: skip
def test_modes(mode: str, writes: str, reads: str) -> None:
    policy = ApprovalPolicy(mode=mode)  # type: ignore[arg-type]
    assert policy.decide(write, {"path": "a"}).verdict == writes
    assert policy.decide(read, {"path": "a"}).verdict == reads


def test_grants_rules_and_blocks() -> None:
    policy = ApprovalPolicy()
    policy.add_rule(AllowRule("write", {"path": "out/*.csv"}))
    assert policy.decide(write, {"path": "out/a.csv"}).verdict == "allow"
    assert policy.decide(write, {"path": "src/a.py"}).verdict == "ask"
    policy.block_tool("write")
    assert policy.decide(write, {"path": "out/a.csv"}).verdict == "deny"
    policy.grant_tool("write")
    assert policy.decide(write, {"path": "anything"}).verdict == "allow"


def test_rules_match_non_string_values_as_json() -> None:
    rule = AllowRule("w*", {"limit": "[0-9]"})
    assert rule.matches("write", {"limit": 5}) and not rule.matches("write", {"limit": 50})
    assert not rule.matches("write", {})


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="ask, all, none, readonly"):
        ApprovalPolicy(mode="sometimes")  # type: ignore[arg-type]
