"""Untrusted text on the terminal: the task, the screen's text, the model's words and SOP files are shown, never
obeyed (red-team findings of issue 35). The function on adversarial text, then the places that print it."""

from __future__ import annotations

import json
import os
import re
import time
import unicodedata

import pytest
from click.testing import CliRunner

from edgepilot.cli import main
from edgepilot.policy import DEFAULT_POLICY
from edgepilot.policy.confirm import ConfirmRequest, TerminalConfirmer
from edgepilot.safetext import MAX_MARKS, for_json, for_markup, for_terminal

HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colours click itself writes
# the classes named in the issue, by range, besides the Unicode categories below
NAMED = {*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A),
         *range(0x200B, 0x2010), 0x2028, 0x2029, 0xFEFF, 0x061C}


def forbidden(text: str, *, allow: str = "\n\t") -> list[str]:
    """The characters of ``text`` a terminal acts on or that show as nothing: controls (Cc), format characters
    (Cf: bidi, zero-width, tags), surrogates, line and paragraph separators, and the ranges the issue names."""
    return sorted({f"U+{ord(c):04X}" for c in text if c not in allow and (
        ord(c) in NAMED or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp"))})


# ---------------------------------------------------------------- the function


@pytest.mark.parametrize("code", [*range(0x20), 0x7F, *range(0x80, 0xA0)])
def test_every_c0_del_and_c1_control_is_shown_as_its_escape(code):
    char = chr(code)
    if char in "\n\t":
        assert for_terminal(f"a{char}b") == f"a{char}b"
    else:
        assert for_terminal(f"a{char}b") == f"a\\x{code:02x}b"
    assert forbidden(for_terminal(f"a{char}b", newlines=False), allow="") == []


@pytest.mark.parametrize(("text", "shown"), [
    ("\x1b[2J", "\\x1b[2J"),  # clear the screen
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # retitle the window, BEL-terminated
    ("\x1b]0;pwned\x1b\\", "\\x1b]0;pwned\\x1b\\"),  # ... ST-terminated
    ("\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", "\\x1b]8;;https://evil.example\\x1b\\click"
                                                              "\\x1b]8;;\\x1b\\"),  # a hyperlink
    ("\x9b31mred", "\\x9b31mred"),  # 8-bit CSI, no ESC at all
    ("\x9d0;title\x9c", "\\x9d0;title\\x9c"),  # 8-bit OSC to 8-bit ST
    ("\x1bP1$r\x1b\\", "\\x1bP1$r\\x1b\\"),  # DCS
    ("ok\rFAKE", "ok\\x0dFAKE"),  # a carriage return would print over the line
    ("half \x1b[", "half \\x1b["),  # a sequence cut off at the end
    ("\x1b", "\\x1b"),
])
def test_escape_sequences_are_shown_and_do_nothing(text, shown):
    out = for_terminal(text)
    assert out == shown and forbidden(out) == []


@pytest.mark.parametrize(("char", "shown"), [
    ("\u202e", "\\u202e"), ("\u202a", "\\u202a"), ("\u2066", "\\u2066"), ("\u2069", "\\u2069"),  # bidi
    ("\u200b", "\\u200b"), ("\u200d", "\\u200d"), ("\u200e", "\\u200e"), ("\u200f", "\\u200f"),  # zero width
    ("\u2028", "\\u2028"), ("\u2029", "\\u2029"), ("\ufeff", "\\ufeff"), ("\u061c", "\\u061c"),
    ("\U000e0041", "\\U000e0041"),  # a tag character: invisible ASCII smuggled in
    ("\ud800", "\\ud800"),  # a lone surrogate (from JSON) cannot even be encoded
])
def test_bidi_and_invisible_characters_are_shown_as_escapes(char, shown):
    assert for_terminal(f"pay{char}ee") == f"pay{shown}ee"


def test_the_reversed_name_of_a_file_reads_as_written():
    assert for_terminal("invoice\u202egpj.exe") == "invoice\\u202egpj.exe"


def test_text_people_write_is_unchanged():
    for text in ("Packing list", "café crème", "東京都 · 2 °C", "مرحبا بالعالم", "שלום", "नमस्ते", "👍🏽 ✓ → …",
                 "[1] \"Wi-Fi\" (switch, on)", "C:\\Users\\ann", "a\u00a0b", "tab\there\nnext line", "e\u0301"):
        assert for_terminal(text) == text, text


def test_a_pile_of_combining_marks_is_cut_to_a_few():
    zalgo = "Z" + "\u0336\u0301\u0317" * 30 + "ok"
    out = for_terminal(zalgo)
    assert out == "Z" + ("\u0336\u0301\u0317" * 30)[:MAX_MARKS] + "ok"


def test_one_line_mode():
    assert for_terminal("a\nb\r\nc\td", newlines=False) == "a / b / c d"
    assert for_terminal("a\nb\r\nc", newlines=True) == "a\nb\nc"
    assert "\n" not in for_terminal("x\u2028y\x0bz\x0c\x85", newlines=False)


def test_limit_cuts_at_a_whole_escape_and_says_so():
    for limit in range(0, 40):
        for text in (HOSTILE * 3, "plain words " * 5, "a\u202eb" * 9, "line\n" * 9):
            out = for_terminal(text, limit=limit, newlines=False)
            assert len(out) <= limit
            if len(for_terminal(text, newlines=False)) > limit > 0:
                assert out.endswith("…")
                assert not re.search(r"\\(x[0-9a-f]?|u[0-9a-f]{0,3}|U[0-9a-f]{0,7})…$", out), out
    assert for_terminal("short", limit=5) == "short" and for_terminal("longer", limit=5) == "long…"


def test_a_very_long_text_is_handled_quickly_and_safely():
    text = (HOSTILE + "screen text \u202e é " * 50) * 2000  # about 2.5 million characters
    start = time.perf_counter()
    out = for_terminal(text, limit=500, newlines=False)
    assert len(out) == 500 and forbidden(out) == []
    whole = for_terminal(text)
    assert forbidden(whole) == [] and time.perf_counter() - start < 30


def test_any_value_becomes_text():
    assert for_terminal(None) == "" and for_terminal(42) == "42"
    assert for_terminal(ValueError("bad \x1b[2J")) == "bad \\x1b[2J"


def test_no_code_point_gets_through():
    """Every code point of Unicode, alone and among others: nothing forbidden comes out, in either mode."""
    everything = "".join(chr(c) for c in range(0x110000))
    for newlines in (True, False):
        out = for_terminal(everything, newlines=newlines)
        assert forbidden(out, allow="\n\t" if newlines else "") == []
        assert "\n" in out if newlines else "\n" not in out
    for start in range(0, 0x110000, 0x1000):  # each one on its own too, in blocks (the ASCII path included)
        for c in range(start, start + 0x1000):
            if forbidden(chr(c), allow=""):
                assert forbidden(for_terminal(chr(c), newlines=False), allow="") == [], hex(c)


# ---------------------------------------------------------------- markup and JSON


MARKUP = ["[bold red]boo[/]", "[link=https://evil.example]click[/link]", "[@click=app.quit]quit[/]",
          "\\[not a tag]", "ends in a backslash \\", "[$accent]var[/]", "[B]x[/B]", "[b]x", "a [1] b [ok]",
          "[[b]]", "C:\\dir\\[x]", "[on red]x", HOSTILE]


@pytest.mark.parametrize("text", MARKUP)
def test_markup_in_the_text_is_shown_as_written_by_textual(text):
    from textual.content import Content

    for around in ("{}", "[b]{}[/b]", "x{}y"):
        shown = Content.from_markup(around.format(for_markup(text)))
        want = for_terminal(text) + (" " if text.endswith("\\") else "")
        assert shown.plain == around.replace("[b]", "").replace("[/b]", "").format(want)
        assert all(str(span.style) in ("b", "bold") and span.start == 0 for span in shown.spans), shown.spans


@pytest.mark.parametrize("text", MARKUP)
def test_markup_in_the_text_is_shown_as_written_by_rich(text):
    from rich.text import Text

    for around in ("{}", "[b]{}[/b]"):
        shown = Text.from_markup(around.format(for_markup(text, "rich")))
        assert shown.plain.startswith(for_terminal(text)), shown.plain
        assert all(str(span.style) in ("b", "bold") and span.start == 0 for span in shown.spans), shown.spans


def test_json_stays_the_same_json_and_is_safe_to_print():
    data = {"name": f"evil {HOSTILE}\u202e\u200b\U000e0041", "ok": "café 東京 👍", "n": [1, None]}
    dumped = for_json(json.dumps(data, ensure_ascii=False))
    assert json.loads(dumped) == data and forbidden(dumped) == []
    assert "café 東京 👍" in dumped


# ---------------------------------------------------------------- where it is printed


def test_policy_explain_prints_the_task_inert(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPILOT_CONFIG", str(tmp_path / "config.toml"))
    task = f"open notes {HOSTILE}\u202e and \u200bread"
    out = CliRunner().invoke(main, ["policy", "explain", task, "--policy", str(DEFAULT_POLICY)], color=True)
    assert out.exit_code == 0, out.output
    assert forbidden(SGR.sub("", out.output)) == []
    assert "task:   open notes \\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202e and \\u200bread" in out.output


def test_an_error_line_quoting_untrusted_text_is_inert(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPILOT_CONFIG", str(tmp_path / "config.toml"))
    out = CliRunner().invoke(main, ["sop", "show", f"no-such {HOSTILE}"], color=True)
    assert out.exit_code == 1 and forbidden(SGR.sub("", out.output)) == []


def request(**kw) -> ConfirmRequest:
    fields = {"task": f"tidy my notes {HOSTILE}", "action": f'tap [4] "Delete{HOSTILE}"',
              "target": f"Delete \u202eetoN\u202c {HOSTILE}", "rule": "delete-data", "category": "delete",
              "reason": f"deleting {HOSTILE}", "app": "com.example.notes", "screen": f"[4] Delete {HOSTILE}"}
    return ConfirmRequest(**{**fields, **kw})


def test_the_terminal_prompt_shows_the_consequence_first_and_nothing_raw():
    lines = request(consequence=f'this deletes the note "Packing list{HOSTILE}" (the task names "groceries")').lines()
    assert lines[0].startswith("The agent wants to: tap [4]")
    assert lines[1] == ('  effect: this deletes the note "Packing list\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m" '
                        '(the task names "groceries")')
    assert all(forbidden(line, allow="") == [] for line in lines)
    plain = request().lines()
    assert plain[1].startswith("  on:     Delete \\u202eetoN\\u202c") and not any("effect" in line for line in plain)


def test_the_terminal_prompt_on_a_real_tty_writes_nothing_raw():
    master, slave = os.openpty()
    out_read, out_write = os.pipe()
    with os.fdopen(slave, "r") as tty_in, os.fdopen(out_write, "w") as out:
        confirmer = TerminalConfirmer(stdin=tty_in, stdout=out)
        os.write(master, b"n\n")
        assert confirmer.ask(request(consequence=f"this deletes {HOSTILE}"), timeout=5).answer == "no"
    written = os.read(out_read, 1 << 16).decode()
    os.close(out_read)
    os.close(master)
    assert "effect: this deletes \\x1b[2J" in written and forbidden(written) == []


def test_the_terminal_prompt_is_refused_when_the_run_stops():
    master, slave = os.openpty()
    stop_at = time.monotonic() + 0.3
    with os.fdopen(slave, "r") as tty_in, open(os.devnull, "w") as out:
        confirmer = TerminalConfirmer(stdin=tty_in, stdout=out, should_stop=lambda: time.monotonic() > stop_at)
        result = confirmer.ask(request(), timeout=30)
    os.close(master)
    assert result.answer == "no" and "stopped" in result.note and time.monotonic() - stop_at < 5


def test_a_request_without_a_consequence_still_reads_from_old_json():
    old = {k: v for k, v in request(consequence="x").to_json().items() if k != "consequence"}
    assert ConfirmRequest.from_json(old).consequence == ""
    again = request(consequence="this sends 2 messages")
    assert ConfirmRequest.from_json(again.to_json()) == again


def test_the_daemons_confirmation_shows_the_consequence_and_nothing_raw():
    from edgepilot.cli.daemon import _describe
    from edgepilot.daemon.confirm import notification_text

    asked = request(consequence=f"this deletes the note <a href='x'>Packing</a> {HOSTILE}")
    summary, body = notification_text(asked)
    assert body.splitlines()[0].startswith("effect: this deletes the note &lt;a href='x'&gt;Packing&lt;/a&gt;")
    assert forbidden(summary) == [] and forbidden(body) == []
    event = {"event": "confirm", "run": "r1", "id": "c1", "timeout": 60, "request": asked.to_json()}
    shown = SGR.sub("", _describe(event))
    assert shown.splitlines()[1].strip().startswith("effect: this deletes the note") and forbidden(shown) == []
    step = {"event": "step", "run": f"r1{HOSTILE}", "index": 0, "summary": f"tap {HOSTILE}",
            "gate": {"allowed": False, "reason": HOSTILE}, "outcome": {"kind": "failed", "note": HOSTILE}}
    assert forbidden(SGR.sub("", _describe(step))) == []
    finished = {"event": "finished", "run": "r1", "status": "finished", "reason": HOSTILE, "steps": 1,
                "answer": HOSTILE}
    assert forbidden(SGR.sub("", _describe(finished))) == []


def test_the_tui_shows_steps_and_results_inert():
    from edgepilot.tui.steps import clean, result_text, step_text

    step = {"index": 0, "summary": f"tap {HOSTILE}", "thought": f"think \u202e{HOSTILE}\nmore",
            "gate": {"allowed": False, "reason": HOSTILE, "asked": True, "rule": HOSTILE, "answer": "no"},
            "outcome": {"kind": "failed", "note": HOSTILE}, "error": HOSTILE}
    assert forbidden(step_text(step).plain) == []
    assert forbidden(result_text({"status": HOSTILE, "reason": HOSTILE, "answer": HOSTILE}).plain) == []
    assert clean("a\nb") == "a / b" and clean(HOSTILE, 8) == "\\x1b[2J…"


def test_replay_shows_a_hostile_trajectory_inert(tmp_path):
    from edgepilot.agent.records import RunRecord, StepRecord
    from edgepilot.agent.trajectory import TrajectoryWriter

    folder = tmp_path / "run"
    writer = TrajectoryWriter(folder, {"goal": f"goal {HOSTILE}"})
    writer.write_step(StepRecord(index=0, thought=f"t \u202e{HOSTILE}", screen=f"[0] {HOSTILE}"))
    writer.finish(RunRecord(status="finished", reason=HOSTILE, answer=HOSTILE))
    out = CliRunner().invoke(main, ["replay", str(folder), "-v"], color=True)
    assert out.exit_code == 0 and forbidden(SGR.sub("", out.output)) == []
    assert "thought: t \\u202e\\x1b[2J" in out.output
