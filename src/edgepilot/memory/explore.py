"""Exploring an app once: every state reached from its launch screen, every element tried (docs/memory.md).

The walk is breadth-first over states. To try an element the explorer brings the app back to its launch
screen (``restart``: on the virtual phone a factory reset, on a real phone the app closed and opened),
replays the presses that reach the element's state, presses it and looks: the same state with a switch
flipped is ``toggles``, the keyboard up is ``focuses``, another app in front is ``leaves_app``, another
screen is ``opens`` (a state found before, or a new one to walk). Replaying from the launch screen is slow
but sure: nothing depends on "back" doing what it should.

Screens are grouped into states by structure, not by their changing text: a state's signature is the set of
its interactive elements (class, id and label), where the label of a list item (an element whose id repeats
on the screen: a contact, an alarm, a note) and the text of a field count as data and are left out, and
digits are masked. A list is tried through its first item only; the others are recorded as examples. A
screen whose signature lies within a known state's (the same page scrolled, or with the keyboard up) is that
state.

What the policy would ask the user about (send, pay, delete, call...) is never pressed unless ``press_all``
(the virtual phone, which is reset after every try); such elements are recorded as present and unexplored,
with the reason. Fields are never typed into: a field is recorded as ``focuses``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edgepilot.actions import Swipe, Tap, Type
from edgepilot.controllers.base import Device
from edgepilot.errors import ActionError, AppMemoryError
from edgepilot.memory.model import AppMemory, ElementMemo, StateMemo, save
from edgepilot.perception.elements import id_words, in_status_bar, is_keyboard_package
from edgepilot.perception.types import Observation, UINode

Judge = Callable[[Observation, int], str]
"""Whether the policy would ask before pressing element ``i``: '' when not, else what it would ask about."""

MAX_SCROLLS = 4
NAV_LABELS = frozenset({"back", "home", "navigate up", "up", "recent apps", "overview"})


@dataclass
class Budget:
    """How long a walk may go on: presses and seconds, per app."""

    actions: int = 600
    seconds: float = 600.0
    states: int = 80


@dataclass
class Explorer:
    """Walks one app on ``device``; ``restart()`` must leave the app on its launch screen from a clean slate."""

    device: Device
    app: str
    package: str
    restart: Callable[[], None]
    judge: Judge = lambda _obs, _i: ""
    press_all: bool = False
    budget: Budget = field(default_factory=Budget)
    progress: Callable[[str], None] = lambda _msg: None
    checkpoint: Callable[[AppMemory], None] | None = None
    app_version: str = ""
    device_name: str = ""
    fills: dict[str, str] = field(default_factory=dict)
    """Text to type into fields by their label before pressing a state's buttons (``{"PIN": "1234"}`` to get past
    a login on the virtual phone); the caller allows it only where the phone is not a person's."""
    _signatures: dict[str, frozenset[str]] = field(default_factory=dict, init=False)
    _actions: int = field(default=0, init=False)
    _started: float = field(default=0.0, init=False)

    # ------------------------------------------------------------ the walk

    def run(self, resume: AppMemory | None = None) -> AppMemory:
        """Explore until every state is walked or the budget runs out; ``resume`` continues a cut-short walk.

        Raises:
            DeviceError: the device went away (what was learned so far went to ``checkpoint``).
            AppMemoryError: the app does not open, or ``resume`` is of another app.
        """
        self._started = time.monotonic()
        if resume is not None:
            if resume.package != self.package:
                raise AppMemoryError(f"cannot resume: the partial memory is of {resume.package}, not {self.package}")
            memory = resume.model_copy(deep=True)
            memory.complete = False
            self._actions = memory.actions
        else:
            kind = getattr(getattr(self.device, "info", None), "kind", "android")
            memory = AppMemory(app=self.app, package=self.package, app_version=self.app_version, kind=kind,
                               device=self.device_name)
        obs = self._restart()
        if obs.package != self.package:
            raise AppMemoryError(f"{self.app} did not come to the front (the screen shows {obs.package or 'nothing'})")
        if not memory.states:
            memory.states.append(self._new_state(memory, obs, None, None))
        else:
            self._rebuild_signatures(memory)
        while True:
            todo = [s for s in memory.states if not s.explored]
            if not todo:
                memory.complete = True
                break
            if self._spent():
                self.progress(f"budget spent after {self._actions} presses: {len(todo)} state(s) left unexplored")
                break
            state = todo[0]
            self._walk(memory, state)
            memory.actions = self._actions
            if self.checkpoint is not None:
                self.checkpoint(memory)
        memory.actions = self._actions
        memory.seconds = round(time.monotonic() - self._started, 1)
        memory.explored_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return memory

    def _spent(self) -> bool:
        return (self._actions >= self.budget.actions
                or time.monotonic() - self._started >= self.budget.seconds)

    def _walk(self, memory: AppMemory, state: StateMemo) -> None:
        """Scan ``state`` (scrolling its lists), then press each element it has not tried yet."""
        obs = self._goto(memory, state)
        if obs is None:
            state.explored = True
            self.progress(f"{state.id} could not be reached again; left as found")
            return
        if not state.elements:
            state.elements.extend(self._scan(obs, state))
            self._signatures[state.id] = self._signatures[state.id] | frozenset(
                _item(e) for e in state.elements)
            state.signature = sorted(self._signatures[state.id])
        self.progress(f"{state.id} {state.title or '(untitled)'}: {len(state.elements)} elements "
                      f"({len(memory.states)} states, {self._actions} presses)")
        for k, element in enumerate(state.elements):
            if element.effect != "unexplored" or element.sensitive and not self.press_all:
                continue
            if self._spent():
                return
            if element.role == "field":
                element.effect = "focuses"
                continue
            if element.role == "scroll":
                element.effect = "nothing"
                continue
            self._try(memory, state, k, element)
            if element.collection and len(element.examples) >= 2 and not self._spent():
                self._split_if_menu(memory, state, k, element)
        state.explored = True

    def _split_if_menu(self, memory: AppMemory, state: StateMemo, k: int, element: ElementMemo) -> None:
        """A list whose items lead to different screens (bookmarks, a settings menu) is a menu, not data: its
        items become elements of their own, each tried."""
        probe = element.model_copy(update={"label": element.examples[1], "examples": [element.examples[1]],
                                           "effect": "unexplored", "leads_to": None, "needs": []})
        known = len(memory.states)
        state.elements.append(probe)
        self._try(memory, state, len(state.elements) - 1, probe)
        state.elements.pop()
        same = probe.effect == element.effect and (
            probe.leads_to == element.leads_to
            or (probe.leads_to is not None and element.leads_to is not None
                and _alike(self._signatures[probe.leads_to], self._signatures[element.leads_to])))
        if same:  # like screens for like items: the list is data; the probe's new state is the first's
            for extra in memory.states[known:]:
                self._signatures.pop(extra.id, None)
            del memory.states[known:]
            return
        first = element.examples[0]
        state.elements[k] = element.model_copy(update={"label": first, "collection": False, "examples": []})
        for example in element.examples[1:]:
            single = element.model_copy(update={"label": example, "collection": False, "examples": [],
                                                "effect": "unexplored", "leads_to": None, "needs": []})
            if example == element.examples[1]:
                single = single.model_copy(update={"effect": probe.effect, "leads_to": probe.leads_to})
            state.elements.append(single)

    def _try(self, memory: AppMemory, state: StateMemo, k: int, element: ElementMemo) -> None:
        before = self._goto(memory, state)
        if before is None:
            return
        before = self._scroll_to(before, element.scrolls)
        if self._fill(before, state, element):
            before = self.device.observe()
        finder = _finder_of(element)
        index = self._locate(before, finder)
        extra = 0
        while index is None and element.scrolls + extra < MAX_SCROLLS:
            extra += 1
            before = self._scroll_to(before, 1)
            index = self._locate(before, finder)
        if index is None:
            element.effect = "nothing"
            return
        element.scrolls += extra
        self._press(Tap(target=index))
        after = self.device.observe()
        if after.package != self.package:
            if not is_keyboard_package(after.package):
                element.effect = "leaves_app"
                return
        signature = _signature(after, self.package)
        same = self._match(signature, only=state.id)
        if same == state.id:
            if _checks(after, self.package) != _checks(before, self.package):
                element.effect = "toggles"
            elif after.keyboard_shown and not before.keyboard_shown:
                element.effect = "focuses"
            else:
                element.effect = "nothing"
            return
        target = self._match(signature)
        if target is None:
            if len(memory.states) >= self.budget.states:
                element.effect = "unexplored"
                element.sensitive = element.sensitive or "the state budget ran out"
                return
            new = self._new_state(memory, after, state.id, k)
            memory.states.append(new)
            target = new.id
        element.effect = "opens"
        element.leads_to = target

    # ------------------------------------------------------------ moving about

    def _restart(self) -> Observation:
        self.restart()
        self._actions += 1
        return self.device.observe()

    def _press(self, action) -> None:
        self._actions += 1
        try:
            self.device.act(action)
        except ActionError:
            pass

    def _goto(self, memory: AppMemory, state: StateMemo) -> Observation | None:
        """Back to the launch screen, then the presses that reach ``state``; None when the way is gone."""
        obs = self._restart()
        for parent, element in memory.route(state.id):
            obs = self._scroll_to(obs, element.scrolls)
            if element.needs and self._fill(obs, parent, element):
                obs = self.device.observe()
            index = self._locate(obs, _finder_of(element))
            if index is None:
                return None
            self._press(Tap(target=index))
            obs = self.device.observe()
        return obs

    def _fill(self, obs: Observation, state: StateMemo, element: ElementMemo) -> bool:
        """Type the fills into the state's fields before pressing ``element``; whether any was typed."""
        if not self.fills or element.role == "field":
            return False
        typed = []
        for f in state.elements:
            value = self.fills.get(f.label) if f.role == "field" else None
            index = self._locate(obs, _finder_of(f)) if value is not None else None
            if index is None:
                continue
            self._actions += 1
            self.device.act(Type(text=value, target=index, clear=True))
            obs = self.device.observe()
            typed.append(f.label)
        if typed and element.effect == "unexplored":
            element.needs = typed
        return bool(typed)

    def _scroll_to(self, obs: Observation, scrolls: int) -> Observation:
        """Swipe the screen's first list (else the screen) up ``scrolls`` times."""
        for _ in range(scrolls):
            self._press(Swipe(direction="up", target=_first_list(obs, self.package)))
            obs = self.device.observe()
        return obs

    def _locate(self, obs: Observation, finder: tuple[str, str, str]) -> int | None:
        """The element ``finder`` (class, id, label as remembered) names on ``obs``; a field, or an element
        remembered without a label, by class and id alone."""
        cls, rid, label = finder
        best = None
        for i, n in enumerate(obs.elements):
            if n.package != self.package or n.short_class != cls or _rid(n) != rid:
                continue
            seen = _first_line(_label_of(n))
            if label in (seen, seen[:200]):  # a memo keeps 200 characters of a label
                return i
            if best is None and (n.editable or not label):
                best = i
        return best

    def _scan(self, obs: Observation, state: StateMemo) -> list[ElementMemo]:
        """The state's elements, scrolling down its first list until nothing new comes."""
        found: dict[str, ElementMemo] = {}
        for scrolls in range(MAX_SCROLLS + 1):
            new = 0
            repeated = _repeated(obs, self.package)
            for i, n in _elements(obs, self.package):
                memo = self._memo(obs, i, n, scrolls, repeated)
                key = _item(memo)
                if key not in found:
                    found[key] = memo
                    new += 1
                elif memo.collection and len(found[key].examples) < 12 and memo.examples \
                        and memo.examples[0] not in found[key].examples:
                    found[key].examples.append(memo.examples[0])
            if _first_list(obs, self.package) is None or scrolls == MAX_SCROLLS or (scrolls and not new):
                break
            after = self._scroll_to(obs, 1)
            if _signature(after, self.package) == _signature(obs, self.package) and _texts(after) == _texts(obs):
                break
            obs = after
            state.texts = _merge(state.texts, _texts(obs))
        return list(found.values())

    def _memo(self, obs: Observation, i: int, n: UINode, scrolls: int, repeated: set[tuple[str, str]]
              ) -> ElementMemo:
        collection = _in_collection(n, repeated)
        label = _first_line(_label_of(n))
        role = ("field" if n.editable else "switch" if n.checkable else "scroll" if n.scrollable and not n.clickable
                else "item" if collection else "button")
        sensitive = self.judge(obs, i) if role in ("button", "item", "switch") else ""
        return ElementMemo(label=label[:200], role=role, cls=n.short_class, rid=_rid(n), collection=collection,
                           examples=[label] if collection and label else [], scrolls=scrolls,
                           sensitive=sensitive[:200])

    # ------------------------------------------------------------ states

    def _new_state(self, memory: AppMemory, obs: Observation, parent: str | None, via: int | None) -> StateMemo:
        sid = f"s{len(memory.states)}"
        signature = _signature(obs, self.package)
        self._signatures[sid] = signature
        return StateMemo(id=sid, signature=sorted(signature), title=_title(obs, self.package), texts=_texts(obs),
                         parent=parent, via=via)

    def _rebuild_signatures(self, memory: AppMemory) -> None:
        for s in memory.states:
            self._signatures[s.id] = frozenset(s.signature) | frozenset(_item(e) for e in s.elements)

    def _match(self, signature: frozenset[str], only: str | None = None) -> str | None:
        """The known state a screen is: the one whose signature holds most of it (at least 80%)."""
        best, best_score = None, 0.0
        for sid, known in self._signatures.items():
            if only is not None and sid != only:
                continue
            if not signature or not known:
                score = 1.0 if signature == known else 0.0
            else:
                score = len(signature & known) / len(signature)
                if score >= 0.8 and len(signature & known) / len(known) < 0.3:
                    score = 0.0  # a small screen inside a big one is a dialog, not the page
            if score >= 0.8 and score > best_score:
                best, best_score = sid, score
        return best


