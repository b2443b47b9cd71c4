"""From a goal to a route through remembered apps: the procedure the agent follows when no SOP fits.

:func:`recall` scores every remembered element (what it is called, the screen it is on, and what the
screen it opens shows) and every remembered screen (its title and the text it shows, for goals that ask to
read something) against the goal's words, weighted by how rare each word is across the memories. An app
the goal names keeps the search inside that app. :func:`route_procedure` turns the best target into numbered
steps in the forms the SOP follower and the agent already know (``Open the Settings app.``, ``Tap
"Display".``, ``Type "V" in the "F" field.``), so the decider grounds them exactly as it grounds a written
procedure's steps: the memory writes a procedure on the spot, and nothing downstream changes.

Values come from the goal itself: quoted text, times, phone numbers, amounts and capitalised names
(:func:`edgepilot.sop.values.spans`); a list item on the way (a contact, a note) is the name the goal gives.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from edgepilot.memory.model import AppMemory, ElementMemo, StateMemo
from edgepilot.sop.carry import wanted_shapes
from edgepilot.sop.format import Sop, SopStep
from edgepilot.sop.retrieve import QUOTED, Match, tokenize
from edgepilot.sop.values import Span, shape, spans

MIN_SCORE = 0.35
"""Below this share of the goal's weight, no remembered element is taken to be what the goal means."""
ROUTE_PREFIX = "memory-"
"""The name of a procedure written from a route starts with it (``memory-settings``): a route, not a written
procedure, so nothing in it holds a finish to the goal's values."""

SUBMIT = ("save", "send", "done", "ok", "go", "log in", "sign in", "submit", "confirm", "add", "apply", "next",
          "search", "update", "set", "create", "connect", "join", "pair")
BACKWARD = frozenset(("cancel", "back", "close", "no", "skip", "not now", "navigate up", "dismiss"))
"""Buttons that only go back the way they came: never what a goal is about."""
DISMISS = ("cancel", "back", "close", "delete", "remove", "log out", "sign out", "discard", "clear", "no", "skip")
"""Buttons that leave a form without doing it: never the form's submit button."""
_READ = re.compile(r"^\s*(?!get rid\b)(what|what's|whats|which|who|when|where|how|is|are|does|do|tell|show|find|"
                   r"check|look|read|give|get|say)\b|\b(what|what's|whats|which|who|when|where|how much|how many|"
                   r"tell me|let me know|find out|look up|read|check|show me)\b", re.IGNORECASE)
SYNONYMS = {"remove": "delete", "erase": "delete", "trash": "delete", "discard": "delete", "ring": "call",
            "dial": "call", "sms": "message", "text": "message", "msg": "message", "modify": "edit",
            "change": "edit", "alter": "edit", "amend": "edit", "create": "add", "new": "add", "toggle": "switch",
            "mode": "theme", "respond": "reply", "answer": "reply", "transfer": "transfer", "send": "send",
            "wake": "alarm", "rid": "delete", "+": "add", "write": "add", "compose": "add",
            "rename": "edit"}
"""Everyday words for what a screen's buttons say (an app says Delete where a person says remove)."""
CHATTER = frozenset("""open go use using launch tap press click please want need get show find look tell give let know
app apps phone's my screen thing turn on off enable disable activate deactivate set make put do bring down
up""".split())
"""Words that say how to ask, not what: they never pick a target (``open`` is not "opening hours")."""
QUIET = frozenset(tokenize("""what what's whats which who whom whose when where why how is are was were does did can
could would will should say says saying titled named called labelled labeled"""))
"""Words of a question or of a value's lead-in: not a sign that the goal is about something the memories lack."""
_ENDS = r"(?:that|which|with|and|saying|says|to|for|at|on|in|now|please|then|from)"
_LEADS = re.compile(r"\b(titled|named|called|labell?ed)\s+(\"[^\"]+\"|'[^']+'|(?!" + _ENDS + r"\b)[^\s\"',.;:!?]+"
                    r"(?:\s+(?!" + _ENDS + r"\b)[^\s\"',.;:!?]+){0,3})", re.IGNORECASE)
"""``titled "Garden plan"``, ``named Library``, ``called gym``: a value for the field the lead word names (Title,
Name, Label), up to four words unquoted, ending before a word that starts another part of the goal."""
_LEAD_FIELDS = {"titl": ("titl", "name", "label"), "name": ("name", "titl", "label"), "call": ("name", "label", "titl"),
                "labe": ("label", "titl", "name")}
"""The fields a lead word fills, first choice first (a note's Title, a contact's Name, an alarm's Label)."""
_CREATE = re.compile(r"\b(a|an|new|another)\b", re.IGNORECASE)
"""``Set an alarm``, ``a new contact``: the goal makes something, so its route does not go through an existing
item of a list (``my alarm``, ``the note`` name one that exists)."""
_QUESTION = re.compile(r"^\s*(what|what's|whats|which|who|whose|when|where|how|is|are|do|does|can)\b|\?\s*$",
                       re.IGNORECASE)
"""A goal that asks rather than tells: answered on a screen, never carried to another app."""
_CARRY_VERBS = re.compile(r"\b(save|send|text|put|add|create|make|note|write|type|set|share|forward|paste|enter|store|"
                          r"message|email|jot|copy|fill|use)\b", re.IGNORECASE)
"""Verbs of the second half of a goal that carries a value to another app (``... and save it in a note``)."""
_NOT_VALUES = frozenset("""is the a an to my of in on at for and that which with from as by it titled named called
labelled labeled saying says""".split())
"""Words after a field's name that are not its value (``a note titled ...``, ``the PIN is ...``)."""
_APPEND = re.compile(r"\b(append|add\b.*\bto\b|at the end|to the end|also say)", re.IGNORECASE)
"""A goal that adds to what a field holds (``append "eggs" to my list``), rather than replacing it."""
_ON = re.compile(r"\b(on|enable|enabled|activate|start)\b", re.IGNORECASE)
_OFF = re.compile(r"\b(off|disable|disabled|deactivate|stop|turn off|switch off)\b", re.IGNORECASE)
_VALUE_LEAD = re.compile(r"\b(?:saying|says|that says|to say|with the text|with text|reading|:)\s+(.+?)\s*$",
                         re.IGNORECASE)
