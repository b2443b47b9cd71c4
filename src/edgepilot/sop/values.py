"""The shapes of parameter values, and the values a task sentence contains.

A parameter's ``example`` tells its shape (``07:30`` is a time, ``Ann Lee`` a
name, ``555-0123`` a phone number...). Retrieval uses the shape twice: a value
captured by a phrasing must have it, and a parameter no phrasing filled takes
the next value of its shape found in the task.
"""

from __future__ import annotations

import ast
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
    ("size", re.compile(r"\d+ ?[x×] ?\d+")),
    ("digits", re.compile(r"\d+")),
    ("switch", re.compile(r"on|off", re.IGNORECASE)),
    ("weekday", re.compile("|".join(WEEKDAYS), re.IGNORECASE)),
    ("name", re.compile(r"[A-Z][\w'&.-]*(?: [A-Z0-9][\w'&.-]*)*")),
)
_QUOTED = re.compile(r'"([^"]+)"|“([^”]+)”')
_CAPITALISED = re.compile(r"[A-Z][\w'&-]*(?:\s+[A-Z0-9][\w'&-]*)*")


def shape(value: str) -> str:
    """The shape of a value: time, email, card, phone, domain, amount, size (``640 x 480``), digits, switch,
    weekday, name, path (``/home/me/a.txt``), arithmetic (a sum in a calculator's keys: ``12*7``) or text."""
    value = value.strip()
    for name, pattern in _SHAPES:
        if pattern.fullmatch(value):
            return name
    if PATH.fullmatch(value):
        return "path"
    return "arithmetic" if _KEYED_SUM.fullmatch(value) else "text"


PATH = re.compile(r"(?:~|\.{1,2})?/[\w.\-/~]*[\w/]")
"""A file or folder path (``/home/me/notes.txt``, ``~/Documents``)."""


_NUMBER = r"\d+(?:\.\d+)?"
_KEYED_SUM = re.compile(rf"[(\s]*{_NUMBER}[)\s]*(?:[-+*/][(\s]*{_NUMBER}[)\s]*)+")
_OPERATOR_WORDS = (
    (r"\s*(?:×|✕|⋅|·|\*|\bx\b|\btimes\b|\bmultiplied by\b)\s*", "*"),
    (r"\s*(?:÷|/|\bdivided by\b|\bover\b)\s*", "/"),
    (r"\s*(?:\+|\bplus\b|\band\b)\s*", "+"),
    (r"\s*(?:−|–|-|\bminus\b|\btake away\b)\s*", "-"),
)
_SUM_VERBS = (  # "add 9 and 5", "multiply 12 by 7": the verb says the operator, the numbers follow
    (re.compile(rf"\b(?:add(?: up)?|sum(?: of)?|total(?: of)?)\s+({_NUMBER})\s*(?:and|\+|plus|,|to)\s*"
                rf"({_NUMBER})", re.I), "{0}+{1}"),
    (re.compile(rf"\b(?:multiply|product of)\s+({_NUMBER})\s*(?:by|and|with|x|×)\s*({_NUMBER})", re.I), "{0}*{1}"),
    (re.compile(rf"\bdivide\s+({_NUMBER})\s*(?:by|into)\s*({_NUMBER})", re.I), "{0}/{1}"),
    (re.compile(rf"\bsubtract\s+({_NUMBER})\s*from\s*({_NUMBER})", re.I), "{1}-{0}"),
    (re.compile(rf"\bdifference between\s+({_NUMBER})\s*and\s*({_NUMBER})", re.I), "{0}-{1}"),
)


def keyed_sum(text: str) -> str | None:
    """The sum ``text`` asks for, in a calculator's keys (``12 × 7`` → ``12*7``; ``(12 + 34) times 5`` →
    ``12*5+34*5``, brackets multiplied out by :func:`without_brackets`; ``add 9 and 5`` → ``9+5``; ``subtract 3
    from 10`` → ``10-3``), or None when it holds no sum of two numbers or more (one number alone is not a sum).
    Brackets must balance; the first sum found wins."""
    for pattern, form in _SUM_VERBS:
        m = pattern.search(text)
        if m is not None:
            return form.format(*m.groups())
    keyed = text.replace(",", "") if re.search(r"\d,\d{3}\b", text) else text
    for pattern, op in _OPERATOR_WORDS:
        keyed = re.sub(rf"(?<=[\d)]){pattern}(?=[\d(])", op, keyed, flags=re.IGNORECASE)
    for m in re.finditer(rf"[(]*{_NUMBER}[)]*(?:[-+*/][(]*{_NUMBER}[)]*)+", keyed):
        found = m.group(0)
        while found.count("(") > found.count(")") and found.startswith("("):
            found = found[1:]
        while found.count(")") > found.count("(") and found.endswith(")"):
            found = found[:-1]
        if found.count("(") == found.count(")"):
            return found if "(" not in found else without_brackets(found)
    return None


def without_brackets(expression: str) -> str | None:
    """A sum with brackets as one without, multiplied out (``(61+94)*5`` → ``61*5+94*5``), or None when it cannot be
    (a division by a bracketed sum). A calculator that keeps precedence but has no bracket keys (Galculator ignores
    typed brackets) then gives the same result."""
    Term = tuple[int, tuple[tuple[str, str], ...]]  # sign, factors as (operator, number)

    def terms(node: ast.AST) -> list[Term] | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return [(1, (("*", str(node.value)),))]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = terms(node.operand)
            sign = -1 if isinstance(node.op, ast.USub) else 1
            return None if inner is None else [(sign * s, f) for s, f in inner]
        if not isinstance(node, ast.BinOp):
            return None
        left, right = terms(node.left), terms(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left + [(-s, f) for s, f in right]
        if isinstance(node.op, ast.Mult):
            return [(s1 * s2, f1 + f2) for s1, f1 in left for s2, f2 in right]
        if isinstance(node.op, ast.Div) and len(right) == 1:
            s2, f2 = right[0]
            flipped = tuple(("/" if op == "*" else "*", n) for op, n in f2)
            return [(s1 * s2, f1 + flipped) for s1, f1 in left]
        return None

    try:
        found = terms(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError, RecursionError):
        return None
    if not found or len(found) > 16:
        return None
    out = ""
    for sign, factors in found:
        body = factors[0][1] + "".join(op + n for op, n in factors[1:]) if factors[0][0] == "*" \
            else "1" + "".join(op + n for op, n in factors)
        out += ("-" if sign < 0 else "+" if out else "") + body
    return out


def fits(value: str, wanted: str) -> bool:
    """Whether ``value`` can be a value of shape ``wanted`` (a digits value fits an amount, a name fits text)."""
    if wanted == "path":  # a path, and maybe more words the value was captured with
        return PATH.match(value.strip()) is not None
    if wanted == "arithmetic":
        return keyed_sum(value) is not None
    got = shape(value)
    if wanted == "text" or got == wanted:
        return True
    return (wanted, got) in {("amount", "digits"), ("phone", "digits")}


STRONG = ("time", "email", "card", "phone", "domain", "amount", "size", "digits")
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
