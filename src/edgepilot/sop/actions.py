"""What a goal asks to *do*, as a few kinds of action, so a procedure that does something else is not forced on it.

Retrieval ranks procedures by the words a goal shares with them; a goal that shares its objects but asks for
another action ("change my bank PIN" against *check the balance*, "move the file" against *copy it into a
folder*, "add lunch to my calendar" against *open an app*) can score high on its nouns alone. This module
names the action a goal's verbs ask for and the actions a procedure's own name, description and phrasings
offer; :func:`edgepilot.sop.understand.understand` passes over a procedure whose actions do not meet the goal's.

The verbs are everyday English, grouped by the effect they ask for; a verb whose effect depends on its object
(``make``, ``set``, ``put``, ``get``, ``do``, ``show``, ``tell``, ``write``, ``start``) belongs to no kind and so
never rules a procedure out. The list was written from the meaning of the verbs, not from any evaluation set.
"""

from __future__ import annotations

import re
from functools import lru_cache

from edgepilot.sop.format import PLACEHOLDER, Sop
from edgepilot.sop.retrieve import QUOTED

ACTIONS: dict[str, tuple[str, ...]] = {
    "remove": ("delete", "remove", "erase", "trash", "discard", "get rid of", "wipe", "clear",
               "cancel", "dismiss"),
    "create": ("add", "create", "jot", "insert", "append", "schedule", "compose", "draft"),
    "change": ("change", "rename", "edit", "update", "modify", "replace", "fix", "correct", "relabel", "retitle",
               "adjust", "swap"),
    "send": ("send", "text", "message", "reply", "respond", "forward", "share", "email", "write back"),
    "call": ("call", "ring", "dial"),
    "open": ("open", "launch", "bring up", "go to", "visit", "browse", "navigate"),
    "read": ("check", "read", "look up", "find", "see", "view", "look at", "search", "count", "how many",
             "how much", "what", "which", "when", "who"),
    "switch": ("turn", "switch", "enable", "disable", "toggle", "activate", "deactivate", "mute", "unmute"),
    "connect": ("connect", "pair", "join", "hook", "link", "disconnect", "unpair", "log on"),
    "buy": ("buy", "order", "purchase", "checkout", "pay for"),
    "move": ("move", "relocate", "drag"),
    "copy": ("copy", "duplicate", "paste", "clone"),
    "compute": ("compute", "calculate", "multiply", "divide", "subtract", "sum"),
    "run": ("run", "execute"),
    "save": ("save", "store", "export"),
    "transfer": ("transfer", "pay", "wire"),
    "install": ("install", "uninstall", "reinstall", "download"),
    "sign": ("sign in", "log in", "log into", "login", "sign into", "unlock"),
}
"""A kind of action → the verbs (and short verb phrases) that ask for it, in their base form."""

_ENDINGS = r"(?:s|es|ed|d|ing)?"


def _pattern(verb: str) -> str:
    words = verb.split()
    if len(words) == 1:
        head = re.escape(words[0])
        stem = head[:-1] if words[0].endswith("e") else head  # delete → deleting
        tail = re.escape(words[0][-1]) + "?" if not words[0].endswith("e") else ""
        return rf"(?:{head}{_ENDINGS}|{stem}{tail}ing)"
    first, rest = words[0], words[1:]
    return rf"(?:{re.escape(first)}{_ENDINGS})" + "".join(rf"\s+{re.escape(w)}" for w in rest)


# "a note called Groceries" names, it does not call; "going to be" is a future, not a place to go to
_NOT_ACTIONS = re.compile(r"\b(?:called|going to|gonna)\b", re.IGNORECASE)
_VERBS = [(kind, re.compile(rf"(?<![\w'-]){_pattern(verb)}(?![\w'-])", re.IGNORECASE))
          for kind, verbs in ACTIONS.items() for verb in sorted(verbs, key=len, reverse=True)]


def _verbs_only(text: str) -> str:
    """``text`` without what is not a request: quoted values, a naming "called", a future's "going to"."""
    return _NOT_ACTIONS.sub(" ", QUOTED.sub(" ", text))


def is_action_verb(word: str) -> bool:
    """Whether one word is a verb of a kind of action, in any form (``deleting``, ``texted``)."""
    return any(pattern.fullmatch(word) for _, pattern in _VERBS)


def actions_in(text: str) -> frozenset[str]:
    """The kinds of action that ``text``'s verbs ask for (quoted text left out: it is a value)."""
    text = _verbs_only(text)
    return frozenset(kind for kind, pattern in _VERBS if pattern.search(text))