_FIELD_SHAPES = {"phone": ("phone", "digits"), "number": ("phone", "digits"), "time": ("time",),
                 "hh": ("time",), "amount": ("amount", "digits"), "name": ("name",), "email": ("email",),
                 "pin": ("digits",), "url": ("domain",), "address": ("domain", "email")}


@dataclass(frozen=True)
class _Labelled(Span):
    """A value the goal gives right after a field's name (``PIN 3133``, ``password is quarterly88``)."""

    label: str = ""
    lead: bool = False
    """Given after a lead word (``titled "Packing list"``): also the name of the item it titles."""


class _Kept(str):
    """The value read in one app and used in another, as a step names it (``the number you remembered``)."""

    what: str = ""
    shape = "kept"
    quoted = False

    def __new__(cls, what: str) -> _Kept:
        out = super().__new__(cls, f"the {what} you remembered")
        out.what = what
        return out

    @property
    def text(self) -> str:
        return str(self)


def _norm_label(label: str) -> str:
    return re.sub(r"\s*\(.*?\)\s*", " ", label).strip().casefold()


@dataclass(frozen=True)
class Target:
    """What the goal most likely means in a memory: an element to press or type into, or a screen to read."""

    memory: AppMemory
    state: StateMemo
    element: ElementMemo | None
    score: float
    words: tuple[str, ...] = ()
    launch: bool = False
    """The goal only names the app (``open Chrome``): the target is the app itself, on its launch screen."""

    def describe(self) -> str:
        where = f"{self.memory.app} › {self.state.title or self.state.id}"
        if self.launch:
            return f"{self.memory.app} (open it)"
        return f"{where} › {self.element.label or self.element.role}" if self.element else f"{where} (read it)"


@dataclass
class _Doc:
    memory: AppMemory
    state: StateMemo
    element: ElementMemo | None
    weights: dict[str, float] = field(default_factory=dict)

    def add(self, text: str, weight: float) -> None:
        words = _terms(text) + (["add"] if text.strip() == "+" else [])  # a "+" button adds
        for word in words + [SYNONYMS[w] for w in words if w in SYNONYMS]:
            self.weights[word] = max(self.weights.get(word, 0.0), weight)


_SHOWS = ((re.compile(r"^\+?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]?\d{4}$|^\d{3}-\d{4}$"), "phone number"),
          (re.compile(r"^[\w.+-]+@[\w-]+\.[\w.]+$"), "email address"),
          (re.compile(r"^-?\$\s?[\d,]+(\.\d\d)?$"), "amount money"))
"""What a text of a screen's shape is, in words a goal uses for it (a screen showing ``555-0101`` shows a phone
number)."""


def _terms(text: str) -> list[str]:
    """Words as recall compares them: the index's stems, without ``called`` (it names rather than calls)."""
    return tokenize(re.sub(r"\bcalled\b", " ", text, flags=re.IGNORECASE))


def _docs(memories: Iterable[AppMemory]) -> list[_Doc]:
    docs = []
    for memory in memories:
        by_id = {s.id: s for s in memory.states}
        for state in memory.states:
            read = _Doc(memory, state, None)
            read.add(state.title, 1.0)
            for text in state.texts:
                read.add(text, 0.9)
                for shown, words in _SHOWS:  # a screen showing 555-0101 shows a phone number
                    if shown.search(text):
                        read.add(words, 0.8)
            gate = [(st, e) for st, e in memory.route(state.id) if e.needs]  # a login on the way
            gates = [label for st, e in gate for label in (*e.needs, e.label, *st.texts)]
            for text in gates:
                read.add(text, 0.5)
            via = by_id[state.parent].elements[state.via] if state.parent in by_id and state.via is not None else None
            if via is not None and via.collection:  # the page of any item of the list ("Checking" or "Savings")
                for example in via.examples:
                    read.add(example, 0.8)
            docs.append(read)
            for element in state.elements:
                if element.role == "scroll" or (element.effect == "nothing" and not element.collection):
                    continue  # (an item of a list that changes nothing seen, such as a device to connect, stays)
                if element.label.casefold() in BACKWARD:
                    continue  # no goal asks to cancel its way back
                doc = _Doc(memory, state, element)
                doc.add(state.title, 0.4)
                for text in gates:
                    doc.add(text, 0.5)
                if element.collection:
                    doc.add(element.role, 0.3)
                    for example in (element.examples if element.role != "switch" else ()):
                        doc.add(example, 0.8)  # the items seen: "connect my Headphones" (not a list of options)
                else:
                    doc.add(element.label, 1.0)
                    doc.add(element.rid.replace("_", " "), 0.6)
                leads = by_id.get(element.leads_to or "")
                if leads is not None:
                    doc.add(leads.title, 0.8)
                    for text in leads.texts[:20]:
                        doc.add(text, 0.3)
                docs.append(doc)
    return docs


