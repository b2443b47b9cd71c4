"""Teachers: what answers the runtime's own role prompts with the actions a student must learn.

The oracle teacher plays a task's reference solution on the virtual phone,
inside the runtime's :class:`~edgepilot.agent.agents.RoleAgent`: the agent
builds every planner, decider and reflector prompt exactly as it would for a
model, and a scripted backend answers each one with the teacher's target:

- decider: the oracle's action for this screen (:func:`~edgepilot.actions.action_to_json`,
  the form a model is trained to emit);
- planner: ``progress`` (the solution steps done, latest last), ``subgoal``
  (the solution step the oracle is about to play, named by the element's
  label), ``memory`` (a ``finish`` answer the task will need, once it shows
  on the screen);
- reflector: ``worked`` (the oracle's action did what the solution wanted).

So the prompts recorded in the trajectory (``steps.jsonl`` → ``calls``) are
the prompts the runtime sends, with the histories, SOP text and notes they
would carry. A teacher answer that the runtime's grammar for that screen
would not allow (the oracle tapping an element that is not interactive) is
recorded with an ``error`` and left out of training.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any, Protocol

from edgepilot.actions import (
    Action,
    Finish,
    Key,
    LongPress,
    OpenApp,
    Swipe,
    Tap,
    Type,
    Wait,
    action_to_json,
)
from edgepilot.agent.agents import NEXT_STEP, Decision, Reflection, RoleAgent, progress_text, shorten
from edgepilot.agent.roles import PLANNER, REFLECTOR, Plan, Verdict, decider_schema_for
from edgepilot.controllers.base import ActResult
from edgepilot.errors import ModelError
from edgepilot.models.base import Completion, Message, StopCheck
from edgepilot.perception.signature import screen_key
from edgepilot.perception.types import Observation
from edgepilot.sim.tasks.model import TaskInstance
from edgepilot.sim.tasks.oracle import Oracle

TEACHER_ERROR = "teacher"
"""Prefix of a call's ``error`` when the teacher's answer is not for training."""
INJECTED = "teacher: injected wrong step"
"""The ``error`` of a decider call whose answer is a deliberately wrong step (masked in training)."""

_SUBGOAL = Plan.model_fields["subgoal"].metadata[0].max_length
_MEMORY = Plan.model_fields["memory"].metadata[0].max_length


class Teacher(Protocol):
    """Produces the agent that plays one task instance and records the runtime's prompts with its answers."""

    name: str

    def agent(self, instance: TaskInstance, phone: Any, sop: Any = None, *, inject_at: int | None = None,
              seed: int = 0, step_refs: bool = False) -> RoleAgent: ...


def dumps(data: dict[str, Any]) -> str:
    """JSON in the spacing a model is trained to emit (the same as :func:`action_to_json`)."""
    return json.dumps(data, ensure_ascii=False, separators=(", ", ": "))


def fits_schema(action: Action, schema: dict) -> bool:
    """Whether the decider's grammar for a screen (its narrowed schema) allows ``action``.

    Checks what narrowing changes: the action's type is offered, every index
    target is among the allowed ones, and a target the schema dropped is not used.
    """
    data = action.model_dump(mode="json")
    for definition in schema.get("$defs", {}).values():
        props = definition.get("properties", {})
        kind = props.get("type", {})
        if kind.get("const") != data["type"] and data["type"] not in kind.get("enum", []):
            continue
        for name, value in data.items():
            prop = props.get(name)
            if prop is None:
                if value is not None:
                    return False
                continue
            if "enum" in prop and value not in prop["enum"]:
                return False
            if isinstance(value, dict) and "Point" not in schema.get("$defs", {}):
                return False
        return True
    return False


def fit_to_grammar(action: Action, obs: Observation, banned: set[int] | frozenset[int] = frozenset()) -> Action:
    """The oracle's action in a form the screen's grammar allows, where one does the same thing.

    The oracle swipes across the middle of the screen; where the screen has a
    scrollable list the decider's grammar wants the swipe aimed at it, which
    scrolls the same list.
    """
    if isinstance(action, Swipe) and action.target is None:
        schema = decider_schema_for(obs, banned)
        target = schema["$defs"]["Swipe"]["properties"].get("target", {})
        if "enum" in target and target["enum"]:
            return action.model_copy(update={"target": target["enum"][0]})
    return action


class ScriptedBackend:
    """A :class:`ModelBackend` that answers each role with the answer set for it just before the call.

    The role is told apart by the schema the runtime passes (the planner's and
    the reflector's are fixed; anything else is the decider's, narrowed to a
    screen). The last decider schema is kept so the teacher can check that its
    action fits the grammar the student will decode under.
    """

    name = "oracle-teacher"
    vision = 0

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}
        self.last_decider_schema: dict | None = None

    @staticmethod
    def role_of(schema: dict | None) -> str:
        if schema == PLANNER.schema:
            return "planner"
        if schema == REFLECTOR.schema:
            return "reflector"
        return "decider"

    def complete(self, messages: list[Message], *, schema: dict | None = None, max_tokens: int = 256,
                 temperature: float = 0.0, should_stop: StopCheck | None = None) -> Completion:
        role = self.role_of(schema)
        if role == "decider":
            self.last_decider_schema = schema
        try:
            text = self.answers.pop(role)
        except KeyError:
            raise ModelError(f"the teacher has no {role} answer for this call (a bug in edgepilot.distill)") from None
        return Completion(text=text, tokens_in=0, tokens_out=0, ms=0.0, constrained=schema is not None)