def own_text(sop: Sop) -> str:
    """A procedure's own words for what it does: its name, description and phrasings (placeholders left out)."""
    return " ".join([sop.name.replace("-", " "), sop.description, *(PLACEHOLDER.sub(" ", p) for p in sop.phrasings)])


def actions_of(sop: Sop) -> frozenset[str]:
    """The kinds of action a procedure offers: those its name, description and phrasings ask for."""
    return _actions_of_text(own_text(sop))


@lru_cache(maxsize=1024)
def _actions_of_text(text: str) -> frozenset[str]:
    return actions_in(text)


_THEN = re.compile(r"\b(?:and|then)\s+(?:then\s+|also\s+|please\s+)*", re.IGNORECASE)


def further_actions(text: str) -> frozenset[str]:
    """The kinds of action a goal asks for in a clause of its own after ``and`` or ``then`` ("compute 4 × 5 and
    copy the result", "..., then save it"): a second thing to do, where the first verbs may be chatter."""
    text = _verbs_only(text)
    found: set[str] = set()
    for m in _THEN.finditer(text):
        found.update(kind for kind, pattern in _VERBS if pattern.match(text, m.end()))
    return frozenset(found)


_COURTESY = re.compile(r"^(?:(?:hey|hi|ok|okay|so|yo|please|pls|plz|just|kindly|now|can|could|would|will|you|u|"
                       r"ya)\b[,!]?\s*)*", re.IGNORECASE)
MEANS = frozenset({"open", "read", "sign", "run"})
"""Kinds of action that are a means on the way to most tasks (open the app, log in, read what is there): a goal
that starts with one may go on to what it is for."""


def head_action(text: str) -> str | None:
    """The kind of action of the verb a command starts with, after courtesies (``please delete ...``, ``can you
    text ...``): what the goal is, whatever else its words mention; None when it starts otherwise."""
    text = _verbs_only(text).strip()
    at = _COURTESY.match(text)
    start = at.end() if at else 0
    return next((kind for kind, pattern in _VERBS if pattern.match(text, start)), None)


def unmet(goal_actions: frozenset[str], sop: Sop, further: frozenset[str] = frozenset(),
          head: str | None = None) -> frozenset[str]:
    """What the goal asks for that ``sop`` does not do:

    - the goal's kinds of action, when ``sop`` offers none of them;
    - the kind of the verb the command starts with (``head``, :func:`head_action`), unless it is a means
      (:data:`MEANS`) or a further clause asks for what ``sop`` does ("turn on Bluetooth and connect ...");
    - a kind asked in a further clause (``further``, :func:`further_actions`) that it does not offer (the
      procedure would do only the first part).

    Empty when they meet, or when the goal names no action (``need Ann's number``, ``dark mode on``)."""
    offered = actions_of(sop)
    if goal_actions and not goal_actions & offered:
        return goal_actions
    if head is not None and head not in MEANS and head not in offered and not further & offered:
        return frozenset({head})
    return further - offered


_NOT_REWRITTEN = frozenset({"what", "which", "when", "who", "how many", "how much", "see", "look at"})
_REWRITABLE = [(kind, verb, re.compile(rf"{_pattern(verb)}", re.IGNORECASE))
               for kind, verbs in ACTIONS.items() for verb in verbs if verb not in _NOT_REWRITTEN]
VERB = re.compile(r"(?<![\w'-])(?:" + "|".join(p.pattern for _, _, p in
                                               sorted(_REWRITABLE, key=lambda t: -len(t[1]))) + r")(?![\w'-])",
                  re.IGNORECASE)
"""Any verb (or verb phrase) of :data:`ACTIONS`, in any of its forms."""


def plain_verb(said: str, known: frozenset[str]) -> str | None:
    """The verb the procedures use for the action ``said`` asks for, when they never use ``said`` itself
    (``get rid of`` → ``delete`` where procedures say delete, ``hook`` → ``connect``); None when they use it,
    or use no verb of its kind.

    Args:
        said: a match of :data:`VERB` in a goal.
        known: the lower-case words of the procedures' names, descriptions and phrasings.
    """
    for kind, verb, pattern in _REWRITABLE:
        if not pattern.fullmatch(said):
            continue
        if all(word in known for word in verb.split()):
            return None
        for other in ACTIONS[kind]:
            if " " not in other and other in known and other not in _NOT_REWRITTEN:
                return other.capitalize() if said[:1].isupper() else other
        return None
    return None
