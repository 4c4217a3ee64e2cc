"""A run's budget: the limits on its tokens and cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from .conversation import UsageTotals

CHARS_PER_TOKEN = 4
"""The estimate of streamed text per token, where the provider has not counted yet."""


@dataclass(frozen=True)
class Budget:
    """Limits for one run; the run stops with status ``budget_exceeded`` past either.

    Checked while the answer streams (its tokens and cost estimated from the characters
    that arrived, about four per token) and after each response (the provider's counts):
    a runaway answer stops at the budget, its partial text kept. The cost limit applies
    only to models whose price litellm knows (``Usage.cost_known``). A run that can ask a
    person (``Session.submit(..., ask_budget=True)``: a live view) pauses there instead,
    and "continue" raises the budget by its first size (:meth:`raised`).
    """

    max_cost_usd: float | None = None
    max_tokens: int | None = None

    def exceeded(self, usage: UsageTotals) -> str | None:
        """Why ``usage`` is over this budget, or None."""
        about = "about " if usage.estimated else ""
        if self.max_tokens is not None and usage.total_tokens > self.max_tokens:
            return (
                f"The run used {about}{usage.total_tokens:,} tokens, over its budget of "
                f"{self.max_tokens:,}; it was stopped. Raise the budget to go on."
            )
        if self.max_cost_usd is not None and usage.cost_usd > self.max_cost_usd:
            return (
                f"The run cost {about}${usage.cost_usd:.4f}, over its budget of "
                f"${self.max_cost_usd:.4f}; it was stopped. Raise the budget to go on."
            )
        return None

    @property
    def limited(self) -> bool:
        return self.max_cost_usd is not None or self.max_tokens is not None

    def label(self) -> str:
        """``$0.50``, ``2,000 tokens`` or ``$0.50 / 2,000 tokens``."""
        parts = []
        if self.max_cost_usd is not None:
            parts.append(f"${self.max_cost_usd:.2f}" if self.max_cost_usd >= 0.01 else
                         f"${self.max_cost_usd:.4f}")  # fmt: skip
        if self.max_tokens is not None:
            parts.append(f"{self.max_tokens:,} tokens")
        return " / ".join(parts)

    def raised(self, step: Budget) -> Budget:
        """This budget with each limit raised by ``step``'s."""
        return Budget(
            max_cost_usd=_plus(self.max_cost_usd, step.max_cost_usd),
            max_tokens=_plus(self.max_tokens, step.max_tokens),
        )


_Number = TypeVar("_Number", int, float)


def _plus(limit: _Number | None, step: _Number | None) -> _Number | None:
    if limit is None or step is None:
        return limit
    return limit + step
