"""Task understanding: a goal sentence as people type it → the procedure that fits (or none) and its
parameters, typed and normalised (docs/sops.md, "Understanding a goal").

The steps, all rules and lookups in pure Python (no model call: a decider call of the default model takes
0.3–0.5 s on a 2-core CPU, more than this whole step may add to a run):

1. **Check the input.** Empty goals, goals over :data:`MAX_GOAL_CHARS`, and goals with no letter or digit
   (only emoji or symbols) are refused with a message (:class:`~edgepilot.errors.GoalError`); control and
   invisible characters are dropped.
2. **Normalise the wording** (:func:`normalise`), keeping a map to the typed text: abbreviations and
   contractions without apostrophes (``u``, ``pls``, ``msg``, ``txt``, ``tmrw``, ``#``, ``im``, ``whats``),
   possessives without apostrophes (``ann lees number``), typos (a word no procedure uses, one edit away from
   a word they use: ``alram``, ``delte``), and values in the forms people write them: times (``730am``,
   ``7.30 pm``, ``19h30``, ``half past seven``, ``noon``) become ``07:30``; money (``12 bucks``) ``$12.00``;
   phone numbers (``555 0102``) ``555-0102``; short weekdays and durations their full words.
3. **Rank the procedures** on the normalised sentence (:class:`~edgepilot.sop.retrieve.Retriever`).
4. **Say none rather than force one.** Below the threshold, nothing. A question (``whats the wifi password``,
   ``is bluetooth on``) only gets a procedure that answers something; a polite request (``could you ...``)
   is a command.
5. **Type the parameters.** Each value is normalised by the shape of its parameter's example (time, amount,
   phone, on/off, weekday, name); free text is given back as the person typed it (the map of step 2); a value
   that cannot have its parameter's shape is dropped, and the parameter is then *missing*: the agent asks for
   it or stops, it never types a placeholder.
"""

from __future__ import annotations

import gzip
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from edgepilot.errors import GoalError
from edgepilot.sop.actions import (
    VERB,
    actions_in,
    further_actions,
    head_action,
    is_action_verb,
    own_text,
    plain_verb,
    unmet,
)
from edgepilot.sop.format import PLACEHOLDER, Sop, is_secret
from edgepilot.sop.retrieve import (
    CANONICAL,
    STOPWORDS,
    THRESHOLD,
    Match,
    Retriever,
    placeholders,
    retriever_for,
    shape_of,
    tokenize,
)
from edgepilot.sop.values import PATH, WEEKDAYS, keyed_sum, shape, values_in

MAX_GOAL_CHARS = 2_000
"""A goal longer than this is refused: a goal is a sentence or two, not a document."""

ABBREVIATIONS = {
    "u": "you", "ur": "your", "r": "are", "pls": "please", "plz": "please", "pleas": "please", "plese": "please",
    "thx": "thanks", "thnx": "thanks", "ty": "thank you", "msg": "message", "msgs": "messages", "mesage": "message",
    "txt": "text", "tmrw": "tomorrow", "tmr": "tomorrow", "tmw": "tomorrow", "2moro": "tomorrow", "2morrow": "tomorrow",
    "b4": "before", "bc": "because", "abt": "about", "im": "I'm", "ive": "I've", "ill": "I'll", "dont": "don't",
    "cant": "can't", "wont": "won't", "isnt": "isn't", "doesnt": "doesn't", "didnt": "didn't", "whats": "what's",
    "wats": "what's", "wat": "what", "thats": "that's", "lemme": "let me", "gimme": "give me", "wanna": "want to",
    "gonna": "going to", "num": "number", "nr": "number", "no.": "number", "pw": "password", "pwd": "password",
    "passwd": "password", "acct": "account", "acc": "account", "addr": "address", "bt": "bluetooth",
    "pic": "picture", "convo": "conversation", "info": "information", "asap": "now", "rn": "now", "pin#": "PIN",
    "ppl": "people", "sec": "seconds", "secs": "seconds", "min": "minutes", "mins": "minutes", "hr": "hour",
    "hrs": "hours", "notifs": "notifications", "notif": "notification", "nite": "night", "tonite": "tonight",
    "alarms": "alarms", "contcts": "contacts",
}
"""Short forms people type → words (applied to whole words, outside quotes)."""

COMMON_WORDS = frozenset("""
about above account add address after again alarm alarms all answer app apps ask at available back balance bank
battery be bluetooth book browser buy calendar call called camera can card change check checking chrome clear clock
close code connect contact contacts copy create current day delete details device disable display do down draft
edit email enable end erase find forecast friday get give go have headphones high home hours how know label
labelled last latest library light list look make me message messages minute minutes mode monday morning my name
named need network new news next night note notes notification notifications number off on open password pay
payment phone pin please purchase put read remember remind remove rename reply save saturday savings say says
screen search second seconds see send set settings share show shop sign someone sunday switch take tell temperature
text thank thanks theme thursday time timeout titled to today tomorrow tonight transfer tuesday turn unlock up
update version wake want weather website wednesday what when where which who wifi with write yes
""".split())
"""Everyday words of phone tasks that a typo may be a slip of, beside the words the procedures use."""

_WORDS_TO_HOURS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                   "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_SHORT_DAYS = {"mon": "Monday", "tue": "Tuesday", "tues": "Tuesday", "wed": "Wednesday", "weds": "Wednesday",
               "thu": "Thursday", "thur": "Thursday", "thurs": "Thursday", "fri": "Friday", "sat": "Saturday",
               "sun": "Sunday"}
_QUESTION_START = re.compile(
    r"^(?:what|what's|whats|how|when|where|who|who's|whose|which|why|is|are|am|does|do|did|was|were|has|have|"
    r"will|should|shall)\b", re.IGNORECASE)
_REQUEST_START = re.compile(r"^(?:(?:hey|hi|ok|okay|so)[,!]?\s+)?(?:can|could|would|will)\s+(?:you|u|ya)\b|"
                            r"^(?:can|could|may)\s+i\s+(?:get|have|ask)\b|^do\s+(?:you|u)\s+mind\b", re.IGNORECASE)
_VALUE_LEADS = re.compile(r"^(?:(?:called|named|titled|labelled|labeled|saying|that says|which says|says|with the "
                          r"title|with title|entitled)\s+)+", re.IGNORECASE)
_OBJECT_WORDS = re.compile(r"^(?:(?:the|my)\s+)?(?:alarm|note|contact)\s+(?=\S)|\s+(?:alarm|note|contact)$", re.I)
_INVISIBLE = re.compile(r"[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064"
                        r"\ufeff]")
_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_HAS_WORD = re.compile(r"[^\W_]", re.UNICODE)
_SWITCH_ON = re.compile(r"\b(?:on|enable|enabled|activate|start|unmute)\b", re.IGNORECASE)
_SWITCH_OFF = re.compile(r"\b(?:off|disable|disabled|deactivate|kill|stop|shut|mute)\b", re.IGNORECASE)
_NOT_A_SWITCH = re.compile(r"\bon\s+(?:the\s+|my\s+|a\s+)?(?:" + "|".join(WEEKDAYS) + r"|" +
                           r"weather|shop|news|library|page|site|web|phone|screen|it|call|bank|list|way)\b",
                           re.IGNORECASE)


# ---------------------------------------------------------------- a text with a map to what was typed


@dataclass(frozen=True)
class Normalised:
    """A rewritten goal, and for each of its characters the span of the typed goal it came from."""

    typed: str
    text: str
    origin: tuple[tuple[int, int], ...]
    changes: tuple[tuple[str, str], ...] = ()

    def typed_span(self, start: int, end: int) -> str:
        """The typed text that the rewritten ``text[start:end]`` came from."""
        if start >= end or end > len(self.origin):
            return self.text[start:end]
        return self.typed[min(o[0] for o in self.origin[start:end]):max(o[1] for o in self.origin[start:end])]

    def as_typed(self, value: str) -> str:
        """``value`` (a part of ``text``) as the person typed it; itself when it is not found."""
        at = self.text.casefold().find(value.casefold())
        return self.typed_span(at, at + len(value)).strip() if at >= 0 else value