def recall(goal: str, memories: Iterable[AppMemory], k: int = 3, *, want: str | None = None,
           floor: float = MIN_SCORE, within_named: bool = True, without: Iterable[str] = ()) -> list[Target]:
    """The ``k`` likeliest targets of ``goal`` in ``memories``, best first (empty: nothing fits well).

    ``want``: ``read`` (only screens to read, as if the goal asked a question) or ``act`` (only elements); by
    default what the goal asks. ``floor``: the least score kept. ``within_named``: an app the goal names keeps
    the search inside it. ``without``: words of the goal left out (those another target already explains)."""
    memories = list(memories)
    named = [m for m in memories if _names_app(goal, m)]
    pool = (named if within_named else []) or memories
    docs = _docs(pool)
    if not docs:
        return []
    by_state = {(m.package, s.id): s for m in pool for s in m.states}
    app_words = {w for m in named for w in _terms(m.app)} if within_named else set()
    frequency = Counter(w for d in docs for w in d.weights)
    # the goal's words that the memories know: the rest are values (names, messages, times) or chatter; a
    # number or a quoted text is a value, never a word of what to press ("22:30" is no link to "$2,230.00")
    asked = QUOTED.sub(" ", _LEADS.sub(" ", goal))  # "titled X" names a value, not a target
    said = _VALUE_LEAD.search(asked)  # nor does "that says remember the garden"
    asked = asked[:said.start(1)] if said is not None else asked
    for v in spans(asked, IMPERATIVES):  # nor is an address, a number or a time a word of what to press
        if v.shape in ("email", "phone", "domain", "amount", "time", "digits", "card"):
            asked = asked.replace(v.text, " ")
    words = [w for w in _terms(asked) if w not in CHATTER and not any(c.isdigit() for c in w)]
    words = [_known(w, frequency) for w in words]
    words += [SYNONYMS[w] for w in words if w in SYNONYMS]
    left_out = set(without)
    goal_words = [w for w in dict.fromkeys(words) if w not in app_words and w in frequency and w not in left_out]
    if not goal_words:
        if len(named) == 1 and all(w in app_words for w in words) and not _READ.search(goal):
            launch = next((st for st in named[0].states if st.parent is None), None)
            if launch is not None:  # "open Chrome": the app is the target
                return [Target(named[0], launch, None, 1.0, tuple(sorted(app_words)), launch=True)]
        return _app_as_word(goal, memories, k, want, floor, without) if app_words else []
    idf = {w: math.log(1 + len(docs) / (1 + frequency[w])) for w in goal_words}
    # a word that is neither a value nor known to any memory says the goal is about something else
    found = spans(goal, _NOT_NAMES)
    value_words = {w for v in found for w in _terms(v.text)}
    vocabulary = {w for m in pool for st in m.states for e in st.elements for w in _terms(e.label)}
    strange = {w for w in words if w not in frequency and w not in value_words and w not in app_words
               and w not in SYNONYMS and w not in QUIET and w not in vocabulary}
    total = (sum(idf.values()) + 0.5 * math.log(1 + len(docs)) * len(strange)) or 1.0
    reading = want == "read" or (want is None and (bool(_READ.search(goal)) or goal.rstrip().endswith("?")))
    named_thing = not left_out and any(v.shape == "name" and not any(w in frequency for w in _terms(v.text))
                                       for v in found)  # (with words left out, the name is the other target's)
    switching = bool(_ON.search(goal) or _OFF.search(goal))
    creating = _creating(goal)
    changing = not creating and bool({"edit", "delete"} & set(words))
    lowered = goal.casefold()
    scored = []
    for d in docs:
        if (d.element is None and not reading) or (d.element is not None and want == "read"):
            continue
        hit = [w for w in goal_words if w in d.weights]
        if not any(d.weights[w] >= 0.8 for w in hit):
            continue  # a word in passing (a caption, a page it leads to) is not enough to go there
        way = _way(d.memory, d.state.id, creating)
        around = _around(d, way, by_state)
        weights = {w: max(d.weights.get(w, 0.0), around.get(w, 0.0)) for w in goal_words}
        hit = [w for w in goal_words if weights[w] > 0]
        score = sum(idf[w] * weights[w] for w in hit) / total
        if len(hit) == 1 and len(goal_words) == 1:
            score *= 0.8  # one word of evidence
        listed = any(e.collection for _, e in way) or bool(d.element and d.element.collection)
        if named_thing and listed:
            score += 0.15  # a name the memories do not know is an item of some list: a contact, a note
        elif named_thing and reading and d.element is None:
            score -= 0.15  # what is read about a named contact or note is on its page, not on a page of its own
        if any(_names_example(lowered, e) for _, e in way):
            score += 0.15  # the goal names an item the memory saw in a list on the way ("my Savings balance")
        if creating and listed:
            score -= 0.1  # a new one is not made from an existing item's page
        elif changing and listed:
            score += 0.1  # what is edited or deleted exists: it is an item of a list
        if d.element is None and any(e.sensitive for _, e in way):
            score -= 0.3  # reading has no side effects: no call, send or payment on the way to what is read
        score -= 0.02 * len(way)
        if d.element is not None and d.element.effect in ("opens", "leaves_app") and d.element.leads_to is None:
            score -= 0.05
        if switching and d.element is not None and d.element.effect == "toggles" and hit:
            score += 0.1  # "turn X on": the thing that flips, not the page about it
        scored.append(Target(d.memory, d.state, d.element, round(score, 4), tuple(hit)))
    scored.sort(key=lambda t: -t.score)
    best = [t for t in scored if t.score >= floor]
    if not best and app_words:
        return _app_as_word(goal, memories, k, want, floor, without)
    return _by_values(goal, best)[:k]


def _app_as_word(goal: str, memories: list[AppMemory], k: int, want: str | None, floor: float,
                 without: Iterable[str]) -> list[Target]:
    """Recall again, the app's name a word of what to do in it (``send Ann a message saying ...``: nothing
    else in the goal names the Messages app's message field)."""
    named = [m for m in memories if _names_app(goal, m)]
    words = {w for m in named for w in _terms(m.app)}
    if len(named) != 1 or not words:
        return []
    return recall(goal, named, k, want=want, floor=floor, within_named=False, without=without)


_FIELD_WORDS = {"phone": "number", "hh": "time", "pin": "code", "amount": "money", "email": "address"}
"""What a goal calls the value a field takes, besides the field's own name (a Phone field takes a number)."""


