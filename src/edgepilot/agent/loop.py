"""The agent loop: observe → plan → decide → (policy gate) → act → observe → reflect.

One function, :func:`run_agent`, drives any :class:`StepAgent` on any
:class:`Device` within a step budget. It writes the trajectory step by step,
stops an agent going round in circles (the same action on the same screen a
third time → re-plan, and the agent may ban that action there; again → stop
with the reason), and passes every action through ``gate`` just before
acting: the seam where the policy engine sits. Device and model failures end
the run with status ``error`` and a reason; they never lose the steps already
written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgepilot.actions import Action, Finish, action_to_json
from edgepilot.agent.agents import Decision, Reflection, StepAgent
from edgepilot.agent.records import CallRecord, GateRecord, OutcomeRecord, ResultRecord, RunRecord, StepRecord
from edgepilot.agent.roles import RoleCall
from edgepilot.agent.trajectory import TrajectoryWriter
from edgepilot.controllers.base import ActResult, Device
from edgepilot.errors import ActionError, DeviceError, EdgepilotError, ModelError, PerceptionError
from edgepilot.perception.describe import describe_action
from edgepilot.perception.signature import screen_key
from edgepilot.perception.types import Observation
from edgepilot.policy.gate import Gate, GateDecision, allow_all

STUCK_REPEATS = 3


@dataclass
class StepReport:
    """One step: what was seen, decided, done, and where the time went."""

    index: int
    obs: Observation
    decision: Decision
    gate: GateDecision | None = None
    result: ActResult | None = None
    outcome: Reflection | None = None
    ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def action(self) -> Action | None:
        return self.decision.action

    @property
    def calls(self) -> list[RoleCall]:
        return self.decision.calls + (self.outcome.calls if self.outcome else [])

    @property
    def model_ms(self) -> float:
        return sum(c.ms for c in self.calls)

    def role_ms(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self.calls:
            out[c.role] = out.get(c.role, 0.0) + c.ms
        return out

    @property
    def without(self) -> dict[str, str]:
        """The roles done without a model call this step, and why: the agent's (planner, decider), and the
        reflector where the screens decided (an outcome ``by`` ``screen``)."""
        out = dict(self.decision.without)
        if self.outcome is not None and self.outcome.by == "screen":
            out["reflector"] = self.outcome.note
        return out

    def summary(self) -> str:
        return describe_action(self.action, self.obs) if self.action is not None else "(no valid action)"

    def to_record(self) -> StepRecord:
        """The step as written to the trajectory (``steps.jsonl``)."""
        action = self.action
        bounds = None
        target = getattr(action, "target", None)
        if isinstance(target, int) and 0 <= target < len(self.obs.elements):
            b = self.obs.elements[target].bounds
            bounds = [b.left, b.top, b.right, b.bottom]
        return StepRecord(
            index=self.index, app=self.obs.package, screen=self.obs.to_text(), plan=self.decision.plan,
            thought=self.decision.thought, action=action.model_dump(mode="json") if action is not None else None,
            target_bounds=bounds, gate=GateRecord(**self.gate.to_json()) if self.gate else None,
            result=ResultRecord(ok=self.result.ok, message=self.result.message) if self.result else None,
            outcome=(OutcomeRecord(kind=self.outcome.kind, note=self.outcome.note, by=self.outcome.by)
                     if self.outcome else None),
            calls=[CallRecord(**c.to_json()) for c in self.calls], without=self.without,
            ms={k: round(v, 1) for k, v in self.ms.items()}, error=self.error)


EXIT_STATUS: dict[str, int] = {"finished": 0, "error": 1, "gave_up": 3, "stuck": 4, "budget": 5, "stopped": 6,
                               "unverified": 7, "impossible": 8, "needs_input": 9, "interrupted": 130}
"""The process exit status of a command that ran the agent, by how the run ended (docs/trajectories.md).

