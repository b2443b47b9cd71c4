"""The desktop task templates: the format, the splits, the checks on the real world, the references."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from desktop_env import start_session

from edgepilot.agent.agents import RoleAgent
from edgepilot.errors import TaskError
from edgepilot.models.base import Completion
from edgepilot.perception.atspi import terminal_tail
from edgepilot.perception.types import Bounds, Observation, UINode
from edgepilot.sim.desktop.tasks import TaskContext
from edgepilot.sim.desktop.templates import (
    APP_COMMANDS,
    DESKTOP_DIR,
    SETUP_OPS,
    SOLUTION_OPS,
    TemplateTask,
    condition,
    csv_cells,
    desktop_tasks,
    desktop_templates,
)
from edgepilot.sim.tasks.model import arith
from edgepilot.sim.tasks.suite import is_held_out, load_templates

# ---------------------------------------------------------------- the templates (pure)


def test_the_suite_covers_six_applications_and_holds_out_whole_kinds():
    templates = desktop_templates()
    apps = Counter(app for t in templates.values() for app in t.apps)
    held_out = [t.id for t in templates.values() if t.split == "test"]
    assert len(templates) >= 24 and len(apps) >= 6, (len(templates), apps)
    assert len(held_out) >= 6 and len(templates) - len(held_out) >= 12
    assert {"mousepad", "galculator", "thunar", "lxterminal", "gnumeric", "ristretto"} <= set(apps)
    assert any(len(t.apps) > 1 for t in templates.values() if t.split == "test")  # a held-out two-app kind
    assert any(len(t.apps) > 1 for t in templates.values() if t.split == "train")
    for t in templates.values():
        assert t.device == "desktop" and set(t.apps) <= set(APP_COMMANDS), t.id
        for op in [*t.setup]:
            assert list(op)[0] in SETUP_OPS, (t.id, op)
        for op in t.solution:
            assert list(op)[0] in SOLUTION_OPS, (t.id, op)


def test_instances_are_seeded_and_keep_the_folder_for_the_start():
    t = desktop_templates()["files_rename"]
    a, b = t.instance(3), t.instance(3)
    assert a.goal == b.goal and a.params == b.params
    assert len({t.instance(s).goal for s in range(20)}) > 10
    task = TemplateTask(t.instance(0))
    assert "{dir}" in json.dumps(task.instance.filled(t.setup))  # filled only when the task starts


def test_splits_follow_the_phones_rules():
    test = desktop_tasks("test", per_template=2)
    held = desktop_tasks("test-instances", per_template=1)
    train = desktop_tasks("train", per_template=2)
    templates = desktop_templates()
    assert {t.template for t in test} == {k for k, v in templates.items() if v.split == "test"}
    assert all(templates[t.template].split == "train" for t in held + train)
    assert all(is_held_out(t.instance.goal) for t in held) and not any(is_held_out(t.instance.goal) for t in train)
    assert not {t.instance.goal for t in held} & {t.instance.goal for t in train}
    assert [t.template for t in desktop_tasks()] == list(templates)  # all: each template's first instance
    with pytest.raises(TaskError, match="no desktop task template 'paint'"):
        desktop_tasks(only=["paint"])
    with pytest.raises(TaskError, match="unknown split"):
        desktop_tasks("nope")


def test_each_suite_reads_only_its_own_devices_templates(tmp_path):
    (tmp_path / "mine.yaml").write_text((DESKTOP_DIR / "calculator.yaml").read_text(encoding="utf-8"))
    with pytest.raises(TaskError, match="is a desktop task; this suite runs phone tasks"):
        load_templates([tmp_path])
    with pytest.raises(TaskError, match="defined twice"):
        desktop_templates([tmp_path])


def test_arith_computes_plain_arithmetic_only():
    assert arith("(55 + 97) * 7") == 1064 and arith("7 / 2") == 3.5 and arith("-3 - 4") == -7
    for bad in ("__import__('os')", "2 ** 99", "1 / 0", "x + 1"):
        with pytest.raises(TaskError):
            arith(bad)


def test_csv_cells_and_a_terminals_tail():
    assert csv_cells("item,jan\nrent,12\n,\n") == {"A1": "item", "B1": "jan", "A2": "rent", "B2": "12"}
    screen = "$ ls   \nfoo\n$ wc -l a\n3 a\n$   \n\n\n\n"
    assert terminal_tail(screen, 100) == "$ ls\nfoo\n$ wc -l a\n3 a\n$"
    assert terminal_tail(screen, 5) == "3 a\n$"


def _screen(title: str, *nodes: UINode) -> Observation:
    return Observation(nodes=tuple(nodes), activity=title, package="app", screen_width=800, screen_height=600)


def _node(cls: str, text: str) -> UINode:
    return UINode(bounds=Bounds(left=0, top=0, right=10, bottom=10), class_name=cls, text=text, package="app",
                  clickable=True, enabled=True)


def test_conditions_read_the_screen():
    obs = _screen("*notes.txt - Mousepad", _node("Button", "Save"), _node("EditText", "Buy milk"))
    assert condition({"title_has": "notes.txt"})(obs) and not condition({"saved": True})(obs)
    assert condition({"shows": {"cls": "Button", "label": "save"}, "text_has": "buy  MILK"})(obs)
    assert condition({"gone": {"label": "Cancel"}})(obs) and not condition({"gone": {"label": "Save"}})(obs)
    assert condition(None)(obs)
    with pytest.raises(TaskError, match="unknown condition 'blinks'"):
        condition({"blinks": True})
    with pytest.raises(TaskError, match="not by True"):  # YAML reads `on:` as True: a typo says so, never ignored
        condition({"shows": {"label": "Save", True: True}})(obs)


def test_a_toggle_clicks_only_a_box_that_is_not_as_wanted():
    box = UINode(bounds=Bounds(left=0, top=0, right=10, bottom=10), class_name="CheckBox", text="Wrap",
                 package="app", clickable=True, checkable=True, checked=True, enabled=True)
    obs = _screen("prefs", box)
    assert SOLUTION_OPS["toggle"]({"cls": "CheckBox", "label": "Wrap"})(obs).type == "wait"
    assert SOLUTION_OPS["toggle"]({"cls": "CheckBox", "label": "Wrap", "checked": False})(obs).type == "click"


# ---------------------------------------------------------------- on Xvfb


@pytest.fixture(scope="module")
def desktop():
    session = start_session()
    device = session.device()
    yield device
    device.close()
    session.stop()


@pytest.mark.slow
def test_the_reference_passes_every_desktop_template(desktop):
    from edgepilot.bench.desktop import format_desktop, run_desktop_suite
    from edgepilot.bench.gate import BenchGates

    report = run_desktop_suite(desktop, gates=BenchGates.open("on"))
    failures = [(r["instance"], r["status"], r["reason"], r["failed_checks"]) for r in report["results"]
                if not r["success"]]
    assert report["episodes"] == len(desktop_templates()) and not failures, failures
    assert not report["unavailable"] and report["observe"]["sources"].get("tree")
    assert report["policy"] == "on" and report["gate"]["asked"] >= 2 and not report["gate"]["refused"]  # deletions ask
    text = format_desktop(report)
    assert "files_rename" in text and "100%" in text and "observe: median" in text


@pytest.mark.slow
def test_doing_nothing_fails_every_templates_checks(desktop):
    """Every check reads something the task changes: with nothing done (and a wrong answer), none holds."""
    passed = []
    for task in desktop_tasks():
        ctx = TaskContext(desktop)
        try:
            task.start(ctx)
            result = task.check(ctx, "I could not do it")
            if result.success:
                passed.append(task.id)
        finally:
            ctx.close()
    assert not passed, passed


class CalculatorModel:
    """A model stand-in that plays Galculator: it reads the goal and the numbered screen in its prompt."""

    name = "scripted-calculator"
    vision = 0

    def __init__(self) -> None:
        from edgepilot.models.registry import token_counter

        self.count_tokens = token_counter("smollm2-135m")
        self.keys: list[str] | None = None
        self.decider_schemas: list[dict] = []
        self.systems: list[str] = []

    def complete(self, messages, *, schema=None, max_tokens=256, temperature=0.0, should_stop=None):
        prompt = messages[-1].content
        if "You are the planner" in prompt:
            return Completion(text='{"progress": "pressing keys", "subgoal": "press the next key", "memory": ""}')
        if "You are the reflector" in prompt:
            return Completion(text='{"outcome": "worked", "note": ""}')
        self.decider_schemas.append(schema)
        self.systems.append(messages[0].content)
        if self.keys is None:
            a, op, b = re.search(r"(\d+) (\S+) (\d+)", prompt).groups()
            self.keys = [*a, {"+": "+", "plus": "+", "−": "-", "×": "*", "times": "*"}[op], *b, "="]
        screen = prompt[prompt.index("Screen:"):]
        if self.keys:
            key = self.keys.pop(0)
            index = re.search(rf'^\[(\d+)\] ToggleButton "{re.escape(key)}"', screen, re.M).group(1)
            return Completion(text=json.dumps({"type": "click", "target": int(index)}), constrained=True)
        shown = re.search(r'^\[\d+\] Text "([\d.,-]+)"', screen, re.M).group(1)
        return Completion(text=json.dumps({"type": "finish", "status": "success", "answer": shown}))


@pytest.mark.slow
def test_the_model_agent_runs_a_desktop_template_through_its_grammar(desktop):
    from edgepilot.bench.desktop import run_desktop_suite
    from edgepilot.sim.tasks.model import arith

    model = CalculatorModel()
    report = run_desktop_suite(desktop, agent="model", only=["calc_compute"],
                               factory=lambda goal: RoleAgent(goal, model, device_kind="desktop"))
    result = report["results"][0]
    task = desktop_tasks(only=["calc_compute"])[0]
    want = arith(f"{task.instance.params['a']} {task.instance.params['op']['sign']} {task.instance.params['b']}")
    assert result["success"] and result["answer"] == str(want), result
    assert report["valid_action_rate"] == 1.0 and result["steps"] == len(str(task.instance.params["a"])) + \
        len(str(task.instance.params["b"])) + 3
    assert all("You operate a computer desktop" in s for s in model.systems)
    for schema in model.decider_schemas:  # the desktop action set, narrowed to the screen's buttons
        assert "Click" in schema["$defs"] and "Tap" not in schema["$defs"] and "Point" not in schema["$defs"]


def test_a_display_that_goes_away_mid_task_ends_the_episode_clearly(tmp_path):
    """Xvfb killed while an agent works in Mousepad: the episode ends at once as an error that names the X
    server, its trajectory (result.json included) is kept, and the task's application is not left running."""
    from edgepilot.actions import Wait
    from edgepilot.agent.agents import FnAgent
    from edgepilot.bench.desktop import run_desktop_episode

    session = start_session()
    device = session.device()
    try:
        task = next(t for t in desktop_tasks("train") if t.apps == ("mousepad",))
        apps: list[int] = []

        def next_action(obs: Observation):
            if not apps:  # the application is up; the display goes away before the next look
                apps.extend(_on_display(session.display, "mousepad"))
                session.procs[0].kill()  # Xvfb, the first process of the session
                session.procs[0].wait(10)
            return Wait(seconds=0.1)

        result = run_desktop_episode(device, task, lambda goal: FnAgent("vanish", next_action, goal),
                                     max_steps=5, save_to=tmp_path)
    finally:
        device.close()
        session.stop()
    assert result.status == "error" and not result.success
    assert "X server" in result.reason and "()" not in result.reason, result.reason
    trajectory = tmp_path / next(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert json.loads((trajectory / "result.json").read_text())["status"] == "error"
    assert (trajectory / "meta.json").is_file() and (trajectory / "steps.jsonl").is_file()
    assert apps, "Mousepad was not running when the display went away"
    assert not set(apps) & set(_on_display(session.display, "mousepad")), "Mousepad was left running"


def _on_display(display: str, name: str) -> list[int]:
    """The processes called ``name`` drawing on ``display`` (read from /proc: command line and environment)."""
    from pathlib import Path

    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name == name and f"DISPLAY={display}".encode() in env:
            found.append(int(proc.name))
    return found