def _around(doc: _Doc, way: list[tuple[StateMemo, ElementMemo]],
            by_state: dict[tuple[str, str], StateMemo]) -> dict[str, float]:
    """The words a goal may use for the rest of a target's route, at a lower weight than the target's own: the
    buttons pressed on the way there, and the fields of the form it is in or opens (the goal's other values go
    in them: "with number 555-3785 and email ...")."""
    out: dict[str, float] = {}

    def add(text: str, weight: float) -> None:
        for w in _terms(text):
            out[w] = max(out.get(w, 0.0), weight)
            if w in _FIELD_WORDS:
                out[_FIELD_WORDS[w]] = max(out.get(_FIELD_WORDS[w], 0.0), weight)

    for _, e in way:
        if not e.collection:
            add(e.label, 0.5)
    if doc.element is not None:
        forms = [doc.state, by_state.get((doc.memory.package, doc.element.leads_to or ""))]
        for state in forms:
            for e in (state.elements if state is not None else []):
                if e.role == "field":
                    add(_norm_label(e.label), 0.6)
    return out


def _creating(goal: str) -> bool:
    """Whether the goal makes something new (:data:`_CREATE`, outside quoted text)."""
    return bool(_CREATE.search(QUOTED.sub(" ", goal)))


def _says(text: str, phrase: str) -> re.Match[str] | None:
    """Where lower-cased ``text`` says ``phrase`` as whole words, in any case."""
    return re.search(rf"(?<!\w){re.escape(phrase.casefold())}(?!\w)", text)


def _known(word: str, frequency: Counter) -> str:
    """A goal's word as the memories spell it, where only its ending differs (``titled`` → ``title``)."""
    if word in frequency or len(word) < 4:
        return word
    near = [k for k in frequency if len(k) >= 4 and abs(len(k) - len(word)) <= 2
            and (k.startswith(word) or word.startswith(k))]
    return min(near, key=lambda k: (abs(len(k) - len(word)), k)) if len(near) == 1 else word


def _names_example(goal: str, element: ElementMemo) -> bool:
    return element.collection and any(
        len(x) >= 3 and _says(goal, x) for x in element.examples)


def _way(memory: AppMemory, sid: str, creating: bool = False) -> list[tuple[StateMemo, ElementMemo]]:
    """The presses from the launch screen to ``sid``: the route exploration found first, or, for a goal that
    makes something new, the shortest one that passes through no item of a list (the alarm editor that
    "Add alarm" opens rather than an existing alarm's)."""
    way = memory.route(sid)
    if not creating or not any(e.collection for _, e in way):
        return way
    launch = next((s for s in memory.states if s.parent is None), None)
    if launch is None:
        return way
    by_id = {s.id: s for s in memory.states}
    paths: dict[str, list[tuple[StateMemo, ElementMemo]]] = {launch.id: []}
    frontier = [launch.id]
    while frontier:
        nxt = []
        for state_id in frontier:
            state = by_id[state_id]
            for e in state.elements:
                if e.collection or e.effect != "opens" or e.leads_to not in by_id or e.leads_to in paths:
                    continue
                paths[e.leads_to] = paths[state_id] + [(state, e)]
                nxt.append(e.leads_to)
        frontier = nxt
    return paths.get(sid, way)


CLOSE = 0.2
"""Targets within this of the best are ordered by the values their routes place (more than a name's bonus for
going through a list, so that a list that lacks the name does not win over a form that takes it)."""


def _by_values(goal: str, targets: list[Target]) -> list[Target]:
    """Targets close in score, reordered by how much of the goal's values their routes place (a message to a
    new name goes where there is a field for the name)."""
    if len(targets) < 2:
        return targets
    top = targets[0].score
    app = targets[0].memory.app
    words = {SYNONYMS.get(w, w) for w in _terms(QUOTED.sub(" ", goal))}
    changing = not _creating(goal) and bool({"edit", "delete"} & words)

    def placed(t: Target) -> float:
        if t.launch or t.element is None or t.score < top - CLOSE or t.memory.app != app:
            return 0.0  # (other ways in the same app; never another app for its values)
        values = _values(goal, t.memory)
        if not values:
            return 0.0
        text = " ".join(line for line, _ in _route_lines(goal, t))
        seen = {x.casefold() for st in t.memory.states for e in st.elements for x in e.examples}
        if changing:  # what is edited or deleted is in its list, seen while exploring or not
            seen |= {v.text.casefold() for v in values}
        # a name typed where there is a field for it counts; one looked for in a list, only if the list has it
        return sum(0.0 if f'"{v.text}"' not in text else 0.5 if f'"{v.text}" in the list' in text
                   and v.text.casefold() not in seen else 1.0 for v in values) / len(values)

    if targets[0].element is None or top - targets[1].score > CLOSE:
        return targets  # (a question is answered on a screen, not by where values go)
    return sorted(targets, key=lambda t: (-placed(t), -t.score))


def _names_app(goal: str, memory: AppMemory) -> bool:
    """Whether the goal names the app by its label, as a word (``settings``, ``the Setting app``; not ``set``,
    which a stem of "Settings" would also match)."""
    label = memory.app.strip().rstrip("sS") if len(memory.app.strip()) > 3 else memory.app.strip()
    return bool(label) and re.search(rf"(?<![\w-]){re.escape(label)}s?(?![\w-])", goal, re.IGNORECASE) is not None


# ---------------------------------------------------------------- routes as steps


def route_procedure(goal: str, target: Target) -> Match:
    """The steps that reach ``target`` from the app's launch screen and do what the goal asks there, as a
    procedure the agent follows like a written one (named ``memory-APP``)."""
    memory = target.memory
    lines: list[tuple[str, str | None]] = [(f"Open the {memory.app} app.", None)]
    if target.launch:
        lines.append((f"Finish when the {memory.app} app is on screen.", None))
    else:
        lines.extend(_route_lines(goal, target))
    steps = tuple(SopStep(number=n, text=text[:200], screen=screen)
                  for n, (text, screen) in enumerate(lines[:40], start=1))
    sop = Sop(name=f"{ROUTE_PREFIX}{_slug(memory.app)}",
              description=f"A route through {memory.app} from its memory to {target.describe()}",
              apps=(memory.app, memory.package), phrasings=(), steps=steps)
    return Match(sop=sop, score=target.score)


