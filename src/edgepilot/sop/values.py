"""The shapes of parameter values, and the values a task sentence contains.

A parameter's ``example`` tells its shape (``07:30`` is a time, ``Ann Lee`` a
name, ``555-0123`` a phone number...). Retrieval uses the shape twice: a value
captured by a phrasing must have it, and a parameter no phrasing filled takes
the next value of its shape found in the task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("time", re.compile(r"\d{1,2}:\d{2}(?:\s?[ap]\.?m\.?)?", re.IGNORECASE)),
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    ("card", re.compile(r"\d{4}(?:[ -]?\d{4}){2,3}(?:[ -]?\d{1,4})?")),
    ("phone", re.compile(r"\+?(?:\(\d{3}\)\s?|\d{3}[-. ])?\d{3}[-. ]\d{4}")),
    ("domain", re.compile(r"(?:https?://)?(?:[a-z0-9-]+\.)+[a-z]{2,}(?:/\S*)?", re.IGNORECASE)),
    ("amount", re.compile(r"\$\s?\d[\d,]*(?:\.\d{1,2})?|\d[\d,]*\.\d{2}")),
    ("digits", re.compile(r"\d+")),
    ("switch", re.compile(r"on|off", re.IGNORECASE)),
    ("weekday", re.compile("|".join(WEEKDAYS), re.IGNORECASE)),
    ("name", re.compile(r"[A-Z][\w'&.-]*(?: [A-Z0-9][\w'&.-]*)*")),
)
_QUOTED = re.compile(r'"([^"]+)"|“([^”]+)”')
_CAPITALISED = re.compile(r"[A-Z][\w'&-]*(?:\s+[A-Z0-9][\w'&-]*)*")


def shape(value: str) -> str:
    """The shape of a value: time, email, card, phone, domain, amount, digits, switch, weekday, name or text."""
    value = value.strip()
    for name, pattern in _SHAPES:
        if pattern.fullmatch(value):
            return name
    return "text"


def fits(value: str, wanted: str) -> bool:
    """Whether ``value`` can be a value of shape ``wanted`` (a digits value fits an amount, a name fits text)."""
    got = shape(value)
    if wanted == "text" or got == wanted:
        return True
    return (wanted, got) in {("amount", "digits"), ("phone", "digits")}


STRONG = ("time", "email", "card", "phone", "domain", "amount", "digits")
"""The shapes a value is told by on its own, whatever the words around it."""


def values_in(text: str) -> list[str]:
    """The values of a telling shape (:data:`STRONG`) inside ``text``, each once, none inside another
    (``Your code is 482913`` → ``482913``; ``Savings $1,204.50`` → ``$1,204.50``; ``(555) 014-8974`` →
    itself, not its digits)."""
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, str]] = []
    for name, pattern in _SHAPES:
        if name not in STRONG:
            continue
        for m in pattern.finditer(text):
            if not any(a <= m.start() and m.end() <= b for a, b in taken):
                taken.append(m.span())
                found.append((m.start(), m.group(0)))
    return list(dict.fromkeys(value for _, value in sorted(found)))


@dataclass(frozen=True)
class Span:
    """A value found in a task sentence: its text, shape and position."""

    text: str
    shape: str
    start: int
    end: int
    quoted: bool = False


def spans(task: str, known_words: frozenset[str] = frozenset()) -> list[Span]:
    """The values a task sentence contains, in order: quoted text, then times, numbers, addresses and
    capitalised names (a capitalised first word of a sentence that SOPs use, like ``Call``, is left out).

    Args:
        task: the task sentence.
        known_words: lower-case words the SOPs use (for the sentence-start rule).
    """
    found: list[Span] = []
    taken = [False] * len(task)

    def add(text: str, kind: str, start: int, end: int, quoted: bool = False) -> None:
        if text.strip() and not any(taken[start:end]):
            found.append(Span(text.strip(), kind, start, end, quoted))
            for i in range(start, end):
                taken[i] = True

    for m in _QUOTED.finditer(task):
        inner = m.group(1) or m.group(2)
        add(inner, shape(inner), m.start(), m.end(), quoted=True)
    for kind, pattern in _SHAPES[:-1]:
        if kind in ("switch", "weekday"):
            pattern = re.compile(rf"\b(?:{pattern.pattern})\b", re.IGNORECASE)
        for m in pattern.finditer(task):
            if kind in ("digits", "time", "phone", "card", "amount") and _inside_word(task, m.start(), m.end()):
                continue
            add(m.group(0), kind, m.start(), m.end())
    for m in _CAPITALISED.finditer(task):
        start, words = m.start(), m.group(0).split()
        first = words[0].lower().strip("'")
        if _sentence_start(task, start) and (first in known_words or len(words) == 1):
            if len(words) == 1:
                continue
            start = task.index(words[1], start + len(words[0]))
        text = re.sub(r"['’]s$", "", task[start:m.end()].rstrip(".'’"))
        if re.fullmatch(r"I(['’](m|ve|ll|d))?", text):
            continue  # the pronoun, not a name
        add(text, "name", start, m.end())
    found.sort(key=lambda s: s.start)
    return found


def _inside_word(task: str, start: int, end: int) -> bool:
    return (start > 0 and (task[start - 1].isalpha() or task[start - 1] in "._-")) or (
        end < len(task) and (task[end].isalpha() or task[end] in "_-"))


def _sentence_start(task: str, index: int) -> bool:
    before = task[:index].rstrip()
    return not before or before[-1] in ".!?:;(\"“"
