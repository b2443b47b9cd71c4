"""SOPs: the file format and its errors, libraries and shadowing, retrieval, the bundled SOPs, the CLI,
and retrieval accuracy on the task suite's held-out goals."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from edgepilot.cli.main import main
from edgepilot.errors import ConfigError, SopError
from edgepilot.sop import (
    SENSITIVE_KINDS,
    Folder,
    SopProgress,
    fill_params,
    install_sop,
    load_library,
    load_sop,
    parse_sop,
    rank,
    retrieve,
)
from edgepilot.sop.format import MAX_BYTES, MAX_STEP_CHARS, MAX_STEPS
from edgepilot.sop.library import BUNDLED_DIR
from edgepilot.sop.retrieve import retriever_for
from edgepilot.sop.values import shape, spans

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
---
name: demo-call
description: Call a contact from the Contacts app.
apps: [Contacts, com.android.contacts]
phrasings:
  - Call {name}
  - Give {name} a ring
params:
  name: {description: the contact's name, example: Ann Lee}
version: 2
---
# Steps

1. Open the Contacts app.
2. Tap "{name}". (screen: Contacts)
3. Tap "Call". (screen: {name}) [sensitive: call]
> a note for people, not for the model
4. Finish. [sensitive]
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """No test reads the real user folder or a ./sops of the checkout."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("EDGEPILOT_SOPS", str(home / "user-sops"))
    monkeypatch.chdir(home)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def sop_text(name: str = "demo-call", description: str = "Call a contact from the Contacts app.") -> str:
    return GOOD.replace("name: demo-call", f"name: {name}").replace(
        "description: Call a contact from the Contacts app.", f"description: {description}")


def problems(text: str | bytes) -> list[str]:
    with pytest.raises(SopError) as info:
        parse_sop(text, "f.md")
    assert info.value.problems, "a SopError always lists its problems"
    return [str(p) for p in info.value.problems]


# ---------------------------------------------------------------- format


def test_parse_a_good_sop():
    sop = parse_sop(GOOD, "demo.md")
    assert sop.name == "demo-call" and sop.version == 2
    assert sop.app_labels == ("Contacts",) and sop.packages == ("com.android.contacts",)
    assert sop.params["name"].example == "Ann Lee"
    assert [s.number for s in sop.steps] == [1, 2, 3, 4]
    assert [s.line for s in sop.steps] == [14, 15, 16, 18]
    call = sop.steps[2]
    assert (call.text, call.screen, call.sensitive, call.kind) == ('Tap "Call".', "{name}", True, "call")
    assert sop.steps[3].sensitive and sop.steps[3].kind is None
    assert [s.number for s in sop.sensitive_steps] == [3, 4]


def test_render_fills_params_marks_the_current_step_and_keeps_missing_placeholders():
    sop = parse_sop(GOOD)
    text = sop.render({"name": "Ann Lee"}, current=2)
    assert text.splitlines() == [
        "Procedure: Call a contact from the Contacts app",
        "1. Open the Contacts app.",
        '2. Tap "Ann Lee". (screen: Contacts) <- now',
        '3. Tap "Call". (screen: Ann Lee) [sensitive]',
        "4. Finish. [sensitive]",
    ]
    assert '2. Tap "{name}".' in sop.render()
    assert "(screen:" not in sop.render(screens=False)
    # values are inserted verbatim, never interpreted as format strings
    assert "{0.__class__}" in sop.render({"name": "{0.__class__}"})


def test_sop_is_frozen():
    sop = parse_sop(GOOD)
    with pytest.raises(ValidationError):
        sop.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        sop.steps[0].text = "x"  # type: ignore[misc]


def test_crlf_and_bom_are_fine():
    sop = parse_sop(("\ufeff" + GOOD).replace("\n", "\r\n").encode("utf-8"))
    assert sop.steps[1].line == 15


HEAD = "---\nname: a\ndescription: d\napps: [A]\nphrasings:\n  - do it {x}\nparams:\n  x: a value\n"


