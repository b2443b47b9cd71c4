"""Labels as rules read them: one spelling for every way of writing the same words.

A button's label reaches the policy in whatever form the app (or a web page,
or an attacker) wrote it: "Sеnd" with a Cyrillic е, "ＰＡＹ" in full-width
letters, "S\u200bend" with a zero-width space, the resource id ``btnSend`` or
``send_button``. Before a rule tests a label, :func:`normalise` turns it into
plain lower-case words:

1. NFKC (full-width and styled letters become plain ones);
2. invisible and format characters (zero-width, bidi controls, soft hyphen) removed;
3. camelCase and snake_case split into words, separators (``_ - . / :``) made spaces;
4. every character replaced by its confusable skeleton (Unicode TR39 data, as shipped by
   the ``confusable-homoglyphs`` package): a letter that looks like a Latin one becomes it;
5. accents removed, case folded, runs of spaces collapsed, symbols at the ends dropped.

Case changes are read both ways (:func:`readings`): ``PayNow`` is "pay now" and
``SenD`` is "send"; a rule matches when either reading does.

Rules are written against that form (``^(send|post)\\b``), so a rule matches
every spelling a person would read as the same word. What is shown to the user
is always the label as the screen has it.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from functools import lru_cache
from importlib import resources

_SEPARATORS = re.compile(r"[\s_\-./:|]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_ENDS = re.compile(r"^[^\w$€£¥]+|[^\w$€£¥%)]+$")


@lru_cache(maxsize=1)
def _confusables() -> dict[str, str]:
    """Non-ASCII character → the ASCII letter or digit it is confusable with (TR39's confusables.txt)."""
    try:
        raw = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - a declared dependency
        raise RuntimeError("the policy needs the confusable-homoglyphs package; run: pip install edgepilot") from None
    table: dict[str, str] = {}
    for char, glyphs in json.loads(raw).items():
        if len(char) != 1:
            continue
        ascii_alnum = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()]
        if char.isascii():
            for g in glyphs:  # the other direction: this ASCII letter's look-alikes map to it
                c = g["c"]
                if len(c) == 1 and not c.isascii() and char.isalnum():
                    table.setdefault(c, char)
        elif ascii_alnum:
            letters = [c for c in ascii_alnum if c.isalpha()]
            table[char] = (letters or ascii_alnum)[0]
    return table


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in ("Cf", "Cc", "Mn", "Me") or char in "\u115f\u1160\u3164\uffa0"


def skeleton(text: str) -> str:
    """``text`` with look-alike letters replaced by the Latin letters they imitate, accents and invisibles gone.

    A vertical stroke (Cyrillic palochka, Greek iota, a Ukrainian і) reads as ``i`` or as ``l`` depending on the
    font; :func:`readings` tries both."""
    table = _confusables()
    out = []
    for char in unicodedata.normalize("NFKC", text):
        if char.isascii():
            out.append(char)
            continue
        mapped = table.get(char) or table.get(char.lower()) or table.get(char.upper())
        if mapped is not None:  # keep the case the reader sees, so camelCase still splits where it shows
            out.append(mapped.lower() if char.islower() else mapped.upper() if char.isupper() else mapped)
            continue
        for part in unicodedata.normalize("NFKD", char):
            if _invisible(part) and part not in "\n\t":
                continue
            out.append(table.get(part, part))
    return "".join(out)


@lru_cache(maxsize=4096)
def normalise(text: str, *, split_case: bool = True) -> str:
    """Plain lower-case words: the form every label, text and id has when a rule tests it.

    >>> normalise("btnSend"), normalise("S\\u0435nd"), normalise("ＰＡＹ $5"), normalise("move_to-trash")
    ('btn send', 'send', 'pay $5', 'move to trash')
    """
    text = "".join(c for c in unicodedata.normalize("NFKC", text) if c in "\n\t" or not _invisible(c))
    text = skeleton(text)
    if split_case:  # after the skeleton: a look-alike may hide a case change (btnЅend)
        text = _CAMEL.sub(" ", text)
    words = _SEPARATORS.sub(" ", text.casefold()).strip()
    return _ENDS.sub("", words)


MAX_STROKES = 6


@lru_cache(maxsize=4096)
def readings(text: str) -> tuple[str, ...]:
    """Every way a rule may read a label: words split at case changes (``PayNow``: pay now) and not (``SenD``:
    send), each vertical stroke read as i and as l (``іnstalӏ``: install). A rule matches when any reading does,
    so odd capitals and ambiguous glyphs never hide a word."""
    table = _confusables()
    base = "".join(c for c in unicodedata.normalize("NFKC", text) if c in "\n\t" or not _invisible(c))
    strokes = [i for i, c in enumerate(base) if not c.isascii()
               and (table.get(c) or table.get(c.lower()) or "").lower() in ("i", "l")]
    choices: list[tuple[str, ...]] = [()]
    if strokes:
        if len(strokes) <= MAX_STROKES:
            choices = list(itertools.product("il", repeat=len(strokes)))
        else:
            choices = [("i",) * len(strokes), ("l",) * len(strokes)]
    out = []
    for choice in choices:
        chars = list(base)
        for i, letter in zip(strokes, choice, strict=False):
            chars[i] = letter.upper() if chars[i].isupper() else letter
        variant = "".join(chars)
        out.extend((normalise(variant), normalise(variant, split_case=False)))
    return tuple(dict.fromkeys(out))


def resource_words(resource_id: str) -> str:
    """A resource id's own part (after ``:id/``), as words: ``com.app:id/btnSendNow`` → ``btn send now``."""
    return normalise(resource_id.split(":id/", 1)[-1])
