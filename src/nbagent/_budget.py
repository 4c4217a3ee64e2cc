"""A run's budget: the limits on its tokens and cost."""

from __future__ import annotations

from dataclasses import dataclass

from .conversation import UsageTotals


@dataclass(frozen=True)
class Budget:
    """Limits for one run; the run stops with status ``budget_exceeded`` past either.

    Checked while the answer streams (its tokens and cost estimated from the characters
    that arrived, about four per token) and after each response (the provider's counts):
    a runaway answer stops at the budget, its partial text kept. The cost limit applies
    only to models whose price litellm knows (``Usage.cost_known``).
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