@pytest.mark.parametrize("text, expected", [
    ("---\nname: a\ndescripton: d\napps: [A]\nphrasings: [p]\n---\n1. x\n",
     "f.md:3: unknown field 'descripton'; did you mean 'description'?"),
    ("---\nname: a\napps: [A]\nphrasings: [p]\n---\n1. x\n", "f.md:2: missing field 'description'"),
    ("---\nname: Wifi Toggle\ndescription: d\napps: [A]\nphrasings: [p]\n---\n1. x\n",
     "f.md:2: name 'Wifi Toggle' must be a slug"),
    ("---\nname: a\ndescription: d\napps: Settings\nphrasings: [p]\n---\n1. x\n", "f.md:4: apps:"),
    ("---\nname: a\ndescription: d\napps: [A]\nphrasings: [p]\nversion: 1.5\n---\n1. x\n", "f.md:6: version:"),
    ("---\nname: a\nname: b\ndescription: d\napps: [A]\nphrasings: [p]\n---\n1. x\n",
     "f.md:3: name is given twice"),
    ("---\nname: a\n  bad: [\n---\n1. x\n", "f.md:3: front matter is not valid YAML"),
    (HEAD + "---\n1. Call {whom} about {x}\n", "f.md:10: placeholder {whom} is not declared under params"),
    (HEAD + "  y: unused\n---\n1. do {x}\n", "f.md:9: parameter 'y' is declared but no phrasing or step uses {y}"),
    (HEAD.replace("do it {x}", "do it {x} {z}") + "---\n1. do {x}\n", "f.md:6: placeholder {z} is not declared"),
    (HEAD.replace("  x: a value\n", "  x: {description: d, exmple: v}\n") + "---\n1. {x}\n",
     "f.md:8: parameter 'x': unknown key 'exmple'; did you mean 'example'?"),
    (HEAD.replace("  x: a value\n", "  x: {description: d, example: on}\n") + "---\n1. {x}\n",
     "f.md:8: params.x.example: YAML reads yes/no/on/off/true/false as booleans"),
    (HEAD.replace("  x: a value\n", "  x: {description: d, example: 7:30}\n") + "---\n1. {x}\n",
     "f.md:8: params.x.example: YAML reads 450 as a number"),
    (HEAD.replace("  x: a value\n", "  Bad: a value\n") + "---\n1. x\n", "f.md:8: parameter name 'Bad'"),
    ("---\nname: a\ndescription: d\napps: [A]\nphrasings:\n  - {x}\nparams:\n  x: v\n---\n1. {x}\n",
     "f.md:6: phrasings[0] was read as a YAML mapping: put quotes around"),
    ("---\nname: a\ndescription: d\napps: [A]\nphrasings:\n  - {x} now\nparams:\n  x: v\n---\n1. {x}\n",
     "f.md:6: front matter is not valid YAML"),
    (HEAD + "---\n1. {x}\n3. y\n", "f.md:11: step numbered 3, expected 2"),
    (HEAD + "---\n1. {x} [sensitve]\n", "f.md:10: unknown marker 'sensitve'; did you mean 'sensitive'?"),
    (HEAD + "---\n1. {x} [sensitive: pay]\n", "f.md:10: unknown kind of sensitive step 'pay'; did you mean "
                                              "'payment'?"),
    (HEAD + "---\n1. {x} (screen Wi-Fi)\n", "f.md:10: write the expected screen as (screen: TITLE)"),
    (HEAD + "---\n1. {x} (screen: )\n", "f.md:10: (screen: ) names no screen"),
    (HEAD + "---\n1. {x} [sensitive] [sensitive]\n", "f.md:10: [sensitive] is given twice"),
    (HEAD + "---\n1. [sensitive]\n", "f.md:10: the step has no instruction"),
    (HEAD + "---\n1. Tap {Contact Name} {x}\n", "f.md:10: a brace that is not a {placeholder}"),
    (HEAD + "---\n1. {x}\n   and then more\n", "f.md:11: a step is a single line"),
    (HEAD + "---\n1. {x}\nsome prose\n", "f.md:11: expected a numbered step"),
    (HEAD + "---\n\n", "f.md:11: no steps"),
    (HEAD + "---\n1. {x} " + "y" * MAX_STEP_CHARS + "\n", f"keep it under {MAX_STEP_CHARS}"),
    (HEAD + "---\n" + "".join(f"{n}. {{x}}\n" for n in range(1, MAX_STEPS + 2)),
     f"f.md:{10 + MAX_STEPS}: more than {MAX_STEPS} steps"),
])
def test_every_validation_error_names_file_and_line(text, expected):
    found = problems(text)
    assert any(expected in p for p in found), found


def test_all_problems_of_a_file_are_reported_at_once():
    found = problems(HEAD + "---\n1. {x} [sensitve]\n3. {y}\n")
    assert any(p.startswith("f.md:10:") for p in found) and any(p.startswith("f.md:11:") for p in found)


def test_a_hotkey_the_desktop_has_no_key_for_is_found_by_lint_not_by_a_run():
    found = problems(HEAD + "---\n1. Press ctrl+sss.\n2. Press the hotkey ctrl+shift+s.\n3. Press F13.\n"
                     "4. Press {combo}.\n5. Finish.\n")
    assert any(p.startswith("f.md:10:") and "no key 'sss'" in p for p in found), found
    assert not any(p.startswith(("f.md:11:", "f.md:13:")) for p in found), found  # a real one; a placeholder
    assert any(p.startswith("f.md:12:") and "f13" in p for p in found), found


def test_sop_error_is_a_config_error():
    assert issubclass(SopError, ConfigError)


