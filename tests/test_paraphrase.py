"""The training paraphraser (distill/paraphrase.py): styles keep every value, only train goals are paraphrased,
and collect's plan rolls out the paraphrased goal."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from edgepilot.distill import collect as collect_mod
from edgepilot.distill.collect import plan_jobs
from edgepilot.distill.paraphrase import (
    STYLES,
    TERMS,
    amount_forms,
    instance_values,
    paraphrase,
    paraphrase_instance,
    paraphrases_for,
    time_forms,
)
from edgepilot.sim.tasks.model import TaskInstance
from edgepilot.sim.tasks.suite import instances, is_held_out, load_templates

TEMPLATES = load_templates()
TRAIN = [t for t in TEMPLATES.values() if t.split == "train"]
TEST = [t for t in TEMPLATES.values() if t.split == "test"]
INSTANCES = [t.instance(seed) for t in TRAIN for seed in range(5)]
RUN_SEEDS = range(3)


def _present(value: str, text: str, style: str) -> bool:
    """Whether a value is in a paraphrase: verbatim, or in a form the module may rewrite it to."""
    forms = time_forms(value) | amount_forms(value)
    if style == "casual" and re.fullmatch(r"[A-Za-z][A-Za-z '-]*", value):  # names may be lower-cased
        return value.casefold() in text.casefold()
    return any(form in text for form in forms)


def test_there_are_train_and_test_templates_and_values_to_check() -> None:
    assert len(TRAIN) >= 20 and TEST
    assert sum(len(instance_values(i)) for i in INSTANCES) > 200


def test_instance_values_are_the_values_not_the_wording() -> None:
    """Generated data and what the checks use are values; the template's choice of wording is not."""

    def values(template: str, seed: int = 0) -> tuple[TaskInstance, list[str]]:
        inst = TEMPLATES[template].instance(seed)
        return inst, instance_values(inst)

    inst, found = values("clock_add_alarm_label")
    assert inst.params["time"] in found and inst.params["label"] in found and inst.params["phrase"] not in found
    inst, found = values("bank_check_balance")
    assert inst.params["pin"] in found and inst.params["account"] in found
    assert inst.params["lead"] not in found and inst.params["ask"] not in found
    inst, found = values("settings_wifi_connect")
    assert inst.params["net"]["password"] in found and inst.params["net"]["ssid"] in found
    inst, found = values("notes_create")
    assert inst.params["text"] in found and inst.params["title"] in found and inst.params["verb"] not in found
    inst, found = values("settings_wifi_toggle")
    assert found == []  # "on"/"off" is wording (its synonyms keep its meaning: test below)
    inst, found = values("browser_library_hours")
    assert inst.params["day"] in found


@pytest.mark.parametrize("style", STYLES)
def test_every_style_keeps_every_value(style: str) -> None:
    changed = checked = 0
    for inst in INSTANCES:
        keep = instance_values(inst)
        for run in RUN_SEEDS:
            out, used = paraphrase(inst.goal, random.Random(f"{inst.id}/{run}"), style=style, keep=keep)
            assert used == style
            changed += out != inst.goal
            for value in keep:
                checked += 1
                assert _present(value, out, style), f"{style}: {value!r} lost: {inst.goal!r} → {out!r}"
    assert checked > 500
    # a style that changed nothing would keep every value trivially
    assert changed >= len(INSTANCES) * len(RUN_SEEDS) * (0.9 if style in ("casual", "terse", "polite") else 0.15)


@pytest.mark.parametrize("style", STYLES)
def test_values_are_kept_by_their_shape_without_being_told(style: str) -> None:
    """Without ``keep``, quoted text, numbers, times, e-mails, domains, passwords and names survive by shape.

    A value with a word of ``TERMS`` in it ("Bluetooth speaker") is only known as a value through ``keep``: by
    shape, "Bluetooth" is a term that casual, terse and abbrev respell."""
    for inst in INSTANCES:
        for run in RUN_SEEDS:
            out, _ = paraphrase(inst.goal, random.Random(f"{inst.id}/{run}"), style=style)
            for value in instance_values(inst):
                if any(term in value for term in TERMS):
                    continue
                assert _present(value, out, style), f"{style}: {value!r} lost: {inst.goal!r} → {out!r}"