class _Rewriter:
    def __init__(self, text: str) -> None:
        self.typed = text
        self.text = text
        self.origin: list[tuple[int, int]] = [(i, i + 1) for i in range(len(text))]
        self.changes: list[tuple[str, str]] = []

    def sub(self, pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str | tuple[int, int, str] | None], *,
            outside_quotes: bool = True) -> None:
        quoted = _quoted_ranges(self.text) if outside_quotes else []
        text, origin, last = [], [], 0
        for m in pattern.finditer(self.text):
            if any(a <= m.start() < b for a, b in quoted):
                continue
            new = repl(m)
            a, b = m.start(), m.end()
            if isinstance(new, tuple):  # (start, end, text): only that part of the match is rewritten
                a, b, new = new
                if any(a < qb and qa < b for qa, qb in quoted):
                    continue
            if new is None or new == self.text[a:b] or a < last:
                continue
            text.append(self.text[last:a])
            origin.extend(self.origin[last:a])
            span = self.origin[a:b] or [self.origin[a - 1] if a else (0, 0)]
            whole = (min(o[0] for o in span), max(o[1] for o in span))
            text.append(new)
            origin.extend([whole] * len(new))
            self.changes.append((self.text[a:b], new))
            last = b
        if last:
            text.append(self.text[last:])
            origin.extend(self.origin[last:])
            self.text, self.origin = "".join(text), origin

    def result(self) -> Normalised:
        return Normalised(self.typed, self.text, tuple(self.origin), tuple(self.changes))


_QUOTED = re.compile(r'"[^"]*"')
"""Quoted text (a cleaned goal has straight quotes only)."""
_COLON_TAIL = re.compile(r'^(?=(?:\S+\s+){1,}\S*[A-Za-z]\S*:\s)[^"]*?[A-Za-z]:\s+'
                         r'(?!(?:what|when|where|which|who|whose|how|why)\b)(?P<tail>[^"\s][^"]*?)\s*$', re.I)
"""Text after a colon that ends the goal (``reply to her: please bring the charger``) is a value, as if quoted;
not a question the goal goes on to ask (``read notes.txt: what time does it start?``)."""


_FILE_NAME = re.compile(rf"(?<![\w/~.]){PATH.pattern}|"
                        r"(?<![\w/.])(?:[\w\-]*[A-Za-z][\w\-]*)?(?:\.[A-Za-z][A-Za-z0-9]{0,8})+\b")
"""A path (``/tmp/a/b.txt``, ``~/notes``), a file name with its extension (``copper.txt``,
``hours.gnumeric``) or an extension (``.txt``): kept as typed, like quoted text (``txt`` is not ``text`` there,
``gnumeric`` not the app)."""


_COURTESY_TAIL = re.compile(r"(?:[,;]?\s+(?:for me|real quick|if you can|if you could|if possible)\b)+\s*"
                            r"(?P<end>[.!?]*)\s*$", re.IGNORECASE)
"""Words to the assistant that end a goal (``open Chrome for me?``): not words of what to do. (``thanks``,
``please`` and ``now`` stay: a message may end with them.)"""


def _quoted_ranges(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in (*_QUOTED.finditer(text), *_FILE_NAME.finditer(text))]


# ---------------------------------------------------------------- values in the forms people write them


def _hour24(hour: int, minute: int, half: str | None) -> str | None:
    if half:
        half = half[0].lower()
        if not 1 <= hour <= 12:
            return None
        hour = (hour % 12) + (12 if half == "p" else 0)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return f"{hour:02d}:{minute:02d}"


def _daypart(word: str | None) -> str | None:
    if not word:
        return None
    word = word.lower()
    if word in ("morning", "am", "a.m.", "a"):
        return "a"
    return "p" if word in ("afternoon", "evening", "night", "tonight", "pm", "p.m.", "p") else None


_AMPM = r"\s*(?P<half>[ap])\.?\s?m\b\.?"
_PART = r"(?:\s+(?:in\s+the\s+|at\s+|this\s+|tonight)?(?P<part>morning|afternoon|evening|night|tonight)\b)?"
_HOUR_WORDS = "|".join(_WORDS_TO_HOURS)
_TIMES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str | None]], ...] = (
    (re.compile(r"\b(?P<h>\d{1,2})[:.](?P<m>\d{2})" + _AMPM, re.I),
     lambda m: _hour24(int(m["h"]), int(m["m"]), m["half"])),
    (re.compile(r"\b(?P<h>\d{1,2})(?P<m>\d{2})" + _AMPM, re.I),
     lambda m: _hour24(int(m["h"]), int(m["m"]), m["half"])),
    (re.compile(r"\b(?P<h>\d{1,2})" + _AMPM, re.I), lambda m: _hour24(int(m["h"]), 0, m["half"])),
    (re.compile(r"\b(?P<h>\d{1,2})h(?P<m>\d{2})\b", re.I), lambda m: _hour24(int(m["h"]), int(m["m"]), None)),
    (re.compile(r"\b(?P<h>\d{1,2}):(?P<m>\d{2})\b" + _PART, re.I),
     lambda m: _hour24(int(m["h"]), int(m["m"]), _daypart(m["part"]) if int(m["h"]) <= 12 else None)),
    (re.compile(r"\b(?:at|for|by)\s+(?P<h>\d{1,2})\.(?P<m>\d{2})\b(?![.,]?\d)" + _PART, re.I),
     lambda m: (m.group(0).split()[0] + " " + t) if (t := _hour24(int(m["h"]), int(m["m"]),
                                                                      _daypart(m["part"]) if int(m["h"]) <= 12
                                                                      else None)) else None),
    (re.compile(r"\b(?P<q>half|quarter)\s+(?P<rel>past|after|to|til|till)\s+(?P<h>\d{1,2}|" + _HOUR_WORDS + r")\b"
                r"(?:\s*o'?clock)?(?:\s*(?P<half>[ap])\.?\s?m\b\.?)?" + _PART, re.I),
     lambda m: _relative(m["q"], m["rel"], m["h"], m["half"] or m["part"])),
    (re.compile(r"\b(?P<h>" + _HOUR_WORDS + r")\s+(?P<m>thirty|fifteen|forty[- ]five|o'?clock)\b" + _PART, re.I),
     lambda m: _hour24(_WORDS_TO_HOURS[m["h"].lower()],
                       {"thirty": 30, "fifteen": 15}.get(m["m"].lower(), 45 if "five" in m["m"] else 0),
                       _daypart(m["part"]) or None) if _daypart(m["part"]) or "clock" in m["m"] else None),
    (re.compile(r"\b(?:at|for)\s+(?P<h>\d{1,2})\s+(?:in\s+the\s+|at\s+)(?P<part>morning|afternoon|evening|night)\b",
                re.I),
     lambda m: (m.group(0).split()[0] + " " + t) if (t := _hour24(int(m["h"]), 0, _daypart(m["part"]))) else None),
    (re.compile(r"\b(?P<h>\d{1,2})\s*o'?clock\b" + _PART, re.I),
     lambda m: _hour24(int(m["h"]), 0, _daypart(m["part"]))),
    (re.compile(r"\b(?:noon|midday)\b", re.I), lambda m: "12:00"),
    (re.compile(r"\bmidnight\b", re.I), lambda m: "00:00"),
)


def _relative(q: str, rel: str, hour: str, part: str | None) -> str | None:
    h = int(hour) if hour.isdigit() else _WORDS_TO_HOURS[hour.lower()]
    minutes = 30 if q.lower() == "half" else 15
    if rel.lower() in ("to", "til", "till"):
        h, minutes = h - 1, 60 - minutes
    return _hour24(h % 12 or 12, minutes, _daypart(part) or "a") if h <= 12 else None


def normalise_time(value: str) -> str | None:
    """A time as ``HH:MM`` (24-hour) from the forms people write (``7:30``, ``730am``, ``7.30 pm``,
    ``19h30``, ``half past seven``, ``noon``); None when it is not one."""
    value = value.strip()
    for pattern, make in _TIMES:
        m = pattern.fullmatch(value)
        if m is not None and (t := make(m)) is not None:
            return t.split()[-1]
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", value)
    return _hour24(int(m[1]), int(m[2]), None) if m else None