@pytest.mark.parametrize("data, expected", [
    (b"---\x00\xff\xfe garbage", "f.md:1: binary data"),
    (b"---\nname: \xff\n---\n1. x\n", "f.md:2: not UTF-8 text"),
    (b"", "f.md:1: an SOP starts with a front matter block"),
    (b"1. Open Settings\n", "f.md:1: an SOP starts with a front matter block"),
    (b"---\nname: a\n1. x\n", "f.md:1: the front matter opened here is never closed"),
    (b"---\n---\n1. x\n", "f.md:2: the front matter must be a mapping"),
    (b"---\n- a\n- b\n---\n1. x\n", "f.md:2: the front matter must be a mapping"),
    (b"---\na: &x [1, 2]\nb: *x\n---\n1. x\n", "f.md:2: YAML anchors and aliases"),
    (b"---\na: &a [lol, lol]\nb: &b [*a, *a]\nc: &c [*b, *b]\nd: [*c, *c]\n---\n1. x\n", "YAML anchors and aliases"),
    (b"---\na: !!python/object/apply:os.system [echo hi]\n---\n1. x\n", "f.md:2: front matter is not valid YAML"),
    pytest.param(b"---\n" + b"[" * 20000 + b"\n---\n1. x\n", "f.md:2: front matter is not valid YAML: brackets nest",
                 id="20000-brackets"),
])
def test_malformed_files_are_refused_with_a_line(data, expected):
    found = problems(data)
    assert any(expected in p for p in found), found


def test_huge_files_are_refused_without_reading_them_whole(tmp_path):
    path = tmp_path / "huge.md"
    with open(path, "wb") as f:
        f.write(GOOD.encode())
        f.seek(50 * 1024 * 1024)
        f.write(b"\n")
    with pytest.raises(SopError, match=f"larger than {MAX_BYTES // 1024} KiB"):
        load_sop(path)


def test_fuzzed_files_only_ever_raise_sop_error():
    rng = random.Random(5)
    good = GOOD.encode()
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                del data[pos:pos + rng.randint(1, 20)]
            else:
                data[pos:pos] = rng.choice([b"{", b"}", b"[", b"]", b":", b"---\n", b"&a ", b"*a", b"\n", b"\t"])
        try:
            parse_sop(bytes(data), "fuzz.md")
        except SopError as exc:
            assert exc.problems and all(str(p).startswith("fuzz.md") for p in exc.problems)
    for _ in range(100):
        try:
            parse_sop(bytes(rng.randrange(256) for _ in range(rng.randint(0, 300))), "noise.md")
        except SopError:
            pass


def test_unreadable_path_is_a_sop_error(tmp_path):
    with pytest.raises(SopError, match="cannot read the file"):
        load_sop(tmp_path / "missing.md")


# ---------------------------------------------------------------- library


def test_earlier_folders_shadow_later_ones_by_name(tmp_path):
    project, user = tmp_path / "project", tmp_path / "user"
    write(project, "a.md", sop_text("shared", "From the project."))
    write(user, "b.md", sop_text("shared", "From the user."))
    write(user, "c.md", sop_text("user-only", "Only in the user folder."))
    write(user, "d.md", sop_text("settings-wifi-toggle", "A user's own Wi-Fi SOP."))
    lib = load_library(project=project, user=user)
    assert lib.get("shared").description == "From the project."
    assert lib.entry("shared").origin == "project"
    assert lib.entry("user-only").origin == "user"
    assert lib.get("settings-wifi-toggle").description == "A user's own Wi-Fi SOP."
    assert lib.entry("contacts-add").origin == "bundled"
    hidden = {(h.sop.name, h.origin, w.origin) for h, w in lib.shadowed}
    assert hidden == {("shared", "user", "project"), ("settings-wifi-toggle", "bundled", "user")}
    assert not lib.problems


def test_default_folders_are_cwd_sops_then_env_user_folder_then_bundled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPILOT_SOPS", str(tmp_path / "mine"))
    write(tmp_path / "sops", "p.md", sop_text("from-project"))
    write(tmp_path / "mine", "u.md", sop_text("from-user"))
    lib = load_library()
    assert [f.origin for f in lib.folders] == ["project", "user", "bundled"]
    assert lib.folders[0].path == tmp_path / "sops" and lib.folders[1].path == tmp_path / "mine"
    assert lib.entry("from-project").origin == "project" and lib.entry("from-user").origin == "user"


def test_a_broken_user_file_does_not_take_the_library_down(tmp_path):
    user = tmp_path / "user"
    write(user, "good.md", sop_text("good-one"))
    write(user, "broken.md", "---\nname: broken\ndescripton: x\n---\n1. x\n")
    (user / "binary.md").write_bytes(b"\x00\x01\x02")
    write(user, "README.md", "# not an SOP, skipped\n")
    write(user, "notes.txt", "not an .md file, skipped")
    lib = load_library(project=tmp_path / "none", user=user)
    assert "good-one" in lib and "contacts-add" in lib
    assert {Path(p.path).name for p in lib.problems} == {"broken.md", "binary.md"}
    assert any(str(p).startswith(str(user / "broken.md") + ":3:") for p in lib.problems)