_WHAT = re.compile(r"\b(?:verification )?(code|pin|phone number|number|balance|amount|price|total|time|email address|"
                   r"email|address)\b", re.IGNORECASE)
"""What a goal may ask to read in one app and use in another (the words :mod:`edgepilot.sop.carry` knows)."""


ROUTE_OVER = 0.5
"""The least route score at which a route in other apps wins over the written procedure understood for a goal."""
LAUNCHERS = frozenset(("home", "com.android.launcher3", "launcher"))
"""Apps of a procedure that opens any app (``system-open-app``): every route's app fits it."""


def overrides(procedure: Match, route: Match) -> bool:
    """Whether the memory's route should be followed instead of the written procedure the goal was understood
    to ask for: the route goes to an app the procedure never opens, and fits the goal well (at least
    :data:`ROUTE_OVER`). A procedure for another kind of task, forced onto a goal nobody wrote one for ("delete
    the contact ..." understood as the Clock's delete-alarm procedure), names other apps than the screens the
    goal's words lead to. Measured leaving one train kind's procedure out at a time (docs/memory.md)."""
    if route.score < ROUTE_OVER or not route.sop.name.startswith(ROUTE_PREFIX):
        return False
    opened = {a.casefold() for a in procedure.sop.apps}
    if opened & LAUNCHERS:
        return False
    pairs = list(zip(route.sop.apps[::2], route.sop.apps[1::2], strict=False))
    return any(name.casefold() not in opened and package.casefold() not in opened for name, package in pairs)


def two_app_route(goal: str, memories: Iterable[AppMemory]) -> Match | None:
    """A route for a goal that reads a value in one app and uses it in another ("look up Ann's number and save
    it in a note", "text Bo the code from BankAlert"): the route to the screen that shows the value, a step that
    reads and remembers it, then the route in the other app with the value where its shape fits. None unless
    the goal names what it carries (a number, a code, a balance...) and the best screen to read it and the best
    thing to do with it are in two apps, the second chosen by words the first does not explain."""
    if _QUESTION.search(goal) or not _CARRY_VERBS.search(QUOTED.sub(" ", goal)):
        return None  # a question is answered, not carried elsewhere; nothing is carried without a verb to do so
    m = _asked_for(goal)
    if m is None:
        return None
    memories = list(memories)
    wanted = set(wanted_shapes(f"Read the {m.group(1)} and remember it"))
    if any(v.shape in wanted and not v.quoted for v in spans(goal, _NOT_NAMES)):
        return None  # the goal gives the number itself
    what_words = set(_terms(m.group(0))) | {w for w in _terms(m.group(0)) for w in [_FIELD_WORDS.get(w, w)]}
    reads = [t for t in recall(goal, memories, k=6, want="read", floor=0.2, within_named=False)
             if what_words & set(t.words)]  # a screen that shows what is carried
    if not reads:
        return None
    read = reads[0]
    acts = [t for t in recall(goal, memories, k=8, want="act", floor=0.2, within_named=False, without=read.words)
            if t.memory.app != read.memory.app]
    if not acts:
        return None
    act = min(acts, key=lambda t: (not _names_app(goal, t.memory), -t.score))  # a note goes in the app it names
    what = m.group(1).casefold()
    everything = _values(goal, read.memory)
    # the item read about is the one named beside what is read ("Ann's number", "the number of Ann Lee")
    near = [v for v in everything if v.shape == "name" and (0 <= m.start() - v.end <= 3 or 0 <= v.start - m.end() <= 4)]
    about = near[:1]
    used = {v.text for v in about}
    lines: list[tuple[str, str | None]] = [(f"Open the {read.memory.app} app.", None)]
    lines += _route_lines(goal, read, values=about + [v for v in everything if v.shape == "labelled"], keep=what)
    rest = [v for v in _values(goal, act.memory) if v.text not in used]
    lines.append((f"Open the {act.memory.app} app.", None))
    lines += _route_lines(goal, act, values=rest + [_Kept(what)])  # type: ignore[list-item]
    steps = tuple(SopStep(number=n, text=text[:200], screen=screen)
                  for n, (text, screen) in enumerate(lines[:40], start=1))
    sop = Sop(name=f"{ROUTE_PREFIX}{_slug(read.memory.app)}-{_slug(act.memory.app)}",
              description=f"A route from {read.describe()} to {act.describe()}, carrying the {what}",
              apps=(read.memory.app, read.memory.package, act.memory.app, act.memory.package), phrasings=(),
              steps=steps)
    return Match(sop=sop, score=min(read.score, act.score))


