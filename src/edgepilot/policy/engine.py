"""Deciding one action: facts about it, the first matching rule, the user when a rule says ask.

:class:`PolicyEngine` is pure: rules in, verdict out. :class:`PolicyGate` is
what the agent loop calls just before acting (its ``gate``): it evaluates,
asks the :class:`~edgepilot.policy.confirm.Confirmer` when the verdict
is ``ask_user``, looks at the screen once more right before dispatch (an
overlay that moved under the finger, another app in front) and writes every
decision to the audit log.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edgepilot.actions import (
    Action,
    Click,
    DoubleClick,
    Finish,
    Hotkey,
    Key,
    LongPress,
    OpenApp,
    RightClick,
    Swipe,
    Tap,
    Type,
    Wait,
)
from edgepilot.errors import PolicyError
from edgepilot.perception.describe import describe_action
from edgepilot.perception.signature import SYSTEM_UI, describe_change, layout_signature
from edgepilot.perception.types import Observation, UINode
from edgepilot.policy.audit import AuditLog, redact_action
from edgepilot.policy.confirm import Confirmer, ConfirmRequest, RefuseAll
from edgepilot.policy.consent import consequence
from edgepilot.policy.effects import CANONICAL_ACTION, DeviceEffect, effects_of, node_at, node_index
from edgepilot.policy.gate import GateDecision
from edgepilot.policy.labels import readings, resource_words
from edgepilot.policy.language import Policy, Rule

Effect = Literal["allow", "block", "ask_user", "terminate"]
NO_POLICY = "no policy is loaded, so every action is refused (fail closed); load one with --policy or config.toml"


@dataclass(frozen=True)
class Verdict:
    """The engine's answer for one action: the outcome, the rule that gave it, and the effect it judged."""

    effect: Effect
    rule: str = ""
    category: str = ""
    reason: str = ""
    cause: DeviceEffect | None = None


STRICTNESS: dict[str, int] = {"allow": 0, "ask_user": 1, "block": 2, "terminate": 3}


def resolve_target(action: Action, obs: Observation) -> UINode | None:
    """The UI node an action presses or types into: by element index, or the element under a pixel."""
    return node_at(obs, getattr(action, "target", None))


SECRET_WORDS = re.compile(r"\b(pin|pins|pin code|pincode|password|passwort|kennwort|passwd|pwd|passcode|passphrase|"
                          r"contrasena|clave|mot de passe|senha|parola d ordine|cvv|cvc|cvv2|csc|card number|card no|"
                          r"security code|verification code|secret|one time (pass)?code|otp|tan|geheimzahl)\b")
"""Words that make a field secret when its label, id, description or the text beside it says them (normalised)."""


CAPTION_WORDS = 8


def is_secret(node: UINode, obs: Observation) -> bool:
    """Whether typing into ``node`` enters a secret: a password field, or a field whose context says PIN, CVV..."""
    if node.password:
        return True
    if not node.editable:
        return False
    said = [node.label, node.content_desc, resource_words(node.resource_id), *_captions(node, obs)]
    return any(SECRET_WORDS.search(reading) for text in said if text for reading in readings(text))


def _captions(node: UINode, obs: Observation, reach: int = 300) -> list[str]:
    """The captions of a field: the nearest short plain text above it, below it (helper text), left and right of
    it on its row, each within ``reach`` pixels. One per side, so a caption is not lost behind a closer text on
    another side, and a field is not made secret by the caption of the field above it."""
    b = node.bounds
    nearest: dict[str, tuple[int, list[str]]] = {}
    for other in obs.elements:
        texts = [t for t in (other.text, other.content_desc) if t]
        if other is node or other.editable or not texts or len(texts[0].split()) > CAPTION_WORDS:
            continue  # a field's caption is short; a message bubble is not one
        o = other.bounds
        overlaps_x = o.left < b.right and o.right > b.left
        same_row = o.top < b.bottom and o.bottom > b.top
        for side, gap, ok in (("above", b.top - o.bottom, overlaps_x), ("below", o.top - b.bottom, overlaps_x),
                              ("left", b.left - o.right, same_row), ("right", o.left - b.right, same_row)):
            if ok and 0 <= gap <= reach and (side not in nearest or gap < nearest[side][0]):
                nearest[side] = (gap, texts)
    return [t for _, texts in nearest.values() for t in texts]


def list_row(node: UINode, obs: Observation) -> bool:
    """Whether ``node`` is one of a list's repeated rows (siblings of its class and id): its first line names it,
    the rest is content (a note's body, an alarm's label), not what pressing it does."""
    index = node_index(obs, node)
    if index is None or obs.nodes[index].parent is None or "\n" not in node.text:
        return False
    parent = obs.nodes[index].parent
    twins = sum(1 for n in obs.nodes if n.parent == parent and n.class_name == node.class_name
                and n.resource_id == node.resource_id)
    return twins >= 2


