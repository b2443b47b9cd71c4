"""TEST ONLY: a scripted model for the daemon's queue and confirmation tests (``daemon start --scripted-model``).

It answers each role from a JSON file and is never evidence that the agent
works; the daemon's end-to-end tests use the real bundled model. The option
that loads it is hidden from ``--help``.

    {"delay": 0.2,                      seconds per answer (a stop cuts it short, like llama.cpp between tokens)
     "answers": {"decider": ["{...}", ...], "planner": [...], "reflector": [...]},
     "tasks": {"TASK": {"decider": [...], ...}}}   answers for one task sentence (found in the prompt)

Each role's answers are used in order; the last one repeats. A run's task
picks its own answers from ``tasks`` when listed there, so each test can use
its own task sentence and script.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgepilot.errors import ConfigError, ModelError
from edgepilot.models.base import Completion, Message, StopCheck

ROLES = ("planner", "decider", "reflector")


class ScriptedModel:
    """Answers from a script; sleeps ``delay`` seconds per answer, checking the call's stop check meanwhile."""

    name = "scripted"

    def __init__(self, answers: dict[str, list[str]], delay: float = 0.0,
                 tasks: dict[str, dict[str, list[str]]] | None = None) -> None:
        self.answers = {role: list(texts) for role, texts in answers.items()}
        self.tasks = {task: {role: list(texts) for role, texts in roles.items()}
                      for task, roles in (tasks or {}).items()}
        self.delay = delay
        self.vision = 0

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedModel:
        """Raises ConfigError when the file is not a script of the form above."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            answers = {str(role): [str(a) for a in texts] for role, texts in data["answers"].items()}
            tasks = {str(task): {str(role): [str(a) for a in texts] for role, texts in roles.items()}
                     for task, roles in data.get("tasks", {}).items()}
            return cls(answers, float(data.get("delay", 0.0)), tasks)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path} is not a model script: {exc}") from exc

    def complete(self, messages: list[Message], *, schema: dict | None = None, max_tokens: int = 256,
                 temperature: float = 0.0, should_stop: StopCheck | None = None) -> Completion:
        if should_stop is not None and should_stop():
            raise ModelError("scripted: not asked (the run was stopped)")
        last = messages[-1].content
        role = next((r for r in ROLES if f"You are the {r}" in last), "react")
        end = time.monotonic() + self.delay
        while time.monotonic() < end:
            if should_stop is not None and should_stop():
                raise ModelError("scripted: the answer was cut short (the run was stopped)")
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))
        script = next((answers for task, answers in self.tasks.items()
                       if any(f"Task: {task}\n" in m.content for m in messages)), self.answers)
        queue = script.get(role) or self.answers.get(role) or ['{"progress": "", "subgoal": "", "memory": ""}']
        text = queue.pop(0) if len(queue) > 1 else queue[0]
        return Completion(text=text, tokens_in=len(last) // 4, tokens_out=len(text) // 4,
                          ms=self.delay * 1000, constrained=schema is not None)
