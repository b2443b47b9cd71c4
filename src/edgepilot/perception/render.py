"""The screen as a model reads it, within a token budget.

A real app's screen can take 2,000 tokens and more (long lists, status bars
full of notification icons, Chinese or Korean text at one to two and a half
tokens a character); a small model's context and training length are not that
generous. :func:`render_screen` lists the elements that matter most first and
drops the rest by rule, never silently: each run of elements left out is one
line that says how many and what kind, and the result says what was dropped.

What matters most (AgentOccam's observation aligned to the task):

1. the focused field, editable fields, and elements whose label shares a
   word with the task or the procedure's current step;
2. elements that take a tap or a toggle;
3. scrollable lists and the keyboard;
4. plain text;
5. the status bar (clock, battery, notification icons).

Within a rank, top of the screen first. The chosen lines are printed in
screen order with their element numbers, so the numbers mean what they mean
in :meth:`Observation.to_text`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edgepilot.perception.elements import in_status_bar
from edgepilot.perception.nodes import UINode, describe
from edgepilot.perception.types import Observation

TokenCount = Callable[[str], int]
"""How many tokens a text costs a model (its tokenizer, or :func:`estimate_tokens`)."""

SCREEN_BUDGET = 900
"""The default budget of a screen's text in tokens: the shipped adapter was trained on prompts of at most
2,048 tokens, of which the rest of a decider prompt takes about 600 to 1,100."""

_WORD = re.compile(r"[^\W_]{3,}")


def estimate_tokens(text: str) -> int:
    """A cautious token count without a tokenizer: a token per 2 ASCII characters, 3 per other character.

    On the rendered lines of 20 real apps' screens SmolLM2's tokenizer spends a token per 2.2 to 4 ASCII
    characters (ids, digits and brackets cost more than prose) and 0.9 to 2.5 per Chinese, Korean or
    Cyrillic character; this count is at or above the real one for 95% of those lines.
    """
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return -(-ascii_chars // 2) + 3 * (len(text) - ascii_chars)


@dataclass(frozen=True)
class ScreenText:
    """A screen rendered for a model.

    Attributes:
        text: the rendering.
        shown: the element numbers it lists.
        tokens: what ``text`` costs, by the counter it was rendered with.
        left_out: how many elements it does not list.
        budget: the budget it was rendered for (None: no budget, only the line cap).
    """

    text: str
    shown: tuple[int, ...]
    tokens: int
    left_out: int
    budget: int | None

    def record(self) -> dict[str, int | None]:
        """What a trajectory keeps about the rendering."""
        return {"tokens": self.tokens, "shown": len(self.shown), "left_out": self.left_out, "budget": self.budget}


def _rank(node: UINode, screen_height: int, words: set[str]) -> int:
    if in_status_bar(node, screen_height):
        return 4
    if node.focused or node.editable or words and words & set(_WORD.findall(node.label.casefold())):
        return 0
    if node.clickable or node.long_clickable or node.checkable:
        return 1
    if node.scrollable or node.class_name == "Keyboard":
        return 2
    return 3


def _kind(node: UINode) -> str:
    if node.actionable:
        return "controls"
    return "lists" if node.scrollable else "texts"


def _gap(nodes: list[UINode], tail: bool) -> str:
    kinds: dict[str, int] = {}
    for n in nodes:
        kinds[_kind(n)] = kinds.get(_kind(n), 0) + 1
    what = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1]))
    where = "more further down" if tail else "not shown here"
    return f"... {len(nodes)} {where} ({what})"


def _assemble(obs: Observation, lines: dict[int, str], chosen: set[int]) -> str:
    out = [obs.header()]
    gap: list[UINode] = []
    for i, n in enumerate(obs.elements):
        if i in chosen:
            if gap:
                out.append(_gap(gap, tail=False))
                gap = []
            out.append(lines[i])
        else:
            gap.append(n)
    if gap:
        out.append(_gap(gap, tail=True))
    return "\n".join(out)


def task_words(*texts: str) -> set[str]:
    """The words (three letters or more, case-folded) of a task and its step, that mark elements worth keeping."""
    return {w for text in texts for w in _WORD.findall(text.casefold())}


def render_screen(obs: Observation, *, budget: int | None = None, count: TokenCount = estimate_tokens,
                  keep: Iterable[str] = (), limit: int = 120) -> ScreenText:
    """Render ``obs`` as numbered lines (``[i] Class "text" (flags)``) within ``budget`` tokens.

    Args:
        obs: the screen.
        budget: tokens the rendering may cost (None: list the first ``limit`` elements, as ever).
        count: the model's token counter.
        keep: words of the task and its current step (:func:`task_words`); elements that carry one rank first.
        limit: the most elements listed, budget or not.

    Returns:
        The rendering, what it lists and what it cost. A budget too small even for the header gives the
        header and one line saying how many elements were left out.
    """
    elements = obs.elements
    if budget is None:
        chosen = set(range(min(limit, len(elements))))
        text = obs.to_text(limit)
        return ScreenText(text, tuple(sorted(chosen)), count(text), len(elements) - len(chosen), None)
    lines = {i: f"[{i}] {describe(n)}" for i, n in enumerate(elements)}
    words = set(keep)
    short = max(40, budget // 4)  # one line may take a quarter of the budget at most
    for i, n in enumerate(elements):
        if count(lines[i]) > short:
            lines[i] = f"[{i}] {describe(n, limit=60)}"
    order = sorted(range(len(elements)), key=lambda i: (_rank(elements[i], obs.screen_height, words), i))
    chosen: set[int] = set()
    spent = count(obs.header()) + 12  # the header and a line for what is left out
    for i in order[:limit]:
        cost = count(lines[i]) + 1
        if spent + cost > budget:
            continue
        chosen.add(i)
        spent += cost
    text = _assemble(obs, lines, chosen)
    tokens = count(text)
    picked = [i for i in order if i in chosen]
    while tokens > budget and picked:  # gap lines cost more than reserved: give up the least important
        chosen.discard(picked.pop())
        text = _assemble(obs, lines, chosen)
        tokens = count(text)
    return ScreenText(text, tuple(sorted(chosen)), tokens, len(elements) - len(chosen), budget)
