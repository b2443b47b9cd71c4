"""``edgepilot distill synth``: new training tasks from exploring the phone (OS-Genesis, reverse task synthesis).

1. Explore: walks from the home screen on a fresh virtual phone, one app per
   walk, tapping interactive elements (coverage-driven: elements not yet tapped
   on a screen first, then at random; navigation buttons and text fields left
   alone).
2. Derive backwards: after each tap, the phone's state is compared with the
   state before it. A changed field (a scalar, or a field of a list element
   that one key names uniquely) becomes a task: its goal sentence says the new
   value ("Turn on Bluetooth", "Set Screen timeout to 5 minutes", "Turn off the
   alarm Run"), its set-up puts the old value back, its check wants the new
   value, and its solution is the walk up to that tap.
3. Keep what a success check confirms: the oracle plays the derived solution
   from the set-up on a fresh phone and the check must not hold before and
   must hold after.

Tasks whose checked field is one a ``test`` template checks are dropped
(held-out kinds never enter training), and so are duplicates of a field and
value. The kept tasks are written as task templates (docs/tasks.md) to
``RUN/synth/tasks.yaml``; ``edgepilot distill collect --tasks RUN/synth`` adds
them to the training mix.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgepilot.actions import OpenApp, Tap
from edgepilot.bench.episode import run_episode
from edgepilot.bench.tasks import agent_factory
from edgepilot.controllers.android import AndroidDevice
from edgepilot.errors import EdgepilotError
from edgepilot.sim.local import LocalTransport
from edgepilot.sim.phone import VirtualPhone
from edgepilot.sim.tasks.model import TaskTemplate, apply_setup
from edgepilot.sim.tasks.suite import load_templates

_KEYS = ("id", "name", "title", "time", "label", "ssid", "contact")
_SKIP_IDS = ("back", "home_button", "up", "status_bar")
_NAMES = {"launcher": None, "system": None}
_PHRASES_BOOL = ["Turn {word} {thing}", "Switch {thing} {word}", "Please turn {word} {thing}"]
_PHRASES_SET = ["Set {thing} to {value}", "Change {thing} to {value}", "Make {thing} {value}"]
_PHRASES_URL = ["Open {value} in {app}", "Go to {value} in {app}", "Show me {value} in {app}"]


@dataclass
class Change:
    """One field the walk changed, and how to address it."""

    app: str
    path: str
    old: Any
    new: Any
    thing: str


@dataclass
class Walk:
    app_label: str
    steps: list[dict[str, Any]] = field(default_factory=list)  # solution steps (selectors)
    changes: list[tuple[int, Change]] = field(default_factory=list)  # (step index, change)


def _selector(node: Any) -> dict[str, Any] | None:
    text = node.text.split("\n")[0].strip()
    if text:
        return {"text": text}
    if node.content_desc:
        return {"desc": node.content_desc}
    rid = node.resource_id.rsplit("/", 1)[-1]
    return {"id": rid} if rid else None


def _key_of(items: list[Any], item: dict[str, Any]) -> str | None:
    for key in _KEYS:
        if key in item and sum(1 for x in items if isinstance(x, dict) and x.get(key) == item[key]) == 1:
            return key
    return None


def _words(name: str) -> str:
    return {"wifi": "Wi-Fi", "url": "the page"}.get(name, name.replace("_", " "))


def state_changes(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Fields of the apps' state that differ (scalars, and scalar fields of uniquely keyed list elements)."""
    out: list[Change] = []
    for app, state in after.items():
        if app in _NAMES or not isinstance(state, dict) or not isinstance(before.get(app), dict):
            continue
        old_state = before[app]
        for name, value in state.items():
            old = old_state.get(name)
            if name == "screen" or old == value:
                continue
            if isinstance(value, (bool, int, float, str)) or value is None:
                if isinstance(old, (bool, int, float, str)) and value is not None:
                    out.append(Change(app, f"{app}.{name}", old, value, _words(name)))
            elif isinstance(value, list) and isinstance(old, list) and len(old) == len(value):
                for o, n in zip(old, value, strict=True):
                    if not (isinstance(o, dict) and isinstance(n, dict)) or o == n:
                        continue
                    key = _key_of(value, n)
                    if key is None or o.get(key) != n.get(key):
                        continue
                    for f, nv in n.items():
                        if o.get(f) != nv and isinstance(nv, (bool, int, float, str)):
                            thing = f"{_words(f)} for {n.get('label') or n.get(key)}"
                            out.append(Change(app, f"{app}.{name}[{key}={n[key]}].{f}", o.get(f), nv, thing))
    return out