def normalise_amount(value: str) -> str | None:
    """Money as digits with two decimals (``$1,204.5`` → ``1204.50``); None when it is not an amount."""
    m = re.fullmatch(r"\$?\s*(\d[\d,]*)(?:\.(\d{1,2}))?\s*(?:dollars?|bucks|usd)?", value.strip(), re.I)
    if not m:
        return None
    return f"{int(m[1].replace(',', ''))}.{(m[2] or '0').ljust(2, '0')}"


def normalise_phone(value: str) -> str | None:
    """A 7-digit phone number as ``555-0102`` (longer ones keep their digits and separators)."""
    digits = re.sub(r"\D", "", value)
    if len(digits) == 7:
        return f"{digits[:3]}-{digits[3:]}"
    return value.strip() if 10 <= len(digits) <= 15 else None


# ---------------------------------------------------------------- normalising a goal


def clean_goal(goal: str) -> str:
    """The goal without control or invisible characters, in NFKC form with straight quotes.

    Raises:
        GoalError: the goal is empty, longer than :data:`MAX_GOAL_CHARS`, or has no letter or digit.
    """
    if not isinstance(goal, str):
        raise GoalError("the goal must be text")
    if len(goal) > MAX_GOAL_CHARS:
        raise GoalError(f"the goal is {len(goal):,} characters long; say what to do in a sentence or two "
                        f"(at most {MAX_GOAL_CHARS:,} characters)")
    text = unicodedata.normalize("NFKC", goal)
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "\n": " ", "\t": " "}))
    text = " ".join(_INVISIBLE.sub(" ", text).split())
    if not text:
        raise GoalError('the goal is empty: say what to do, e.g. "turn on airplane mode"')
    if not _HAS_WORD.search(text):
        raise GoalError("the goal has no words (only symbols or emoji): say what to do in words")
    return text


def normalise(goal: str, vocabulary: frozenset[str] = frozenset(),
              proper: dict[str, str] | None = None, verbs: frozenset[str] = frozenset()) -> Normalised:
    """The goal rewritten for retrieval (see the module docs), with a map back to what was typed.

    Args:
        goal: a cleaned goal (:func:`clean_goal`).
        vocabulary: lower-case words a typo may be corrected to (the procedures' words).
        proper: lower-case → capitalised spelling of the names the procedures know (app labels, the choices
            a parameter lists: ``chrome`` → ``Chrome``, ``savings`` → ``Savings``).
        verbs: lower-case words of the procedures' names, descriptions and phrasings: a verb they never use is
            rewritten to the one they use for the same action (:func:`~edgepilot.sop.actions.plain_verb`).
    """
    rw = _Rewriter(goal)
    rw.sub(_COLON_TAIL, lambda m: (m.start("tail"), m.end("tail"), f'"{m["tail"]}"'))
    if "send" not in actions_in(rw.text):  # "text mom save some cake for me": the message's own words
        rw.sub(_COURTESY_TAIL, lambda m: m.group("end"))
    rw.sub(re.compile(r"(?<![\w#])#(?!\s*\d)"), lambda m: "number")
    rw.sub(re.compile(r"(?<!\w)w/(?=\s)"), lambda m: "with")
    rw.sub(re.compile(r"(?<=\w)\s*&\s*(?=\w)"), lambda m: " and ")
    rw.sub(re.compile(r"\b[A-Za-z][A-Za-z0-9]*\.?(?![\w'])"), lambda m: _abbreviation(m.group(0)))
    if vocabulary:
        rw.sub(re.compile(r"\b[A-Za-z]{4,}\b"), lambda m: _corrected(m.group(0), vocabulary))
    rw.sub(re.compile(r"\b([a-z]{2,}[^s'\W])s\s+(?=(?:phone\s+|cell\s+|mobile\s+|e-?mail\s+)?(?:number|phone|"
                      r"email|e-mail|contact|address|cell|mobile|digits|details|info)\b)", re.I),
           lambda m: None if (m[1] + "s").lower() in vocabulary else f"{m[1]}'s ")
    for pattern, make in _TIMES:
        rw.sub(pattern, make)
    rw.sub(re.compile(r"(?<![\w.$])\$?\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d{1,2})?\s*(?:dollars?|bucks|usd)\b", re.I),
           lambda m: f"${normalise_amount(m.group(0))}")
    rw.sub(re.compile(r"(?<![\w.])\$\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d{1,2})?(?![\d.,]\d)"),
           lambda m: f"${normalise_amount(m.group(0))}")
    rw.sub(re.compile(r"(?<![\w.\-+])(\d{3})[ .]?(\d{4})(?![\w\-]|\.\w)"), lambda m: f"{m[1]}-{m[2]}")
    rw.sub(re.compile(r"\bturn\s+of\b", re.I), lambda m: "turn off")
    rw.sub(re.compile(r"\b(?:" + "|".join(_SHORT_DAYS) + r")\b\.?", re.I),
           lambda m: _SHORT_DAYS[m.group(0).rstrip(".").lower()]
           if m.group(0)[:1].islower() or m.group(0).rstrip(".").lower() not in ("sun", "sat") else None)
    rw.sub(re.compile(r"\b(" + "|".join(WEEKDAYS) + r")s?\b", re.I), lambda m: m[1].capitalize())
    if verbs:  # a capitalised word past the first is a name ("the Shared folder"), not a verb to put plainly
        rw.sub(VERB, lambda m: plain_verb(m.group(0), verbs) if m.start() == 0 or m.group(0)[:1].islower() else None)
    if proper:
        rw.sub(re.compile(r"\b[a-z]+\b"), lambda m: proper.get(m.group(0)))
    if vocabulary:
        rw.sub(_NAME_AFTER, lambda m: _cased(m, vocabulary))
    rw.sub(re.compile(r"\bhalf\s+(?:a|an)\s+minute\b", re.I), lambda m: "30 seconds")
    rw.sub(re.compile(r"\b(?:a|one)\s+minute\b", re.I), lambda m: "1 minute")
    rw.sub(re.compile(r"\b(\d+)\s*(?:s|sec|secs|seconds?)\b", re.I), lambda m: f"{m[1]} seconds")
    rw.sub(re.compile(r"\b(\d+)\s*(?:m|min|mins|minutes?)\b", re.I),
           lambda m: f"{m[1]} minute" + ("" if m[1] == "1" else "s"))
    return rw.result()


_NAME_LEADS = ("call", "ring", "phone", "dial", "text", "message", "tell", "to", "for", "from", "with", "contact",
               "delete", "remove", "erase", "add", "save", "store", "pay", "send", "of", "email", "number",
               "reply", "answer", "respond", "share", "give", "named", "called", "is", "update", "edit", "change",
               "forward", "new", "sms", "ping", "name", "under", "what's", "need", "find", "get", "ask", "remind")
_NAME_AFTER = re.compile(r"(?:\b(?P<lead>" + "|".join(_NAME_LEADS) + r")\s+|(?<![\w'])(?=[a-z]+\s+[a-z]))"
                         r"(?P<name>(?!(?:to|from|with|for)\b)"
                         r"[a-z][a-z'-]+(?:\s+[a-z][a-z'-]+)?)"
                         r"|(?P<owner>\b[a-z][a-z-]+(?:\s+[a-z][a-z-]+)?)(?='s\b)")
MESSAGE_WORDS = frozenset("""
able again ago almost already also always around asap away back bad be been before being best better big bit
busy but buy car come coming cool day dinner done early eat enough evening everything feel fine food free friday
fun gas get getting go going good got great guys happy have he hello help her here hey hi him home hope hour hours
how just know late later leave leaving let lol long lot love lunch meet meeting miss more morning need new nice
night no not now office ok okay on out party pick please ready really right running see she should sick so soon
sorry still stuck sure talk thank thanks there they thing think tired today together tomorrow tonight traffic
train trip two unmute up wait want way we week weekend well what when where why will work yes yet you
""".split())
"""Everyday message words: never taken for the start of a lower-case name."""