def test_two_files_of_one_folder_with_the_same_name_is_a_problem(tmp_path):
    user = tmp_path / "user"
    write(user, "a.md", sop_text("twin"))
    write(user, "b.md", sop_text("twin"))
    lib = load_library(project=tmp_path / "none", user=user)
    assert lib.entry("twin").path.name == "a.md"
    assert any("already defines the SOP 'twin'" in str(p) for p in lib.problems)


def test_a_folder_that_is_a_file_is_a_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    lib = load_library(project=tmp_path / "file", user=tmp_path / "none")
    assert any("is not a folder" in str(p) for p in lib.problems) and len(lib) >= 30


def test_unknown_name_suggests_close_ones():
    with pytest.raises(SopError, match="did you mean settings-wifi-connect, settings-wifi-toggle"):
        load_library().get("wifi")


def test_install_copies_into_the_user_folder_and_refuses_to_overwrite(tmp_path):
    src = write(tmp_path, "mine.md", sop_text("my-call"))
    user = tmp_path / "user"
    target = install_sop(src, user)
    assert target == user / "my-call.md" and target.read_text() == src.read_text()
    with pytest.raises(SopError, match="already has the SOP 'my-call'.*--force"):
        install_sop(src, user)
    write(tmp_path, "mine.md", sop_text("my-call", "Changed."))
    assert install_sop(src, user, force=True) == target
    assert load_sop(target).description == "Changed."
    with pytest.raises(SopError, match="unknown field"):
        install_sop(write(tmp_path, "bad.md", "---\nnam: x\n---\n1. x\n"), user)


# ---------------------------------------------------------------- retrieval


@pytest.fixture(scope="module")
def bundled():
    return load_library([Folder("bundled", BUNDLED_DIR)])


@pytest.mark.parametrize("task, name, params", [
    ("Switch off the Wi-Fi please", "settings-wifi-toggle", {"state": "off"}),
    ("turn bluetooth on", "settings-bluetooth-toggle", {"state": "on"}),
    ("Enable flight mode", "settings-airplane-mode", {}),
    ("Text Maria Gomez saying \"I'll be there at 8\"", "messages-send",
     {"name": "Maria Gomez", "message": "I'll be there at 8"}),
    ('Text Olivia Adams: "Happy birthday!"', "messages-send",  # quoted words keep their "!"
     {"name": "Olivia Adams", "message": "Happy birthday!"}),
    ("Add Tom Baker as a new contact with the number 555-0177", "contacts-add",
     {"name": "Tom Baker", "phone": "555-0177"}),
    ("Wake me at 05:45", "clock-add-alarm", {"time": "05:45"}),
    ("Please ring Priya Shah", "contacts-call", {"name": "Priya Shah"}),
    ("Make a note called \"Shopping\" saying \"Apples and pears\"", "notes-create",
     {"title": "Shopping", "text": "Apples and pears"}),
    ("Open the website news.example", "chrome-open-website", {"site": "news.example"}),
    ("Run ls -la in a terminal", "desktop-run-command", {"command": "ls -la"}),
    # no phrasing anchors these names by the words before them; the words after them tell them apart
    # (the first name used to go to the first parameter, {contact})
    ("Ben Ortiz needs Ann Lee's number. Send it to Ben in a message", "messages-share-contact",
     {"contact": "Ann Lee", "name": "Ben Ortiz"}),
])
def test_retrieval_picks_the_sop_and_fills_its_parameters(bundled, task, name, params):
    match = retrieve(task, bundled)
    assert match is not None, rank(task, bundled, 3)
    assert match.sop.name == name
    assert match.params == params
    assert 0 < match.score <= 1


@pytest.mark.parametrize("task", [
    "Play the next song on Spotify", "What's the capital of France?", "Take a selfie", "asdf qwerty zxcv",
    "Order a large pizza with extra cheese", "", "   ", "!!!", "12345",
])
def test_unrelated_tasks_get_no_sop(bundled, task):
    assert retrieve(task, bundled) is None


def test_threshold_and_ranking(bundled):
    ranked = rank("Turn off Bluetooth", bundled, k=3)
    assert [m.sop.name for m in ranked][0] == "settings-bluetooth-toggle"
    assert ranked[0].score >= ranked[1].score >= ranked[2].score
    assert retrieve("Turn off Bluetooth", bundled, threshold=1.01) is None
    assert retrieve("Take a selfie", bundled, threshold=0.0) is not None


