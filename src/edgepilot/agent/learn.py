"""Learning SOPs from runs: trajectories read as demonstrations, and the policy's judgement of which demonstrated
steps are sensitive (:mod:`edgepilot.sop.learn` drafts the procedure)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgepilot.actions import Finish
from edgepilot.agent.trajectory import Trajectory
from edgepilot.config import load_config
from edgepilot.errors import SopError
from edgepilot.perception.types import Bounds, Observation, UINode
from edgepilot.policy import PolicyEngine, load_policy, policy_path
from edgepilot.sop.demo import OK_OUTCOMES, Classifier, Demo, DemoStep
from edgepilot.sop.format import SENSITIVE_KINDS
from edgepilot.sop.screen import Screen


def policy_classifier(policy_file: Path | None = None) -> Classifier:
    """A :data:`~edgepilot.sop.learn.Classifier` from the policy's rules: a demonstrated action is a
    sensitive step when a rule of the policy (``--policy``, else the configured or bundled one) would ask the
    user before it, and the rule's category is a kind of sensitive step (send_message, payment, delete...).

    Raises:
        PolicyError: the policy file is missing or invalid.
    """
    engine = PolicyEngine(load_policy(policy_path(policy_file, load_config().policy)))
    kinds = {**{k: k for k in SENSITIVE_KINDS}, "secure_screen": "password"}

    def classify(step: DemoStep) -> str | None:
        element, action = step.target, step.action
        node = None
        if element is not None:
            node = UINode(bounds=Bounds(left=0, top=0, right=1, bottom=1), text="\n".join(element.lines),
                          content_desc=element.desc, resource_id=element.rid, class_name=element.cls,
                          password=element.password, clickable=element.clickable, checkable=element.checkable,
                          checked=element.checked, package=step.screen.package)
            action = action.model_copy(update={"target": 0})
        obs = Observation(nodes=(node,) if node is not None else (), package=step.screen.package,
                          secure=step.screen.secure, screen_width=1080, screen_height=2400)
        verdict = engine.evaluate(action, obs, node)
        return None if verdict.effect == "allow" else kinds.get(verdict.category)

    return classify


def demo_from_trajectory(trajectory: Trajectory) -> Demo:
    """A demonstration from a trajectory read back (:func:`~edgepilot.agent.trajectory.read_trajectory`).

    Steps whose action was refused, failed, unusable or changed nothing are left out.

    Raises:
        SopError: the trajectory did not end in success, has no goal, or has no actions.
    """
    where = str(trajectory.folder)
    _check_success(trajectory, where)
    kept = [s for s in trajectory.steps if s.action is not None and (s.gate is None or s.gate.allowed)
            and (s.outcome.kind if s.outcome else None) in OK_OUTCOMES and not s.error]
    screens = [Screen.from_text(s.screen) for s in kept]
    steps = []
    for n, (step, screen) in enumerate(zip(kept, screens, strict=True)):
        action = step.parsed_action()
        if action is None:
            raise SopError(f"{where}: step {step.index} holds no valid action ({step.action})")
        target = getattr(action, "target", None)
        element = screen.element(target) if isinstance(target, int) and not isinstance(target, bool) else None
        steps.append(DemoStep(step.index, action, screen, element, screens[n + 1] if n + 1 < len(screens) else None))
    if not any(not isinstance(st.action, Finish) for st in steps):
        raise SopError(f"{where}: the trajectory has no actions to learn from")
    return Demo(trajectory.meta.goal.strip(), tuple(steps), where)


def _check_success(trajectory: Trajectory, where: str) -> None:
    """Raises SopError unless the trajectory names its goal and ended in success."""
    if not trajectory.meta.goal.strip():
        raise SopError(f"{where}: the trajectory has no goal in meta.json; record it with --goal \"TASK\"")
    result = trajectory.result
    if result is None:
        raise SopError(f"{where}: the trajectory has no result.json (the run was cut off); learn from runs "
                       "that finished")
    if result.status != "finished" or result.success is False:
        why = result.reason or result.status
        checks = ", ".join(result.failed_checks)
        raise SopError(f"{where}: not a successful run ({why}{'; failed: ' + checks if checks else ''}); "
                       "an SOP is learned from runs that did the task right")


def demos_from(trajectories: Iterable[Trajectory]) -> list[Demo]:
    """:func:`demo_from_trajectory` for each trajectory (all errors reported at once).

    Raises:
        SopError: one or more trajectories cannot be learned from; the message lists each.
    """
    demos, problems = [], []
    for trajectory in trajectories:
        try:
            demos.append(demo_from_trajectory(trajectory))
        except SopError as exc:
            problems.append(str(exc))
    if problems:
        raise SopError("\n".join(problems))
    return demos