_PLACE_WORDS = frozenset("inside into onto within under below above beside behind near outside".split())


def _cased(m: re.Match[str], vocabulary: frozenset[str]) -> tuple[int, int, str] | None:
    """A lower-case name after a word that names take (``call vera novak``, ``ann lee's``) in capitals;
    only words that neither the procedures nor everyday messages use."""
    group = "name" if m["name"] is not None else "owner"
    if m["lead"] is not None:
        verb = VERB.match(m.string, m.start())
        if verb is not None and verb.end() > m.end("lead"):  # "get rid of": a verb, not "get" and a name
            return None
    words = m[group].split()
    keep = []
    for word in words:
        base = word.split("'")[0]
        if base in vocabulary or base in STOPWORDS or base in MESSAGE_WORDS or base in _WORDS_TO_HOURS \
                or base in ABBREVIATIONS or base in _PLACE_WORDS or len(base) < 2 or is_action_verb(base):
            break
        keep.append(word)
    if not keep or (m["lead"] is None and group == "name" and len(keep) < 2):
        return None  # without a word that names follow, only two unknown words in a row are a name
    plain = " ".join(keep)
    return m.start(group), m.start(group) + len(plain), " ".join(w[:1].upper() + w[1:] for w in keep)


def _abbreviation(word: str) -> str | None:
    if re.fullmatch(r"[A-Z]{1,3}\d+", word):  # a cell (B4), a model (A52): not ``b4``
        return None
    key = word.lower()
    if key not in ABBREVIATIONS or (key in ("im", "ill") and word[:1].isupper() and word != word.capitalize()):
        return None
    if key == "no." and not word.endswith("."):
        return None
    full = ABBREVIATIONS[key]
    return full.capitalize() if word[:1].isupper() and not full[:1].isupper() and len(word) > 1 else full


_SUM_WORDS = frozenset({"times", "plus", "minus", "divided", "multiplied", "multiply", "divide", "subtract"})
"""Words of a sum: never a slip of a procedure's word (``224 times 98`` is not ``224 time 98``)."""


ENGLISH_WORDS = Path(__file__).with_name("data") / "english-words.txt.gz"
"""Frequent English words (scripts/english-words.py): a word people use is not a slip of the keys."""


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """The frequent English words of :data:`ENGLISH_WORDS` (empty, and no word is spared, if the file is gone)."""
    try:
        with gzip.open(ENGLISH_WORDS, "rt", encoding="utf-8") as f:
            return frozenset(line.strip() for line in f if line.strip() and not line.startswith("#"))
    except OSError:
        return frozenset()


def _corrected(word: str, vocabulary: frozenset[str]) -> str | None:
    low = word.lower()
    if low in vocabulary or low in STOPWORDS or low in _SUM_WORDS or low in english_words():
        return None  # "lunch" is a word of its own, not a slip of "launch"
    best = _nearest(low, vocabulary)
    if best is None or (word[:1].isupper() and _inflected(low, best)):  # "the Shared folder" is a name, not "Share"
        return None
    return best.capitalize() if word[:1].isupper() else best


@lru_cache(maxsize=8192)
def _nearest(word: str, vocabulary: frozenset[str]) -> str | None:
    """The one vocabulary word a typo is a slip of: one edit (a swap of neighbours counts as one) for a
    word of 5+ letters, a swap only for a 4-letter word, two edits for a word of 9+; None when there are
    several at the smallest distance or none."""
    limit = 2 if len(word) >= 9 else 1
    found: dict[int, list[str]] = {}
    for known in vocabulary:
        if abs(len(known) - len(word)) > limit or len(known) < 4 or known[0] != word[0] and len(word) < 7:
            continue
        d = _distance(word, known, limit)
        if d <= limit and (len(word) >= 5 or _is_swap(word, known)):
            found.setdefault(d, []).append(known)
    nearest = found[min(found)] if found else []
    return nearest[0] if len(nearest) == 1 else None


def _inflected(a: str, b: str) -> bool:
    """Whether one word is the other with an ending (``shared``/``share``, ``files``/``file``): another form of
    a word, not a slip of the keys."""
    short, long = sorted((a, b), key=len)
    return long.startswith(short) and long[len(short):] in ("s", "es", "d", "ed", "r", "er", "ing", "ly")


def _is_swap(a: str, b: str) -> bool:
    diff = [i for i in range(len(a)) if len(a) == len(b) and a[i] != b[i]]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def _distance(a: str, b: str, limit: int) -> int:
    """Damerau–Levenshtein distance (optimal string alignment), stopping early past ``limit``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


# ---------------------------------------------------------------- understanding


@dataclass(frozen=True)
class Understanding:
    """What a goal sentence asks: the procedure that fits (or none, with the reason) and its parameters."""

    goal: str
    """The goal as typed (cleaned of invisible characters)."""
    text: str
    """The goal as rewritten for retrieval."""
    match: Match | None
    """The procedure with its parameters typed and normalised; None when none fits."""
    question: bool
    reason: str = ""
    """Why no procedure was chosen, or notes on the one chosen."""
    candidates: tuple[tuple[str, float], ...] = ()
    changes: tuple[tuple[str, str], ...] = ()
    """The rewrites made (typed → rewritten)."""
    ms: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def sop(self) -> str | None:
        return self.match.sop.name if self.match is not None else None

    @property
    def params(self) -> dict[str, str]:
        return dict(self.match.params) if self.match is not None else {}

    @property
    def missing(self) -> tuple[str, ...]:
        return self.match.missing if self.match is not None else ()

    def record(self) -> dict[str, object]:
        """What the trajectory's meta keeps of it."""
        return {"sop": self.sop, "params": self.params, "missing": list(self.missing), "question": self.question,
                "reason": self.reason, "rewritten": self.text if self.text != self.goal else None,
                "candidates": [list(c) for c in self.candidates], "ms": round(self.ms, 2)}


def answers(sop: Sop) -> bool:
    """Whether a procedure ends in an answer (it serves a question)."""
    return any(re.search(r"\banswer\b", step.text, re.I) for step in sop.steps)


def is_question(text: str) -> bool:
    """Whether a goal asks something rather than asks for something to be done; a polite request
    (``could you turn off wifi?``) is a request."""
    text = _QUOTED.sub(" ", text).strip().strip("\"'").strip()  # a quoted question is a value
    if _REQUEST_START.match(text):
        return False
    if head_action(text) not in (None, "read"):  # "reply to Ann with can you call me back?": a command
        return False
    return bool(_QUESTION_START.match(text)) or text.endswith("?")


@lru_cache(maxsize=8)
def vocabulary_of(retriever: Retriever) -> frozenset[str]:
    """The words a typo may be corrected to: the procedures' own words and :data:`COMMON_WORDS`."""
    words = set(COMMON_WORDS)
    for sop in retriever.sops:
        text = " ".join([sop.name.replace("-", " "), sop.description, *sop.app_labels, *sop.phrasings,
                         *(step.text for step in sop.steps)])
        words.update(w.lower() for w in _WORD.findall(PLACEHOLDER.sub(" ", text)))
    return frozenset(w for w in words if len(w) >= 4 and "'" not in w)


@lru_cache(maxsize=8)
def verbs_of(retriever: Retriever) -> frozenset[str]:
    """The words retrieval scores: those of the procedures' names, descriptions and phrasings."""
    return frozenset(w.lower() for sop in retriever.sops for w in _WORD.findall(own_text(sop)))


@lru_cache(maxsize=8)
def proper_names_of(retriever: Retriever) -> dict[str, str]:
    """Lower-case → capitalised spelling of the names the procedures know: app labels and the choices their
    parameters list (``Checking or Savings``)."""
    names: dict[str, str] = {}
    for sop in retriever.sops:
        for label in sop.app_labels:
            if " " not in label and label[:1].isupper() and "." not in label and label.lower() not in MESSAGE_WORDS:
                names[label.lower()] = label
        for param in sop.params.values():
            for choice in choices(param.description):
                names[choice.lower()] = choice
    return names