def test_match_renders_filled_steps_and_leaves_missing_parameters_visible(bundled):
    match = retrieve("Transfer money to Mia Thompson", bundled)
    assert match is not None and match.sop.name == "bank-transfer"
    assert match.params == {"payee": "Mia Thompson"}
    assert set(match.missing) == {"amount", "account", "pin"}
    assert 'Tap "Mia Thompson" under "To"' in match.text and '"{pin}"' in match.text
    sensitive = [s for s in match.steps if s.sensitive]
    assert [s.kind for s in sensitive] == ["password", "payment"]
    assert "<- now" in match.render(current=4).splitlines()[4]


def test_fill_params_for_a_chosen_sop(bundled):
    sop = bundled.get("clock-rename-alarm")
    assert fill_params(sop, "Rename the 07:00 alarm to \"Gym time\"") == {"time": "07:00", "label": "Gym time"}


def test_value_shapes():
    assert [shape(v) for v in ("07:30", "Ann Lee", "555-0123", "on", "Friday", "$25.00", "1234",
                               "4111 1111 1111 1111", "news.example", "ann@example.com", "Buy milk")] == [
        "time", "name", "phone", "switch", "weekday", "amount", "digits", "card", "domain", "email", "text"]
    found = [(s.text, s.shape) for s in spans('Call Ann Lee at 07:30 about "the trip"', frozenset({"call"}))]
    assert found == [("Ann Lee", "name"), ("07:30", "time"), ("the trip", "text")]


def test_progress_tracks_the_step_and_records_it(bundled):
    progress = SopProgress.start(retrieve("Turn Wi-Fi off", bundled))
    assert progress.current == 1 and progress.step.text == "Open the Settings app."
    assert progress.locate("Wi-Fi") == 4 and progress.locate("Bank") is None
    later = progress.advance(4)
    assert "4. Tap the \"Use Wi-Fi\" switch if it is not already off. (screen: Wi-Fi) <- now" in later.render()
    assert later.record() == {"sop": "settings-wifi-toggle", "version": 1, "step": 4, "departed": None}
    assert later.depart("the switch is missing").record()["departed"] == "the switch is missing"
    assert later.advance(99).done and later.advance(99).step is None and later.advance(-3).current == 1


def test_a_type_or_open_step_is_done_only_by_typing_or_opening(bundled):
    from edgepilot.actions import OpenApp, Tap, Type

    progress = SopProgress.start(retrieve("Open the Bank app and sign in with PIN 0148 and tell me my Savings "
                                          "balance", bundled))
    assert progress.step.text == "Open the Bank app."
    assert not progress.done_by(Tap(target=3)) and progress.done_by(OpenApp(app="Bank"))
    typing = progress.advance()
    assert typing.step.text.startswith('Type "0148"')
    # a premature "Log in" that worked does not count as the PIN typed: the <- now stays on the PIN
    assert not typing.done_by(Tap(target=6)) and typing.done_by(Type(text="0148", target=5))
    assert typing.advance().step.text.startswith("Tap") and typing.advance().done_by(Tap(target=6))


def test_a_tap_step_is_done_only_by_a_tap_on_what_it_names(bundled, served):
    """At ``Tap "Airplane mode"`` a tap on the Wi-Fi row works (a screen opens) but is not that step: the
    procedure's ``<- now`` stays on it. Seen in an episode of the distilled model, where the procedure then
    told it the switch was next while it stood on the Wi-Fi screen."""
    from edgepilot.actions import OpenApp, Swipe, Tap

    def row(obs, label):
        return next(i for i, n in enumerate(obs.elements) if n.clickable and n.text.startswith(label))

    _, _, device = served
    device.act(OpenApp(app="Settings"))
    device.act(Tap(target=row(device.observe(), "Network & internet")))
    screen = device.observe()
    airplane, wifi = row(screen, "Airplane mode"), row(screen, "Wi-Fi")
    progress = SopProgress.start(retrieve("Turn on airplane mode", bundled)).advance(3)
    assert progress.step.text == 'Tap "Airplane mode".'
    assert progress.done_by(Tap(target=airplane), screen)
    assert not progress.done_by(Tap(target=wifi), screen)
    assert not progress.done_by(Swipe(direction="up"), screen)  # a scroll towards it is not the tap
    assert progress.done_by(Tap(target=wifi))  # no screen to tell by: any tap
    device.act(OpenApp(app="Bank"))  # a screen without what the step names: any tap counts, as before
    assert progress.done_by(Tap(target=wifi), device.observe())


def _progress(bundled, name: str, **params: str) -> SopProgress:
    from edgepilot.sop.retrieve import Match

    return SopProgress.start(Match(bundled.get(name), 1.0, params))


