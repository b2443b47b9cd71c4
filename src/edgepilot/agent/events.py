"""What a run tells its watchers, as JSON-ready dicts: the TUI shows them, the daemon streams them to clients.

Every event has ``event`` (its kind) and ``run`` (the run's id). Kinds:

- ``started``: ``task``, ``device``, ``trajectory`` (folder), ``sop`` (name or null), ``policy``
- ``step``: ``index``, ``app``, ``thought``, ``action`` (the Action as JSON), ``summary`` (one line),
  ``gate`` (allowed / verdict / rule / answer), ``outcome`` (kind, note), ``ms`` (per phase), ``elements``
  (the numbered element list the model saw)
- ``confirm``: ``id`` (answer with it), ``timeout`` (seconds), ``request`` (ConfirmRequest.to_json)
- ``confirmed``: ``id``, ``answer`` (yes / no / always; a timeout is no)
- ``paused`` / ``resumed``
- ``finished``: ``status``, ``reason``, ``answer``, ``steps``, ``seconds``
"""

from __future__ import annotations

from typing import Any

from edgepilot.agent.loop import RunResult, StepReport


def step_event(run: str, step: StepReport) -> dict[str, Any]:
    gate = step.gate.to_json() if step.gate is not None else None
    return {
        "event": "step", "run": run, "index": step.index, "app": step.obs.package,
        "thought": step.decision.thought, "action": step.action.model_dump(mode="json") if step.action else None,
        "summary": step.summary(), "gate": gate,
        "outcome": {"kind": step.outcome.kind, "note": step.outcome.note} if step.outcome else None,
        "ms": {k: round(v, 1) for k, v in step.ms.items()}, "elements": step.obs.to_text(),
        "error": step.error,
    }


def finished_fields(result: RunResult) -> dict[str, Any]:
    """How a run ended, as the ``finished`` event says it."""
    return result.to_record().model_dump(mode="json", include={"status", "reason", "answer", "steps", "seconds"})


def finished_event(run: str, result: RunResult) -> dict[str, Any]:
    return {"event": "finished", "run": run, **finished_fields(result)}