def _step_label(kind: str, arg: Any) -> str:
    if isinstance(arg, dict):
        for key in ("text", "desc", "text_contains", "id"):
            if key in arg and not (kind == "type" and key == "text"):
                return str(arg[key])
    return str(arg or "")


def subgoal_for(action: Action, obs: Observation, step: tuple[str, Any] | None) -> str:
    """The planner's subgoal for the action the oracle is about to take, in words (no element index).

    ``step`` is the solution step the action plays (kind, argument); None when
    the oracle scrolls to look for that step's element.
    """
    def label(target: Any) -> str:
        if isinstance(target, int) and 0 <= target < len(obs.elements):
            return obs.elements[target].label.split("\n")[0].strip()
        return ""

    if isinstance(action, OpenApp):
        text = f"open {action.app}"
    elif isinstance(action, (Tap, LongPress)):
        verb = "tap" if isinstance(action, Tap) else "long press"
        name = label(action.target) or (_step_label(*step) if step else "")
        text = f'{verb} "{name}"'
    elif isinstance(action, Type):
        field = label(action.target)
        text = f'type "{action.text}"' + (f" into {field}" if field else "")
        if len(text) > _SUBGOAL:
            text = f'type "{action.text}"'
    elif isinstance(action, Swipe):
        if step is None:
            text = "scroll to find the next item"
        else:
            text = f"swipe {action.direction}"
    elif isinstance(action, Key):
        text = f"press {action.key}"
    elif isinstance(action, Wait):
        text = "wait for the screen"
    elif isinstance(action, Finish):
        text = "finish" + (f": answer {action.answer}" if action.answer else "")
    else:
        text = action.type
    return shorten(text, _SUBGOAL)