def _route_lines(goal: str, target: Target, values: list[Span] | None = None,
                 keep: str | None = None) -> list[tuple[str, str | None]]:
    """The steps after opening the app: the presses along the route, then what the goal asks at its end
    (``values``: the goal's, by default; ``keep``: at a screen to read, read that and remember it)."""
    memory = target.memory
    values = _values(goal, memory) if values is None else values
    used: set[str] = set()
    want = "off" if _OFF.search(goal) else "on" if _ON.search(goal) else None
    lines: list[tuple[str, str | None]] = []
    way = _way(memory, target.state.id, _creating(goal))
    for state, element in way:
        lines.extend(_press(memory, state, element, values, used, want))
    end, state = target.element, target.state
    # a form of an item that exists holds its values: the goal's replace them, unless it says to add to them
    replace = ((any(e.collection for _, e in way) or bool(end and end.collection))
               and not _APPEND.search(QUOTED.sub(" ", goal)))
    asking = bool(_QUESTION.search(goal) or re.search(r"^\s*(show me|tell me|let me know|read me)\b", goal, re.I))
    if end is None and keep:
        lines.append((f"Read the {keep}{_where(state, keep)} and remember it.", _screen(memory, state)))
    elif end is None:
        screen = _screen(memory, state)
        lines.append((_read_step(goal, state), screen))
        lines.append((_answer_step(goal), screen))
    elif end.role == "field" and asking and _value_for(end, values, set(used)) is None:
        screen = _screen(memory, state)  # a question about a page is read off it, not typed in its address bar
        lines.append((_read_step(goal, state), screen))
        lines.append((_answer_step(goal), screen))
    elif end.role == "field":
        lines.extend(_fill_form(memory, state, end, values, used, replace=replace))
    elif _fields_with_values(state, values, used) and end.label.casefold() in SUBMIT:
        lines.extend(_fill_form(memory, state, None, values, used, submit=end, replace=replace))
    else:
        lines.extend(_press(memory, state, end, values, used, want, last=True))
        nxt = next((s for s in memory.states if s.id == end.leads_to), None)
        if want and (end.role == "switch" or end.effect == "toggles"):
            # a switch that shows a list when on ("Use Bluetooth" and its devices): the one the goal names
            choice = _choice(nxt or state, goal, values, used)
            if choice is not None:
                lines.append((f'Tap "{choice}".', _screen(memory, nxt or state)))
                lines.append(("Finish when the screen shows it is done.", None))
            else:
                lines.append((f"Finish when the switch shows {want}.", _screen(memory, state)))
        elif asking and nxt is not None and not keep:  # a question: the page the press opens answers it
            lines.append((_read_step(goal, nxt), _screen(memory, nxt)))
            lines.append((_answer_step(goal), _screen(memory, nxt)))
        else:
            lines.extend(_then(memory, nxt, end, values, used, want, goal, replace=replace))
    return lines


def _then(memory: AppMemory, nxt: StateMemo | None, pressed: ElementMemo, values: list[Span], used: set[str],
          want: str | None, goal_text: str, *, replace: bool = False) -> list[tuple[str, str | None]]:
    """What follows the goal's press on the screen it opens: a form to fill, a switch to set, the same
    button again to confirm (a "Delete?" dialog); else the run is done."""
    done = [("Finish when the screen shows it is done.", _screen(memory, nxt) if nxt is not None else None)]
    if nxt is None:
        return done
    if _fields_with_values(nxt, values, used):
        return _fill_form(memory, nxt, None, values, used, replace=replace)
    toggles = [e for e in nxt.elements if e.effect == "toggles" and not e.collection]
    if want and toggles:
        return _press(memory, nxt, toggles[0], values, used, want, last=True) + [
            (f"Finish when the switch shows {want}.", _screen(memory, nxt))]
    dialog = nxt.title.rstrip().endswith("?") or any(e.label.casefold() == "cancel" for e in nxt.elements)
    again = next((e for e in nxt.elements if e.role == "button" and e.label.casefold() == pressed.label.casefold()),
                 None) if dialog else None
    if again is not None:
        return [(f'Tap "{again.label}" to confirm.', _screen(memory, nxt)), _done(memory, again)]
    choice = _choice(nxt, goal_text, values, used)
    if choice is not None:
        return [(f'Tap "{choice}".', _screen(memory, nxt))] + done
    return done


def _choice(state: StateMemo, goal: str, values: Iterable[Span] = (), used: set[str] | None = None) -> str | None:
    """An option of ``state`` that the goal names word for word (``15 seconds`` on a list of timeouts), or an
    item of its list that the goal names and nothing else has used (a device, ``Headphones``)."""
    text = goal.casefold()
    for e in state.elements:
        if e.role == "field":
            continue
        for option in (e.examples if e.collection else [e.label]):
            if len(option) >= 3 and _says(text, option):
                return option
    if any(e.collection for e in state.elements):
        used = used if used is not None else set()
        label = {e.label.casefold() for e in state.elements}
        free = [v for v in values if v.shape == "name" and v.text not in used and v.text.casefold() not in label]
        if free:
            used.add(free[-1].text)
            return free[-1].text
    return None


def _screen(memory: AppMemory, state: StateMemo) -> str | None:
    """The title a step expects, unless it is data (the page of the contact or note the goal names)."""
    if state.parent is not None and state.via is not None:
        via = memory.state(state.parent).elements[state.via]
        if via.collection:
            return None
    return state.title or None


def _press(memory: AppMemory, state: StateMemo, element: ElementMemo, values: list[Span], used: set[str],
           want: str | None, *, last: bool = False) -> list[tuple[str, str | None]]:
    screen = _screen(memory, state)
    if element.collection and element.role != "switch":
        item = _item_value(element, values, used)
        if item is None:
            return [(f"Tap the {_kind(element)} the goal names.", screen)]
        return [(f'Tap "{item}" in the list.', screen)]
    if want and (element.role == "switch" or (last and element.effect == "toggles")):
        if element.collection:
            item = _item_value(element, values, used)
            name = f'"{item}"' if item else f"the {_kind(element)} the goal names"
            return [(f"Tap the switch of {name} if it is not already {want}.", screen)]
        row = next((e for e in state.elements if e.effect == "toggles" and e.role == "button"), None)
        if row is not None and row is not element:
            return [(f'Tap the switch next to "{row.label}" if it is not {want}.', screen)]
        return [(f'Tap the "{element.label}" switch if it is not already {want}.', screen)]
    scroll = "Scroll down and tap" if element.scrolls else "Tap"
    out = []
    for label in element.needs:
        f = next((e for e in state.elements if e.role == "field" and e.label == label), None)
        value = _value_for(f, values, used) if f is not None else None
        out.append((f'Type "{value}" in the "{label}" field.' if value else
                    f'Type the {label} the goal gives in the "{label}" field.', screen))
    return out + [(f'{scroll} "{element.label}".', screen)]