0 only for ``finished``: the agent said the task is done and the result was checked against the goal's values
along the procedure it followed (:mod:`edgepilot.agent.verify`; a scripted agent is trusted); a finish that
fails the check, or that no procedure could check (none fitted the goal, or an app memory's route), is
``unverified`` (7); the agent giving up, going round in circles, spending its step budget, a stop (the policy
refused, or a stop from outside), a goal that cannot be done here (``impossible``, 8) and a goal that leaves out
a value the procedure needs (``needs_input``, 9) each have their own code, so a script can tell them apart; 2
stays click's wrong usage."""


def exit_status(status: str) -> int:
    """:data:`EXIT_STATUS` of a run's status (1 for one it does not know)."""
    return EXIT_STATUS.get(status, 1)


@dataclass
class RunResult:
    """How a run ended."""

    goal: str
    agent: str
    status: str = "budget"
    reason: str = ""
    answer: str | None = None
    steps: list[StepReport] = field(default_factory=list)
    seconds: float = 0.0

    def to_record(self) -> RunRecord:
        """How the run ended, as written to the trajectory (``result.json``)."""
        return RunRecord(status=self.status, reason=self.reason, answer=self.answer, steps=len(self.steps),
                         seconds=round(self.seconds, 3))


class RunControl:
    """Pause, resume and stop a run from another thread (the TUI's buttons, the daemon's safety-stop hotkey).

    A stop takes effect at once for everything that matters: no action is
    carried out after :meth:`stop` returns (the loop checks just before
    acting), a model call in progress is cut short where the backend can
    (llama.cpp checks :meth:`stopped` between tokens), and the run ends with
    status ``stopped``. A paused run waits before its next step.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._lock = threading.Lock()
        self.reason = ""
        self.stopped_at: float | None = None

    def stop(self, reason: str = "stopped by the user") -> None:
        with self._lock:
            if not self._stop.is_set():
                self.reason, self.stopped_at = reason, time.monotonic()
                self._stop.set()
        self._running.set()  # a paused run wakes up to stop

    def stopped(self) -> bool:
        return self._stop.is_set()

    def pause(self) -> None:
        if not self._stop.is_set():
            self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self, timeout: float | None = None) -> bool:
        """Block while paused; True when the run may go on, False when it was stopped."""
        self._running.wait(timeout)
        return not self._stop.is_set()


class _Stopped(Exception):
    """Raised inside the loop when its RunControl says stop."""


class _LoopDetector:
    """An agent going round in circles: the same action on the same screen for the ``STUCK_REPEATS``-th time.

    That covers a failing action repeated in a row (the screen stays the
    same) and two screens visited back and forth. Counting restarts after a
    re-plan.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[tuple, str], int] = {}
        self.replanned = False

    def add(self, obs: Observation, action: Action | None) -> bool:
        key = (screen_key(obs), action_to_json(action) if action is not None else "invalid")
        self.seen[key] = self.seen.get(key, 0) + 1
        return self.seen[key] >= STUCK_REPEATS


def run_agent(device: Device, agent: StepAgent, goal: str, *, max_steps: int = 20, gate: Gate = allow_all,
              writer: TrajectoryWriter | None = None,
              on_step: Callable[[StepReport], None] | None = None,
              control: RunControl | None = None) -> RunResult:
    """Let ``agent`` work on ``device`` until it finishes, gets stuck, fails, or spends ``max_steps``.

    Never raises edgepilot errors: they end the run with status ``error``.
    Ctrl-C ends it with status ``interrupted``; ``control.stop()`` from another
    thread with status ``stopped`` (no action is carried out after it); either
    way the trajectory's result.json is written.
    """
    return _Run(device, agent, gate, writer, on_step, control or RunControl()).go(goal, max_steps)


