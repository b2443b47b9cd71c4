"""Desktop procedures: goals read with file names, paths, cells and sums as typed; steps that click, double-click,
press hotkeys and type into a window; answers read off a desktop screen. Pure: no display, no model."""

from __future__ import annotations

import ast
import random

import pytest

from edgepilot.actions import DoubleClick, Hotkey, Type
from edgepilot.agent.roles import answer_choices, decider_schema_for, ground_subgoal, pinned_action
from edgepilot.perception.nodes import Bounds, UINode
from edgepilot.perception.types import Observation
from edgepilot.sop.library import load_library
from edgepilot.sop.progress import SopProgress
from edgepilot.sop.retrieve import Match
from edgepilot.sop.understand import understand
from edgepilot.sop.values import keyed_sum, shape, without_brackets


@pytest.fixture(scope="module")
def desktop():
    return load_library().for_device("desktop")


def _value(expression: str) -> float:
    return eval(compile(ast.parse(expression, mode="eval"), "<sum>", "eval"))  # numbers and + - * / only


@pytest.mark.parametrize("typed,keys", [
    ("12 × 7", "12*7"), ("Use Galculator to compute 823 + 74, and answer", "823+74"), ("422 − 22", "422-22"),
    ("What is 12 times 7?", "12*7"), ("add 9 and 5 on the calculator", "9+5"), ("multiply 12 by 7", "12*7"),
    ("subtract 3 from 10", "10-3"), ("divide 100 by 4", "100/4"), ("1,200 + 30", "1200+30"), ("12 x 7", "12*7"),
    ("(61 + 94) × 5", "61*5+94*5"), ("5*(2+3)", "5*2+5*3"), ("10-(2+3)", "10-2-3"), ("(10+20)/5", "10/5+20/5"),
])
def test_a_sum_in_the_calculators_keys(typed, keys):
    assert keyed_sum(typed) == keys


@pytest.mark.parametrize("typed", ["5929", "meet at 7:30", "What is the square root of 5625", "100/(2+3)", ""])
def test_no_sum_is_made_up(typed):
    assert keyed_sum(typed) is None  # one number is not a sum; a division by a bracketed sum cannot lose its brackets


def test_brackets_multiplied_out_keep_the_value():
    rng = random.Random(7)
    for _ in range(300):
        a, b, c, d = (rng.randint(1, 99) for _ in range(4))
        op1, op2, op3 = (rng.choice("+-*") for _ in range(3))
        expression = rng.choice([f"({a}{op1}{b}){op2}{c}", f"{a}{op1}({b}{op2}{c})", f"({a}{op1}{b}){op2}({c}{op3}{d})",
                                 f"({a}+{b})/{c}"])
        flat = without_brackets(expression)
        assert flat is not None and "(" not in flat, expression
        assert _value(flat) == pytest.approx(_value(expression)), (expression, flat)


def test_shapes_of_desktop_values():
    assert shape("12*7") == "arithmetic" and shape("/home/me/notes.txt") == "path" and shape("640 x 480") == "size"
    assert shape("555-0102") == "phone" and shape("12") == "digits"  # the phone's shapes are unchanged


@pytest.mark.parametrize("goal,sop,params", [
    ("Use Galculator to compute (61 + 94) × 5", "galculator-compute", {"sum": "61*5+94*5"}),
    ("add 9 and 5 on the calculator", "galculator-compute", {"sum": "9+5"}),
    ("Calculate 224 times 98, and answer with the result", "galculator-compute", {"sum": "224*98"}),
    # file names keep their extension (txt is not "text" there) and the app's name inside them is not cased
    ("Use Thunar to rename copper.txt to harbor.txt", "thunar-rename", {"old": "copper.txt", "new": "harbor.txt"}),
    ("Open Gnumeric and enter 415 in cell B4 of stock.gnumeric and save it", "gnumeric-set-cell",
     {"value": "415", "cell": "B4", "file": "stock.gnumeric"}),  # B4 is a cell, not "before"
    # a path keeps its slash and its dot, and ends where the sentence goes on
    ('In Mousepad, write "hi ✓" and save it as /tmp/a-b/notes.txt', "mousepad-write-save",
     {"text": "hi ✓", "path": "/tmp/a-b/notes.txt"}),
    ("Use Galculator to total the numbers in /tmp/a/hours.txt on the calculator", "add-numbers-from-file",
     {"file": "/tmp/a/hours.txt"}),
    ("In the terminal, find out how many .txt files are in /tmp/a/Documents", "terminal-count-text-files",
     {"folder": "/tmp/a/Documents"}),
    # a place after a value is where, not part of it; a capitalised name is not a typo of a procedure's word
    ("Use the terminal to create a directory named photos in /tmp/a/Documents", "terminal-make-folder",
     {"name": "photos"}),
    ("Open a terminal and mkdir scratch inside /tmp/a", "terminal-make-folder", {"name": "scratch"}),
    ("Use Thunar to put a copy of silver.txt into the Shared folder", "thunar-copy-into",
     {"file": "silver.txt", "folder": "Shared"}),
    ('Make a folder "Old drafts"', "thunar-new-folder", {"name": "Old drafts"}),
])
def test_desktop_goals_as_typed(desktop, goal, sop, params):
    understood = understand(goal, desktop)
    assert (understood.sop, understood.params) == (sop, params), understood


