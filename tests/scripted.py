"""A scripted model for tests about the agent loop itself (never evidence that the agent works)."""

from __future__ import annotations

from edgepilot.models.base import Completion


class ScriptedBackend:
    """Answers each role from its own queue; records every prompt it was sent."""

    name = "scripted"
    vision = 0

    def __init__(self, **answers: list[str]) -> None:
        self.answers = {role: list(a) for role, a in answers.items()}
        self.prompts: list[tuple[str, list]] = []
        self.schemas: list[tuple[str, dict | None]] = []
        self.stop_checks: list = []  # the stop check each call was given

    def complete(self, messages, *, schema=None, max_tokens=256, temperature=0.0, should_stop=None):
        self.stop_checks.append(should_stop)
        last = messages[-1].content
        role = next(r for r in ("planner", "decider", "reflector") if f"You are the {r}" in last) \
            if "You are the" in last else "react"
        self.prompts.append((role, messages))
        self.schemas.append((role, schema))
        queue = self.answers.get(role) or ['{"progress": "", "subgoal": "", "memory": ""}']
        text = queue.pop(0) if len(queue) > 1 else queue[0]
        return Completion(text=text, tokens_in=len(last) // 4, tokens_out=len(text) // 4, ms=1.0,
                          constrained=schema is not None)