def test_a_step_may_offer_a_second_way_and_either_completes_it(bundled):
    """``Tap "X" under "To", or type "X" in the "Recipient name" field``: typing the name is the step done.
    Seen in an episode of the distilled model: it typed the payee, which the step allows, and the
    procedure's ``<- now`` stayed on that step because only its first form counted."""
    from edgepilot.actions import OpenApp, Tap, Type
    from edgepilot.sop.follow import read_alternatives

    progress = _progress(bundled, "bank-transfer", payee="Mia Thompson", amount="25.00").advance(5)
    assert progress.step.text == 'Tap "Mia Thompson" under "To", or type "Mia Thompson" in the "Recipient name" field.'
    assert [w.form for w in read_alternatives(progress.step.text)] == ["tap", "type"]
    assert progress.done_by(Type(text="Mia Thompson", target=7)) and progress.done_by(Tap(target=4))
    assert not progress.done_by(OpenApp(app="Bank"))
    # advice in parentheses is not a second way; a ", or " inside a quoted value splits nothing
    advice = read_alternatives('Tap "Ann" in the list (type in "Search" if it is not shown).')
    assert [w.form for w in advice] == ["tap"]
    ways = read_alternatives('Type "red, or tap "x"" in the "Colour" field.')
    assert [(w.form, w.get("value")) for w in ways] == [("type", 'red, or tap "x"')]
    assert read_alternatives("Read the value, or tap \"Help\".") == []  # the first way fits no form: no ways


@pytest.mark.parametrize("text,words", [
    ('Tap "Log in".', ['tap "Log in"']),
    ('Long-press "Ann Lee".', ['long press "Ann Lee"']),
    ('Type "1234" in the "PIN" field.', ['type "1234" into PIN']),
    ('Replace the text in the "Label" field with "Gym".', ['replace the text in Label with "Gym"']),
    ('Tap "Mia" under "To", or type "Mia" in the "Recipient name" field.',
     ['tap "Mia"', 'type "Mia" into Recipient name']),
    ("Open the Bank app.", ["open Bank"]),
    ("Press the back key.", ["press back"]),
    ("Swipe up.", ["swipe up"]),
    # no form, but a verb and a quoted thing: read loosely, the first verb with its quoted words
    ('Check the amount, then tap "Confirm transfer".', ['tap "Confirm transfer"']),
    ('Clear the "Phone" field and type "555-0199".', ['replace the text in Phone with "555-0199"']),
    # a desktop's steps: clicks, double clicks, hotkeys
    ('Click "Replace All".', ['click "Replace All"']),
    ('Double-click "Work" to open the folder.', ['double click "Work"']),
    ('Double-click the folder "Work".', ['double click "Work"']),
    ("Press ctrl+s to save.", ["press ctrl+s"]),
    ("Press the hotkey ctrl+alt+t.", ["press ctrl+alt+t"]),
    ("Press F2 to rename it.", ["press f2"]),
    ('Type "12*7=" on the keyboard.', ['type "12*7="']),
    ('Tap its switch (described as "07:30 alarm") so it shows ON.', ['tap "07:30 alarm"']),
    # nothing a subgoal can say: reading, finishing, a switch by its neighbour, an app named later
    ('Read the balance shown under "Savings".', []),
    ("Finish and answer with that value.", []),
    ('Finish when "Transfer sent" shows.', []),
    ('Tap the switch next to "Use Wi-Fi" if it is not on.', []),
    ('Open the app "{app}" (or tap its icon on the home screen).', []),
    ('Open the app "Notes" (or tap its icon on the home screen).', ["open Notes"]),
    # read loosely: a bare field name, advice in parentheses; not a step that acts only on a condition
    ('Type "10:30" in the time field (24-hour HH:MM).', ['type "10:30" into time']),
    ('Tap the note "Chores" (scroll if it is not shown).', ['tap "Chores"']),
    ('Tap the "Use Wi-Fi" switch if it is not already on.', []),
    ('If "Use Bluetooth" is off, tap it to turn Bluetooth on.', []),
    ('Type "Ann Lee: " followed by the number in the "Text message" field.', []),
])
def test_a_steps_ways_in_the_words_of_a_subgoal(text, words):
    from edgepilot.sop.follow import step_subgoals

    assert step_subgoals(text) == words


def test_going_back_or_home_is_never_a_step_that_does_not_say_so(bundled):
    """At ``Read the value under "Android version"`` a back press "worked" (the screen changed) and used to
    count as the step read, moving ``<- now`` to ``Finish`` on the Settings screen (an episode of the
    distilled model, which then answered with the battery level)."""
    from edgepilot.actions import Key, Swipe, Tap

    reading = _progress(bundled, "settings-about-phone").advance(3)
    assert reading.step.text.startswith("Read the value")
    assert not reading.done_by(Key(key="back")) and not reading.done_by(Key(key="home"))
    assert reading.done_by(Swipe(direction="up")) and reading.done_by(Tap(target=3))
    sop = parse_sop(GOOD.replace('3. Tap "Call". (screen: {name}) [sensitive: call]', "3. Press the back key."))
    back = SopProgress(sop, sop.steps, {"name": "Ann Lee"}, current=3)
    assert back.done_by(Key(key="back")) and not back.done_by(Key(key="home")) and back.done_by(Tap(target=1))


