"""What a run leaves behind, typed: the records the loop writes and replay, report, TUI, daemon and distill read.

    RunMeta     meta.json      what ran: goal, agent, model, device, step budget, start time
    StepRecord  steps.jsonl    one line per step: the screen, the plan, the action, the gate, the outcome, the calls
    RunRecord   result.json    how the run ended (plus a benchmark's verdict, where one judged it)

And the run's events, one :data:`RunEvent` union tagged by ``event``, that the TUI shows and the daemon streams
(docs/daemon.md). Every record reads what earlier versions wrote: fields added since default, and fields it does
not know are kept (``extra="allow"``), so an old trajectory still replays and a newer one still opens here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from edgepilot.actions import Action, parse_action
from edgepilot.errors import ActionError


class Record(BaseModel):
    """Frozen, and tolerant of fields it does not know (written by another version)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    def to_json(self) -> dict[str, Any]:
        """The JSON object, as written to disk or the socket."""
        return self.model_dump(mode="json")


class GateRecord(Record):
    """The policy's answer for the step's action (:class:`~edgepilot.policy.gate.GateDecision`)."""

    allowed: bool = True
    reason: str = ""
    verdict: str | None = None
    rule: str | None = None
    asked: bool = False
    answer: str | None = None


class ResultRecord(Record):
    """What the device said when the action was carried out."""

    ok: bool = False
    message: str = ""


class OutcomeRecord(Record):
    """The reflection: ``kind`` is worked / wrong_screen / no_change / changed / failed / refused / invalid..."""

    kind: str = "?"
    note: str = ""
    by: str | None = None


class CallRecord(Record):
    """One model call of a role: the messages sent, the answer, tokens and time."""

    role: str = "?"
    messages: list[dict[str, Any]] = Field(default_factory=list)
    output: str | None = None
    ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    constrained: bool | None = None
    prompt_evaluated: int | None = None
    prefill_ms: float | None = None
    decode_ms: float | None = None
    error: str | None = None


class StepRecord(Record):
    """One step of a run, as written to ``steps.jsonl`` (fields: docs/trajectories.md)."""

    index: int
    app: str | None = None
    screen: str = ""
    plan: dict[str, Any] | None = None
    thought: str | None = None
    action: dict[str, Any] | None = None
    target_bounds: list[int] | None = None
    gate: GateRecord | None = None
    result: ResultRecord | None = None
    outcome: OutcomeRecord | None = None
    calls: list[CallRecord] = Field(default_factory=list)
    without: dict[str, str] = Field(default_factory=dict)
    """The roles this step did without a model call, each with why (``planner``, ``decider``, ``reflector``)."""
    ms: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    screenshot: str | None = None

    def parsed_action(self) -> Action | None:
        """The step's action as an :data:`~edgepilot.actions.Action`; None when there was none or it no longer
        parses (written by a version with another action space)."""
        if self.action is None:
            return None
        try:
            return parse_action(self.action)
        except ActionError:
            return None


class RunMeta(Record):
    """What ran (``meta.json``); front ends and suites add their own fields (task, template, sop...)."""

    format: int = 1
    started: str | None = None
    edgepilot: str | None = None
    goal: str = ""
    agent: str | None = None
    model: str | None = None
    device: str | None = None
    max_steps: int | None = None


class RunRecord(Record):
    """How a run ended (``result.json``); a benchmark adds ``success`` and ``failed_checks``."""

    status: str = "?"
    reason: str = ""
    answer: str | None = None
    steps: int | None = None
    seconds: float | None = None
    finished_at: str | None = None
    final_screenshot: str | None = None
    success: bool | None = None
    failed_checks: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------- events


class _Event(Record):
    run: str


class StartedEvent(_Event):
    event: Literal["started"] = "started"
    task: str
    device: str
    trajectory: str | None = None
    sop: str | None = None
    policy: str | None = None


class StepEvent(_Event):
    """A step as watchers see it: the record's essentials plus a one-line summary and the element list."""

    event: Literal["step"] = "step"
    index: int
    app: str | None = None
    thought: str | None = None
    action: dict[str, Any] | None = None
    summary: str = ""
    gate: GateRecord | None = None
    outcome: OutcomeRecord | None = None
    ms: dict[str, float] = Field(default_factory=dict)
    elements: str = ""
    error: str | None = None


class ConfirmEvent(_Event):
    event: Literal["confirm"] = "confirm"
    id: str
    timeout: float | None = None
    request: dict[str, Any] = Field(default_factory=dict)


class InputEvent(_Event):
    """A value the goal left out (a PIN), asked of the person watching; answered by id (the TUI's value box)."""

    event: Literal["input"] = "input"
    id: str
    name: str
    description: str = ""
    secret: bool = False
    timeout: float | None = None


class ConfirmedEvent(_Event):
    event: Literal["confirmed"] = "confirmed"
    id: str
    answer: str


class PausedEvent(_Event):
    event: Literal["paused"] = "paused"


class ResumedEvent(_Event):
    event: Literal["resumed"] = "resumed"


class QueuedEvent(_Event):
    """The daemon's: a task was queued behind the run in progress."""

    event: Literal["queued"] = "queued"


class FinishedEvent(_Event):
    event: Literal["finished"] = "finished"
    status: str
    reason: str = ""
    answer: str | None = None
    steps: int | None = None
    seconds: float | None = None


RunEvent = Annotated[StartedEvent | StepEvent | ConfirmEvent | InputEvent | ConfirmedEvent | PausedEvent
                     | ResumedEvent | QueuedEvent | FinishedEvent, Field(discriminator="event")]
_EVENTS: TypeAdapter[RunEvent] = TypeAdapter(RunEvent)


def parse_event(data: dict[str, Any]) -> RunEvent:
    """An event from its JSON object.

    Raises:
        ValueError: not an event of a known kind, or its fields are wrong.
    """
    try:
        return _EVENTS.validate_python(data)
    except ValidationError as exc:
        raise ValueError(f"not a run event: {exc.errors()[0]['msg']}") from exc