def effect_facts(effect: DeviceEffect, action: Action, obs: Observation) -> dict[str, Any]:
    """What rules can test about one effect (see :data:`~edgepilot.policy.language.FACTS`); absent facts are left
    out. Strings that name things (labels, ids) are :func:`~edgepilot.policy.labels.normalise`\\ d."""
    out: dict[str, Any] = {"action.type": CANONICAL_ACTION[effect.kind], "effect": effect.kind}
    data = action.model_dump(mode="json")
    for key in ("direction", "seconds", "status"):
        if data.get(key) is not None:
            out[f"action.{key}"] = data[key]
    for key, value in (("text", effect.text), ("key", effect.key), ("keys", effect.keys), ("app", effect.app)):
        if value is not None:
            out[f"action.{key}"] = value
    out.update({"screen.package": obs.package, "screen.secure": obs.secure, "screen.keyboard": obs.keyboard_shown})
    if obs.activity:
        out["screen.activity"] = obs.activity
    target = effect.node
    if target is not None:
        name = target.text.split("\n", 1)[0] if list_row(target, obs) else target.text
        out.update({
            "target.text": readings(name), "target.desc": readings(target.content_desc),
            # every name it has: an icon's glyph as text ("➤") does not hide its description ("Send")
            "target.label": tuple(dict.fromkeys((*readings(name), *readings(target.content_desc))))
            or readings(""), "target.resource_id": resource_words(target.resource_id),
            "target.class": target.class_name, "target.password": target.password,
            "target.secret": is_secret(target, obs),
            "target.editable": target.editable, "target.clickable": target.clickable,
            "target.checked": target.checked, "target.package": target.package,
        })
    return out


