"""Deciding one action: facts about it, the first matching rule, the user when a rule says ask.

:class:`PolicyEngine` is pure: rules in, verdict out. :class:`PolicyGate` is
what the agent loop calls just before acting (its ``gate``): it evaluates,
asks the :class:`~edgepilot.policy.confirm.Confirmer` when the verdict
is ``ask_user``, looks at the screen once more right before dispatch (an
overlay that moved under the finger, another app in front) and writes every
decision to the audit log.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edgepilot.actions import Action, Click, DoubleClick, Hotkey, Key, LongPress, Point, Tap, Type, action_to_json
from edgepilot.errors import PolicyError
from edgepilot.perception.describe import describe_action
from edgepilot.perception.types import Observation, UINode
from edgepilot.policy.audit import AuditLog, redact_action
from edgepilot.policy.confirm import Confirmer, ConfirmRequest, RefuseAll
from edgepilot.policy.gate import GateDecision
from edgepilot.policy.language import Policy, Rule

Effect = Literal["allow", "block", "ask_user", "terminate"]
NO_POLICY = "no policy is loaded, so every action is refused (fail closed); load one with --policy or config.toml"


@dataclass(frozen=True)
class Verdict:
    """The engine's answer for one action."""

    effect: Effect
    rule: str = ""
    category: str = ""
    reason: str = ""


def resolve_target(action: Action, obs: Observation) -> UINode | None:
    """The UI node an action presses or types into: by element index, or the element under a pixel."""
    target = getattr(action, "target", None)
    if isinstance(target, bool) or target is None:
        return None
    if isinstance(target, int):
        return obs.elements[target] if 0 <= target < len(obs.elements) else None
    if isinstance(target, Point):
        hit = obs.element_at(target.x, target.y)
        return hit[1] if hit else None
    return None


def facts(action: Action, obs: Observation, target: UINode | None = None) -> dict[str, Any]:
    """What rules can test (see :data:`~edgepilot.policy.language.FACTS`); absent facts are left out."""
    data = action.model_dump(mode="json")
    out: dict[str, Any] = {"action.type": data["type"]}
    for key in ("text", "app", "key", "direction", "seconds", "status"):
        if data.get(key) is not None:
            out[f"action.{key}"] = data[key]
    if data.get("keys"):
        out["action.keys"] = "+".join(data["keys"])
    out.update({"screen.package": obs.package, "screen.secure": obs.secure, "screen.keyboard": obs.keyboard_shown})
    if obs.activity:
        out["screen.activity"] = obs.activity
    if target is not None:
        rid = target.resource_id
        out.update({
            "target.text": target.text, "target.desc": target.content_desc, "target.label": target.label,
            "target.resource_id": rid.split(":id/", 1)[-1] if ":id/" in rid else rid,
            "target.class": target.class_name, "target.password": target.password,
            "target.editable": target.editable, "target.clickable": target.clickable,
            "target.checked": target.checked, "target.package": target.package,
        })
    return out


def _order(rule: Rule) -> tuple[int, int]:
    return rule.priority, 0 if rule.effect == "forbid" else 1


