"""Run one agent on one task instance and judge it: the unit of every benchmark."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgepilot.agent.agents import StepAgent
from edgepilot.agent.loop import StepReport, run_agent
from edgepilot.agent.trajectory import TrajectoryWriter
from edgepilot.controllers.base import Device
from edgepilot.errors import TaskError
from edgepilot.policy.gate import Gate, allow_all
from edgepilot.sim.tasks.model import TaskInstance, apply_setup

AgentFactory = Callable[[TaskInstance], StepAgent]
GateFactory = Callable[[TaskInstance, StepAgent], Gate]
"""Makes one episode's gate from its task and its agent (:meth:`edgepilot.bench.gate.BenchGates.for_phone`)."""


@dataclass
class EpisodeResult:
    """How one episode went."""

    instance: str
    template: str
    split: str
    goal: str
    agent: str
    success: bool
    failed_checks: list[str]
    status: str
    reason: str
    answer: str | None
    steps: list[StepReport] = field(default_factory=list)
    seconds: float = 0.0
    trajectory: str | None = None
    attempts: int | None = None
    """Run on a worker pool (:mod:`edgepilot.bench.pool`): how many tries it took (more than 1: a worker died
    or failed under it); None when it ran in the driver's own process."""

    @property
    def error(self) -> str | None:
        return self.reason if self.status == "error" else None

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance, "template": self.template, "split": self.split, "goal": self.goal,
            "agent": self.agent, "success": self.success, "failed_checks": self.failed_checks,
            "status": self.status, "reason": self.reason, "answer": self.answer, "steps": len(self.steps),
            "seconds": round(self.seconds, 3), "trajectory": self.trajectory,
            **({"attempts": self.attempts} if self.attempts is not None else {}),
            **gate_record(self.steps),
            "step_stats": [step_stats(s) for s in self.steps],
        }

    @classmethod
    def not_played(cls, instance: TaskInstance, agent: str, reason: str, attempts: int) -> EpisodeResult:
        """An episode that no worker finished (each attempt's worker died or failed): a failure, ``error``."""
        return cls(instance=instance.id, template=instance.template.id, split=instance.template.split,
                   goal=instance.goal, agent=agent, success=False, failed_checks=[], status="error",
                   reason=reason, answer=None, attempts=attempts)

    def shipped(self) -> EpisodeResult:
        """This result without its screenshots: what a worker sends back (the trajectory keeps them)."""
        steps = [replace(s, obs=s.obs.model_copy(update={"screenshot_png": None})) for s in self.steps]
        return replace(self, steps=steps)


def gate_record(steps: list[StepReport]) -> dict[str, Any]:
    """What the policy gate did in an episode: the confirmations asked (step, rule, answer), and how many
    actions it refused without asking (blocked, or refused before)."""
    asked = [{"step": s.index + 1, "rule": s.gate.rule, "answer": s.gate.answer}
             for s in steps if s.gate is not None and s.gate.asked]
    refused = sum(1 for s in steps if s.gate is not None and not s.gate.allowed and not s.gate.asked)
    return {"confirmations": asked, "refused_unasked": refused}


def step_stats(step: StepReport) -> dict[str, Any]:
    """Where one step's time went: perception, each role's model time and tokens, actuation."""
    return {
        "ms": {k: round(v, 1) for k, v in step.ms.items()},
        "model_ms": round(step.model_ms, 1),
        "tokens_in": sum(c.tokens_in for c in step.calls),
        "tokens_out": sum(c.tokens_out for c in step.calls),
        "roles": {c.role: {"ms": round(c.ms, 1), "tokens_in": c.tokens_in, "tokens_out": c.tokens_out}
                  for c in step.calls},
        "outcome": step.outcome.kind if step.outcome else None,
        "valid": step.action is not None,
    }


def run_episode(device: Device, phone: Any, instance: TaskInstance, agent_factory: AgentFactory, *,
                max_steps: int | None = None, gate: Gate = allow_all, gate_for: GateFactory | None = None,
                save_to: Path | None = None,
                meta: dict[str, Any] | None = None,
                on_step: Callable[[StepReport], None] | None = None) -> EpisodeResult:
    """Set the task up on ``phone``, let the agent act on ``device`` until it stops, then check the phone.

    Errors of the agent or the device end the episode as a failure with the
    reason recorded; they never escape, so that a benchmark goes on. With
    ``save_to``, the episode's trajectory is written under that folder.
    Every action passes ``gate``, or the gate ``gate_for`` makes for this task and agent.

    Raises:
        TaskError: the task cannot be set up.
    """
    apply_setup(phone, instance)
    agent = agent_factory(instance)
    budget = max_steps or max(10, instance.template.steps * 2 + 5)
    writer = None
    if save_to is not None:
        info = device.info
        writer = TrajectoryWriter.new(instance.goal, {
            "agent": agent.name, "task": instance.id, "template": instance.template.id, "device": info.serial,
            "screen": [info.screen_width, info.screen_height], "max_steps": budget, **(meta or {})}, root=save_to)
    if gate_for is not None:
        gate = gate_for(instance, agent)
    run = run_agent(device, agent, instance.goal, max_steps=budget, gate=gate, writer=writer, on_step=on_step)
    try:
        success, failed = instance.evaluate(phone.snapshot(), run.answer)
    except TaskError as exc:
        success, failed = False, [f"check failed: {exc}"]
    if run.status == "error":
        success = False
    if writer is not None:
        writer.amend_result({"success": success, "failed_checks": failed})
    return EpisodeResult(instance=instance.id, template=instance.template.id, split=instance.template.split,
                         goal=instance.goal, agent=agent.name, success=success, failed_checks=failed,
                         status=run.status, reason=run.reason, answer=run.answer, steps=run.steps,
                         seconds=run.seconds, trajectory=str(writer.folder) if writer else None)