HAND_MADE = [
    ("Connect to the Wi-Fi network Library_Guest with the password readmore", ["Library_Guest", "readmore"]),
    ('Add a note titled "Shopping" that says "Remember bananas and lettuce"',
     ['"Shopping"', '"Remember bananas and lettuce"']),
    ("Email support@example.com and check weather.example for Saturday", ["support@example.com", "weather.example",
                                                                          "Saturday"]),
    ("Transfer $326 to Priya Shah from my Savings account, my bank PIN is 4821", ["$326", "Priya Shah", "Savings",
                                                                                  "4821"]),
    ("Please set the screen timeout to 10 minutes and call (555) 014-8974", ["10 minutes", "(555) 014-8974"]),
]


@pytest.mark.parametrize("style", STYLES)
def test_hand_made_goals_keep_their_values(style: str) -> None:
    for goal, values in HAND_MADE:
        for run in range(25):
            out, _ = paraphrase(goal, random.Random(run), style=style)
            for value in values:
                bare = value.strip('"')
                if value.startswith('"'):  # quoted text stays verbatim; its quotes may go
                    assert bare in out, (goal, out)
                elif value.startswith("$"):
                    assert any(f in out for f in amount_forms(value)), (goal, out)
                else:
                    assert _present(value, out, style), (goal, out)


def _value_ranges(goal: str, values: list[str]) -> list[range]:
    return [range(m.start(), m.end()) for v in values for m in re.finditer(re.escape(v), goal)]


def test_typos_never_land_inside_a_value() -> None:
    slips = 0
    for inst in INSTANCES:
        keep = instance_values(inst)
        for run in range(10):
            out, _ = paraphrase(inst.goal, random.Random(f"{inst.id}/{run}"), style="typos", keep=keep)
            before, after = inst.goal.split(" "), out.split(" ")
            assert len(before) == len(after), (inst.goal, out)  # a slip stays inside its word
            at, differing = 0, []
            for old, new in zip(before, after, strict=True):
                if old != new:
                    differing.append((old, new, range(at, at + len(old))))
                at += len(old) + 1
            assert len(differing) <= 2
            for old, new, where in differing:
                word = re.sub(r"[^A-Za-z]", "", old)
                assert len(word) >= 5 and word.islower(), (old, new)
                assert old[0] == new[0]  # never the first letter
                for value in _value_ranges(inst.goal, keep):
                    assert not set(where) & set(value), f"typo in a value: {inst.goal!r} → {out!r}"
            slips += len(differing)
    assert slips > len(INSTANCES) * 5  # the style does make typos


def test_typos_spare_unmarked_values() -> None:
    goal = 'Join the Library_Guest network, the password is readmore, and text Priya "Running tomorrow morning"'
    for run in range(200):
        out, _ = paraphrase(goal, random.Random(run), style="typos")
        assert "readmore" in out and "Library_Guest" in out and '"Running tomorrow morning"' in out, out


@pytest.mark.parametrize("template", ["settings_wifi_toggle", "settings_bluetooth_toggle", "settings_airplane_mode"])
def test_switch_paraphrases_keep_on_and_off(template: str) -> None:
    """``on``/``off`` is wording, not a value: its rewrites (enable, disable, "X off") must keep the meaning."""
    for seed in range(8):
        inst = TEMPLATES[template].instance(seed)
        want_on = inst.params["case"]["want"]
        for style in STYLES:
            for run in RUN_SEEDS:
                out, _ = paraphrase(inst.goal, random.Random(f"{seed}/{run}"), style=style)
                text = out.lower()
                on, off = re.search(r"\b(?:on|enable)\b", text), re.search(r"\b(?:off|disable)\b", text)
                assert (bool(on), bool(off)) == (want_on, not want_on), (inst.goal, out)


def test_paraphrases_are_deterministic_by_seed() -> None:
    inst = TEMPLATES["messages_send_new"].instance(1)
    first = paraphrases_for(inst, 5, seed=3)
    assert first == paraphrases_for(inst, 5, seed=3)
    assert len(first) == 5 and len({g for g, _ in first}) == 5
    assert all(goal != inst.goal and style in STYLES for goal, style in first)
    assert any(paraphrases_for(i, 3, seed=0) != paraphrases_for(i, 3, seed=1) for i in instances("train", 1))
    a = paraphrase(inst.goal, random.Random(7))
    assert a == paraphrase(inst.goal, random.Random(7))


def test_paraphrases_never_fall_in_the_held_out_bucket() -> None:
    for inst in instances("train", 3):
        for goal, _ in paraphrases_for(inst, 4, seed=0):
            assert not is_held_out(goal)


