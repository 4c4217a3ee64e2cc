"""A run's pause at its budget, as the transcript keeps it and the live view shows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._budget import Budget
from ..events import BudgetDecided, BudgetReached
from .parts import BudgetParts


@dataclass
class BudgetCard:
    """One pause of a run at its budget and how a person decided it."""

    id: str
    limit: str
    """The budget that was reached (``$0.50``)."""
    step: str
    """What "continue" adds (``$0.50``)."""
    decision: str | None = None

    @classmethod
    def of(cls, event: BudgetReached) -> BudgetCard:
        limit = Budget(event.max_cost_usd, event.max_tokens).label()
        step = Budget(event.step_cost_usd, event.step_tokens).label()
        return cls(id=event.decision_id, limit=limit, step=step)

    def decide(self, event: BudgetDecided, who: str) -> None:
        self.decision = (
            f"continued with another {self.step} by {who}" if event.go_on else f"stopped by {who}"
        )

    def parts(self) -> BudgetParts:
        buttons = (
            ()
            if self.decision is not None
            else ((f"Continue with another {self.step}", "continue"), ("Stop", "stop"))
        )
        return BudgetParts(
            id=self.id, label=f"budget reached ({self.limit})", decision=self.decision,
            buttons=buttons,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return self.parts().to_json()