def _fill_form(memory: AppMemory, state: StateMemo, end: ElementMemo | None, values: list[Span], used: set[str],
               *, submit: ElementMemo | None = None, replace: bool = False) -> list[tuple[str, str | None]]:
    """Type the goal's values into the state's fields (the one aimed at first), then press its submit button;
    with ``replace``, a value replaces the text a field holds (the form of an item that exists)."""
    screen = _screen(memory, state)
    out = []
    fields = [e for e in state.elements if e.role == "field"]
    for f in ([end] if end is not None else []) + [f for f in fields if f is not end]:
        value = _value_for(f, values, used)
        if value is None:
            if f is end:
                out.append((f'Type the text the goal gives in the "{f.label}" field.', screen))
            continue
        said = value if isinstance(value, _Kept) else f'"{value}"'
        out.append((f'Replace the text in the "{f.label}" field with {said}.' if replace else
                    f'Type {said} in the "{f.label}" field.', screen))
    data = {x.casefold() for st in memory.states for e in st.elements if e.collection for x in e.examples}
    buttons = [e for e in state.elements if e.role == "button" and not e.collection and e.label.casefold() not in data]
    submit = submit or next((e for e in buttons if e.label.casefold() in SUBMIT), None)
    if submit is None:  # the one button that does not leave the form (a Wi-Fi dialog's Connect)
        doing = [e for e in buttons if e.label.casefold() not in DISMISS and e.effect != "leaves_app"]
        submit = doing[0] if len(doing) == 1 else None
    if submit is not None:
        out.append((f'Tap "{submit.label}".', screen))
        out.append(_done(memory, submit))
    elif out:  # the button that sends appears once there is text (a chat's Send); the chat stays
        out.append(('Tap "Send", or tap "Save", or tap "Done", or tap "OK".', screen))
        out.append(("Finish when the screen shows it is done.", screen))
    else:
        out.append(("Finish when the screen shows it is done.", None))
    return out


_ANSWER_SHAPES = (("amount", ("balance", "amount", "price", "total", "cost")), ("number", ("code", "pin")),
                  ("time", ("time",)))
"""What a question asks for, by the word for it, in the words a finish step names an answer's shape."""


def _read_step(goal: str, state: StateMemo) -> str:
    """The step that reads the answer: ``Read the balance under "Available balance".`` where the memory saw what
    the goal asks for labelled on the screen (the agent then reads the line the label points to, not any amount
    of the page), else ``Read the value the goal asks for on this screen.``"""
    m = _asked_for(goal)
    where = _where(state, m.group(1)) if m is not None else ""
    return f"Read the {m.group(1).casefold()}{where}." if where else "Read the value the goal asks for on this screen."


def _asked_for(goal: str) -> re.Match[str] | None:
    """Where the goal names what it reads (:data:`_WHAT`), not a value it gives by its name (``PIN 0714``)."""
    plain = QUOTED.sub(lambda q: " " * len(q.group(0)), goal)
    return next((m for m in _WHAT.finditer(plain) if not re.match(r"\s*[:=(]?\s*\d", plain[m.end():])), None)


def _where(state: StateMemo, what: str) -> str:
    """`` under "LABEL"`` (or `` above "LABEL"``) where ``state`` showed a text naming ``what`` beside a value of
    the shape ``what`` has (``Available balance`` above ``$2,418.35``); empty where it showed none."""
    wanted = set(wanted_shapes(f"Read the {what} and remember it"))
    names = set(_terms(what)) | {_FIELD_WORDS.get(w, w) for w in _terms(what)}
    texts = state.texts
    for i, text in enumerate(texts):
        if any(c.isdigit() for c in text) or not names & set(_terms(text)) or '"' in text:
            continue
        if i + 1 < len(texts) and shape(texts[i + 1]) in wanted:
            return f' under "{text}"'
        if i > 0 and shape(texts[i - 1]) in wanted:
            return f' above "{text}"'
    return ""


def _answer_step(goal: str) -> str:
    """The step that answers: ``Finish and answer with the amount.`` where the goal asks for a balance (the
    agent then offers only amounts on the screen, not the battery's "87%"), else ``... with that value.``"""
    words = set(re.findall(r"[a-z]+", QUOTED.sub(" ", goal).casefold()))
    said = next((kind for kind, names in _ANSWER_SHAPES if words & set(names)), None)
    return f"Finish and answer with the {said}." if said else "Finish and answer with that value."


def _done(memory: AppMemory, pressed: ElementMemo) -> tuple[str, str | None]:
    """The last step, on the screen the last press leads to where the memory knows it: a run back on the
    list after Save is done, not at the list's first step again."""
    lands = next((s for s in memory.states if s.id == pressed.leads_to), None)
    return ("Finish when the screen shows it is done.", _screen(memory, lands) if lands is not None else None)


def _fields_with_values(state: StateMemo, values: list[Span], used: set[str]) -> bool:
    return any(e.role == "field" for e in state.elements) and any(v.text not in used for v in values)


IMPERATIVES = frozenset("""
add answer append ask book buy call cancel change check clear close copy create delete disable dial edit email enable
find forward get give go join let look make mark message move note open pay phone play put read remind remove rename
reply save say search see send set share show start stop switch take tell text turn type update use write
""".split())
"""Verbs that start a request: a capitalised first word among them is not a name (``Find Alice Morgan``)."""
_NOT_NAMES = IMPERATIVES | frozenset("""what what's whats who who's where when which how is are can could would will
please the in on at my""".split())
"""First words that do not start a name (``What's Bruno Costa's number``, ``The Laundry alarm``)."""


