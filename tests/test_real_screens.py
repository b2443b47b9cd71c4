"""Perception on real apps' screens: the shared uiautomator dumps, and small trees that isolate each rule.

The dumps live beside the repository (``../shared/real-android-dumps``, README there); their text is not
copied here, so the tests name elements by resource id or by rule.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from scripted import ScriptedBackend

from edgepilot.actions import Tap
from edgepilot.agent.agents import RoleAgent
from edgepilot.agent.roles import decider_schema_for
from edgepilot.controllers.android import screen_size
from edgepilot.errors import PromptTooLong
from edgepilot.models.base import Completion
from edgepilot.perception.android_tree import parse_uiautomator_xml
from edgepilot.perception.elements import KEYBOARD_DESC, is_keyboard_package
from edgepilot.perception.render import _rank, estimate_tokens, render_screen, task_words
from edgepilot.perception.signature import screen_key
from edgepilot.perception.types import Observation
from edgepilot.sop.screen import Screen, find

REPO = Path(__file__).resolve().parents[1]
_PLACES = [os.environ.get("EDGEPILOT_REAL_DUMPS", ""), REPO.parent / "shared" / "real-android-dumps",
           Path("/work/shared/real-android-dumps")]
DUMPS = next((Path(p) for p in _PLACES if p and Path(p).is_dir()), None)
REAL = sorted(DUMPS.glob("*.xml")) if DUMPS else []
real = pytest.mark.skipif(not REAL, reason="the shared real dumps are not beside this checkout "
                                           "(set EDGEPILOT_REAL_DUMPS to their folder)")


@pytest.fixture(scope="module")
def count():
    from edgepilot.models.registry import token_counter

    return token_counter("smollm2-135m")


def observe(xml: str) -> Observation:
    tree = parse_uiautomator_xml(xml)
    width, height = tree.extent
    return Observation(nodes=tree.nodes, package=tree.package, screen_width=width, screen_height=height,
                       keyboard_shown=tree.keyboard)


def node(bounds: str, *, cls: str = "android.widget.TextView", pkg: str = "com.app", children: str = "",
         **attrs: str) -> str:
    extra = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    head = f'<node class="{cls}" package="{pkg}" bounds="{bounds}" {extra}'
    return f"{head}>{children}</node>" if children else f"{head} />"


def dump(*windows: str, rotation: int = 0) -> str:
    return f'<?xml version="1.0"?><hierarchy rotation="{rotation}">{"".join(windows)}</hierarchy>'


# ---------------------------------------------------------------- the shared real dumps


def test_the_shared_dumps_are_here_on_this_machine():
    if not Path("/work/shared/real-android-dumps").is_dir() and not os.environ.get("EDGEPILOT_REAL_DUMPS"):
        pytest.skip("not this project's machine")
    assert len(REAL) >= 20


@real
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_a_real_screen_renders_within_the_budget_with_what_matters_first(path, count):
    obs = observe(path.read_text(encoding="utf-8"))
    assert obs.elements, "every real screen has something to act on"
    rendered = render_screen(obs, budget=900, count=count)
    assert rendered.tokens == count(rendered.text) <= 900
    lines = [line for line in rendered.text.splitlines()[1:] if line.startswith("[")]
    assert len(lines) == len(rendered.shown) and rendered.left_out == len(obs.elements) - len(rendered.shown)
    said = sum(int(line.split()[1]) for line in rendered.text.splitlines() if line.startswith("... "))
    assert said == rendered.left_out, "every element left out is counted on a summary line"
    # what is left out ranks no higher than what is kept, except where a line alone would not fit
    ranks = {i: _rank(n, obs.screen_height, set()) for i, n in enumerate(obs.elements)}
    kept_worst = max((ranks[i] for i in rendered.shown), default=0)
    for i in set(range(len(obs.elements))) - set(rendered.shown):
        assert ranks[i] >= min(kept_worst, 1) or count(f"[{i}] ") > 0 and rendered.tokens > 900 - 60, \
            f"element {i} (rank {ranks[i]}) was left out while rank {kept_worst} was kept"
    # whole labels: each shown element's text is in the rendering as the screen has it (cut only if huge)
    for i in rendered.shown:
        label = " ".join(obs.elements[i].text.split("\n")[0].split())
        if label and len(label) <= 60 and not obs.elements[i].password:
            assert label.replace('"', "'") in rendered.text


@real
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_no_tap_target_is_a_key_or_hidden(path):
    obs = observe(path.read_text(encoding="utf-8"))
    taps = decider_schema_for(obs)["$defs"]["Tap"]["properties"]["target"].get("enum", [])
    keyboard = [n for n in obs.elements if n.class_name == "Keyboard"]
    for i in taps:
        n = obs.elements[i]
        assert not is_keyboard_package(n.package), f"element {i} is a key"
        x, y = n.bounds.center
        assert not any(k.bounds.contains(x, y) for k in keyboard), f"element {i} lies under the keyboard"
        assert n.visible and not n.naf or n.label, f"element {i} has no name"
    if path.stem.endswith("gboard"):
        assert obs.keyboard_shown and len(keyboard) == 1 and obs.elements[-1] is keyboard[0]
        assert keyboard[0].content_desc == KEYBOARD_DESC and not keyboard[0].clickable
        ids = {n.resource_id.rsplit("/", 1)[-1] for n in obs.elements}
        assert "mini_menu_item" not in ids and "rubric_root" not in ids, "the page under the search overlay"
        assert "search_view_item" in ids and "chips_recycler_view" in ids, "the overlay's own rows"


@real
def test_real_screens_bench_prints_the_figures(count):
    from edgepilot.bench.screens import format_screens, screens_bench

    report = screens_bench((DUMPS,), model="smollm2-135m", budget=900)
    assert report["dumps"] == len(REAL) and report["errors"] == 0 and report["tokenizer"] == "model"
    assert report["over_budget"] == 0 and report["max"] <= 900 and report["p90"] <= 900
    assert report["whole_max"] > 900, "some real screens do not fit without the budget"
    assert "p90" in format_screens(report)


# ---------------------------------------------------------------- one rule at a time

STATUS = node("[0,0][1080,80]", cls="android.widget.FrameLayout", pkg="com.android.systemui",
              resource_id="com.android.systemui:id/status_bar", content_desc="Status bar",
              children=node("[0,0][200,80]", pkg="com.android.systemui", text="9:41",
                            resource_id="com.android.systemui:id/clock")
              + node("[800,0][900,80]", cls="android.widget.ImageView", pkg="com.android.systemui",
                     content_desc="Battery 80 percent.")
              + node("[900,0][1000,80]", cls="android.widget.ImageView", pkg="com.android.systemui",
                     content_desc="Wifi signal full."))


def _page(*children: str) -> str:
    return node("[0,80][1080,2400]", cls="android.widget.FrameLayout", children="".join(children))


def test_an_empty_field_shows_its_hint_as_a_hint_and_is_found_by_it():
    obs = observe(dump(_page(node("[0,100][1080,250]", cls="android.widget.EditText", text="Search notes",
                                  hint="Search notes", clickable="true"),
                             node("[0,300][1080,450]", cls="android.widget.EditText", text="milk",
                                  hint="Title", clickable="true"))))
    empty, filled = obs.elements
    assert (empty.text, empty.hint) == ("", "Search notes") and filled.text == "milk"
    assert 'hint="Search notes"' in obs.to_text() and 'hint="Title"' not in obs.to_text()
    assert [e.index for e in find(Screen.from_text(obs.to_text()), "Search notes")] == [0]
    assert [e.index for e in find(Screen.from_observation(obs), "Search notes")] == [0]


def test_invisible_characters_never_reach_the_prompt():
    obs = observe(dump(_page(node("[0,100][1080,250]", text="\u202a+1 555 0102\u202c\u200e",
                                  content_desc="\u2066Ann\u2069"))))
    assert obs.elements[0].text == "+1 555 0102" and obs.elements[0].content_desc == "Ann"
    assert not any(ch in obs.to_text() for ch in "\u202a\u202c\u200e\u2066\u2069")


def test_unlabelled_controls_get_a_usable_name():
    obs = observe(dump(_page(
        node("[900,100][1000,200]", cls="android.widget.ImageButton", clickable="true", NAF="true",
             resource_id="com.app:id/btn_send_message"),
        node("[0,300][600,400]", text="Dark theme"),
        node("[900,300][1000,400]", cls="android.widget.Switch", checkable="true", clickable="true"),
        node("[900,500][1000,600]", cls="android.widget.ImageView", clickable="true",
             resource_id="com.app:id/0_resource_name_obfuscated"))))
    names = [n.name for n in obs.elements if n.clickable]
    assert names == ["send message", "Dark theme", "unlabelled ImageView, top right"]
    assert obs.elements[0].naf and 'name~"send message"' in obs.to_text()
    assert [e.index for e in find(Screen.from_text(obs.to_text()), "send message", want="tap")] == [0]


def test_a_dialog_over_a_page_hides_the_page():
    page = node("[0,80][1080,2400]", cls="android.widget.FrameLayout", children=(
        node("[0,200][1080,350]", cls="android.widget.Button", text="Delete all", clickable="true")
        + node("[0,400][1080,550]", text="Some note")))
    scrim = node("[0,80][1080,2400]", cls="android.view.View", clickable="true", resource_id="com.app:id/scrim",
                 children=node("[100,900][980,1400]", cls="android.widget.LinearLayout",
                               children=node("[150,1200][500,1350]", cls="android.widget.Button", text="Cancel",
                                             clickable="true")))
    obs = observe(dump(node("[0,80][1080,2400]", cls="android.widget.FrameLayout", children=page + scrim)))
    labels = [n.label for n in obs.elements]
    assert "Delete all" not in labels and "Some note" not in labels and "Cancel" in labels


def test_drawing_order_decides_which_sibling_is_on_top():
    behind = node("[0,80][1080,2400]", cls="android.view.View", clickable="true", drawing_order="1",
                  resource_id="com.app:id/shadow")
    front = node("[0,80][1080,2400]", cls="android.widget.FrameLayout", drawing_order="2",
                 children=node("[0,100][1080,250]", cls="android.widget.Button", text="Go", clickable="true"))
    obs = observe(dump(node("[0,80][1080,2400]", cls="android.widget.FrameLayout", children=front + behind)))
    assert "Go" in [n.label for n in obs.elements]


def test_another_window_over_the_app_hides_what_it_covers_and_the_keyboard_is_one_element_at_the_end():
    app = _page(node("[0,100][1080,250]", cls="android.widget.EditText", text="hi", focused="true",
                     clickable="true"),
                node("[0,1900][1080,2000]", cls="android.widget.Button", text="Under the keys", clickable="true"))
    keys = "".join(node(f"[{x},1700][{x + 100},1850]", cls="android.widget.FrameLayout", content_desc=ch,
                        clickable="true", pkg="com.google.android.inputmethod.latin")
                   for x, ch in zip(range(0, 1000, 100), "qwertyuiop", strict=True))
    ime = node("[0,0][1080,2400]", cls="android.widget.FrameLayout", pkg="com.google.android.inputmethod.latin",
               children=node("[0,1650][1080,2300]", cls="android.widget.LinearLayout",
                             pkg="com.google.android.inputmethod.latin", children=keys))
    launcher = node("[0,0][1080,2400]", cls="android.widget.FrameLayout", pkg="com.android.launcher3",
                    children=node("[0,500][200,700]", text="Behind", clickable="true", pkg="com.android.launcher3"))
    obs = observe(dump(STATUS, app, ime, launcher))
    assert obs.package == "com.app" and obs.keyboard_shown
    labels = [n.label for n in obs.elements]
    assert "Behind" not in labels and "Under the keys" not in labels and not any(len(x) == 1 for x in labels)
    assert obs.elements[-1].class_name == "Keyboard" and "keyboard shown" in obs.to_text()
    assert labels[:2] == ["Battery 80 percent.\nWifi signal full.", "9:41"], "the status bar is two elements"


def test_wrappers_and_duplicates_become_one_element_without_losing_text():
    row = node("[0,100][1080,300]", cls="android.widget.FrameLayout", clickable="true",
               children=node("[0,100][1080,300]", cls="android.widget.LinearLayout", clickable="true",
                             children=node("[0,100][500,200]", text="Ann Lee")
                             + node("[0,200][500,300]", content_desc="Cloudy", text="13°C")))
    twice = node("[0,400][1080,500]", cls="android.widget.Button", text="OK", clickable="true")
    frame = node("[0,600][110,700]", cls="android.widget.FrameLayout", clickable="true",
                 resource_id="com.app:id/contact_selector",
                 children=node("[15,610][90,690]", cls="android.widget.ImageView", clickable="true",
                               content_desc="Photo of Ann"))
    obs = observe(dump(_page(row, twice, twice, frame)))
    assert [n.text or n.content_desc for n in obs.elements] == ["Ann Lee\nCloudy\n13°C", "OK", "Photo of Ann"]


def test_the_screen_size_follows_the_rotation():
    assert screen_size(1080, 2400, 0, (1080, 2400)) == (1080, 2400)
    assert screen_size(1080, 2400, 1, (2400, 1080)) == (2400, 1080)
    assert screen_size(1920, 1080, 1, (1080, 1920)) == (1080, 1920), "a landscape tablet turned upright"
    assert screen_size(1080, 1920, 0, (1080, 2220)) == (1080, 2220), "windows past a stale `wm size`"
    landscape = dump(node("[0,0][2400,1080]", cls="android.widget.FrameLayout",
                          children=node("[2000,500][2300,600]", cls="android.widget.Button", text="Far right",
                                        clickable="true")), rotation=1)
    tree = parse_uiautomator_xml(landscape)
    width, height = screen_size(1080, 2400, tree.rotation, tree.extent)
    obs = Observation(nodes=tree.nodes, package=tree.package, screen_width=width, screen_height=height)
    assert [n.label for n in obs.elements] == ["Far right"]


def test_a_ticking_status_bar_leaves_the_screen_key_alone():
    page = _page(node("[0,300][1080,450]", cls="android.widget.Button", text="Save", clickable="true"))
    before = observe(dump(STATUS, page))
    later = observe(dump(STATUS.replace("9:41", "9:42").replace("80 percent", "79 percent"), page))
    assert screen_key(before) == screen_key(later) and before.to_text() != later.to_text()
    changed = observe(dump(STATUS, page.replace("Save", "Saved")))
    assert screen_key(before) != screen_key(changed)


def test_the_budget_keeps_what_the_task_names_and_says_what_it_left_out():
    rows = "".join(node(f"[0,{100 + 60 * i}][1080,{160 + 60 * i}]", cls="android.widget.TextView",
                        text=f"Paragraph number {i} of a long article about nothing much at all")
                   for i in range(30))
    buttons = node("[0,2000][500,2100]", cls="android.widget.Button", text="Share", clickable="true") + \
        node("[500,2000][1080,2100]", cls="android.widget.Button", text="Bookmark", clickable="true")
    obs = observe(dump(_page(rows, node("[0,1900][1080,1950]", text="Total due 42"), buttons)))
    whole = render_screen(obs, budget=None, count=estimate_tokens, limit=1000)
    assert whole.tokens > 400
    fitted = render_screen(obs, budget=250, count=estimate_tokens, keep=task_words("what is the total due"))
    assert fitted.tokens <= 250 and fitted.left_out > 0
    assert '"Total due 42"' in fitted.text and '"Share"' in fitted.text and '"Bookmark"' in fitted.text
    assert "more further down" in fitted.text or "not shown here" in fitted.text
    schema = decider_schema_for(obs, shown=fitted.shown)
    assert set(schema["$defs"]["Tap"]["properties"]["target"]["enum"]) <= set(fitted.shown)


class _ShortContext(ScriptedBackend):
    """A scripted model with a tokenizer and a small context: it refuses prompts that do not fit, as llama.cpp's
    backend does."""

    context_tokens = 1300

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def complete(self, messages, *, schema=None, max_tokens=256, **kw) -> Completion:
        tokens = sum(self.count_tokens(m.content) + 8 for m in messages) + max_tokens
        if tokens > self.context_tokens:
            raise PromptTooLong("too long", tokens=tokens, limit=self.context_tokens)
        return super().complete(messages, schema=schema, max_tokens=max_tokens, **kw)


def test_a_prompt_that_does_not_fit_is_asked_again_with_a_shorter_screen_and_the_record_says_so():
    rows = "".join(node(f"[0,{100 + 40 * i}][1080,{140 + 40 * i}]", cls="android.widget.Button",
                        text=f"Item {i} with a fairly long label", clickable="true") for i in range(40))
    obs = observe(dump(_page(rows)))
    backend = _ShortContext(decider=[json.dumps({"type": "tap", "target": 0})])
    agent = RoleAgent("open item 0", backend)
    decision = agent.decide(obs)
    assert decision.action == Tap(target=0) and agent.screen_trims >= 1
    assert agent.screen_budget < 900 and decision.plan["screen"]["left_out"] > 0
    schema = backend.schemas[-1][1]
    assert set(schema["$defs"]["Tap"]["properties"]["target"]["enum"]) <= set(agent.screen.shown)


def test_llama_cpp_refuses_a_prompt_longer_than_its_context_instead_of_cutting_the_answer():
    from edgepilot.models.base import Message
    from edgepilot.models.builtin import builtin_path
    from edgepilot.models.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(builtin_path("smollm2-135m"), n_ctx=512)
    with pytest.raises(PromptTooLong) as caught:
        backend.complete([Message(role="user", content="word " * 400)], max_tokens=200)
    assert caught.value.limit == 512 and caught.value.tokens > 512 and "context" in str(caught.value)
    assert backend.complete([Message(role="user", content="Say hi")], max_tokens=4).text is not None


def test_without_the_drawing_order_only_a_whole_cover_hides():
    """Document order misses elevation: a floating button early in the tree is drawn over the rows after it."""
    fab = node("[560,1236][688,1364]", cls="com.google.android.material.floatingactionbutton.FloatingActionButton",
               clickable="true", content_desc="New chat")
    row = node("[0,574][720,1309]", cls="android.widget.RelativeLayout", clickable="true",
               children=node("[20,600][700,700]", text="A long card"))
    obs = observe(dump(node("[0,0][720,1436]", cls="android.widget.FrameLayout", children=fab + row)))
    assert "New chat" in [n.label for n in obs.elements]
    ordered = dump(node("[0,0][720,1436]", cls="android.widget.FrameLayout",
                        children=fab.replace("/>", 'drawing-order="1" />')
                        + row.replace('clickable="true"', 'clickable="true" drawing-order="2"', 1)))
    assert "New chat" not in [n.label for n in observe(ordered).elements], "drawn under the card, as the tree says"


def test_the_screen_budget_is_a_setting_of_the_run():
    """``screen_budget`` in config.toml: the screen takes at most that many tokens, what the task names kept."""
    from edgepilot.config import Config

    rows = "".join(node(f"[0,{100 + 40 * i}][1080,{140 + 40 * i}]", cls="android.widget.Button",
                        text="Zebra crossing" if i == 37 else f"Item {i} with a fairly long label",
                        clickable="true") for i in range(40))
    obs = observe(dump(_page(rows)))
    tight = RoleAgent("open the zebra crossing", _ShortContext(), screen_budget=200)
    tight.context(obs)
    assert tight.screen.tokens <= 200 and tight.screen.left_out > 0 and 37 in tight.screen.shown
    roomy = RoleAgent("open the zebra crossing", _ShortContext())
    roomy.context(obs)
    assert roomy.screen.left_out < tight.screen.left_out
    assert Config().screen_budget == 900 and Config(screen_budget=400).screen_budget == 400
    with pytest.raises(ValueError):
        Config(screen_budget=20)