class PolicyEngine:
    """Rules sorted by priority (lower first), forbid before allow at equal priority; the first match decides.

    No matching rule: the policy's ``default`` (never allow). No policy: every
    action blocked. Rules added during a run may only narrow what is allowed.

    Args:
        policy: the loaded policy, or None (fail closed).
        task_rules: rules derived from the task (:mod:`~edgepilot.policy.scope`).
    """

    def __init__(self, policy: Policy | None, task_rules: list[Rule] | tuple[Rule, ...] = ()) -> None:
        self.policy = policy
        self._rules: list[Rule] = sorted([*(policy.rules if policy else ()), *task_rules], key=_order)

    @property
    def rules(self) -> list[Rule]:
        return list(self._rules)

    def evaluate(self, action: Action, obs: Observation, target: UINode | None = None) -> Verdict:
        if self.policy is None:
            return Verdict("block", "no-policy", "", NO_POLICY)
        known = facts(action, obs, target if target is not None else resolve_target(action, obs))
        for rule in self._rules:
            if not rule.covers(known["action.type"]):
                continue
            if rule.condition is not None and rule.condition.holds(known) is not True:
                continue
            effect: Effect = "allow" if rule.effect == "allow" else rule.fallback
            return Verdict(effect, rule.id, rule.category, rule.reason)
        return Verdict(self.policy.default, "default", "unmatched",
                       "no rule allows this action (the task may not need this app)")

    def narrow(self, rule: Rule) -> None:
        """Add a rule during a run. Only ``forbid`` rules: anything that widens needs the user (:meth:`widen`).

        Raises:
            PolicyError: the rule would allow something.
        """
        if rule.effect != "forbid":
            raise PolicyError(f"rule {rule.id!r} would widen the policy during a run; that needs the user's "
                              "confirmation (PolicyGate.widen)")
        self._add(rule)

    def widen(self, rule: Rule) -> None:
        """Add an allow rule; call only with the user's consent."""
        self._add(rule)

    def _add(self, rule: Rule) -> None:
        self._rules = sorted([r for r in self._rules if r.id != rule.id] + [rule], key=_order)


@dataclass
class GateStats:
    asked: int = 0
    approved: int = 0
    refused: int = 0
    blocked: int = 0
    rechecks_failed: int = 0