def facts(action: Action, obs: Observation, target: UINode | None = None) -> dict[str, Any]:
    """The facts of an action's main effect (the first one that names an element, else the first)."""
    found = effects_of(action, obs)
    main = next((e for e in found if e.node is not None), found[0])
    return effect_facts(main, action, obs)


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

    def evaluate(self, action: Action, obs: Observation, target: UINode | None = None, *,
                 effects: tuple[DeviceEffect, ...] | None = None) -> Verdict:
        """The verdict on everything ``action`` does: each of its effects is judged, the strictest verdict wins.

        ``target`` is accepted for callers of the old signature and not needed: effects name their elements.
        ``effects``: :func:`~edgepilot.policy.effects.effects_of` ``(action, obs)`` when the caller has them.
        """
        if self.policy is None:
            return Verdict("block", "no-policy", "", NO_POLICY)
        found = effects if effects is not None else effects_of(action, obs)
        verdicts = [self.judge(effect, action, obs) for effect in found]
        return max(verdicts, key=lambda v: STRICTNESS[v.effect])

    def judge(self, effect: DeviceEffect, action: Action, obs: Observation) -> Verdict:
        """The first matching rule's verdict on one effect; an effect the screen cannot explain is never allowed."""
        if self.policy is None:
            return Verdict("block", "no-policy", "", NO_POLICY, effect)
        known = effect_facts(effect, action, obs)
        verdict = Verdict(self.policy.default, "default", "unmatched",
                          "no rule allows this action (the task may not need this app)", effect)
        for rule in self._rules:
            if not rule.covers(effect.kind):
                continue
            if rule.condition is not None and rule.condition.holds(known) is not True:
                continue
            outcome: Effect = "allow" if rule.effect == "allow" else rule.fallback
            verdict = Verdict(outcome, rule.id, rule.category, rule.reason, effect)
            break
        if effect.kind == "unknown" and (verdict.effect == "allow" or verdict.rule == "default"):
            return Verdict("ask_user", "undetermined-effect", "unknown",
                           f"the screen does not show what this does: it {effect.describe()}", effect)
        return verdict

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
        found = effects_of(action, obs)  # once: the verdict, the sensitive step, the record and a refusal's key
        verdict = self.engine.evaluate(action, obs, effects=found)
        if verdict.effect == "allow" and self.sensitive_step is not None and _may_be_sensitive(action, found) \
                and (kind := self.sensitive_step()):
            verdict = Verdict("ask_user", "sop-sensitive", kind, f"the procedure marks this step as sensitive ({kind})",
                              verdict.cause)
        record: dict[str, Any] = {"verdict": verdict.effect, "rule": verdict.rule, "category": verdict.category,
                                  "effects": [_effect_json(e) for e in found]}
        decision = self._decide(action, obs, target, verdict, record, found)
        if decision.allowed:
            changed = self._recheck(action, obs)
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

    def refused_here(self, action: Action, obs: Observation) -> bool:
        """Whether the user already refused an action with these effects on this screen (any spelling of it)."""
        return _refusal_key(effects_of(action, obs), obs) in self._refused

    def _decide(self, action: Action, obs: Observation, target: UINode | None, verdict: Verdict,
                record: dict[str, Any], effects: tuple[DeviceEffect, ...]) -> GateDecision:
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
        key = _refusal_key(effects, obs)  # only for a question: allowed actions never need it
        if key in self._refused:
            record["answer"] = "refused before"
            return GateDecision(False, f"the user already refused this here: {why}; do not do it again on this "
                                       "screen: choose another way or finish", verdict="ask_user", rule=verdict.rule,
                                answer="no")
        shown = verdict.cause.node if verdict.cause is not None and verdict.cause.node is not None else target
        request = ConfirmRequest(task=self.task, action=describe_action(action, obs), target=_target_text(shown),
                                 rule=verdict.rule, category=verdict.category, reason=why, app=obs.package,
                                 screen=obs.to_text(), opens=getattr(action, "app", "") or "",
                                 screenshot_png=obs.screenshot_png,
                                 target_bounds=(shown.bounds.left, shown.bounds.top, shown.bounds.right,
                                                shown.bounds.bottom) if shown is not None else None,
                                 consequence=consequence(verdict.cause, verdict.category, obs, self.task))
        record["consequence"] = request.consequence
        self.stats.asked += 1
        started = time.monotonic()
        result = self.confirmer.ask(request, self.timeout)
        record.update(asked=True, answer=result.answer, answer_s=round(time.monotonic() - started, 2))
        if result.answer == "no":
            self.stats.refused += 1
            self._refused.add(key)
            note = f": {result.note}" if result.note else ""
            return GateDecision(False, f"the user refused ({why}){note}; do not do it again on this screen: choose "
                                       "another way or finish", verdict="ask_user", rule=verdict.rule, asked=True,
                                answer="no")
        self.stats.approved += 1
        if result.answer == "always":
            self._always.add(verdict.rule)
        return GateDecision(True, "approved by the user", verdict="ask_user", rule=verdict.rule, asked=True,
                            answer=result.answer)

    def _recheck(self, action: Action, obs: Observation) -> str:
        """Why the screen no longer fits the action ('' when it does): any change to the app in front, its windows
        or its interactive elements means the action is decided again on the new screen."""
        if self.device is None or isinstance(action, Wait | Finish | OpenApp):
            return ""
        return describe_change(obs, self.device.observe())

    def _log(self, action: Action, obs: Observation, target: UINode | None, record: dict[str, Any],
             reason: str) -> None:
        if self.audit is None:
            return
        self.audit.append({
            "run": self.run_id, "task": self.task, "action": redact_action(action.model_dump(mode="json")),
            "target": _target_json(target), "app": obs.package, "secure": obs.secure, **record,
            "reason": reason,
        })


NAVIGATION_KEYS = ("back", "home", "app_switch", "escape")


def _may_be_sensitive(action: Action, effects: tuple[DeviceEffect, ...]) -> bool:
    """Actions a procedure's sensitive step is confirmed for: anything that presses, types or keys, except
    navigation (a navigation key, the system's own buttons: going back or home never asks)."""
    if not isinstance(action, Tap | LongPress | Type | Click | DoubleClick | RightClick | Hotkey | Swipe | Key):
        return False
    return not all(e.kind == "key" and e.key in NAVIGATION_KEYS or e.kind == "scroll"
                   or e.kind == "activate" and e.node is not None and e.node.package == SYSTEM_UI
                   for e in effects)


def _effect_key(effect: DeviceEffect) -> tuple[Any, ...]:
    node = effect.node
    where = (node.class_name, node.resource_id, node.label, node.bounds) if node is not None else None
    return effect.kind, where, effect.text, effect.key, effect.keys, effect.app


def _refusal_key(effects: tuple[DeviceEffect, ...], obs: Observation) -> tuple[Any, ...]:
    """A refusal holds for every spelling of the same effects on the same screen."""
    return layout_signature(obs), frozenset(_effect_key(e) for e in effects)


def _effect_json(effect: DeviceEffect) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": effect.kind, "via": effect.via}
    if effect.node is not None:
        out["on"] = "" if effect.node.password else effect.node.label[:60]
    if effect.detail:
        out["detail"] = effect.detail
    return out


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

