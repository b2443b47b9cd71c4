"""A guard run before PyYAML reads a user's file: flow collections nested too deep.

PyYAML's scanner takes time quadratic in the depth of nested ``[`` and ``{``
(20,000 brackets, a 20 KB file, take about a minute to be refused), and its
composer recurses once per level (a few thousand levels end in a
RecursionError, not a YAMLError). No SOP, policy or task file nests more than
a few levels, so a file that nests deeper than ``MAX_NESTING`` is refused at
once, with the line where it does.
"""

from __future__ import annotations

from typing import Any

MAX_NESTING = 32
_OPENERS = "[{"
_CLOSERS = "]}"
_BEFORE_VALUE = ":-,[{?"  # after these (or at a line's start) a flow collection or a quoted scalar may begin


def too_deep(text: str, limit: int = MAX_NESTING) -> int | None:
    """The 1-based line where ``[``/``{`` nest deeper than ``limit``, or None.

    Brackets in quoted scalars, in comments and inside plain scalars
    (``a[1]``) are not counted. A quote or bracket in an odd place may be
    counted where YAML would not; then the file is only refused sooner.
    """
    depth = 0
    line = 1
    prev = ""  # the last character that is not a space on this line ("" at its start)
    quote = ""
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            prev = ""
            i += 1
            continue
        if quote:
            if c == quote:
                if quote == "'" and text.startswith("''", i):
                    i += 2  # an escaped quote in a single-quoted scalar
                    continue
                quote = ""
                prev = c
            elif c == "\\" and quote == '"':
                i += 1  # skip the escaped character
            i += 1
            continue
        if c in " \t":
            i += 1
            continue
        can_start = prev == "" or prev in _BEFORE_VALUE
        if c == "#" and (prev == "" or text[i - 1] in " \t"):
            while i < n and text[i] != "\n":
                i += 1
            continue
        if c in "'\"" and can_start:
            quote = c
        elif c in _OPENERS and (can_start or depth > 0):
            depth += 1
            if depth > limit:
                return line
        elif c in _CLOSERS and depth > 0:
            depth -= 1
        elif c in _OPENERS:
            c = "x"  # a bracket inside a plain scalar: what follows it is scalar text too
        prev = c
        i += 1
    return None


def guard(text: str, limit: int = MAX_NESTING) -> None:
    """Refuse text nested deeper than ``limit`` as PyYAML would refuse bad YAML.

    Raises:
        yaml.MarkedYAMLError: with the line (``problem_mark``) where the nesting goes too deep.
    """
    import yaml

    line = too_deep(text, limit)
    if line is not None:
        raise yaml.MarkedYAMLError(
            problem=f"brackets nest deeper than {limit} levels", problem_mark=yaml.Mark("", 0, line - 1, 0, None, None))


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` after ``guard``; deep block nesting is a YAMLError too, not a RecursionError.

    Raises:
        yaml.YAMLError: the text is not YAML, or nests too deep.
    """
    import yaml

    guard(text)
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise yaml.YAMLError(f"the YAML nests too deep (more than {MAX_NESTING} levels are never needed)") from None