def _without_choices(text: str, retriever: Retriever) -> str:
    """``text`` without the capitalised values that the procedures' parameters list (``Checking``)."""
    pattern = _choices_pattern(retriever)
    return pattern.sub(" ", text) if pattern is not None else text


@lru_cache(maxsize=8)
def _choices_pattern(retriever: Retriever) -> re.Pattern[str] | None:
    listed = {c for sop in retriever.sops for p in sop.params.values() for c in choices(p.description)}
    if not listed:
        return None
    return re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, listed), key=len, reverse=True)) + r")\b")


@lru_cache(maxsize=1024)
def choices(description: str) -> tuple[str, ...]:
    """The values a parameter's description lists (``the account, Checking or Savings`` → both)."""
    m = re.search(r"\b([A-Z][a-z]+(?:, [A-Z][a-z]+)* or [A-Z][a-z]+)\b", description or "")
    return tuple(re.split(r", | or ", m[1])) if m else ()


LOW_THRESHOLD = 0.28
"""Below the threshold but above this, a procedure is chosen when the goal gives every one of its parameters."""
_QUANTIFIERS = frozenset({"all", "every", "everything", "each", "everyone", "everybody", "all of them"})
RECALL_FLOOR = 0.15
RECALL_ACCEPT = 0.99
"""Below the threshold, a procedure is still chosen when the goal holds every content word of one of its
phrasings (a long or chatty sentence around the request), above this floor."""
EXPLAINED_FLOOR = 0.35
"""Below the threshold but above this, a procedure is chosen when the goal gives every one of its parameters,
each name as a name is typed, and every other word of the goal is the procedure's own, a small word or a
courtesy (:func:`_all_explained`)."""
MARGIN = 0.08
"""A procedure this close below the best one wins when the goal gives more of its parameters."""
RANKED = 8
"""How many of the best-scored procedures are looked at before those doing another action are passed over."""


def understand(goal: str, library: object | None = None, *, threshold: float | None = None,
               k: int = 3) -> Understanding:
    """The procedure a goal sentence asks for (or none) and its parameters, typed and normalised.

    Args:
        goal: the goal as the person typed it.
        library: an SOP library, a :class:`Retriever` or SOPs (default: the current directory's library).
        threshold: the lowest retrieval score accepted (default :data:`~edgepilot.sop.retrieve.THRESHOLD`).

    Raises:
        GoalError: the goal is empty, too long, or has no words (see :func:`clean_goal`).
    """
    start = time.perf_counter()
    typed = clean_goal(goal)
    retriever = retriever_for(library)
    norm = normalise(typed, vocabulary_of(retriever), proper_names_of(retriever), verbs_of(retriever))
    question = is_question(norm.text)
    ranked = _by_evidence(retriever.rank(norm.text, k=len(retriever.sops)), norm.text)[:max(1, k, RANKED)]
    candidates = tuple((m.sop.name, m.score) for m in ranked[:max(1, k)])

    def done(match: Match | None, reason: str = "", notes: tuple[str, ...] = ()) -> Understanding:
        return Understanding(typed, norm.text, match, question, reason, candidates, norm.changes,
                             (time.perf_counter() - start) * 1000, notes)

    named = _without_choices(norm.text, retriever)  # "from Checking" names an account, it does not check
    wanted, further = actions_in(named), further_actions(named)
    head = None if question else head_action(named)
    agreeing = [m for m in ranked if not unmet(wanted, m.sop, further, head)]
    if ranked and not agreeing:
        asked = unmet(wanted, ranked[0].sop, further, head)
        return done(None, f"the goal asks to {' and '.join(sorted(asked))}, and no procedure does that (closest: "
                          f"{ranked[0].sop.name}, which does not)")
    ranked = agreeing[:max(1, k)]
    limit = THRESHOLD if threshold is None else threshold

    best = ranked[0] if ranked else None
    strict = limit
    lenient = limit <= THRESHOLD  # a caller who raised the threshold gets no lower bars
    params_of: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {}

    def typed_of(m: Match) -> tuple[dict[str, str], tuple[str, ...]]:
        if m.sop.name not in params_of:
            params, m_notes = typed_params(m, norm)
            params_of[m.sop.name] = (_named_before_noun(_trailing_text(_named_after(replace(m, params=params),
                                                                                    norm), norm), norm).params,
                                     m_notes)
        return params_of[m.sop.name]

    def close_behind(score: float) -> Iterator[tuple[Match, tuple[str, ...]]]:
        """The procedures above the bar within two margins of ``score`` that may serve the goal (an answer where
        it is a question), best first, with their parameters typed, and the notes of the typing."""
        for m in ranked:
            if m.score >= max(limit, score - 2 * MARGIN) and not (question and not answers(m.sop)):
                params, m_notes = typed_of(m)
                yield replace(m, params=params), m_notes

    if lenient and best is not None and best.score < limit and best.score >= LOW_THRESHOLD and best.sop.params:
        params, _ = typed_of(best)
        telling = [v for v in params.values() if shape(v) in (*_TELLING, "digits")]
        if len(params) == len(best.sop.params) and (telling or len(params) >= 2):
            limit = best.score  # the goal gives every value this procedure needs, one at least of a telling shape
            for m in ranked[1:]:  # one close behind that takes every value too and more: it does more of the goal
                if m.score >= best.score - MARGIN and len(m.sop.params) > len(params) \
                        and len(typed_of(m)[0]) == len(m.sop.params):
                    limit = min(limit, m.score)
    if lenient and best is not None and best.score < limit and best.score >= EXPLAINED_FLOOR:
        params, _ = typed_of(best)
        if len(params) == len(best.sop.params) and _all_explained(best.sop, norm, params):
            limit = best.score  # every value given, and every word of the goal a value or the procedure's own
    if lenient and best is not None and best.score < limit and best.score >= RECALL_FLOOR \
            and retriever.phrasing_recall(best.sop, norm.text) >= RECALL_ACCEPT:
        limit = best.score  # the goal says all of one of its phrasings, in other words around it
    if best is None or best.score < limit:
        near = f" (closest: {best.sop.name}, {best.score:.2f} < {limit:.2f})" if best is not None else ""
        return done(None, f"no procedure fits this goal{near}")
    fitting = [m for m in ranked if m.score >= max(limit, best.score - MARGIN) and (not question or answers(m.sop))]
    if not fitting:
        return done(None, f"a question, and the closest procedure ({best.sop.name}) does something rather than "
                          "answer")
    typed_matches = []
    for m in fitting:  # above the bar, the words nothing else explains count as the one open value
        params, notes = typed_of(m)
        filled, _ = _with_leftover(replace(m, params=params), norm)
        typed_matches.append((len(m.sop.params) - len(filled.params), -m.score, replace(m, params=params), notes))
    if min(t[0] for t in typed_matches):  # each leaves a value out: one close behind that the goal gives in full
        # ("what is 6 times 7 on the calculator": compute it, not read a file the goal never names)
        typed_matches += [(0, -m.score, m, m_notes) for m, m_notes in close_behind(best.score)
                          if not m.missing and not any(m.sop.name == f.sop.name for f in fitting)]
    typed_matches.sort(key=lambda t: (t[0], -len(t[2].params), t[1]))
    _, _, chosen, notes = typed_matches[0]
    if chosen.score < strict and chosen.missing:
        return done(None, f"{chosen.sop.name} fits only loosely, and the goal does not give its "
                          f"{', '.join(chosen.missing)}")
    secrets = [n for n in chosen.sop.params if is_secret(n) and n not in chosen.params]
    told = [w for w in re.findall(r"[a-z]+", norm.text.lower()) if is_secret(w)] if question and secrets else []
    if told:  # "what's my bank PIN": the procedure needs the PIN, it never tells it
        return done(None, f"the goal asks for the {told[0]} itself, which {chosen.sop.name} needs rather than tells")
    every = [v for v in chosen.params.values() if v.lower() in _QUANTIFIERS]
    if every:
        return done(None, f"the goal asks for {every[0]!r} of something; {chosen.sop.name} does one at a time")
    chosen, loose = _placed(chosen, norm.text)
    if loose:  # the next procedure above the bar whose parameters the goal gives, every one, and that has a
        # place for every value the goal gives, close behind ("add a contact named X with the phone number N": not
        # the library's number saved as a contact)
        for m, m_notes in close_behind(chosen.score):
            other, other_loose = _placed(m, norm.text)
            if m.sop.name != chosen.sop.name and not other_loose and not other.missing and other.params == m.params:
                chosen, notes, loose = other, m_notes, []
                break
    if loose:
        return done(None, f"the goal gives {loose[0]!r}, which {chosen.sop.name} has no place for (it does "
                          "something else than asked)")
    chosen = _owner_by_possessive(chosen, norm)
    chosen, filled = _with_leftover(chosen, norm)
    return done(chosen, notes=(*notes, filled) if filled else notes)