def test_a_value_that_points_elsewhere_is_not_made_into_text(desktop):
    understood = understand("Compute 27 × 8 on the calculator, then write the result in Mousepad and save it as "
                            "/tmp/a/result.txt", desktop)
    assert understood.sop != "mousepad-write-save"  # "result in Mousepad" is not the text to write


def _node(cls: str, text: str = "", *, desc: str = "", clickable: bool = False, focused: bool = False,
          y: int = 0) -> UINode:
    return UINode(bounds=Bounds(left=10, top=10 + 40 * y, right=200, bottom=40 + 40 * y), text=text,
                  content_desc=desc, class_name=cls, package="app", clickable=clickable,
                  focusable=clickable, focused=focused)


def _screen(*nodes: UINode) -> Observation:
    return Observation(nodes=tuple(nodes), package="app", activity="App", screen_width=1280, screen_height=800)


def test_desktop_steps_ground_to_one_action_without_the_model():
    folder = _screen(_node("Window", "Documents - Thunar"), _node("Cell", "notes.txt", clickable=True, y=1),
                     _node("Cell", "Work", clickable=True, y=2))
    schema = decider_schema_for(folder, kind="desktop")
    assert pinned_action(ground_subgoal(schema, "press ctrl+shift+n", folder), folder) == Hotkey(
        keys=("ctrl", "shift", "n"))
    assert pinned_action(ground_subgoal(schema, "press f2", folder), folder) == Hotkey(keys=("f2",))
    assert pinned_action(ground_subgoal(schema, 'double click "Work"', folder), folder) == DoubleClick(target=2)
    # a calculator: nothing editable, the keys go to the window
    calculator = _screen(_node("Window", "galculator"), _node("Text", "0", focused=True, y=1),
                         _node("ToggleButton", "7", clickable=True, y=2))
    schema = decider_schema_for(calculator, kind="desktop")
    assert pinned_action(ground_subgoal(schema, 'type "12*7="', calculator), calculator) == Type(text="12*7=")
    # a field that holds text: "replace" pins clearing it; plain typing leaves the choice to the decider
    rename = _screen(_node("Dialog", "Rename"), _node("EditText", "copper.txt", clickable=True, focused=True, y=1))
    schema = decider_schema_for(rename, kind="desktop")
    assert pinned_action(ground_subgoal(schema, 'replace the text in copper.txt with "harbor.txt"', rename),
                         rename) == Type(text="harbor.txt", target=1, clear=True)
    assert pinned_action(ground_subgoal(schema, 'type "harbor.txt" into copper.txt', rename), rename) is None
    # a phone has no hotkeys
    assert ground_subgoal(decider_schema_for(folder), "press ctrl+s", folder) is None


def test_a_hotkey_step_is_done_only_by_that_hotkey(desktop):
    sop = desktop.entry("thunar-copy-into").sop
    progress = SopProgress.start(Match(sop, 1.0, {"file": "a.txt", "folder": "Work"}, None)).advance(2)
    assert progress.done_by(Hotkey(keys=("ctrl", "c")))
    assert not progress.done_by(Hotkey(keys=("ctrl", "x")))


def test_answers_are_read_from_text_not_from_a_calculators_keys():
    calculator = _screen(_node("Window", "galculator"), _node("Text", "84", y=1),
                         *(_node("ToggleButton", key, clickable=True, y=2 + i) for i, key in enumerate("7894")))
    assert answer_choices(calculator, "Finish and answer with the number the display shows.") == ["84"]
    editor = _screen(_node("Window", "party.txt - Mousepad"), _node("EditText", "Topic: party\nWhere: Room 167", y=1))
    assert "party.txt - Mousepad" not in answer_choices(editor, "Finish and answer with the line that answers it.")
    assert "Where: Room 167" in answer_choices(editor, "Finish and answer with the line that answers it.")
    viewer = _screen(_node("Statusbar", "beach.png 320 x 360 1.1 kB 98.3%"))
    assert "320 x 360" in answer_choices(viewer, "Finish and answer with the size the status bar shows.")
    assert answer_choices(viewer, "Finish and answer with the size the status bar shows.") == ["320 x 360"]
