"""Run one agent on one task instance and judge it: the unit of every benchmark."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from edgepilot.actions import Action, Finish, action_to_json
from edgepilot.controllers.base import Device
from edgepilot.errors import EdgepilotError
from edgepilot.perception.types import Observation
from edgepilot.sim.tasks.model import TaskInstance, apply_setup


class TaskAgent(Protocol):
    """Anything that picks the next action for a screen (the oracle, the model agent...)."""

    name: str

    def next_action(self, obs: Observation) -> Action: ...


AgentFactory = Callable[[TaskInstance], TaskAgent]


@dataclass
class StepRecord:
    """One step of an episode, with where its time went."""

    index: int
    action: str
    ok: bool
    message: str
    perceive_ms: float
    decide_ms: float
    act_ms: float


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
    finished: bool
    answer: str | None
    steps: list[StepRecord] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance, "template": self.template, "split": self.split, "goal": self.goal,
            "agent": self.agent, "success": self.success, "failed_checks": self.failed_checks,
            "finished": self.finished, "answer": self.answer, "steps": len(self.steps),
            "seconds": round(self.seconds, 3), "error": self.error,
            "step_ms": [
                {"perceive": round(s.perceive_ms, 2), "decide": round(s.decide_ms, 2), "act": round(s.act_ms, 2)}
                for s in self.steps
            ],
        }


def run_episode(device: Device, phone: Any, instance: TaskInstance, agent_factory: AgentFactory,
                *, max_steps: int | None = None, on_step: Callable[[StepRecord], None] | None = None) -> EpisodeResult:
    """Set the task up on ``phone``, let the agent act on ``device`` until it finishes, then check.

    Errors of the agent or the device end the episode as a failure with the
    error recorded; they never escape, so that a benchmark goes on.
    """
    apply_setup(phone, instance)
    agent = agent_factory(instance)
    budget = max_steps or max(10, instance.template.steps * 2 + 5)
    result = EpisodeResult(instance=instance.id, template=instance.template.id, split=instance.template.split,
                           goal=instance.goal, agent=agent.name, success=False, failed_checks=[],
                           finished=False, answer=None)
    start = time.perf_counter()
    try:
        for index in range(budget):
            t0 = time.perf_counter()
            obs = device.observe()
            t1 = time.perf_counter()
            action = agent.next_action(obs)
            t2 = time.perf_counter()
            outcome = device.act(action)
            t3 = time.perf_counter()
            record = StepRecord(index, action_to_json(action), outcome.ok, outcome.message,
                                (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000)
            result.steps.append(record)
            if on_step is not None:
                on_step(record)
            if isinstance(action, Finish):
                result.finished = True
                result.answer = action.answer
                break
    except EdgepilotError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - start
    result.success, result.failed_checks = instance.evaluate(phone.snapshot(), result.answer)
    if result.error:
        result.success = False
    return result
