"""Learning from demonstrations, with the policy's judgement: which demonstrated steps are sensitive."""

from __future__ import annotations

from pathlib import Path

from edgepilot.config import load_config
from edgepilot.perception.types import Bounds, Observation, UINode
from edgepilot.policy import PolicyEngine, load_policy, policy_path
from edgepilot.sop.format import SENSITIVE_KINDS
from edgepilot.sop.learn import Classifier, DemoStep


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
