"""Fuzzy comparison of screen text: what OCR read against what a tree says."""

from __future__ import annotations

import unicodedata
from difflib import SequenceMatcher

# Characters a tree and a screen often disagree on: bullets of hidden passwords, curly quotes, dashes.
_FOLD = str.maketrans({"•": "*", "’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "\u00a0": " "})


def normalize(text: str) -> str:
    """Casefold, unify look-alike punctuation, and collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).casefold()
    return " ".join(text.split())


def similarity(a: str, b: str) -> float:
    """Edit similarity of two normalized strings, from 0 (nothing shared) to 1 (equal)."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def partial_similarity(needle: str, haystack: str) -> float:
    """The best :func:`similarity` of ``needle`` against any stretch of ``haystack`` as long as it.

    OCR reads a wrapped paragraph line by line, and sometimes joins two labels
    that sit side by side into one line; either way the shorter string is to
    be found inside the longer one.
    """
    if not needle or not haystack:
        return 1.0 if needle == haystack else 0.0
    if needle in haystack:
        return 1.0
    if len(needle) >= len(haystack):
        return similarity(needle, haystack)
    n = len(needle)
    best = 0.0
    for block in SequenceMatcher(None, needle, haystack, autojunk=False).get_matching_blocks():
        start = max(0, min(block.b - block.a, len(haystack) - n))
        best = max(best, similarity(needle, haystack[start:start + n]))
    return best


def matches(expected: str, read: str, threshold: float = 0.8) -> bool:
    """Whether ``read`` (OCR) holds ``expected`` (a tree's text), both normalized first."""
    e, r = normalize(expected), normalize(read)
    if not e:
        return not r
    return max(similarity(e, r), partial_similarity(e, r)) >= threshold