# ---------------------------------------------------------------- screens in words


def _rid(n: UINode) -> str:
    return n.resource_id.rsplit("/", 1)[-1]


def _first_line(text: str) -> str:
    return " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""


_STATE_WORDS = frozenset({"on", "off", "checked", "not checked", "unchecked", "selected", "true", "false"})


def _label_of(n: UINode) -> str:
    """What the element is called, without what it holds: a field by its hint, a switch not by ON/OFF."""
    if n.editable:
        return n.hint or id_words(n.resource_id) or n.label
    if n.checkable and n.text.strip().casefold() in _STATE_WORDS:
        return n.content_desc or n.name or id_words(n.resource_id) or "switch"
    return n.label


def _mask(label: str) -> str:
    return re.sub(r"\d+", "#", label.casefold())


def _elements(obs: Observation, package: str) -> list[tuple[int, UINode]]:
    """The app's elements a person can act on: every field, and the rest outside the status bar that are not
    the system's navigation (back, home)."""
    return [(i, n) for i, n in enumerate(obs.elements)
            if n.package == package and (n.editable or (n.interactive and not in_status_bar(n, obs.screen_height)
                                                        and _first_line(n.label).casefold() not in NAV_LABELS))]


def _first_list(obs: Observation, package: str) -> int | None:
    return next((i for i, n in enumerate(obs.elements) if n.scrollable and n.package == package), None)