def test_the_screen_moves_the_procedure_back_to_a_step_it_had_left(bundled):
    """A back press from About phone lands on Settings: no step from the current one on expects that
    screen, so the run is on step 2 again (its tap is still to do), not on ``Finish``."""
    about = _progress(bundled, "settings-about-phone")
    assert about.advance(4).locate("Settings") == 2 and about.advance(3).locate("About phone") == 3
    assert about.advance(2).locate("About phone") == 3  # ahead, as before
    assert about.advance(3).locate("Wi-Fi") is None
    # a screen that several steps share: back to the first of the latest run of them (the PIN, not Log in)
    bank = _progress(bundled, "bank-transfer", payee="Mia Thompson", amount="25.00", account="Checking", pin="1234")
    assert [s.screen for s in bank.steps[1:4]] == ["Bank", "Bank", "Accounts"]
    assert bank.advance(5).locate("Bank") == 2 and bank.advance(5).locate("Accounts") == 4


def test_retrieval_is_quick_and_pulls_in_no_heavy_modules(bundled):
    import time

    retriever = retriever_for(bundled)
    start = time.perf_counter()
    for _ in range(20):
        retriever.retrieve("Send Ann Lee a message saying \"hello there\"")
    assert (time.perf_counter() - start) / 20 < 0.1
    code = "import sys, edgepilot.sop; assert not {'numpy', 'edgepilot.sim', 'edgepilot.agent'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- bundled SOPs


def test_every_bundled_sop_lints():
    files = sorted(BUNDLED_DIR.glob("*.md"))
    assert len(files) >= 30
    names = {load_sop(f).name for f in files}
    assert len(names) == len(files)
    assert {f.stem for f in files} == names, "each bundled file is named after its SOP"


def test_bundled_sops_cover_every_virtual_phone_app_and_the_desktop():
    from edgepilot.sim.apps import APP_CLASSES

    sops = load_library([Folder("bundled", BUNDLED_DIR)]).sops
    covered = {a for s in sops for a in s.apps}
    for app in APP_CLASSES:
        assert app.package in covered, f"no bundled SOP for {app.label} ({app.package})"
    assert sum(s.name.startswith("desktop-") for s in sops) >= 2


def test_sensitive_steps_are_marked_in_bundled_sops():
    lib = load_library([Folder("bundled", BUNDLED_DIR)])
    kinds = {name: {s.kind for s in lib.get(name).sensitive_steps} for name in lib.entries}
    assert kinds["bank-transfer"] == {"password", "payment"}
    assert kinds["chrome-shop-buy"] == {"payment"}
    assert kinds["messages-send"] == {"send_message"}
    assert kinds["contacts-delete"] == {"delete"} and kinds["notes-delete"] == {"delete"}
    assert kinds["settings-wifi-connect"] == {"password"}
    assert kinds["contacts-call"] == {"call"}


def test_sensitive_kinds_match_the_task_suite():
    from edgepilot.sim.tasks.model import SENSITIVE_KINDS as TASK_KINDS

    assert set(SENSITIVE_KINDS) == set(TASK_KINDS)


