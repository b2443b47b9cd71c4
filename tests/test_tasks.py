"""The task format: loading, parameters, splits, paths, set-up and checks."""

import pytest

from edgepilot.errors import TaskError
from edgepilot.sim.phone import VirtualPhone
from edgepilot.sim.tasks.model import Check, TaskTemplate, apply_setup
from edgepilot.sim.tasks.paths import MISSING, append_path, get_path, remove_path, set_path
from edgepilot.sim.tasks.suite import _load_file, after_first, instances, is_held_out, load_templates


@pytest.fixture(scope="module")
def templates():
    return load_templates()


def test_suite_size_and_splits(templates):
    assert len(templates) >= 25
    test_ids = {t.id for t in templates.values() if t.split == "test"}
    assert 4 <= len(test_ids) < len(templates) // 2
    apps = {a for t in templates.values() for a in t.apps}
    assert {"settings", "contacts", "messages", "clock", "notes", "browser", "bank"} <= apps
    sensitive = {k for t in templates.values() for k in t.sensitive}
    assert {"send_message", "payment", "password", "delete"} <= sensitive
    assert max(t.steps for t in templates.values()) >= 8 and min(t.steps for t in templates.values()) <= 2


def test_held_out_splits_never_leak_into_train(templates):
    train = instances("train", 5, templates=templates)
    held = instances("test-instances", 5, templates=templates)
    test = instances("test", 5, templates=templates)
    assert {i.template.split for i in train + held} == {"train"}
    assert {i.template.split for i in test} == {"test"}
    assert not {i.goal for i in held} & {i.goal for i in train}
    assert all(is_held_out(i.goal) for i in held) and not any(is_held_out(i.goal) for i in train)
    many_goals = [t for t in templates.values() if t.split == "train" and len({t.instance(s).goal for s in range(50)}) >= 10]
    assert all(any(i.template.id == t.id for i in held) for t in many_goals)


def test_instances_are_deterministic(templates):
    for t in templates.values():
        assert t.instance(7) == t.instance(7)
        assert "{" not in t.instance(7).goal, t.id


def test_later_instances_skip_each_templates_first_ones(templates):
    """``--from-instance 2``: each template's second instance on, never one of the first run's."""
    first = instances("test-instances", 1, templates=templates)
    two = instances("test-instances", 2, templates=templates)
    later = after_first(two, 1, lambda inst: inst.template.id)
    assert later and not {i.id for i in later} & {i.id for i in first}
    assert {i.id for i in later} | {i.id for i in first} == {i.id for i in two}
    assert [i.id for i in later] == [i.id for i in two if i not in first]  # the order kept
    assert after_first(two, 0, lambda inst: inst.template.id) == two


def test_paths_get_set_append_remove():
    data = {"contacts": [{"name": "Ann", "phone": "1"}, {"name": "Bo", "phone": "2"}], "wifi": True}
    assert get_path(data, "contacts[name=Bo].phone") == "2"
    assert get_path(data, "contacts[-1].name") == "Bo"
    assert get_path(data, "contacts[name=Zed].phone") is MISSING
    set_path(data, "contacts[name=Ann].phone", "9")
    append_path(data, "contacts", {"name": "Cy", "phone": "3"})
    assert remove_path(data, "contacts[name=Bo]") == 1
    assert [c["phone"] for c in data["contacts"]] == ["9", "3"]
    with pytest.raises(TaskError):
        append_path(data, "wifi", 1)
    with pytest.raises(TaskError):
        set_path(data, "nope.deeper", 1)


@pytest.mark.parametrize("check, state, answer, expected", [
    ({"path": "a", "equals": True}, {"a": True}, None, True),
    ({"path": "a", "equals": "On"}, {"a": "on"}, None, True),
    ({"path": "a", "digits_equal": "555-0123"}, {"a": "(555) 0123"}, None, True),
    ({"path": "a", "exists": False}, {}, None, True),
    ({"path": "a", "count": 0}, {"a": []}, None, True),
    ({"path": "a", "contains": "x"}, {}, None, False),
    ({"answer": True, "contains": "482913"}, {}, "The code is 482913.", True),
    ({"answer": True, "contains": "482913"}, {}, None, False),
    ({"path": "a", "matches": "7:\\d\\d"}, {"a": "7:30"}, None, True),
])
def test_checks(check, state, answer, expected):
    assert Check.model_validate(check).holds(state, answer) is expected


def test_check_needs_one_subject_and_one_test():
    with pytest.raises(ValueError):
        Check.model_validate({"path": "a"})
    with pytest.raises(ValueError):
        Check.model_validate({"path": "a", "answer": True, "equals": 1})


def test_bad_template_files_name_the_file_and_template(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: broken\n  split: train\n  apps: [settings]\n  steps: 2\n  goal: x\n"
                   "  check: [{path: a, equals: 1}]\n  solution: []\n  sollution: []\n")
    with pytest.raises(TaskError, match=r"bad.yaml: template broken.*sollution"):
        _load_file(bad)
    bad.write_text("- id: [unclosed\n")
    with pytest.raises(TaskError, match="not valid YAML"):
        _load_file(bad)


def test_setup_applies_and_validates_state():
    phone = VirtualPhone()
    template = TaskTemplate.model_validate({
        "id": "t", "split": "train", "apps": ["settings"], "steps": 1, "goal": "g",
        "setup": [{"set": {"path": "settings.wifi", "value": False}}, {"open": "settings"}],
        "check": [{"path": "settings.wifi", "equals": False}], "solution": []})
    apply_setup(phone, template.instance(0))
    assert phone.snapshot()["settings"]["wifi"] is False
    assert phone.foreground == "com.android.settings"
    typo = template.model_copy(update={"setup": [{"set": {"path": "settings.wfi", "value": False}}]})
    with pytest.raises(TaskError, match="wfi"):
        apply_setup(phone, typo.instance(0))


def test_no_task_holds_before_the_agent_acts(templates):
    phone = VirtualPhone()
    for template in templates.values():
        for seed in range(3):
            instance = template.instance(seed)
            apply_setup(phone, instance)
            done, _ = instance.evaluate(phone.snapshot(), None)
            assert not done, f"{instance.id} already holds right after set-up"


def test_oracle_solves_every_template_in_about_the_declared_steps(templates):
    from edgepilot.bench.episode import run_episode
    from edgepilot.bench.tasks import agent_factory
    from edgepilot.devices import open_device

    with open_device("virtual-local", screenshot=False) as opened:
        factory = agent_factory("oracle", opened.phone)
        for template in templates.values():
            result = run_episode(opened.device, opened.phone, template.instance(0), factory)
            assert result.success, (template.id, result.error, result.failed_checks)
            assert template.steps - 2 <= len(result.steps) <= template.steps + 3, (template.id, len(result.steps))