def _repeated(obs: Observation, package: str) -> set[tuple[str, str]]:
    """The (class, id) pairs that two or more of the app's elements share: the items of a list."""
    seen: set[tuple[str, str]] = set()
    twice: set[tuple[str, str]] = set()
    for _, n in _elements(obs, package):
        key = (n.short_class, _rid(n))
        (twice if key in seen else seen).add(key)
    return twice


def _in_collection(n: UINode, repeated: set[tuple[str, str]]) -> bool:
    """Whether ``n`` is one of a list of like items (its id repeats on the screen); fields never are."""
    return bool(_rid(n)) and not n.editable and (n.short_class, _rid(n)) in repeated


def _item(e: ElementMemo) -> str:
    return f"{e.cls}/{e.rid}/{'*' if e.collection or e.role == 'field' else _mask(e.label)}"


def _signature(obs: Observation, package: str) -> frozenset[str]:
    out = set()
    repeated = _repeated(obs, package)
    for _, n in _elements(obs, package):
        label = "*" if n.editable or _in_collection(n, repeated) else _mask(_first_line(_label_of(n)))
        out.add(f"{n.short_class}/{_rid(n)}/{label}")
    out.add("title:" + _mask(_title(obs, package)))
    if obs.package != package:
        out.add(f"app:{obs.package}")
    return frozenset(out)


