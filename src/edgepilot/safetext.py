"""Untrusted text made safe to show: on a terminal, in Rich / Textual markup, inside JSON.

The task sentence, the screen's text, the model's output and SOP files can
hold anything, and a terminal acts on some of it: ``ESC [2J`` clears the
screen, ``ESC ]0;…BEL`` retitles the window, the 8-bit CSI U+009B starts a
sequence with no ESC at all, ``\\r`` lets a line overwrite what was printed
before it, and bidi overrides (U+202E) or zero-width characters make a
confirmation prompt read differently from what it says.

Every character a terminal could act on, or that shows as nothing, is
replaced by its visible escape, the way Python writes it (``\\x1b``, ``\\x9b``,
``\\u202e``, ``\\U000e0041``), so whoever reads the text sees that something
odd was there. These are the Unicode categories Cc (C0, DEL, C1), Cf
(bidi controls, zero-width characters, U+FEFF, U+061C, tag characters), Cs
(lone surrogates, which cannot even be encoded) and Zl / Zp (U+2028,
U+2029); newline and tab are kept where the caller allows. An escape
sequence thus shows as its text (``\\x1b[2J``) and does nothing: no ESC or C1
character is left to start one, so no partial sequence can survive either.
Combining marks are kept, but at most :data:`MAX_MARKS` in a row (a pile of
them draws over the lines around it).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

MAX_MARKS = 4
"""Combining marks kept in a row; more are dropped (no script needs more on one letter)."""

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories never shown as they are (newline and tab aside, where allowed)."""

_ASCII_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_RICH_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")  # what Rich reads as a tag (rich.markup.escape)

Markup = Literal["textual", "rich"]


def for_terminal(text: object, *, limit: int | None = None, newlines: bool = True,
                 markup: Markup | None = None) -> str:
    """``text`` safe to print on a terminal: controls and invisible characters shown as escapes.

    Args:
        text: any value; None is the empty string, anything else not a string is ``str(value)``.
        limit: the longest result, in characters; a longer one is cut (never inside an escape) and ends in ``…``.
        newlines: keep newlines and tabs (``\\r\\n`` becomes a newline); False puts the text on one line: a
            newline becomes `` / `` and a tab a space.
        markup: also escape what ``"textual"`` or ``"rich"`` markup would read as a tag (``[bold]``,
            ``[link=…]``, ``[@click=…]``), for text put into a string rendered with markup on; see
            :func:`for_markup`.

    Returns:
        The text with every character of :data:`UNSAFE_CATEGORIES` written as its escape (``\\x1b``,
        ``\\u202e``), except newlines and tabs as described.
    """
    raw = text if isinstance(text, str) else ("" if text is None else str(text))
    raw = raw.replace("\r\n", "\n")
    pieces = None
    if limit is not None and len(raw) > 2 * limit + 16:  # a long text cut short: read only its head
        pieces = _split(raw[: 2 * limit + 16], newlines)
        if sum(len(text) for text, _ in pieces) <= limit:  # the head shrank (combining marks dropped)
            pieces = None
    out = _cut(pieces if pieces is not None else _split(raw, newlines), limit)
    if markup == "textual":
        return _escape_textual(out)
    if markup == "rich":
        return _escape_rich(out)
    return out


def for_markup(text: object, flavor: Markup = "textual", *, limit: int | None = None, newlines: bool = True) -> str:
    """:func:`for_terminal`, then escaped for markup: nothing in the text opens a tag.

    The two read backslashes differently, so the flavour matters. ``textual`` (``Static``, ``Label``,
    ``App.notify`` with markup on): every ``[`` becomes ``\\[``, and a backslash at the end gets a space
    after it, or it would escape the markup that follows (``textual.markup.escape`` leaves ``[$var]`` and
    ``[B]`` alone, which Textual reads). ``rich`` (a Rich console's markup): as ``rich.markup.escape``.
    Better still, pass a ``rich.text.Text`` or ``markup=False``, as the TUI does."""
    return for_terminal(text, limit=limit, newlines=newlines, markup=flavor)


def for_json(dumped: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with the characters of :data:`UNSAFE_CATEGORIES`
    written as ``\\uXXXX`` escapes: the same JSON, safe to print. (``json.dumps`` escapes C0 controls itself,
    but passes C1 controls, bidi and zero-width characters through when ``ensure_ascii`` is off.)"""
    if dumped.isascii():
        return dumped
    return "".join(_json_escape(ch) if unsafe(ch) else ch for ch in dumped)


def unsafe(ch: str) -> bool:
    """Whether the character ``ch`` is never shown as it is (newline and tab included)."""
    return unicodedata.category(ch) in UNSAFE_CATEGORIES


def escape(ch: str) -> str:
    """The visible escape of one character, as Python writes it: ``\\x1b``, ``\\u202e``, ``\\U000e0041``."""
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _split(raw: str, newlines: bool) -> list[tuple[str, bool]]:
    return _ascii_pieces(raw, newlines) if raw.isascii() else _pieces(raw, newlines)


def _ascii_pieces(raw: str, newlines: bool) -> list[tuple[str, bool]]:
    """The pieces of an ASCII text: runs of plain text, and one piece per control (kept or escaped); each with
    whether it must stay whole when the text is cut."""
    if not newlines:
        raw = raw.replace("\t", " ")
    pieces: list[tuple[str, bool]] = []
    at = 0
    for m in _ASCII_UNSAFE.finditer(raw):
        if m.start() > at:
            pieces.append((raw[at:m.start()], False))
        pieces.append(_control(m.group(), newlines))
        at = m.end()
    if at < len(raw):
        pieces.append((raw[at:], False))
    return pieces


def _pieces(raw: str, newlines: bool) -> list[tuple[str, bool]]:
    pieces: list[tuple[str, bool]] = []
    marks = 0
    for ch in raw:
        if ch.isprintable():
            if unicodedata.category(ch) in ("Mn", "Me"):
                marks += 1
                if marks > MAX_MARKS:
                    continue
            else:
                marks = 0
            pieces.append((ch, False))
            continue
        marks = 0
        if ch in "\n\t" or unsafe(ch):
            pieces.append(_control(ch, newlines))
        else:  # spaces other than U+0020, private use, unassigned: nothing a terminal acts on
            pieces.append((ch, False))
    return pieces


def _control(ch: str, newlines: bool) -> tuple[str, bool]:
    if ch == "\n":
        return ("\n", True) if newlines else (" / ", False)
    if ch == "\t":
        return ("\t", True) if newlines else (" ", False)
    return escape(ch), True


def _cut(pieces: list[tuple[str, bool]], limit: int | None) -> str:
    """The pieces joined, cut to ``limit`` characters (with the ``…``); an escape is never cut in two."""
    if limit is None or sum(len(text) for text, _ in pieces) <= limit:
        return "".join(text for text, _ in pieces)
    room = limit - 1
    kept: list[str] = []
    for text, whole in pieces:
        if len(text) > room:
            if not whole:
                kept.append(text[:room])
            break
        kept.append(text)
        room -= len(text)
    return "".join(kept) + "…" if limit > 0 else ""


def _escape_textual(text: str) -> str:
    text = text.replace("[", "\\[")
    return text + " " if text.endswith("\\") else text


def _escape_rich(text: str) -> str:
    text = _RICH_TAG.sub(lambda m: f"{m[1]}{m[1]}\\{m[2]}", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