def test_test_templates_and_held_out_goals_are_refused() -> None:
    for template in TEST:
        with pytest.raises(ValueError, match="only train templates"):
            paraphrases_for(template.instance(0), 2, seed=0)
        with pytest.raises(ValueError):
            paraphrase_instance(template.instance(0), "casual")
    held_out = instances("test-instances", 1)
    assert held_out
    for inst in held_out:
        with pytest.raises(ValueError, match="held out"):
            paraphrases_for(inst, 2, seed=0)


def test_unknown_style_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown paraphrase style"):
        paraphrase("Call Ben", random.Random(0), style="shouty")


def _goals(jobs: list[Any]) -> dict[str, tuple[str, str | None]]:
    return {j.key: (j.goal, j.paraphrase_style) for j in jobs}


def test_plan_jobs_paraphrases_train_goals_only(tmp_path: Path) -> None:
    plain = plan_jobs(tmp_path, per_template=2, reflection_share=0.5)
    every = plan_jobs(tmp_path, per_template=2, reflection_share=0.5, paraphrase_share=1.0)
    assert [j.key for j in plain] == [j.key for j in every]  # keys unchanged
    by_id = {i.id: i for i in instances("train", 2)}
    for job in plain:
        assert job.goal == by_id[job.instance].goal and job.paraphrase_style is None
    for job in every:
        inst = by_id[job.instance]
        assert job.paraphrase_style in STYLES and job.goal != inst.goal, job
        for value in instance_values(inst):
            assert _present(value, job.goal, job.paraphrase_style), (inst.goal, job.goal)
    for first, again in zip(every, plan_jobs(tmp_path, per_template=2, reflection_share=0.5, paraphrase_share=1.0),
                            strict=True):
        assert first == again  # stable
    wrong = [j for j in every if j.inject_at is not None]
    assert wrong and all(_goals(every)[j.instance] == (j.goal, j.paraphrase_style) for j in wrong)

    half = plan_jobs(tmp_path, per_template=2, paraphrase_share=0.5)
    share = sum(j.paraphrase_style is not None for j in half) / len(half)
    assert 0.25 < share < 0.75
    assert {len({j.paraphrase_style for j in every})} == {len(STYLES)}  # the styles are drawn, not one for all

    for split in ("test", "test-instances"):
        held = plan_jobs(tmp_path, per_template=2, split=split, paraphrase_share=1.0)
        assert held and all(j.paraphrase_style is None for j in held)
        goals = {i.id: i.goal for i in instances(split, 2)}  # type: ignore[arg-type]
        assert all(j.goal == goals[j.instance] for j in held)


def test_the_rolled_out_instance_plays_the_paraphrased_goal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = next(j for j in plan_jobs(tmp_path, per_template=1, templates=["contacts_delete"], paraphrase_share=1.0,
                                    sop_share=1.0))
    inst = collect_mod._instance(job)
    original = TEMPLATES["contacts_delete"].instance(job.seed)
    assert inst.goal == job.goal != original.goal
    assert inst.params == original.params and inst.id == original.id
    asked: list[str] = []
    monkeypatch.setattr(collect_mod, "_LIBRARY", ["library"])
    import edgepilot.sop as sop

    monkeypatch.setattr(sop, "retrieve", lambda goal, library: asked.append(goal))
    collect_mod._match(job, inst)
    assert asked == [job.goal]


def test_cli_passes_the_paraphrase_share(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from edgepilot.cli.main import main

    seen: dict[str, Any] = {}

    def fake_collect(run_dir: Path, **kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs)
        return {"kept": 0, "instances": 0, "templates": 0, "with_sop": 0, "self_reflection": 0, "steps": 0,
                "seconds": 0.0, "examples": 0, "by_kind": {}, "dataset": "x", "failed": []}

    monkeypatch.setattr(collect_mod, "collect", fake_collect)
    result = CliRunner().invoke(main, ["distill", "collect", "--run", str(tmp_path), "--paraphrase", "0.4", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["paraphrase_share"] == 0.4
    result = CliRunner().invoke(main, ["distill", "collect", "--run", str(tmp_path), "--json"])
    assert result.exit_code == 0 and seen["paraphrase_share"] == 0.0
    bad = CliRunner().invoke(main, ["distill", "collect", "--run", str(tmp_path), "--paraphrase", "1.5"])
    assert bad.exit_code != 0
