"""What a run tells its watchers: the TUI shows these events, the daemon streams them to its clients.

Each event is built through its model in :mod:`edgepilot.agent.records` (the :data:`RunEvent` union, tagged by
``event``), so every front end emits the same shapes, and travels as that model's JSON object (the daemon's
socket, the TUI's message queue). Every event has ``event`` (its kind) and ``run`` (the run's id). Kinds:

- ``started``: ``task``, ``device``, ``trajectory`` (folder), ``sop`` (name or null), ``policy``
- ``step``: ``index``, ``app``, ``thought``, ``action`` (the Action as JSON), ``summary`` (one line),
  ``gate`` (allowed / verdict / rule / answer), ``outcome`` (kind, note), ``ms`` (per phase), ``elements``
  (the numbered element list the model saw)
- ``confirm``: ``id`` (answer with it), ``timeout`` (seconds), ``request`` (ConfirmRequest.to_json)
- ``input``: ``id``, ``name``, ``description``, ``secret``, ``timeout``: a value the goal left out, asked before the
  run starts (the TUI; the daemon asks in a window on its desktop)
- ``confirmed``: ``id``, ``answer`` (yes / no / always; a timeout is no)
- ``paused`` / ``resumed``; ``queued`` (the daemon's: behind the run in progress)
- ``finished``: ``status``, ``reason``, ``answer``, ``steps``, ``seconds``

A front end may add fields of its own (the daemon's ``finished`` carries ``trajectory`` and ``stop``).
"""

from __future__ import annotations

from typing import Any

from edgepilot.agent.loop import RunResult, StepReport
from edgepilot.agent.records import (
    ConfirmedEvent,
    ConfirmEvent,
    FinishedEvent,
    InputEvent,
    PausedEvent,
    QueuedEvent,
    ResumedEvent,
    StartedEvent,
    StepEvent,
)

Event = dict[str, Any]
"""An event as it travels: the JSON object of one :data:`~edgepilot.agent.records.RunEvent`."""


def started_event(run: str, *, task: str, device: str, trajectory: str | None, sop: str | None,
                  policy: str | None, **extra: Any) -> Event:
    return StartedEvent(run=run, task=task, device=device, trajectory=trajectory, sop=sop, policy=policy,
                        **extra).to_json()


def step_event(run: str, step: StepReport) -> Event:
    """The step as its trajectory record says it, with a one-line summary; the model calls stay in the record."""
    record = step.to_record()
    return StepEvent(run=run, index=record.index, app=record.app, thought=record.thought, action=record.action,
                     summary=step.summary(), gate=record.gate, outcome=record.outcome, ms=record.ms,
                     elements=record.screen, error=record.error).to_json()


def confirm_event(run: str, *, id: str, timeout: float | None, request: dict[str, Any]) -> Event:
    return ConfirmEvent(run=run, id=id, timeout=timeout, request=request).to_json()


def input_event(run: str, *, id: str, name: str, description: str, secret: bool, timeout: float | None) -> Event:
    return InputEvent(run=run, id=id, name=name, description=description, secret=secret, timeout=timeout).to_json()


def confirmed_event(run: str, *, id: str, answer: str, **extra: Any) -> Event:
    return ConfirmedEvent(run=run, id=id, answer=answer, **extra).to_json()


def paused_event(run: str) -> Event:
    return PausedEvent(run=run).to_json()


def resumed_event(run: str) -> Event:
    return ResumedEvent(run=run).to_json()


def queued_event(run: str, **extra: Any) -> Event:
    return QueuedEvent(run=run, **extra).to_json()


def finished_fields(result: RunResult) -> dict[str, Any]:
    """How a run ended, as the ``finished`` event says it."""
    return result.to_record().model_dump(mode="json", include={"status", "reason", "answer", "steps", "seconds"})


def finished_event(run: str, result: RunResult) -> Event:
    return ended_event(run, **finished_fields(result))


def ended_event(run: str, *, status: str, reason: str = "", answer: str | None = None, steps: int | None = None,
                seconds: float | None = None, **extra: Any) -> Event:
    """A ``finished`` event for a run that ended without a result of the loop (it could not start, or crashed)."""
    return FinishedEvent(run=run, status=status, reason=reason, answer=answer, steps=steps, seconds=seconds,
                         **extra).to_json()