def _values(goal: str, memory: AppMemory) -> list[Span]:
    app_words = set(_terms(memory.app))
    found = [s for s in spans(goal, _NOT_NAMES) if not set(_terms(s.text)) <= app_words]  # not "In Notes"
    labels = {_norm_label(e.label) for st in memory.states for e in st.elements if e.role == "field" and e.label}
    for label in sorted(labels, key=len, reverse=True):
        if not label:
            continue
        m = re.search(rf"\b{re.escape(label)}\b(\s+(?:is|was|should be|will be|of))?\s*([:=])?\s*"
                      r"(\"[^\"]+\"|[^\s,;.()]+(?:\.[^\s,;.()]+)*)", goal, re.IGNORECASE)
        if m is None:
            continue
        value = m.group(3)
        wanted = {s for w in re.findall(r"[a-z]+", label) for s in _FIELD_SHAPES.get(w, ())}
        # "PIN 3133", "password is quarterly88": a value by its field's name; not "a note titled ...", nor
        # "email address" (a value of the field's shape, where it has one)
        if value.casefold() not in _NOT_VALUES and (not wanted or shape(value.strip('"')) in wanted
                                                     or "digits" in wanted and value.isdigit()):
            found.insert(0, _Labelled(value.strip('"'), "labelled", m.start(3), m.end(3), label=label))
    for m in _LEADS.finditer(goal):  # "titled X" is for the Title field, "named X" for Name
        stems = _LEAD_FIELDS[m.group(1).casefold()[:4]]  # "called gym" on an alarm is its label
        label = next((lab for stem in stems for lab in sorted(labels) if lab.startswith(stem)), None)
        if label is not None and not any(isinstance(v, _Labelled) and v.label == label for v in found):
            value = m.group(2).strip("\"'")
            found = [v for v in found if v.text != value]
            found.insert(0, _Labelled(value, "labelled", m.start(2), m.end(2), label=label, lead=True))
    m = _VALUE_LEAD.search(goal)
    if m is not None and not any(s.quoted for s in found):
        text = m.group(1).strip().strip("\"'“”.")
        if text:
            found.append(Span(text, "text", m.start(1), m.end(1), quoted=True))
    return found + _named_in_lower_case(goal, memory, found)


def _named_in_lower_case(goal: str, memory: AppMemory, found: list[Span]) -> list[Span]:
    """Items a goal typed in lower case names ("delete my chores note", "delete contact vera zhou"): an item the
    memory saw in a list, else two to four words in a row that the memory does not know (a name it never saw),
    where the goal gives no other name or text."""
    text = goal.casefold()
    given = {v.text.casefold() for v in found}
    seen = [x for st in memory.states for e in st.elements if e.collection for x in e.examples]
    out = []
    for example in sorted(set(seen), key=len, reverse=True):
        m = _says(text, example)
        if len(example) >= 3 and m is not None and example.casefold() not in given \
                and not any(example.casefold() in g for g in given):
            out.append(Span(example, "name", m.start(), m.end()))
            given.add(example.casefold())
    if out or any(v.shape in ("name", "text") or v.quoted or isinstance(v, _Labelled) for v in found):
        return out
    known = {w for st in memory.states for w in _terms(" ".join([st.title, *st.texts]))} | {
        w for st in memory.states for e in st.elements for w in _terms(f"{e.label} {e.rid.replace('_', ' ')}")}
    run: list[re.Match[str]] = []
    best: list[re.Match[str]] = []
    for word in re.finditer(r"[a-z][a-z'-]*", text):
        terms = _terms(word.group(0))
        if terms and not any(t in known or t in CHATTER or t in QUIET or t in SYNONYMS for t in terms) \
                and word.group(0) not in _NOT_NAMES:
            run.append(word)
            continue
        best = run if len(run) > len(best) else best
        run = []
    best = run if len(run) > len(best) else best
    if 2 <= len(best) <= 4:
        return [Span(goal[best[0].start():best[-1].end()], "name", best[0].start(), best[-1].end())]
    return []


def _item_value(element: ElementMemo, values: list[Span], used: set[str]) -> str | None:
    """The list item the goal names: an example it names, else a name or quoted text it gives."""
    examples = {e.casefold(): e for e in element.examples}
    for v in values:
        if v.text.casefold() in examples and v.text not in used:
            used.add(v.text)
            return examples[v.text.casefold()]
    for v in values:
        if v.text not in used and (v.shape in ("name", "time") or v.quoted or getattr(v, "lead", False)):
            used.add(v.text)
            return v.text
    return None


def _value_for(f: ElementMemo, values: list[Span], used: set[str]) -> str | None:
    words = set(re.findall(r"[a-z]+", (f.label + " " + f.rid.replace("_", " ")).casefold()))
    shapes = {s for w in words for s in _FIELD_SHAPES.get(w, ())}
    kept = next((v for v in values if isinstance(v, _Kept) and v.text not in used), None)
    if kept is not None and f.label.casefold() not in ("name", "title") and (
            set(wanted_shapes(f"Read the {kept.what} and remember it")) & shapes
            or (not shapes and "search" not in words and not re.search(r"\.[a-z]{2,}", f.label))):
        used.add(kept.text)  # the value read in another app goes where its shape fits, else in the text field
        return kept
    for v in values:  # "the password is quarterly88", "PIN 3133": the value the goal gives by the field's name
        if v.text not in used and v.shape == "labelled" and v.label == _norm_label(f.label):
            used.add(v.text)
            return v.text
    if re.fullmatch(r"[\w.-]+\.[a-z]{2,}(/\S*)?", f.label):  # an address bar: only an address goes there
        pick = next((v for v in values if v.shape == "domain" and v.text not in used), None)
        if pick is not None:
            used.add(pick.text)
        return pick.text if pick else None
    free = [v for v in values if v.text not in used and not isinstance(v, _Kept)]
    pick = next((v for v in free if v.shape in shapes), None) if shapes else None
    if pick is None and not shapes:
        pick = next((v for v in free if v.quoted), None) or next(
            (v for v in free if v.shape in ("text", "name") and "search" not in words), None)
    if pick is None:
        return None
    used.add(pick.text)
    return pick.text


def _kind(element: ElementMemo) -> str:
    words = element.rid.replace("_", " ").strip()
    return f"{words} item" if words else "list item"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.casefold()).strip("-") or "app"