@pytest.mark.slow
def test_an_installed_copy_finds_the_bundled_sops(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    code = ("import edgepilot.sop as s, edgepilot.bench.sop as e;"
            f"assert s.__file__.startswith({str(target)!r}), s.__file__;"
            "lib = s.load_library(); assert len(lib) >= 30 and not lib.problems, lib.problems;"
            "assert e.EVAL_MAP.is_file();"
            "assert s.retrieve('Turn off Wi-Fi', lib).sop.name == 'settings-wifi-toggle'")
    env = {"PYTHONPATH": f"{target}:{sysconfig.get_paths()['purelib']}", "EDGEPILOT_SOPS": str(tmp_path / "u")}
    subprocess.run([sys.executable, "-S", "-c", code], check=True, cwd=tmp_path, env=env, timeout=60)


# ---------------------------------------------------------------- CLI


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sop", *args])
    return result.exit_code, result.output


def test_cli_list_show_and_find(tmp_path):
    write(Path(os.environ["EDGEPILOT_SOPS"]), "x.md", sop_text("mine"))
    write(tmp_path / "proj", "broken.md", "---\nname: b\n")
    code, out = run_cli("list", "--project", str(tmp_path / "proj"))
    assert code == 0 and "settings-wifi-toggle" in out and "bundled" in out
    assert "mine" in out and "problem:" in out and "broken.md:1:" in out
    code, out = run_cli("list", "--json")
    data = json.loads(out)
    assert {s["name"] for s in data["sops"]} >= {"contacts-add", "bank-transfer"}
    code, out = run_cli("show", "contacts-call")
    assert code == 0 and "[sensitive]" in out and "Give {name} a call" in out
    code, out = run_cli("show", "contacts-call", "--raw")
    assert out.startswith("---\nname: contacts-call")
    code, out = run_cli("find", "Please call Ann Lee", "-k", "3")
    assert code == 0 and "contacts-call" in out and "{name} = Ann Lee" in out and "ranking:" in out
    code, out = run_cli("find", "Play some jazz", "--json")
    assert json.loads(out)["match"] is None
    code, out = run_cli("show", "no-such-sop")
    assert code == 1 and "no SOP named 'no-such-sop'" in out


def test_cli_lint_reports_file_and_line_and_exits_1(tmp_path):
    good = write(tmp_path, "good.md", GOOD)
    bad = write(tmp_path, "bad.md", HEAD + "---\n1. Call {whom} {x}\n")
    code, out = run_cli("lint", str(good))
    assert code == 0 and "ok (demo-call, 4 steps, 1 params)" in out
    code, out = run_cli("lint", str(good), str(bad))
    assert code == 1 and f"{bad}:10: placeholder {{whom}} is not declared" in out
    code, out = run_cli("lint", str(BUNDLED_DIR))
    assert code == 0 and out.count(": ok (") >= 30


def test_cli_add(tmp_path):
    src = write(tmp_path, "mine.md", sop_text("my-own"))
    code, out = run_cli("add", str(src))
    assert code == 0 and f"added {Path(os.environ['EDGEPILOT_SOPS']) / 'my-own.md'}" in out
    code, out = run_cli("add", str(src))
    assert code == 1 and "--force" in out
    code, out = run_cli("add", str(src), "--force")
    assert code == 0
    code, out = run_cli("list")
    assert "my-own" in out and "user" in out


def test_cli_eval_json():
    code, out = run_cli("eval", "--split", "unrelated", "--json")
    data = json.loads(out)
    assert code == 0 and data["split"] == "unrelated" and data["n"] >= 20 and 0 <= data["accuracy"] <= 1


# ---------------------------------------------------------------- held-out retrieval accuracy


def test_eval_map_covers_every_template_and_names_real_sops():
    from edgepilot.bench.sop import load_eval_map
    from edgepilot.sim.tasks.suite import load_templates

    mapping, unrelated = load_eval_map()
    assert set(mapping) == set(load_templates())
    names = set(load_library([Folder("bundled", BUNDLED_DIR)]).entries)
    assert {v for v in mapping.values() if v} <= names and unrelated


def test_the_desktop_eval_map_covers_every_desktop_template_and_train_only_hides_the_held_out_kinds():
    from edgepilot.bench.evalmap import load_desktop_map
    from edgepilot.bench.tasks import train_only_library
    from edgepilot.sim.desktop.templates import desktop_templates

    mapping, templates = load_desktop_map(), desktop_templates()
    assert set(mapping) == set(templates)
    library = load_library([Folder("bundled", BUNDLED_DIR)])
    assert {v for v in mapping.values() if v} <= set(library.entries)
    assert all(library.get(v).device == "desktop" for v in mapping.values() if v)
    kept = set(train_only_library(library, kind="desktop").entries)
    held = {v for t, v in mapping.items() if v and templates[t].split == "test"}
    trained = {v for t, v in mapping.items() if v and templates[t].split == "train"}
    assert held and not (held - trained) & kept and trained <= kept
    assert set(train_only_library(library).entries) >= trained  # the phone's own map leaves desktop procedures be


@pytest.mark.parametrize("split, floor", [("test", 0.8), ("test-instances", 0.95), ("train", 0.95)])
def test_held_out_retrieval_accuracy(split, floor):
    """Measured live with the settings of `edgepilot sop eval` (docs/sops.md has the figures: 85.2%,
    99.4%, 100%); breaks when retrieval, the SOPs or the map break."""
    from edgepilot.bench.sop import PER_TEMPLATE, evaluate

    report = evaluate(split, library=load_library([Folder("bundled", BUNDLED_DIR)]), per_template=PER_TEMPLATE)
    assert report.n >= 100
    assert report.accuracy >= floor, report.format()


def test_a_template_mapped_to_null_is_right_when_nothing_is_retrieved(tmp_path):
    from edgepilot.bench.sop import evaluate, load_eval_map

    mapping, unrelated = load_eval_map()
    mapping = {k: None for k in mapping}
    path = tmp_path / "map.yaml"
    path.write_text(json.dumps({"templates": mapping, "unrelated": unrelated}))
    report = evaluate("train", library=load_library([Folder("bundled", BUNDLED_DIR)]), per_template=2,
                      eval_map=path, threshold=1.01)
    assert report.accuracy == 1.0
