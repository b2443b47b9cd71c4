"""Follow each goal's app-memory route on the virtual phone without a model, and count the tasks it completes.

    .venv/bin/python scripts/route-check.py train 2 [TEMPLATE...]     SHOW=1 prints the actions of failures

It measures the routes alone (docs/memory.md), in seconds: no model, no procedures. A step that reads and
keeps a value takes the first value of the shape it names on its screen; a step that reads the answer answers
with every text of its screen, and counts as done when the task's expected answer is among them (the model
then has to pick it out). Tune routes on the train split only: other splits are held out.
"""

from __future__ import annotations

import os
import re
import sys

from edgepilot.actions import Finish
from edgepilot.agent.agents import FnAgent
from edgepilot.agent.session import memory_route
from edgepilot.bench.episode import run_episode
from edgepilot.bench.sop import keep_first
from edgepilot.devices import open_device
from edgepilot.errors import EdgepilotError, SopError
from edgepilot.memory.store import shipped
from edgepilot.sim.tasks.suite import instances
from edgepilot.sop.follow import SopFollower


def follower(sop):
    def make(instance):
        f = SopFollower(sop, instance.goal)

        def next_action(obs):
            keep_first(f, obs)
            try:
                return f.next_action(obs)
            except SopError:
                if f.step is None or not f.step.text.startswith("Read the"):
                    raise
                return Finish(answer=" | ".join(t for e in obs.elements for t in (e.text, e.content_desc) if t))

        return FnAgent("route", next_action, instance.goal)

    return make


def _flat(text):
    return re.sub(r"[^0-9a-z]", "", (text or "").casefold())


def answer_on_screen(result) -> bool:
    """Only answer checks failed, and each expected answer is among the texts answered."""
    checks = [re.search(r"'(.*)'", c) for c in result.failed_checks if c.startswith("answer")]
    return (bool(checks) and len(checks) == len(result.failed_checks)
            and all(m is not None and _flat(m.group(1)) in _flat(result.answer) for m in checks))


def main(split: str, per_template: int, only: list[str]) -> None:
    memories = shipped("android")
    todo = instances(split, per_template, only=only)
    found = done = 0
    with open_device("virtual-local", screenshot=False) as opened:
        for inst in todo:
            match, record = memory_route(inst.goal, None, memories)
            if match is None:
                print(f"--  {inst.template.id:28s} {inst.goal!r}\n      no route")
                continue
            found += 1
            result = run_episode(opened.device, opened.phone, inst, follower(match.sop), max_steps=25)
            ok = result.success or answer_on_screen(result)
            done += ok
            print(f"{'OK' if ok else '--'}  {inst.template.id:28s} {inst.goal!r}\n      -> "
                  f"{record['candidates'][0]['target'][:90]}  {result.status}")
            if os.environ.get("SHOW") and not ok:
                for s in result.steps:
                    print(f"         {s.action}")
                print(f"         failed: {result.failed_checks} {result.reason[:200]}")
    print(f"{split}: a route for {found}/{len(todo)}, followed to the task's end {done}/{len(todo)}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or not sys.argv[2].isdigit():
        sys.exit(__doc__)
    try:
        main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
    except EdgepilotError as exc:  # an unknown split or template
        sys.exit(f"error: {exc}")
