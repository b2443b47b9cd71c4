"""The gate: the seam between the agent loop and the policy.

The loop calls a :data:`Gate` with each action and the screen it was decided on, just before acting; the
:class:`GateDecision` says whether the action goes ahead. :class:`~edgepilot.policy.engine.PolicyGate` is the
policy engine's gate; :func:`allow_all` lets everything through (tests of the loop, the oracle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgepilot.actions import Action
from edgepilot.perception.types import Observation


@dataclass(frozen=True)
class GateDecision:
    """The policy's answer for one action: go ahead, or not and why."""

    allowed: bool
    reason: str = ""
    verdict: str = "allow"  # allow | block | ask_user | terminate (the policy's verdict, before the user's answer)
    rule: str = ""
    asked: bool = False
    answer: str | None = None
    terminate: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"allowed": self.allowed, "reason": self.reason}
        if self.rule:
            out.update(verdict=self.verdict, rule=self.rule)
        if self.asked:
            out.update(asked=True, answer=self.answer)
        return out


Gate = Callable[[Action, Observation], GateDecision]


def allow_all(action: Action, obs: Observation) -> GateDecision:
    return GateDecision(True)