EVIDENCE = 0.1
"""How much a procedure's score grows when the goal gives values of the shapes its parameters take: a goal's
times, amounts, card and phone numbers, days and listed choices (``Savings``) tell which procedure it is
even in words no procedure uses (``$71 to kira silva from savings pin 9362``)."""
NAMED = 0.05
"""How much a procedure's score grows when the goal says the words of its name (``contacts``, ``delete``): a
name says what a procedure is about more surely than its phrasings' other words. Chosen on the dev half of the
phrasings set (0.1 forced one more out-of-scope goal there)."""
_EVIDENT = ("time", "email", "card", "phone", "domain", "amount", "digits", "weekday", "arithmetic")


def _goal_values(text: str) -> list[str]:
    """The values of a telling shape in a goal, days of the week among them."""
    days = [m.group(0) for m in re.finditer(r"\b(?:" + "|".join(WEEKDAYS) + r")\b", text, re.I)]
    found = values_in(text)
    if keyed_sum(text) is not None:  # the numbers of a sum are one value, the sum
        found = [v for v in found if shape(v) != "digits"] + ["sum"]
    return [*found, *days]


def evidence(sop: Sop, values: list[str], text: str) -> float:
    """How well the goal's telling values (:func:`_goal_values`) and the listed choices it names fit ``sop``: the
    share of its parameters they fill, each value one parameter (0 for a procedure without parameters)."""
    free = list(values)
    placed = 0
    for param in sop.params.values():
        listed = choices(param.description)
        if listed:
            placed += any(re.search(rf"\b{re.escape(c)}\b", text, re.I) for c in listed)
            continue
        want = shape(param.example) if param.example else "text"
        if want not in _EVIDENT:
            continue
        for v in free:
            got = "weekday" if v.lower() in WEEKDAYS else "arithmetic" if v == "sum" else shape(v)
            if got == want or (want in ("amount", "phone") and got == "digits"):
                free.remove(v)
                placed += 1
                break
    return placed / len(sop.params) if sop.params else 0.0


def _by_evidence(ranked: list[Match], text: str) -> list[Match]:
    """``ranked`` with each score moved by :data:`EVIDENCE` times its :func:`evidence` and :data:`NAMED` times
    the share of its name's words the goal says, best first."""
    values = _goal_values(text)
    words = set(tokenize(text))
    moved = [replace(m, score=round(min(1.0, m.score + EVIDENCE * evidence(m.sop, values, text)
                                        + NAMED * _name_said(m.sop, words)), 4))
             for m in ranked]
    return sorted(moved, key=lambda m: -m.score)


def _name_said(sop: Sop, words: set[str]) -> float:
    """The share of the words of a procedure's name that the goal says."""
    own = tokenize(sop.name.replace("-", " "))
    return sum(w in words for w in own) / len(own) if own else 0.0


def _placed(chosen: Match, text: str) -> tuple[Match, list[str]]:
    """``chosen`` and the values of a telling shape (a time, an amount, a phone number, an email, a card) that
    the goal ``text`` gives and the procedure has no place for: neither its own words nor a parameter hold them.
    One such value and one free-text parameter left open: the value fills it (``delete my alarm for 6am``)."""
    own = " ".join([chosen.sop.description, *chosen.sop.phrasings, *(step.text for step in chosen.sop.steps)])
    def same(a: str, b: str) -> bool:  # "4664803391657862" is the card "4664 8033 9165 7862"
        a, b = a.casefold(), b.casefold()
        if re.fullmatch(r"[\d\s.,:$+()-]+", a) and re.fullmatch(r"[\d\s.,:$+()-]+", b):
            return re.sub(r"\D", "", a) == re.sub(r"\D", "", b)
        return bool(a and b) and (a in b or b in a)

    loose = [v for v in values_in(text) if shape(v) in ("time", "amount", "phone", "email", "card")
             and v.casefold() not in own.casefold() and not any(same(v, p) for p in chosen.params.values())]
    open_text = [n for n, p in chosen.sop.params.items() if n not in chosen.params
                 and shape(p.example or "") in ("text", "name")]
    if len(loose) == 1 and len(open_text) == 1:
        return replace(chosen, params={**chosen.params, open_text[0]: loose[0]}), []
    return chosen, loose


def typed_params(match: Match, norm: Normalised) -> tuple[dict[str, str], tuple[str, ...]]:
    """The match's parameters typed by the shape of their examples; free text and names as typed; a
    parameter that lists its values (``Checking or Savings``) or wants a duration is looked for in the goal
    when retrieval found nothing for it."""
    out: dict[str, str] = {}
    notes: list[str] = []
    for name, param in match.sop.params.items():
        want = shape(param.example) if param.example else "text"
        value = match.params.get(name)
        listed = choices(param.description)
        if listed:
            found = [c for c in listed if re.search(rf"\b{re.escape(c)}\b", norm.text, re.I)]
            if value is None or value.casefold() not in {c.casefold() for c in listed}:
                value = found[0] if len(found) == 1 else None
            else:
                value = next(c for c in listed if c.casefold() == value.casefold())
            if value is not None:
                out[name] = value
            continue
        if param.example and _DURATION.fullmatch(param.example):
            durations = _DURATION.findall(norm.text)
            if value is None or not _DURATION.fullmatch(value.strip()):
                value = durations[0] if len(set(durations)) == 1 else None
            if value is not None:
                out[name] = value
            continue
        if want == "arithmetic":  # the sum as typed anywhere in the goal ("add 9 and 5"), in the calculator's keys
            value = (keyed_sum(value) if value is not None else None) or keyed_sum(norm.text)
            if value is not None:
                out[name] = value
            else:
                notes.append(f"dropped {name}: the goal gives no sum of two numbers")
            continue
        if value is None and want == "switch":
            value = _switch(norm.text) or ("on" if not _NOT_ON.search(norm.text) and _all_read(norm.text) else None)
        if value is None and want in _TELLING:
            used = set(match.params.values()) | set(out.values())
            found = [v for v in values_in(norm.text) if shape(v) == want and v not in used]
            value = found[0] if len(found) == 1 else None
        if value is None:
            continue
        typed = _typed(value, want, norm)
        if typed is not None and want == "text" and _refers_elsewhere(typed, match.sop):
            notes.append(f"dropped {name}={value!r}: it points at a value the goal does not give")
            continue  # "write the result in Mousepad": the result of an earlier step, not the text to write
        if typed is not None and want == "text":
            for other in (*match.params.values(), *out.values()):  # "txt daniel khan thanks": not the name
                if other and " " in other and other != value and typed.casefold().startswith(other.casefold() + " "):
                    typed = typed[len(other):].strip(" ,:;-")
            typed = re.sub(r"(?i)[\s,]+(?:please|pls|plz|thx)$", "", typed) or None
            if typed is not None and shape(typed) in ("card", "phone", "digits", "email", "domain"):
                typed = None  # a number or an address is not free text (the card number is not the product)
        if typed is None:
            notes.append(f"dropped {name}={value!r}: not {_SHAPE_WORDS.get(want, want)}")
            continue
        out[name] = typed
    for name in [n for n in out if shape_of(match.sop, n) in ("text", "name")]:
        others = {form.casefold() for other, value in out.items() if other != name
                  for form in (value, norm.as_typed(value))}
        if out[name].casefold() in others:  # "my 8 am alarm": the time, not also the label
            notes.append(f"dropped {name}={out.pop(name)!r}: it is the value of another parameter")
    return out, tuple(notes)