class OracleTeacherAgent(RoleAgent):
    """The runtime's :class:`RoleAgent`, its model replaced by the oracle's answers.

    Args:
        instance: the task.
        phone: the virtual phone (the oracle reads its state for ``when`` steps).
        sop: the retrieved SOP the prompts should carry, or None.
        inject_at: the step at which a wrong tap is played instead of the oracle's (self-reflection data).
        seed: draws which wrong tap.
        step_refs: the planner's answer points at the step marked ``<- now`` (``next step``) where that does
            what the oracle does (:meth:`_pointer`).
    """

    checked = False  # the oracle's finish is the task's own reference, not a model's claim

    name = "oracle-teacher"
    vision = 0

    def __init__(self, instance: TaskInstance, phone: Any, sop: Any = None, *,
                 inject_at: int | None = None, seed: int = 0, step_refs: bool = False) -> None:
        self.script = ScriptedBackend()
        super().__init__(instance.goal, self.script, sop=sop, calls="every")  # the student learns every role
        self.oracle = Oracle(instance, phone.snapshot)
        self.done: list[str] = []
        self.answer = self._final_answer()
        self._subgoal = ""
        self.inject_at = inject_at
        self.pointers = step_refs
        self._rng = random.Random(f"{instance.id}:{seed}")
        self._steps = 0
        self._wrong: str | None = None  # the subgoal a wrong step was injected in place of, until undone
        self._recovering = False
        self.injected = 0

    def _final_answer(self) -> str | None:
        for step in reversed(self.oracle.steps):
            if "finish" in step and isinstance(step["finish"], dict) and step["finish"].get("answer") is not None:
                return str(step["finish"]["answer"])
        return None

    def _memory(self, obs: Observation) -> str:
        if self.answer and self.answer.casefold() in obs.to_text().casefold():
            return shorten(self.answer, _MEMORY)
        return ""

    def _wrong_action(self, obs: Observation, right: Action) -> Action | None:
        """A plausible wrong step: a tap on another interactive element of the screen (None if there is none)."""
        schema = decider_schema_for(obs, self.banned.get(screen_key(obs), set()), shown=self.shown(obs))
        tap = schema["$defs"]["Tap"]["properties"].get("target", {})
        choices = [i for i in tap.get("enum", []) if i != getattr(right, "target", None)
                   and not obs.elements[i].checkable and not obs.elements[i].editable
                   and "back" not in obs.elements[i].resource_id and "home" not in obs.elements[i].resource_id]
        return Tap(target=self._rng.choice(choices)) if choices else None

    def _pointer(self, obs: Observation, action: Action, subgoal: str) -> str:
        """``next step`` when the procedure's step marked ``<- now``, pointed at, brings the decider to the
        oracle's action as surely as ``subgoal`` does: its words are the same, or they ground the decider's
        grammar (:func:`~edgepilot.agent.roles.ground_subgoal`) to one that allows that action, or the step
        names nothing to act on (reading, finishing) and the oracle finishes (the decider then reads the
        step's text and answers); else ``subgoal``. Not before the first action (there is no planner call
        then)."""
        if self.sop is None or not self.history:
            return subgoal
        self._follow_sop(obs)  # the step the runtime will show as ``<- now`` (idempotent)
        if self.sop.done:
            return subgoal
        schema = decider_schema_for(obs, self.banned.get(screen_key(obs), ()), kind=self.device_kind,
                                    shown=self.shown(obs))
        pointed = self.step_words(NEXT_STEP, obs, schema)
        if pointed is None:
            return subgoal
        words = pointed[1]
        if words is None:  # a step to read or to finish on: the decider is given its text, and finishes
            return NEXT_STEP if isinstance(action, Finish) else subgoal
        if words == subgoal:
            return NEXT_STEP
        grounded = self.grounding(schema, words, obs)
        return NEXT_STEP if grounded is not None and fits_schema(action, grounded) else subgoal

    def _answer(self, obs: Observation, action: Action, subgoal: str, extra_error: str | None = None) -> Decision:
        said = self._pointer(obs, action, subgoal) if self.pointers and extra_error is None else subgoal
        plan = Plan(progress=progress_text(self.done), subgoal=said, memory=self._memory(obs))
        self.script.answers = {"planner": dumps(plan.model_dump()), "decider": action_to_json(action)}
        decision = super().decide(obs)
        self.script.answers.pop("planner", None)  # no planner call before the first action
        decider = decision.calls[-1]
        schema = self.script.last_decider_schema
        if extra_error is not None:
            decider.error = extra_error
        elif schema is not None and not fits_schema(action, schema):
            decider.error = f"{TEACHER_ERROR}: the action {action_to_json(action)} is outside the screen's grammar"
        return decision

    def decide(self, obs: Observation) -> Decision:
        self._steps += 1
        if self._recovering:  # the corrected step after a wrong one: go back to where the task was
            self._recovering = False
            self._subgoal = shorten(f"go back: {self._wrong}", _SUBGOAL)
            return self._answer(obs, Key(key="back"), self._subgoal)
        saved = (self.oracle.pos, self.oracle.scrolls, self.oracle.scroll_direction)
        pos = self.oracle.pos
        action = fit_to_grammar(self.oracle.next_action(obs), obs, self.banned.get(screen_key(obs), set()))
        played = self.oracle.steps[self.oracle.pos - 1] if self.oracle.pos > pos else None
        step = next(iter(played.items())) if played is not None else None
        if step is not None and step[0] == "when":  # a skipped conditional never plays; take the played key
            step = next((kv for kv in played.items() if kv[0] != "when"), None)
        if isinstance(action, Finish) and step is None:
            step = ("finish", {})
        self._subgoal = subgoal_for(action, obs, step)
        if self.inject_at is not None and self._steps - 1 == self.inject_at and isinstance(action, (Tap, Type)):
            wrong = self._wrong_action(obs, action)
            if wrong is not None:
                self.oracle.pos, self.oracle.scrolls, self.oracle.scroll_direction = saved  # not played yet
                self._wrong = self._subgoal
                self.injected += 1
                return self._answer(obs, wrong, self._subgoal, extra_error=INJECTED)
        return self._answer(obs, action, self._subgoal)

    def reflect(self, before: Observation, action: Action, result: ActResult, after: Observation) -> Reflection:
        injected = self._wrong is not None and not self._recovering and self._subgoal == self._wrong
        if injected:
            verdict = Verdict(outcome="wrong_screen", note=shorten(f"this does not {self._wrong}", 50))
        else:
            verdict = Verdict(outcome="worked", note="")
        self.script.answers["reflector"] = dumps(verdict.model_dump())
        reflection = super().reflect(before, action, result, after)
        self.script.answers.pop("reflector", None)
        if injected:
            self._recovering = reflection.kind == "wrong_screen"  # an unchanged screen needs no going back
            if not self._recovering:
                self._wrong = None
        elif self._wrong is not None and isinstance(action, Key):
            self._wrong = None
        elif result.ok:
            self.done.append(self._subgoal)
        return reflection


class OracleTeacher:
    """The virtual phone's oracle as a teacher (privileged: it reads the phone's state)."""

    name = "oracle"

    def agent(self, instance: TaskInstance, phone: Any, sop: Any = None, *, inject_at: int | None = None,
              seed: int = 0, step_refs: bool = False) -> RoleAgent:
        return OracleTeacherAgent(instance, phone, sop, inject_at=inject_at, seed=seed, step_refs=step_refs)


TeacherFactory = Callable[[], Teacher]