def _alike(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two screens are pages of like items (two contacts' pages): their titles aside, they share at
    least half their elements (a menu's items lead to pages that share little more than the toolbar)."""
    a = frozenset(x for x in a if not x.startswith("title:"))
    b = frozenset(x for x in b if not x.startswith("title:"))
    return a == b or len(a & b) / max(1, len(a | b)) >= 0.5


def _checks(obs: Observation, package: str) -> tuple[bool, ...]:
    return tuple(n.checked for _, n in _elements(obs, package) if n.checkable)


def _texts(obs: Observation) -> list[str]:
    out: list[str] = []
    for n in obs.elements:
        if n.package != obs.package or n.interactive or in_status_bar(n, obs.screen_height):
            continue
        for line in n.label.splitlines():
            line = " ".join(line.split())[:200]
            if line and line not in out:
                out.append(line)
    return out[:60]


def _merge(a: list[str], b: list[str]) -> list[str]:
    return (a + [x for x in b if x not in a])[:60]


def _title(obs: Observation, package: str) -> str:
    for n in obs.elements:
        if n.package == package and "title" in _rid(n) and n.text.strip():
            return _first_line(n.text)[:200]
    texts = [n for n in obs.elements if n.package == package and not n.interactive and n.text.strip()
             and not in_status_bar(n, obs.screen_height)]
    return _first_line(min(texts, key=lambda n: n.bounds.top).text)[:200] if texts else ""


def _finder_of(e: ElementMemo) -> tuple[str, str, str]:
    return (e.cls, e.rid, e.examples[0] if e.collection and e.examples else e.label)


def checkpoint_to(folder: Path) -> Callable[[AppMemory], None]:
    """A checkpoint that saves the partial memory (``complete: false``) where the finished one will go."""
    return lambda memory: save(memory, folder)


__all__ = ["Budget", "Explorer", "Judge", "checkpoint_to"]