_BOUNDARY = frozenset("my the a an your our this that these those his her their from in into to of for on at with "
                      "by about".split())


def _named_before_noun(match: Match, norm: Normalised) -> Match:
    """``match`` with a name or free-text parameter that its phrasings put right before a noun of the procedure's
    name (``my {title} note``, ``the {alarm} alarm``) taken as the words between that noun and the small word or
    the start before them in the goal (``the time from Early shift note`` → ``Early shift``; ``groceries note can go`` →
    ``groceries``), unless the goal quotes the value. Words the procedure says itself are never such a name."""
    own = _own_words(match.sop)
    object_words = {w.removesuffix("s") for w in match.sop.name.split("-") if len(w) >= 3}
    params = dict(match.params)
    quoted = [m.group(0).strip('"').casefold() for m in _QUOTED.finditer(norm.text)]
    for name, param in match.sop.params.items():
        if choices(param.description) or shape_of(match.sop, name) not in ("name", "text"):
            continue
        if params.get(name, "").casefold() in quoted or shape(params.get(name, "")) in _TELLING:
            continue
        if name in params and shape_of(match.sop, name) == "name":
            params[name] = _without_own_words(params[name], own)
        nouns = {after[0].lower() for phrasing in match.sop.phrasings for n, _, after in placeholders(phrasing)
                 if n == name and after and after[0].lower().removesuffix("s") in object_words}
        for noun in sorted(nouns):
            for m in re.finditer(rf"\b{re.escape(noun)}s?\b", norm.text, re.I):
                before = re.search(r'"([^"]+)"\s*$', norm.text[:m.start()])
                if before:  # 'from "Early shift" note'
                    params[name] = before[1].strip()
                    break
                run: list[str] = []
                for word in reversed(norm.text[:m.start()].split()):
                    low = word.lower()
                    if not re.fullmatch(r"[A-Za-z][\w'-]*", word) or low in _BOUNDARY or low in _CHATTER \
                            or len(run) == 3:
                        break
                    run.insert(0, word)
                while run and is_action_verb(run[0]):
                    run.pop(0)  # "delete groceries note": the verb is not the name
                if run and not all(w.lower() in own or w.lower() in STOPWORDS for w in run):
                    value = _typed(" ".join(run), shape_of(match.sop, name), norm)
                    if value and value.casefold() not in {v.casefold() for k, v in params.items() if k != name}:
                        params[name] = value
                        break
            else:
                continue
            break
    return replace(match, params=params) if params != match.params else match


def _owner_by_possessive(match: Match, norm: Normalised) -> Match:
    """``match`` with two names swapped where the goal's possessive says which is which: a procedure whose
    phrasings say ``{contact}'s number`` takes as its contact the name the goal writes before ``'s number``
    (``Maya wants Chloe Zhou's number, text it to her``), wherever retrieval put it."""
    params = dict(match.params)
    for name in match.sop.params:
        nouns = {a[1].lower() for phrasing in match.sop.phrasings
                 for n, _, a in placeholders(phrasing) if n == name and len(a) >= 2 and a[0].lower() == "s"}
        for noun in nouns:
            for m in re.finditer(rf"([A-Z][\w-]*(?:\s+[A-Z][\w-]*)*)'s\s+(?:\w+\s+)?{re.escape(noun)}\b", norm.text):
                owner = m[1]
                other = next((k for k, v in params.items() if k != name and v.casefold() == owner.casefold()), None)
                if other is not None and name in params:
                    params[name], params[other] = params[other], params[name]
                break
    return replace(match, params=params) if params != match.params else match


_NAMING = re.compile(r"\b(?:titled|entitled|called|named|labell?ed|with the (?:title|name|label)|title|name)\s+"
                     r"(?:\"(?P<q>[^\"]+)\"|(?P<v>(?!(?:of|for|to|in|on|at|with|from|it|is|was)\b)[^\s\"][^,;.!?\"]*?)"
                     r"(?=\s+(?:so|and|then|because|since|to|for|with|in|on|please|thanks)\b|\s*[,;.!?]|\s*$))",
                     re.IGNORECASE)


def _named_after(match: Match, norm: Normalised) -> Match:
    """``match`` with its one open name or free-text parameter that its phrasings lead in with a naming word
    (``titled {title}``, ``called {name}``) taken as the goal's words after such a word, up to the end of the
    clause (``with the title Savings balance so I have it handy`` → ``Savings balance``)."""
    leads = {n for phrasing in match.sop.phrasings for n, before, _ in placeholders(phrasing)
             if before and before[-1].lower() in ("titled", "entitled", "called", "named", "labelled", "labeled",
                                                  "title", "name", "label")}
    open_names = [n for n in leads if n not in match.params and n in match.sop.params
                  and shape_of(match.sop, n) in ("text", "name")]
    if len(open_names) != 1:
        return match
    taken = {v.casefold() for v in match.params.values()}
    for m in _NAMING.finditer(norm.text):
        said = (m["q"] or m["v"]).strip()
        value = said if m["q"] else norm.as_typed(said)
        if value and len(value.split()) <= 6 and not any(t in said.casefold() for t in taken):
            return replace(match, params={**match.params, open_names[0]: value})
    return match


def _trailing_text(match: Match, norm: Normalised) -> Match:
    """``match`` with an open free-text parameter that its phrasings end with, after a word that leads it in
    (``Reply to {name} with "{message}"``), taken as the goal's words after the last such word (``reply to the
    last text with can you call me back?`` → ``can you call me back?``)."""
    for name, param in match.sop.params.items():
        if name in match.params or choices(param.description) or shape_of(match.sop, name) != "text":
            continue
        leads = {before[-1].lower() for phrasing in match.sop.phrasings
                 for n, before, after in placeholders(phrasing.strip().rstrip(".!?\"'"))
                 if n == name and before and not after and before[-1].lower() not in ("the", "a", "an", "my")}
        found = [m for lead in leads for m in re.finditer(rf"\b{re.escape(lead)}\s+", norm.text, re.I)]
        if not found:
            continue
        start = max(m.end() for m in found)
        value = norm.typed_span(start, len(norm.text)).strip().strip('"').strip()
        tail = norm.text[start:].casefold()
        others = [v.casefold() for v in match.params.values()]
        if value and len(value.split()) <= 40 and not any(o in tail for o in others):
            return replace(match, params={**match.params, name: value})
    return match


def _without_own_words(value: str, own: frozenset[str]) -> str:
    """A name without another spelling of one of the procedure's own words at its end (``CloudDrive SMS`` →
    ``CloudDrive``: ``SMS`` is ``text``); itself when nothing else would be left."""
    words = value.split()
    while len(words) > 1 and words[-1].lower() in CANONICAL and CANONICAL[words[-1].lower()] in own:
        words.pop()
    return " ".join(words)


def _all_explained(sop: Sop, norm: Normalised, params: dict[str, str]) -> bool:
    """Whether every word of the goal is explained by ``sop`` and its ``params``, each name of which was typed
    capitalised (``ringtone`` is no contact), and the goal is read whole (:func:`_all_read`, values aside)."""
    for name, value in params.items():
        if shape_of(sop, name) == "name":
            if not all(w[:1].isupper() for w in norm.as_typed(value).split()):
                return False
    if unexplained(sop, norm.text, tuple(params.values())):
        return False
    rest = norm.text
    for value in params.values():
        rest = re.sub(re.escape(value), " ", rest, flags=re.I)
    return _all_read(_QUOTED.sub(" ", rest))