def explore(walks: int = 40, depth: int = 6, seed: int = 0,
            progress: Callable[[int, int], None] | None = None) -> list[Walk]:
    """Random, coverage-driven walks on fresh virtual phones (in-process, no screenshots)."""

    rng = random.Random(seed)
    tapped: dict[tuple[str, str], int] = {}
    phone = VirtualPhone(serial="virtual-synth")
    device = AndroidDevice(LocalTransport(phone), screenshot=False)
    out: list[Walk] = []
    for w in range(walks):
        phone.reset()
        home = device.observe()
        icons = [n for n in home.elements if n.clickable and n.resource_id.endswith("/icon")]
        if not icons:
            break
        label = icons[w % len(icons)].label  # every app in turn
        device.act(OpenApp(app=label))
        walk = Walk(label, [{"open_app": label}])
        for _ in range(depth):
            obs = device.observe()
            title = next((n.text for n in obs.elements if n.resource_id.endswith("/toolbar_title")), label)
            choices = [(i, n) for i, n in enumerate(obs.elements)
                       if (n.clickable or n.checkable) and not n.editable
                       and n.resource_id.rsplit("/", 1)[-1] not in _SKIP_IDS and _selector(n) is not None]
            if not choices:
                break
            fresh = [c for c in choices if tapped.get((title, c[1].label), 0) == 0]
            i, node = rng.choice(fresh or choices)
            tapped[(title, node.label)] = tapped.get((title, node.label), 0) + 1
            before = phone.snapshot()
            try:
                device.act(Tap(target=i))
            except EdgepilotError:
                break
            after = phone.snapshot()
            selector = _selector(node)
            matches = [n for n in obs.elements if _selector(n) == selector]
            if len(matches) > 1:
                break  # a selector the oracle could not replay unambiguously
            walk.steps.append({"tap": selector})
            for change in state_changes(before, after):
                walk.changes.append((len(walk.steps), change))
            if after.get("system", {}).get("foreground") != before.get("system", {}).get("foreground"):
                break  # left the app
        out.append(walk)
        if progress is not None:
            progress(w + 1, walks)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")[:40] or "x"


def template_for(walk: Walk, upto: int, change: Change) -> dict[str, Any]:
    """A task template (docs/tasks.md) derived from a walk's change."""
    if change.path.endswith(".url"):
        phrases = [p.format(value=change.new, app=walk.app_label) for p in _PHRASES_URL]
    elif isinstance(change.new, bool):
        phrases = [p.format(word="on" if change.new else "off", thing=change.thing) for p in _PHRASES_BOOL]
    else:
        phrases = [p.format(thing=change.thing, value=change.new) for p in _PHRASES_SET]
    return {
        "id": f"synth_{_slug(change.path)}_{_slug(change.new)}",
        "split": "train",
        "apps": [change.app],
        "steps": upto + 1,
        "goal": "{phrase}",
        "params": {"phrase": {"choice": phrases}},
        "setup": [{"set": {"path": change.path, "value": change.old}}],
        "check": [{"path": change.path, "equals": change.new}],
        "solution": [*walk.steps[:upto], {"finish": {}}],
    }


def verify(template: dict[str, Any]) -> tuple[bool, str]:
    """Whether the oracle solves the derived task: the check fails after set-up and holds at the end."""

    try:
        tt = TaskTemplate.model_validate(template)
        instance = tt.instance(0)
        phone = VirtualPhone(serial="virtual-verify")
        apply_setup(phone, instance)
        if instance.evaluate(phone.snapshot(), None)[0]:
            return False, "the check already holds after the set-up"
        device = AndroidDevice(LocalTransport(phone), screenshot=False)
        result = run_episode(device, phone, instance, agent_factory("oracle", phone))
    except EdgepilotError as exc:
        return False, str(exc)[:200]
    except ValueError as exc:  # a template that does not validate
        return False, str(exc).splitlines()[0][:200]
    return result.success, result.reason if not result.success else "ok"


def prune(template: dict[str, Any]) -> dict[str, Any]:
    """Drop the walk's detours: each tap whose removal still verifies goes (latest first, the last tap stays)."""
    solution = template["solution"]
    j = len(solution) - 3  # the last tap (before finish) made the change
    while j >= 1:
        shorter = {**template, "solution": solution[:j] + solution[j + 1:]}
        shorter["steps"] = len(shorter["solution"])
        if verify(shorter)[0]:
            template, solution = shorter, shorter["solution"]
        j -= 1
    return template


def synthesize(run_dir: Path, *, walks: int = 40, depth: int = 6, seed: int = 0,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Explore, derive, verify; write ``RUN/synth/tasks.yaml`` and ``RUN/synth/report.json``."""

    start = time.perf_counter()
    existing = load_templates()
    held_out = {c.path for t in existing.values() if t.split == "test" for c in t.check if c.path}
    held_out_prefixes = {re.sub(r"\[.*", "", p) for p in held_out}
    trained = {c.path for t in existing.values() if t.split == "train" for c in t.check if c.path}
    found = explore(walks, depth, seed, progress)
    seen: set[tuple[str, str]] = set()
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    excluded = 0
    candidates = 0
    for walk in found:
        for upto, change in walk.changes:
            candidates += 1
            key = (change.path, json.dumps(change.new))
            if key in seen:
                continue
            seen.add(key)
            if change.path in held_out or re.sub(r"\[.*", "", change.path) in held_out_prefixes:
                excluded += 1
                continue
            template = template_for(walk, upto, change)
            ok, why = verify(template)
            if ok:
                template = prune(template)
            if ok:
                template["new_kind"] = change.path not in trained
                kept.append(template)
            else:
                rejected.append({"id": template["id"], "why": why})
    out = run_dir / "synth"
    out.mkdir(parents=True, exist_ok=True)
    clean = [{k: v for k, v in t.items() if k != "new_kind"} for t in kept]
    (out / "tasks.yaml").write_text("# Tasks derived from exploration (edgepilot distill synth)\n"
                                    + yaml.safe_dump(clean, sort_keys=False, allow_unicode=True), encoding="utf-8")
    report = {"walks": len(found), "candidates": candidates, "distinct": len(seen),
              "excluded_as_test_kinds": excluded, "kept": len(kept),
              "new_kinds": sum(1 for t in kept if t["new_kind"]), "rejected": rejected,
              "templates": [t["id"] for t in kept], "seconds": round(time.perf_counter() - start, 2),
              "tasks": str(out / "tasks.yaml")}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