class _Run:
    """One run of the loop: what it holds between steps, and the steps of a step, each by name."""

    def __init__(self, device: Device, agent: StepAgent, gate: Gate, writer: TrajectoryWriter | None,
                 on_step: Callable[[StepReport], None] | None, control: RunControl) -> None:
        self.device, self.agent, self.gate, self.writer = device, agent, gate, writer
        self.on_step, self.control = on_step, control
        self.loop = _LoopDetector()
        self.obs: Observation | None = None
        self.perceive_ms = 0.0
        self.impossible: str | None = None

    def go(self, goal: str, max_steps: int) -> RunResult:
        """Observe, then step until the run ends; every way it can end becomes a status."""
        result = RunResult(goal=goal, agent=self.agent.name, reason=f"step budget of {max_steps} spent")
        start = time.perf_counter()
        try:
            self.obs = self._observe()
            for index in range(max_steps):
                if not self.control.wait_while_paused():
                    raise _Stopped
                step = self._step(index, self.obs)
                result.steps.append(step)
                if self._ended(step, result):
                    break
        except _Stopped:
            result.status, result.reason = "stopped", self.control.reason or "stopped"
        except KeyboardInterrupt:
            result.status, result.reason = "interrupted", "stopped by the user (Ctrl-C)"
        except EdgepilotError as exc:
            result.status, result.reason = self._failure(exc)
        result.seconds = time.perf_counter() - start
        if self.writer is not None:
            self.writer.finish(result.to_record(), self.obs.screenshot_png if self.obs is not None else None)
        return result

    def _observe(self) -> Observation:
        t0 = time.perf_counter()
        obs = self.device.observe()
        self.perceive_ms = (time.perf_counter() - t0) * 1000
        return obs

    def _step(self, index: int, obs: Observation) -> StepReport:
        """Decide on ``obs``, pass the gate, act, reflect; the step is written and shown before it is judged."""
        step = StepReport(index, obs, Decision(None))
        started = time.perf_counter()
        step.ms["perceive"] = self.perceive_ms
        step.decision = self.agent.decide(obs)
        after = obs
        if step.action is None:
            step.error = step.decision.error or "no valid action"
            step.outcome = Reflection("invalid", step.error[:200])
        elif self._passes_gate(step, step.action):
            after = self._act(step, step.action)
        step.ms.update(step.role_ms())
        step.ms["total"] = (time.perf_counter() - started) * 1000 + step.ms["perceive"]
        if self.writer is not None:
            self.writer.write_step(step.to_record(), obs.screenshot_png)
        if self.on_step is not None:
            self.on_step(step)
        self.obs = after
        return step

    def _passes_gate(self, step: StepReport, action: Action) -> bool:
        """Ask the gate just before acting; a stop while the model thought or the user was asked wins."""
        if self.control.wait_while_paused():
            t_gate = time.perf_counter()
            step.gate = self.gate(action, step.obs)
            step.ms["policy"] = (time.perf_counter() - t_gate) * 1000  # the user's answer and the re-check too
        if self.control.stopped():
            step.gate = GateDecision(False, self.control.reason, verdict="block", terminate=True)
        assert step.gate is not None
        if step.gate.allowed:
            return True
        step.outcome = Reflection("refused", step.gate.reason)
        if not step.gate.terminate:
            self.agent.note(f"the action {describe_action(action, step.obs)} was refused: {step.gate.reason}")
        if step.gate.verdict != "allow" and not step.gate.terminate:  # refused by the policy or the user, not a
            self.agent.avoid(step.obs, action)                           # changed screen: not offered again here
        return False

    def _act(self, step: StepReport, action: Action) -> Observation:
        """Carry the action out and reflect on the screen it leads to; that screen is returned."""
        t_act = time.perf_counter()
        try:
            step.result = self.device.act(action)
        except ActionError as exc:  # a bad index or app name: the model's mistake, not the device's
            step.result = ActResult(ok=False, message=str(exc))
        step.ms["act"] = (time.perf_counter() - t_act) * 1000
        if isinstance(action, Finish):
            step.outcome = Reflection("finished", action.answer or "")
            return step.obs
        after = self._observe()
        t_ref = time.perf_counter()
        step.outcome = self.agent.reflect(step.obs, action, step.result, after)
        step.ms["reflect"] = (time.perf_counter() - t_ref) * 1000
        found = getattr(self.agent, "impossible", None)
        if step.result is not None and step.result.ok and found is not None:
            self.impossible = found(action, after, step.obs)
        return after

    def _ended(self, step: StepReport, result: RunResult) -> bool:
        """Whether ``step`` ends the run (the policy stopped it, the agent finished, or it is stuck), and how."""
        action = step.action
        if step.gate is not None and step.gate.terminate:
            if self.control.stopped():
                raise _Stopped
            result.status, result.reason = "stopped", f"stopped by the policy: {step.gate.reason}"
            return True
        if self.impossible:
            result.status, result.reason = "impossible", f"the goal cannot be done here: {self.impossible}"
            return True
        if isinstance(action, Finish) and step.gate and step.gate.allowed:
            result.status = "finished" if action.status == "success" else "gave_up"
            result.reason = "the agent finished" if action.status == "success" else "the agent gave up"
            result.answer = action.answer
            verify = getattr(self.agent, "verify", None)
            match = getattr(self.agent, "match", None)
            from edgepilot.memory.routes import ROUTE_PREFIX  # once a run, not at every start-up
            if action.status == "success" and verify is not None:
                why = verify(result.steps, action.answer)
                if why:
                    result.status, result.reason = "unverified", f"the agent finished, but {why}"
                elif match is not None and not match.sop.name.startswith(ROUTE_PREFIX):
                    result.reason = "the agent finished, and the result was checked against the goal"
                elif getattr(self.agent, "checked", False):  # a model's word alone is not a success
                    result.status = "unverified"
                    result.reason = ("the agent finished along the app memory's route, but a route is not a "
                                     "procedure: nothing checked the result against the goal" if match is not None
                                     else "the agent finished, but no procedure fits the goal, so nothing checked "
                                     "the result against it")
                else:
                    result.reason = "the agent finished (no procedure, so nothing checked the result)"
            return True
        if not self.loop.add(step.obs, action):
            return False
        what = step.summary()
        if self.loop.replanned:
            result.status = "stuck"
            result.reason = f"{what} on the same screen {STUCK_REPEATS} times, again after a re-plan"
            return True
        self.loop.replanned = True
        self.loop.seen.clear()
        self.agent.note(f"{what} on this screen {STUCK_REPEATS} times did not get anywhere; do something different")
        if action is not None:
            self.agent.avoid(step.obs, action)
        return False

    def _failure(self, exc: EdgepilotError) -> tuple[str, str]:
        """The status and reason of a run an error ended."""
        if isinstance(exc, (DeviceError, PerceptionError)):
            return "error", f"device: {exc}"
        if isinstance(exc, ModelError):
            if self.control.stopped():  # the model call was cut short by the stop
                return "stopped", self.control.reason
            return "error", f"model: {exc}"
        return "error", f"{type(exc).__name__}: {exc}"