def _with_leftover(match: Match, norm: Normalised) -> tuple[Match, str | None]:
    """``match`` with its one open name or free-text parameter filled by the words of the goal nothing else
    explains (:func:`leftover`), and a note saying so; itself when not one such parameter is open."""
    open_names = [n for n, p in match.sop.params.items() if n not in match.params and not choices(p.description)
                  and shape_of(match.sop, n) in ("name", "text")]
    if len(open_names) != 1:
        return match, None
    rest = leftover(match.sop, norm.text, tuple(match.params.values()))
    typed = _typed(rest, shape_of(match.sop, open_names[0]), norm) if rest else None
    if not typed:
        return match, None
    return (replace(match, params={**match.params, open_names[0]: typed}),
            f"{open_names[0]}={typed!r}: the words of the goal nothing else explains")


_CHATTER = frozenset("""
hey hi hello yo ok okay so pls please thanks thank thx need needs want wanna real quick quickly just right away now
asap for me can could would you u mind kindly actually maybe also too again
he him his she her hers they them their theirs it its we us our i i'm i'll i've i'd
say says saying said titled called named labelled labeled entitled
""".split())
_LINKS = frozenset("over via through using off out onto into with from to at in on by of for about up down".split())
_SMALL_WORDS = STOPWORDS | _CHATTER | _LINKS | COMMON_WORDS | MESSAGE_WORDS | frozenset(
    w.lower() for full in ABBREVIATIONS.values() for w in _WORD.findall(full))


def _own_words(sop: Sop) -> frozenset[str]:
    """The lower-case words a procedure says itself: name, description, apps, phrasings, steps, parameters."""
    return _words_of_text(" ".join([sop.name.replace("-", " "), sop.description, *sop.app_labels, *sop.phrasings,
                                    *(step.text for step in sop.steps),
                                    *(p.description for p in sop.params.values())]))


@lru_cache(maxsize=256)
def _words_of_text(text: str) -> frozenset[str]:
    words = {w.lower() for w in _WORD.findall(PLACEHOLDER.sub(" ", text))}
    return frozenset(words | {w[:-1] for w in words if w.endswith("s")} | {w + "s" for w in words})


def unexplained(sop: Sop, text: str, taken: Iterable[str] = ()) -> list[list[re.Match[str]]]:
    """The runs of words of a goal that nothing explains: not ``sop``'s own words, not a verb of an action, not
    a value ``taken`` or quoted, not a small word or a courtesy."""
    own = _own_words(sop)
    blocked = [False] * len(text)
    for value in taken:
        for m in re.finditer(re.escape(value), text, re.I):
            blocked[m.start():m.end()] = [True] * (m.end() - m.start())
    for m in _QUOTED.finditer(text):
        blocked[m.start():m.end()] = [True] * (m.end() - m.start())
    runs: list[list[re.Match[str]]] = [[]]
    for m in re.finditer(r"[A-Za-z][A-Za-z'-]*|[^\sA-Za-z]+", text):
        word = m.group(0).lower().removesuffix("'s")
        free = (m.group(0)[:1].isalpha() and not any(blocked[m.start():m.end()]) and word not in own
                and word not in STOPWORDS and word not in _CHATTER and word not in _LINKS
                and word not in _WORDS_TO_HOURS and not is_action_verb(m.group(0)))
        if free:
            runs[-1].append(m)
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if r]


def leftover(sop: Sop, text: str, taken: Iterable[str] = ()) -> str | None:
    """The run of words in a goal that nothing else explains: not the procedure's own words, not a verb of an
    action, not a value already taken, not a small word or a courtesy. With one parameter left open, that run is
    its value (``whats the bankalert code`` → ``bankalert``; ``hook my phone up to the car audio`` → ``car
    audio``). Runs with a word that is no frequent English word (a name) come first, then the longest; None
    when there is none, or several equally good."""
    runs = [r for r in unexplained(sop, text, taken) if len(r) <= 4]
    if not runs:
        return None
    english = english_words()

    def rank(run: list[re.Match[str]]) -> tuple[bool, int]:
        return (any(m.group(0).lower().removesuffix("'s") not in english for m in run), len(run))

    best = max(rank(r) for r in runs)
    top = [r for r in runs if rank(r) == best]
    if len(top) != 1:
        return None
    return text[top[0][0].start():top[0][-1].end()].removesuffix("'s")


_TELLING = ("time", "email", "card", "phone", "domain", "amount")
_DURATION = re.compile(r"\b\d+ (?:seconds?|minutes?|hours?)\b")


_SHAPE_WORDS = {"arithmetic": "a sum", "path": "a path", "time": "a time", "amount": "an amount of money",
                "phone": "a phone number", "switch": "on or off",
                "weekday": "a day of the week", "digits": "a number", "email": "an e-mail address",
                "card": "a card number", "domain": "a web address", "name": "a name"}


_REFERENTS = frozenset({"it", "that", "this", "them", "the result", "result", "the answer", "answer", "the total",
                        "total", "the number", "the value", "the sum", "the amount"})


def _refers_elsewhere(value: str, sop: Sop) -> bool:
    """Whether a free-text value only points at something (``the result``, ``it``), with at most where to put it
    (``the result in Mousepad``: one of the procedure's apps) after it."""
    apps = "|".join(re.escape(a) for a in sop.apps if a)
    bare = re.sub(rf"\s+(?:in|on|into|with|using)\s+(?:the\s+)?(?:{apps})(?:\s+app)?$", "", value.strip(),
                  flags=re.IGNORECASE) if apps else value.strip()
    return bare.casefold() in _REFERENTS


_NOT_ON = re.compile(r"\b(?:toggle|flip|not|no|never|without|is|are|was|were)\b|n't\b|\?", re.IGNORECASE)
"""Words after which a setting named without on or off is not simply asked to be on: a toggle, a negation, a
question. Otherwise it is (``put the phone in dark mode``, ``airplane mode pls``)."""


def _all_read(text: str) -> bool:
    """Whether every word of ``text`` is one this step knows (a frequent English word, or a small word, courtesy,
    everyday phone word or message word of its lists): nothing is guessed for a goal it cannot read whole
    ("Schalte Bluetooth aus" is not *on*)."""
    known = english_words()
    return bool(known) and all(w.lower() in known or w.lower() in _SMALL_WORDS for w in _WORD.findall(text))


def _switch(text: str) -> str | None:
    text = _NOT_A_SWITCH.sub(" ", text)
    on, off = bool(_SWITCH_ON.search(text)), bool(_SWITCH_OFF.search(text))
    return "on" if on and not off else "off" if off and not on else None


def _typed(value: str, want: str, norm: Normalised) -> str | None:
    value = value.strip().strip("\"'").strip()
    if want == "time":
        return normalise_time(value)
    if want == "amount":
        return normalise_amount(value)
    if want == "phone":
        return normalise_phone(value)
    if want == "switch":
        low = value.lower()
        return low if low in ("on", "off") else _switch(value)
    if want == "weekday":
        low = value.lower().rstrip(".")
        return _SHORT_DAYS.get(low) or (low.capitalize() if low in WEEKDAYS else None)
    if want == "digits":
        return value if value.isdigit() else None
    if want == "card":
        digits = re.sub(r"\D", "", value)
        return " ".join(digits[i:i + 4] for i in range(0, len(digits), 4)) if 13 <= len(digits) <= 19 else None
    if want in ("email", "domain"):
        return value
    if want == "path":  # the path, without what the sentence goes on to say
        m = PATH.search(value)
        return m.group(0) if m else None
    if shape(value) in ("time", "amount", "phone"):  # a value rewritten to its normal form stays in it
        return value.strip()
    if want == "name":  # a name as rewritten (cased, possessive off), up to a word that is a number
        value = re.split(r"\s+(?=[\d$+(])", value.strip())[0]
    typed = value if want == "name" else norm.as_typed(value)
    if re.match(r"(?i)to\s", typed) and want == "text":  # "password to sunshine22": a change, not a value
        return None
    typed = _VALUE_LEADS.sub("", typed).strip(" \t\"'.,;:!?")
    typed = _OBJECT_WORDS.sub("", typed).strip(" \t\"'.,;:!?-")
    if not typed:
        return None
    if want == "name" and typed == typed.lower():
        typed = " ".join(w[:1].upper() + w[1:] for w in typed.split())
    return typed
