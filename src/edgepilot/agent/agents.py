"""Agents: what picks the next action for a screen and judges what it did.

- :class:`RoleAgent`: planner → decider, then reflector after the action
  (Mobile-Agent-v2), every answer grammar-constrained; the main agent.
- :class:`ReactAgent`: the baseline, one free-text ReAct prompt per step with
  the same model and no grammar; answers that do not parse are failed steps.
- :class:`FnAgent`: wraps anything with ``next_action(obs)`` (the oracle).

The loop (:mod:`edgepilot.agent.loop`) calls ``decide`` on a screen, acts,
observes again and calls ``reflect`` with the screens before and after; a
refusal by the policy or a stuck loop reaches the agent through ``note``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from edgepilot.actions import (
    Action,
    Click,
    DeviceKind,
    DoubleClick,
    Hotkey,
    LongPress,
    RightClick,
    Swipe,
    Tap,
    Type,
    Wait,
    action_to_json,
)
from edgepilot.agent.roles import (
    DECIDER,
    PLANNER,
    REACT,
    REFLECTOR,
    Plan,
    RoleCall,
    Verdict,
    answer_choices,
    decider_schema_for,
    finishing,
    ground_open,
    ground_subgoal,
    keep_targets,
    parse_react,
    pinned_action,
    render,
    without_finish,
)
from edgepilot.controllers.base import ActResult
from edgepilot.errors import ActionError, PromptTooLong
from edgepilot.models.base import ModelBackend, StopCheck
from edgepilot.perception.describe import describe_action
from edgepilot.perception.diff import ScreenDiff, screen_diff
from edgepilot.perception.render import (
    SCREEN_BUDGET,
    ScreenText,
    TokenCount,
    estimate_tokens,
    render_screen,
    task_words,
)
from edgepilot.perception.signature import screen_key
from edgepilot.perception.types import Observation
from edgepilot.sop.carry import keeps, kept_choices, wanted_shapes, what_kept
from edgepilot.sop.follow import LIST_TAP, step_subgoals, switch_step
from edgepilot.sop.progress import SopProgress
from edgepilot.sop.retrieve import Match
from edgepilot.sop.screen import Screen

HISTORY = 5  # recent actions shown to the model
CALLS = ("needed", "every")
"""How a :class:`RoleAgent` spends model calls: ``needed`` (the default) asks a role only where the runtime cannot
tell the answer itself; ``every`` asks the planner, the decider and the reflector at every step they apply to, as
before (docs/architecture.md, "A model call only where one is needed")."""
ON_TRACK = ("worked", "changed")
"""The outcomes of a step after which a procedure's next step needs no planner."""
MIN_SCREEN_BUDGET = 150
"""Tokens a screen keeps however long the rest of a prompt grows (below this, a prompt that does not fit is an
error: the model's context is too short for the task)."""
NEXT_STEP = "next step"
"""A planner's subgoal that points at the procedure's step marked ``<- now`` instead of saying it."""
STEP_REF = re.compile(r"^step (\d+)\.?$", re.IGNORECASE)
"""A planner's subgoal that points at a step of the procedure by its number (``step 3``)."""
SEARCH_SCROLLS: tuple[Literal["up", "down"], ...] = ("up", "down")
"""The ways a grounded search for a label the screen lacks scrolls, in turn: the first whose end it has not
reached; once it has reached both, the decider is free."""


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis (the bounds of the roles' strings)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def progress_text(done: list[str]) -> str:
    """A planner's ``progress``: the subgoals done so far, latest last, the oldest dropped to fit its bound (the
    form the distillation teacher writes, so the runtime writes it the same way where it skips the planner)."""
    if not done:
        return "nothing yet"
    limit = Plan.model_fields["progress"].metadata[0].max_length
    parts = list(done)
    text = ", ".join(parts)
    while len(text) > limit and len(parts) > 1:
        parts.pop(0)
        text = "…, " + ", ".join(parts)
    return shorten(text, limit)


def _points_at_screen(action: Action | None, obs: Observation) -> bool:
    """A parsed action whose element targets (if any) are elements of ``obs``."""
    if action is None:
        return False
    for name in ("target", "to"):
        value = getattr(action, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < len(obs.elements):
            return False
    return True


@dataclass
class Decision:
    """What an agent wants to do on a screen, and the model calls it took."""

    action: Action | None
    thought: str = ""
    plan: dict[str, str] | None = None
    calls: list[RoleCall] = field(default_factory=list)
    error: str | None = None
    without: dict[str, str] = field(default_factory=dict)
    """The roles this step decided without asking the model, each with why (``planner``, ``decider``)."""


@dataclass
class Reflection:
    """How an action turned out: ``kind`` is worked / wrong_screen / no_change / changed / failed; ``by`` is who
    said so: ``check`` (the obvious cases), ``screen`` (the screens decided, no reflector asked) or ``model``."""

    kind: str
    note: str = ""
    by: str = "check"
    calls: list[RoleCall] = field(default_factory=list)


class StepAgent(Protocol):
    name: str

    def decide(self, obs: Observation) -> Decision: ...

    def reflect(self, before: Observation, action: Action, result: ActResult, after: Observation) -> Reflection: ...

    def note(self, text: str) -> None: ...

    def avoid(self, obs: Observation, action: Action) -> None: ...


class AgentBase:
    """History of recent actions, notes from the loop, and the cheap part of reflection."""

    name = "agent"

    def __init__(self, goal: str, device_kind: DeviceKind = "android") -> None:
        self.goal = goal
        self.device_kind: DeviceKind = device_kind
        self.system_prompt = "system" if device_kind == "android" else f"system_{device_kind}"
        self.history: list[str] = []
        self.notes: list[str] = []
        self.screen_budget = SCREEN_BUDGET
        """Tokens the screen's text may take in a prompt (:func:`~edgepilot.perception.render.render_screen`)."""
        self.count_tokens: TokenCount = estimate_tokens
        self.screen: ScreenText | None = None
        """The latest screen as the model was shown it: what was listed, what was left out."""
        self._context: tuple[Observation, str, int, str] | None = None

    def context(self, obs: Observation) -> str:
        """The shared start of every prompt for this screen (identical text → cached prefix).

        The screen is rendered within :attr:`screen_budget` tokens, keeping first what the goal and the
        procedure's current step name.
        """
        procedure = self.procedure_text()
        cached = self._context
        if cached is None or cached[0] is not obs or cached[1] != procedure or cached[2] != self.screen_budget:
            self.screen = render_screen(obs, budget=self.screen_budget, count=self.count_tokens,
                                        keep=task_words(self.goal, self.step_text()))
            cached = self._context = (obs, procedure, self.screen_budget,
                                      render("context", goal=self.goal, procedure=procedure, screen=self.screen.text))
        return cached[3]

    def shown(self, obs: Observation) -> tuple[int, ...] | None:
        """The element numbers the model was shown for ``obs`` when some were left out (None: all were)."""
        self.context(obs)
        return self.screen.shown if self.screen is not None and self.screen.left_out else None

    def procedure_text(self) -> str:
        """The SOP the agent follows, as prompt lines ('' without one)."""
        return ""

    def step_text(self) -> str:
        """The procedure's current step in words ('' without one): its labels rank first on a long screen."""
        return ""

    def history_text(self) -> str:
        if not self.history:
            return "(none yet)"
        first = len(self.history) - len(self.history[-HISTORY:]) + 1
        return "\n".join(f"{first + i}. {h}" for i, h in enumerate(self.history[-HISTORY:]))

    def notes_text(self) -> str:
        return "".join(f"Warning: {n}\n" for n in self.notes[-2:])

    def note(self, text: str) -> None:
        self.notes.append(text)

    def avoid(self, obs: Observation, action: Action) -> None:
        """Told by the loop that ``action`` went round in circles on this screen; by default only the note counts."""

    def verify(self, steps: list[Any], answer: str | None) -> str | None:
        """Why the finished run is not a checked success (None: it is); see :mod:`edgepilot.agent.verify`.
        A scripted agent is trusted (its own checks are the task's); model agents check."""
        return None

    def remember(self, action: Action, obs: Observation, outcome: str) -> None:
        self.history.append(f"{describe_action(action, obs)} -> {outcome}")

    @staticmethod
    def cheap_reflection(action: Action, result: ActResult, diff: ScreenDiff) -> Reflection | None:
        """A verdict without a model call, when one is obvious."""
        if not result.ok:
            return Reflection("failed", result.message[:200])
        if diff.same:
            return Reflection("no_change", "the screen did not change")
        if isinstance(action, Wait):
            return Reflection("changed", "the screen changed while waiting")
        return None

    def reflect(self, before: Observation, action: Action, result: ActResult, after: Observation) -> Reflection:
        verdict = (self.cheap_reflection(action, result, screen_diff(before, after))
                   or Reflection("changed", "the screen changed"))
        self.remember(action, before, verdict.kind)
        return verdict


class FnAgent(AgentBase):
    """An agent from a function of the screen (the oracle); it never calls a model."""

    def __init__(self, name: str, next_action: Callable[[Observation], Action], goal: str = "") -> None:
        super().__init__(goal)
        self.name = name
        self._next = next_action

    def decide(self, obs: Observation) -> Decision:
        return Decision(self._next(obs))


def screen_image(obs: Observation, max_side: int) -> tuple[bytes, ...]:
    """For a backend that sees images (``vision`` = the longest side it takes, 0 for none): the screenshot with
    each element's number drawn on it (set-of-mark), downscaled; nothing for a secure or missing screenshot."""
    if not max_side or not obs.screenshot_png or obs.secure:
        return ()
    from edgepilot.perception.som import downscale, set_of_marks  # Pillow, only for a model that sees images

    return (downscale(set_of_marks(obs), max_side),)


class _Checked:
    """Model agents check a finish against the goal before it counts as a success."""

    match: Any = None
    goal: str
    checked = True
    """A finish counts as a success only when a procedure's checks passed (a scripted agent is trusted)."""

    def verify(self, steps: list[Any], answer: str | None) -> str | None:
        from edgepilot.agent.verify import check_result

        return check_result(self.match, self.goal, steps, answer)

    def impossible(self, action: Any, after: Any, before: Any = None) -> str | None:
        from edgepilot.agent.verify import nothing_found

        return nothing_found(self.match, action, after, before)


class RoleAgent(_Checked, AgentBase):
    """Planner, decider and reflector sharing one model.

    Args:
        goal: the task in the user's words.
        backend: the model every role runs on.
        reflect_with_model: ask the reflector when the cheap checks cannot tell.
        sop: the procedure to follow, if one was retrieved.
        device_kind: ``android`` or ``desktop`` (``Device.info.kind``): picks the
            system prompt and the action set the decider's grammar offers.
        vote: decider answers a step (above 1: self-consistent voting, :meth:`_vote`).
        vote_temperature: the sampling temperature of the extra answers.
        should_stop: asked during every model call (the run's stop; :class:`~edgepilot.agent.loop.RunControl`).
        ground: when the planner's subgoal names an action on an element this screen
            has (``tap "Wi-Fi"``), narrow the decider's grammar to it; a tap on a label the screen
            lacks becomes a scroll of its list, up until a scroll changes nothing, then down, and
            once both ends were reached the decider is free again (:func:`ground_subgoal`).
        calls: ``needed`` or ``every`` (:data:`CALLS`). With ``needed``: no planner while a procedure (or a
            memory route) is on track, its next step taken as the subgoal; no decider when the grounded grammar
            leaves one action (:func:`pinned_action`); no reflector when a check on the screens decides
            (:meth:`settled`). The policy gate and the loop's checks run on every step either way.
    """

    name = "model"

    def __init__(self, goal: str, backend: ModelBackend, *, reflect_with_model: bool = True,
                 sop: Match | None = None, device_kind: DeviceKind = "android", vote: int = 1,
                 vote_temperature: float = 0.7, ground: bool = True, should_stop: StopCheck | None = None,
                 calls: str = "needed", screen_budget: int = SCREEN_BUDGET) -> None:
        super().__init__(goal, device_kind)
        if calls not in CALLS:
            raise ValueError(f"calls is one of {', '.join(CALLS)}, not {calls!r}")
        self.calls = calls
        self._last_kind: str | None = None
        """The last step's outcome (``note`` after the loop's or the policy's word): whether the run is on track."""
        self.subgoals_done: list[str] = []
        """The subgoals whose actions the device carried out, in the words the decider read (the progress written
        where the planner is not asked)."""
        self._passed: list[str] = []
        """Steps found done already on this screen (a switch in the state wanted), for the step's record."""
        self.screen_budget = screen_budget  # (RoleAgent) tokens the screen may take; config.toml screen_budget
        self.backend = backend
        self.should_stop = should_stop
        self.ground = ground
        self.vote = max(1, vote)
        self.vote_temperature = vote_temperature
        self.sop = SopProgress.start(sop) if sop is not None else None
        self.match = sop
        self.reflect_with_model = reflect_with_model
        self.plan = Plan(progress="nothing yet", subgoal="", memory="")
        self.memory: list[str] = []
        self._last_decider: RoleCall | None = None
        self.banned: dict[tuple, set[int]] = {}  # screen key -> element indices the decider may not tap there
        self.list_ends: dict[str, set[str]] = {}  # subgoal -> the swipe directions that reached a list's end
        self.count_tokens = getattr(backend, "count_tokens", estimate_tokens)
        self.screen_trims = 0
        """Times a prompt did not fit the model's context and the screen was rendered shorter."""

    def note(self, text: str) -> None:
        super().note(text)
        self._last_kind = "note"  # a refusal or a loop: the planner weighs it

    def avoid(self, obs: Observation, action: Action) -> None:
        """Take a tap that went round in circles on this screen out of the decider's grammar for this screen."""
        target = getattr(action, "target", None)
        if isinstance(action, (Tap, LongPress, Click, DoubleClick, RightClick)) and isinstance(target, int):
            self.banned.setdefault(screen_key(obs), set()).add(target)

    def step_text(self) -> str:
        step = self.sop.step if self.sop is not None and not self.sop.done else None
        return step.text if step is not None else ""

    def ask(self, role: Any, obs: Observation, **kwargs: Any) -> tuple[Any, RoleCall]:
        """``role.call`` with this screen's context; a prompt too long for the model's context is asked again
        with the screen rendered shorter by what did not fit (never below :data:`MIN_SCREEN_BUDGET`).

        Raises:
            PromptTooLong: it does not fit even with the shortest screen.
        """
        while True:
            try:
                return role.call(self.backend, self.context(obs), **kwargs)
            except PromptTooLong as exc:
                if self.screen_budget <= MIN_SCREEN_BUDGET:
                    raise
                self.screen_budget = max(MIN_SCREEN_BUDGET, self.screen_budget - (exc.tokens - exc.limit) - 32)
                self.screen_trims += 1
                shown = self.shown(obs)
                if kwargs.get("schema") is not None and shown is not None:  # only what the model is now shown
                    kwargs["schema"] = keep_targets(kwargs["schema"], shown)

    def memory_text(self) -> str:
        return "; ".join(self.memory[-3:]) or "(nothing)"

    def procedure_text(self) -> str:
        if self.sop is None:
            return ""
        return "Procedure (follow it unless the screen disagrees):\n" + self.sop.render(screens=False).strip() + "\n"

    def step_words(self, subgoal: str, obs: Observation, schema: dict) -> tuple[int, str | None] | None:
        """What a planner's ``next step`` (the step marked ``<- now``) or ``step N`` stands for: (the step's
        number, the step in words), or None when ``subgoal`` points at no step of the procedure.

        The words are the first of the step's ways (:func:`~edgepilot.sop.follow.step_subgoals`) whose
        target this screen has, by the grounding's rules (:func:`ground_subgoal`), else its first way; None
        for a step that names nothing to act on (reading an answer, finishing). A pointer spares a small
        planner the copying of the step's labels and values, which it got wrong where a step departed from
        a flow it had trained on; ``next step`` spares it the step's number too (docs/distill.md, "Steps by
        number").
        """
        if self.sop is None:
            return None
        said = subgoal.strip().rstrip(".")
        m = STEP_REF.match(said)
        number = self.sop.current if said.casefold() == NEXT_STEP else int(m[1]) if m is not None else 0
        if not 1 <= number <= len(self.sop.steps):
            return None
        ways = step_subgoals(self.sop.steps[number - 1].text)
        words = next((w for w in ways if ground_subgoal(schema, w, obs, scroll=None) is not None),
                     ways[0] if ways else None)
        return number, words

    def unworded_step(self, schema: dict, number: int, obs: Observation) -> dict:
        """The decider's ``schema`` for a pointed step with nothing to act on: only finishing where the task ends
        there (:meth:`SopProgress.closes`), with an answer read where the step points when the procedure asks
        for one (:func:`answer_choices`); anything but finishing elsewhere (``Find the row of the alarm``)."""
        if self.sop is None:
            return schema
        if not self.sop.closes(number):
            return without_finish(schema)
        step = self.sop.steps[number - 1].text
        then = self.sop.steps[number].text if number < len(self.sop.steps) else ""
        before = self.sop.steps[number - 2].text if number >= 2 else ""
        if then.lower().startswith("finish and answer"):  # ``Read the value ...`` then ``... with the amount.``
            step = f"{step} {then}"
        elif '"' not in step and before.lower().startswith("read") and '"' in before:
            step = f"{before} {step}"  # ``Finish and answer with that value.``: the value the step before reads
        choices = answer_choices(obs, step, self.memory, self.goal)
        return finishing(schema, answer=self.sop.answers(number), choices=choices)

    def grounding(self, schema: dict, subgoal: str, obs: Observation) -> dict | None:
        """``schema`` narrowed to what ``subgoal`` names (:func:`ground_subgoal`); a label the screen lacks is
        searched by scrolling the first way whose list end this subgoal has not reached yet."""
        ends = self.list_ends.get(subgoal, set())
        scroll = next((way for way in SEARCH_SCROLLS if way not in ends), None)
        return ground_subgoal(schema, subgoal, obs, scroll=scroll)

    def sop_sensitive(self) -> str | None:
        """The kind of the SOP step the agent is on when that step is marked sensitive (the policy then asks)."""
        step = self.sop.step if self.sop is not None else None
        return (step.kind or "sensitive") if step is not None and step.sensitive else None

    def _follow_sop(self, obs: Observation) -> None:
        """Move in the SOP to the step the screen's title belongs to (:meth:`SopProgress.locate`): ahead
        when a later step expects it, back when the run returned to a screen an earlier step expects.

        The title is the app bar's (:attr:`Screen.title`, the one learned SOPs record as ``(screen: ...)``),
        else a text near the top that cannot be acted on. A row near the top of a list is not a title: on
        Settings' first page ``Network & internet`` names where a tap leads, and taking it for the title
        moved the procedure past the step still to do (the tap on that row).
        """
        if self.sop is None or self.sop.done:
            return
        title = Screen.from_observation(obs).title
        titles = [title] if title else [
            node.text.split("\n")[0] for node in obs.elements[:10]
            if node.text and node.bounds.bottom < obs.screen_height * 0.2
            and not (node.clickable or node.long_clickable or node.editable)]
        for text in titles:
            found = self.sop.locate(text)
            if found is not None and found != self.sop.current:
                self.sop = self.sop.advance(found)
                return

    def on_track(self) -> str | None:
        """Why this step's subgoal is the procedure's next step without asking the planner (``calls="needed"``), or
        None: ask it. On track means a procedure (or a memory route) is followed, the run has not left it, and the
        last action did its step with an outcome that worked, with no refusal or loop since (:data:`ON_TRACK`).
        At the run's start the first step is the procedure's, where before the decider read the whole goal."""
        if self.calls != "needed" or self.sop is None or self.sop.done or self.sop.departed is not None:
            return None
        if not self.history and self._last_kind is None:
            return f"the run starts at step {self.sop.current} of the procedure"
        if self._last_kind not in ON_TRACK:
            return None
        return f"the last action did its step ({self._last_kind}); step {self.sop.current} is next"

    def decide(self, obs: Observation, *, resumed: tuple[str, list[RoleCall]] | None = None) -> Decision:
        """The next action on ``obs``. ``resumed``: this screen's decision goes on past a step done without an
        action (a switch already right, a value kept), with why and the model calls it took so far."""
        self._follow_sop(obs)
        calls: list[RoleCall] = list(resumed[1]) if resumed is not None else []
        planned, without = False, {}
        track = resumed[0] if resumed is not None else self.on_track()
        if track is not None:
            self.plan, planned = self.plan.model_copy(update={"subgoal": NEXT_STEP,
                                                              "progress": progress_text(self.subgoals_done)}), True
            if self.history and not any(c.role == "planner" for c in calls):  # at the start no planner is asked
                without["planner"] = track
        elif self.history or self.notes:  # before the first action (and word from the loop) the subgoal is the task
            plan, plan_call = self.ask(PLANNER, obs, should_stop=self.should_stop,
                                       system=self.system_prompt, progress=self.plan.progress,
                                       memory=self.memory_text(), history=self.history_text(),
                                       notes=self.notes_text())
            calls.append(plan_call)
            if plan is not None:
                self.plan, planned = plan, True
                if plan.memory.strip() and plan.memory.strip() not in self.memory:
                    self.memory.append(plan.memory.strip())
        schema = decider_schema_for(obs, self.banned.get(screen_key(obs), ()), kind=self.device_kind,
                                    shown=self.shown(obs))
        pointed = self.step_words(self.plan.subgoal, obs, schema) if planned else None
        if pointed is not None and self.sop is not None:  # the decider reads the step: its words, else its text
            number, words = pointed
            self.plan = self.plan.model_copy(update={"subgoal": words or self.sop.steps[number - 1].text})
            if words is None:
                schema = self.unworded_step(schema, number, obs)
        switch = (switch_step(self.sop.steps[pointed[0] - 1].text, obs)
                  if pointed is not None and self.sop is not None and self.calls == "needed" else None)
        if switch == "skip" and self.sop is not None:  # the switch already shows it: the step is done
            self.sop = self.sop.advance(pointed[0] + 1)
            self._passed.append(f"step {pointed[0]} was done already (the switch showed the state it wants)")
            return self.decide(obs, resumed=(f"step {pointed[0]} was done already; step {self.sop.current} is next",
                                             calls))
        if pointed is not None and self.sop is not None and keeps(self.sop.steps[pointed[0] - 1].text):
            kept = self._keep(obs, schema, pointed[0], calls)
            if kept is not None:
                return kept
        grounded = self.grounding(schema, self.plan.subgoal, obs) if planned and self.ground else None
        if grounded is None and pointed is not None and self.ground:
            grounded = ground_open(schema, self.plan.subgoal)
        schema = grounded or schema
        values = {"progress": self.plan.progress, "subgoal": self.plan.subgoal or self.goal,
                  "memory": self.memory_text(), "history": self.history_text(), "notes": self.notes_text()}
        action = pinned_action(schema, obs) if grounded and self.calls == "needed" and self.vote == 1 else None
        if isinstance(switch, Tap) and self.vote == 1:
            action = Click(target=switch.target) if self.device_kind == "desktop" else switch
            without["decider"] = "the switch the step names does not show the state it wants"
        elif action is not None:
            without["decider"] = f"the grammar of {self.plan.subgoal!r} leaves one action"
        if self._passed:
            without["procedure"] = "; ".join(self._passed)
            self._passed = []
        if action is not None:
            self._last_decider = self._as_answered(obs, schema, values, action)
            decide_error = None
        else:
            images = screen_image(obs, self.backend.vision)
            action, decide_call = self.ask(DECIDER, obs, should_stop=self.should_stop, schema=schema,
                                           system=self.system_prompt, images=images, **values)
            calls.append(decide_call)
            if self.vote > 1:
                action, decide_call, samples = self._vote(obs, self.context(obs), schema, images, values, action,
                                                          decide_call)
                calls += samples
            self._last_decider = decide_call
            decide_error = decide_call.error
        if action is None:
            self.history.append("(an answer that was not a valid action)")
        plan = self.plan.model_dump() | ({"sop": self.sop.record()} if self.sop is not None else {}) | \
            ({"grounded": True} if grounded else {}) | ({"step_ref": pointed[0]} if pointed is not None else {}) | \
            ({"screen": self.screen.record()} if self.screen is not None and self.screen.left_out else {})
        return Decision(action, thought=self.plan.subgoal, plan=plan, calls=calls, error=decide_error,
                        without=without)

    def _keep(self, obs: Observation, schema: dict, number: int, calls: list[RoleCall]) -> Decision | None:
        """Reading step ``number`` keeps a value for a later step (``Read the code ... and remember it``;
        :mod:`edgepilot.sop.carry`): the value is read off this screen, the procedure's later steps that use it
        say it, and the decision goes on with the next step. The value is the one choice of the kind the step
        reads (:func:`~edgepilot.sop.carry.kept_choices`), else the decider's pick among the choices, with a
        grammar that allows only them. None where this screen shows nothing of the kind to read, or is the screen
        another step expects (the decider acts: the value may be further down, or on the screen the step
        expects)."""
        if self.sop is None:
            return None
        step = self.sop.steps[number - 1].text
        expected = (self.sop.steps[number - 1].screen or "").strip().casefold()
        title = (Screen.from_observation(obs).title or "").strip().casefold()
        if expected and title and title != expected and title in {(s.screen or "").strip().casefold()
                                                                   for s in self.sop.steps}:
            return None  # the screen another step expects: what the step reads is not here yet
        choices = self._keepable(obs, step)
        if not choices:
            return None
        if len(choices) == 1:
            value, how = choices[0], "the one value of its kind on the screen"
        else:
            values = {"progress": self.plan.progress, "subgoal": step, "memory": self.memory_text(),
                      "history": self.history_text(), "notes": self.notes_text()}
            action, call = self.ask(DECIDER, obs, should_stop=self.should_stop,
                                    schema=finishing(schema, answer=True, choices=choices),
                                    system=self.system_prompt, images=screen_image(obs, self.backend.vision), **values)
            calls.append(call)
            value, how = getattr(action, "answer", None), f"the decider's pick of {len(choices)}"
            if not value:
                return None
        self.sop = self.sop.keep(number, value)
        what = what_kept(step) or "value"
        if f"{what}: {value}" not in self.memory:
            self.memory.append(f"{what}: {value}")
        self._passed.append(f"step {number} kept {value!r} for later ({how})")
        return self.decide(obs, resumed=(f"step {number} kept what it read; step {self.sop.current} is next", calls))

    def _keepable(self, obs: Observation, step: str) -> list[str]:
        """What reading step ``step`` may keep off ``obs`` (:func:`~edgepilot.sop.carry.kept_choices`)."""
        return kept_choices(obs, step, answer_choices(obs, step, (), self.goal))

    def _as_answered(self, obs: Observation, schema: dict, values: dict[str, Any], action: Action) -> RoleCall:
        """The decider's turn as if it had been asked and answered ``action`` (not a call: nothing ran), so that a
        reflector asked after it reads the conversation it was taught on."""
        messages = DECIDER.messages(self.context(obs), values, system=self.system_prompt)
        return RoleCall("decider", [{"role": m.role, "content": m.content} for m in messages],
                        output=action_to_json(action))

    def _vote(self, obs: Observation, context: str, schema: dict, images: tuple[bytes, ...],
              values: dict[str, Any], greedy: Action | None,
              greedy_call: RoleCall) -> tuple[Action | None, RoleCall, list[RoleCall]]:
        """Self-consistent action voting: ``vote - 1`` sampled answers beside the greedy one; the commonest wins.

        Answers that do not parse, or point at no element of this screen, get no vote; a tie goes to
        the answer seen first (the greedy one first). The prompt is the greedy call's, so llama.cpp
        reads it once and each sample costs only its few answer tokens. Returns the winner, the call
        that gave it (the reflector follows that conversation) and the sample calls (all recorded,
        as ``decider-sample``).
        """
        answers: list[tuple[Action, RoleCall]] = [(greedy, greedy_call)] if _points_at_screen(greedy, obs) else []
        samples = []
        for _ in range(self.vote - 1):
            sampled, call = DECIDER.call(self.backend, context, should_stop=self.should_stop, schema=schema,
                                         system=self.system_prompt, images=images,
                                         temperature=self.vote_temperature, **values)
            call.role = "decider-sample"
            samples.append(call)
            if _points_at_screen(sampled, obs):
                answers.append((sampled, call))
        if not answers:
            return greedy, greedy_call, samples
        counts = Counter(a for a, _ in answers)  # actions are frozen models: equal fields, equal actions
        best = max(range(len(answers)), key=lambda i: (counts[answers[i][0]], -i))
        return answers[best][0], answers[best][1], samples

    def reflect(self, before: Observation, action: Action, result: ActResult, after: Observation) -> Reflection:
        diff = screen_diff(before, after)
        verdict = self.cheap_reflection(action, result, diff)
        if verdict is None and self.calls == "needed":
            verdict = self.settled(before, action, after)
        if verdict is None and not self.reflect_with_model:
            verdict = Reflection("changed", "the screen changed")
        if verdict is None:
            try:
                answer, call = REFLECTOR.call(self.backend, self.context(before), should_stop=self.should_stop,
                                              after=self._last_decider,
                                              action=describe_action(action, before),
                                              result=result.message[:200],
                                              device="computer" if self.device_kind == "desktop" else "phone",
                                              diff=diff.summary(limit=4))
            except PromptTooLong:  # the decider's prompt plus the question: judge by the screen instead
                answer, call = None, None
            if call is None:
                verdict = Reflection("changed", "the screen changed (the reflector's prompt did not fit)")
            elif isinstance(answer, Verdict):
                verdict = Reflection(answer.outcome, answer.note, "model", [call])
            else:
                verdict = Reflection("changed", "the reflector's answer did not parse", "model", [call])
        said = verdict.note if verdict.by != "screen" else ""  # the screens' reasons stay in the record
        self.remember(action, before, verdict.kind + (f" ({said})" if said else ""))
        if result.ok:
            self.subgoals_done.append(shorten(self.plan.subgoal or describe_action(action, before), 50))
        if isinstance(action, Swipe) and verdict.kind == "no_change":  # the list's end: search the other way
            self.list_ends.setdefault(self.plan.subgoal, set()).add(action.direction)
        self._last_kind = "off"
        if self.sop is not None and not self.sop.done:
            silent = isinstance(action, Hotkey) and verdict.kind == "no_change" and result.ok
            if (verdict.kind in ON_TRACK or silent) and self.sop.done_by(action, before):
                self.sop = self.sop.advance()  # the hotkey the step names, done: a copy (ctrl+c) shows nothing
                self._last_kind = "worked" if silent else verdict.kind
            elif verdict.kind == "wrong_screen":
                self.sop = self.sop.depart(verdict.note or "the screen disagrees with the procedure")
        return verdict

    def impossible(self, action: Any, after: Any, before: Any = None) -> str | None:
        """Why the goal cannot be done here (:func:`~edgepilot.agent.verify.nothing_found`), or: the run is on the
        page a reading step reads (the one its procedure expects, or the page of the item the step before tapped)
        and the page, which does not scroll, shows nothing of the kind the step keeps (a contact with no email to
        send on); else None."""
        found = super().impossible(action, after, before)
        if found or self.sop is None or self.sop.done or after is None:
            return found
        step = self.sop.step
        missing = self._not_in_list(step.text if step is not None else "", after)
        if missing:
            return missing
        if step is None or not keeps(step.text) or not wanted_shapes(step.text):
            return None
        title = (Screen.from_observation(after).title or "").strip()
        before_step = self.sop.steps[self.sop.current - 2].text if self.sop.current >= 2 else ""
        tapped = LIST_TAP.match(before_step)
        on_page = bool(title) and (title.casefold() == (step.screen or "").strip().casefold()
                                   or (tapped is not None and title.casefold() == tapped["value"].casefold()))
        if not on_page or any(node.scrollable for node in after.elements):
            return None
        if self._keepable(after, step.text):
            return None
        what = re.sub(r'\s+(?:under|above|below|in|on|of)\b.*$', "", what_kept(step.text) or "the value")
        return f"{title!r} shows no {what.removeprefix('the ')} to read (step {self.sop.current}: {step.text})"

    def _not_in_list(self, step: str, obs: Observation) -> str | None:
        """Why the goal cannot be done here when the step taps a named item of a list (``Tap "Olivia Brown" in
        the list``) and the list was scrolled to both of its ends for it without showing it (the run would
        otherwise pick another item, and delete or call the wrong one); else None."""
        named = LIST_TAP.match(step)
        if named is None:
            return None
        name = named["value"].casefold()
        ends = set().union(*(d for subgoal, d in self.list_ends.items() if name in subgoal.casefold()))
        if not {"up", "down"} <= ends or any(name in f"{n.text} {n.content_desc}".casefold() for n in obs.elements):
            return None
        app = getattr(obs, "package", "") or "this app"
        return f"nothing named {named['value']!r} was found in {app}'s list, scrolled to both ends"

    def settled(self, before: Observation, action: Action, after: Observation) -> Reflection | None:
        """A verdict from the screens alone, where they decide it, else None (the reflector is asked): a field
        shows the typed text and only it; the switch tapped shows the other value; or the action did the
        procedure's step and the new screen is the one the next step expects (its ``(screen: ...)``) or has what
        that step acts on. Only a ``worked`` is ever decided here: a doubt goes to the model."""
        if isinstance(action, Type) and action.text.strip():
            # the field shows what was typed and nothing else: text typed after a field's old text is a doubt
            if any(n.text.strip() == action.text.strip() for n in after.elements if n.editable):
                return Reflection("worked", "the field shows the typed text", "screen")
        target = getattr(action, "target", None)
        if isinstance(action, (Tap, Click)) and isinstance(target, int) and 0 <= target < len(before.elements):
            node = before.elements[target]
            twin = next((n for n in after.elements if n.bounds == node.bounds and n.class_name == node.class_name
                         and n.checkable), None) if node.checkable else None
            if twin is not None and twin.checked != node.checked:
                return Reflection("worked", f"the switch now shows {'on' if twin.checked else 'off'}", "screen")
        if self.sop is None or self.sop.done or not self.sop.done_by(action, before):
            return None
        number = self.sop.current + 1
        if number > len(self.sop.steps):
            return None
        step = self.sop.steps[number - 1]
        title = Screen.from_observation(after).title
        if step.screen and title and step.screen.strip().casefold() == title.strip().casefold():
            return Reflection("worked", f"the screen is {title!r}, where step {number} expects to be", "screen")
        schema = decider_schema_for(after, kind=self.device_kind)
        for way in step_subgoals(step.text):
            names = way.startswith(('tap "', 'long press "')) or (way.startswith('type "') and " into " in way)
            if names and ground_subgoal(schema, way, after, scroll=None) is not None:
                return Reflection("worked", f"the screen has what step {number} acts on ({way})", "screen")
        return None


class ReactAgent(_Checked, AgentBase):
    """The baseline: one free-text ReAct prompt per step, same model, no grammar."""

    name = "baseline"

    def __init__(self, goal: str, backend: ModelBackend, *, device_kind: DeviceKind = "android",
                 should_stop: StopCheck | None = None) -> None:
        super().__init__(goal, device_kind)
        self.backend = backend
        self.should_stop = should_stop

    def decide(self, obs: Observation) -> Decision:
        text, call = REACT.call(self.backend, self.context(obs), should_stop=self.should_stop,
                                system=self.system_prompt, history=self.history_text(), notes=self.notes_text())
        try:
            thought, action = parse_react(text)
        except ActionError as exc:
            call.error = str(exc)
            self.history.append("(an answer that was not a valid action)")
            return Decision(None, calls=[call], error=str(exc))
        return Decision(action, thought=thought, calls=[call])