class PolicyGate:
    """The loop's gate: evaluate, ask when told to, re-check the screen, audit.

    Args:
        engine: the rules.
        task: the task sentence (shown to the user, logged).
        confirmer: who answers ``ask_user`` verdicts (None: refuse them).
        audit: the log every decision goes to (None: no log).
        device: observed again just before dispatch to catch a screen that
            changed under the target (None: no re-check).
        timeout: seconds the user has to answer.
        sensitive_step: the kind of the SOP step the agent is on when the SOP
            marks it sensitive (None otherwise): allowed taps, typing and keys
            on such a step are confirmed too.
    """

    def __init__(self, engine: PolicyEngine, *, task: str, confirmer: Confirmer | None = None,
                 audit: AuditLog | None = None, device: Any = None, timeout: float = 60.0,
                 run_id: str | None = None, sensitive_step: Callable[[], str | None] | None = None) -> None:
        self.engine = engine
        self.sensitive_step = sensitive_step
        self.task = task
        self.confirmer = confirmer or RefuseAll()
        self.audit = audit
        self.device = device
        self.timeout = timeout
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.stats = GateStats()
        self._refused: set[tuple[str, str]] = set()
        self._always: set[str] = set()  # rules the user said "always" to: not asked again in this run

    def __call__(self, action: Action, obs: Observation) -> GateDecision:
        target = resolve_target(action, obs)
        verdict = self.engine.evaluate(action, obs, target)
        if verdict.effect == "allow" and self.sensitive_step is not None and \
                isinstance(action, Tap | LongPress | Type | Key | Click | DoubleClick | Hotkey) and (kind := self.sensitive_step()):
            verdict = Verdict("ask_user", "sop-sensitive", kind, f"the procedure marks this step as sensitive ({kind})")
        record: dict[str, Any] = {"verdict": verdict.effect, "rule": verdict.rule, "category": verdict.category}
        decision = self._decide(action, obs, target, verdict, record)
        if decision.allowed:
            changed = self._recheck(action, obs, target)
            if changed:
                self.stats.rechecks_failed += 1
                record["recheck"] = changed
                decision = GateDecision(False, f"the screen changed before the action was sent ({changed}); "
                                               "look at the new screen and decide again", verdict=verdict.effect,
                                        rule=verdict.rule, asked=decision.asked, answer=decision.answer)
        if not decision.allowed and not decision.terminate:
            self.stats.blocked += 1
        record["allowed"] = decision.allowed
        self._log(action, obs, target, record, decision.reason)
        return decision

    def _decide(self, action: Action, obs: Observation, target: UINode | None, verdict: Verdict,
                record: dict[str, Any]) -> GateDecision:
        why = verdict.reason or verdict.category or "the policy forbids it"
        if verdict.effect == "allow":
            return GateDecision(True, verdict=verdict.effect, rule=verdict.rule)
        if verdict.effect == "block":
            return GateDecision(False, f"{why} (rule {verdict.rule})", verdict="block", rule=verdict.rule)
        if verdict.effect == "terminate":
            return GateDecision(False, f"{why} (rule {verdict.rule}): the run is stopped", verdict="terminate",
                                rule=verdict.rule, terminate=True)
        if verdict.rule in self._always:
            record["answer"] = "always"
            return GateDecision(True, "the user allowed this for the task", verdict="ask_user", rule=verdict.rule,
                                answer="always")
        key = (obs.to_text(), action_to_json(action))
        if key in self._refused:
            record["answer"] = "refused before"
            return GateDecision(False, f"the user already refused this here: {why}; choose another way or finish",
                                verdict="ask_user", rule=verdict.rule, answer="no")
        request = ConfirmRequest(task=self.task, action=describe_action(action, obs), target=_target_text(target),
                                 rule=verdict.rule, category=verdict.category, reason=why, app=obs.package,
                                 screen=obs.to_text(), opens=getattr(action, "app", "") or "",
                                 screenshot_png=obs.screenshot_png,
                                 target_bounds=(target.bounds.left, target.bounds.top, target.bounds.right,
                                                target.bounds.bottom) if target is not None else None)
        self.stats.asked += 1
        started = time.monotonic()
        result = self.confirmer.ask(request, self.timeout)
        record.update(asked=True, answer=result.answer, answer_s=round(time.monotonic() - started, 2))
        if result.answer == "no":
            self.stats.refused += 1
            self._refused.add(key)
            note = f": {result.note}" if result.note else ""
            return GateDecision(False, f"the user refused ({why}){note}; choose another way or finish",
                                verdict="ask_user", rule=verdict.rule, asked=True, answer="no")
        self.stats.approved += 1
        if result.answer == "always":
            self._always.add(verdict.rule)
        return GateDecision(True, "approved by the user", verdict="ask_user", rule=verdict.rule, asked=True,
                            answer=result.answer)

    def _recheck(self, action: Action, obs: Observation, target: UINode | None) -> str:
        """Why the screen no longer fits the action ('' when it does)."""
        if self.device is None or getattr(action, "target", None) is None:
            return ""
        now = self.device.observe()
        if now.package != obs.package:
            return f"{now.package or 'another app'} is now in front instead of {obs.package}"
        if target is None:
            return ""
        again = resolve_target(action, now)
        if again is None or _identity(again) != _identity(target):
            what = f"'{again.label[:40]}'" if again is not None else "nothing"
            return f"the element under the target is now {what}, not '{target.label[:40]}'"
        return ""

    def _log(self, action: Action, obs: Observation, target: UINode | None, record: dict[str, Any],
             reason: str) -> None:
        if self.audit is None:
            return
        self.audit.append({
            "run": self.run_id, "task": self.task, "action": redact_action(action.model_dump(mode="json")),
            "target": _target_json(target), "app": obs.package, "secure": obs.secure, **record,
            "reason": reason,
        })


def _identity(node: UINode) -> tuple[Any, ...]:
    return node.text, node.content_desc, node.resource_id, node.class_name, node.password, node.bounds


def _target_text(node: UINode | None) -> str:
    if node is None:
        return ""
    if node.password:
        return f"password field {node.resource_id or ''}".strip()
    return " · ".join(x for x in (node.label.replace("\n", " / ")[:120], node.resource_id) if x)


def _target_json(node: UINode | None) -> dict[str, Any] | None:
    if node is None:
        return None
    return {"label": "" if node.password else node.label[:80], "resource_id": node.resource_id,
            "class": node.class_name, "password": node.password}

