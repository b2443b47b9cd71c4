"""The three roles of the agent (Mobile-Agent-v2): planner, decider, reflector.

A role is a prompt file plus a pydantic output schema, run through a
:class:`ModelBackend`. The backend constrains the answer with a grammar built
from the schema, so a constrained answer always parses unless it was cut off
by ``max_tokens``; every string field is bounded so that it cannot be.

Prompts are data files (``src/edgepilot/agent/prompts/*.txt``, or a folder of overrides
in ``$EDGEPILOT_PROMPTS``) with ``$name`` placeholders, rendered strictly: a
placeholder without a value, or a value without a placeholder, is an error.
Every role's user message starts with the same context (task, then screen)
after the same system prompt, so llama.cpp reuses the cached prefix across
the roles of one step.
"""

from __future__ import annotations

import copy
import json
import os
import re
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgepilot.actions import Action, DeviceKind, Type, action_json_schema, parse_action
from edgepilot.errors import ActionError, ConfigError
from edgepilot.models.base import Message, ModelBackend, StopCheck
from edgepilot.perception.types import Observation
from edgepilot.sop.screen import Screen, find
from edgepilot.sop.values import shape, values_in

# ---------------------------------------------------------------- prompts


def _prompt_folder() -> Path | None:
    folder = os.environ.get("EDGEPILOT_PROMPTS")
    return Path(folder) if folder else None


@lru_cache(maxsize=64)
def _load(name: str, folder: Path | None) -> str:
    if folder is not None and (folder / f"{name}.txt").is_file():
        return (folder / f"{name}.txt").read_text(encoding="utf-8")
    try:
        return (resources.files("edgepilot.agent") / "prompts" / f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"no prompt file {name}.txt in edgepilot's prompts; reinstall edgepilot") from exc


def render(name: str, **values: Any) -> str:
    """Fill the prompt file ``name`` with ``values``, strictly.

    Raises:
        ConfigError: a placeholder has no value, a value has no placeholder,
            or the file has a malformed ``$`` (write ``$$`` for a dollar sign).
    """
    template = string.Template(_load(name, _prompt_folder()))
    if not template.is_valid():
        raise ConfigError(f"prompt {name}.txt has a malformed placeholder; write $$ for a literal dollar sign")
    wanted = set(template.get_identifiers())
    missing, unused = wanted - values.keys(), values.keys() - wanted
    if missing or unused:
        raise ConfigError(f"prompt {name}.txt: placeholders without values {sorted(missing)}, "
                          f"values without placeholders {sorted(unused)}; "
                          f"its placeholders must be exactly {sorted(values)}")
    return template.substitute({k: str(v) for k, v in values.items()})


# ---------------------------------------------------------------- outputs


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Plan(_Output):
    """The planner's answer: where the task stands, what to do next, what to keep in mind."""

    progress: str = Field(default="", max_length=60)
    subgoal: str = Field(default="", max_length=50)
    memory: str = Field(default="", max_length=30)


class Verdict(_Output):
    """The reflector's answer about the last action."""

    outcome: Literal["worked", "wrong_screen", "no_change"]
    note: str = Field(default="", max_length=50)


DECIDER_TEXT = 120  # the decider's strings (typed text, answers) are cut to this in its grammar


@lru_cache(maxsize=4)
def _decider_schema(kind: DeviceKind = "android") -> dict:
    """A device kind's action schema, every string bounded to ``DECIDER_TEXT`` (a runaway string costs seconds).

    Cached: callers must copy it before changing it (:func:`decider_schema` does).
    """
    schema = action_json_schema(kind)
    for definition in schema["$defs"].values():
        for prop in definition.get("properties", {}).values():
            for branch in [prop, *prop.get("anyOf", [])]:
                if branch.get("type") == "string" and "maxLength" in branch:
                    branch["maxLength"] = min(branch["maxLength"], DECIDER_TEXT)
    return schema


def max_answer_chars(schema: dict) -> int:
    """The longest answer a schema allows, in characters, strings at full length."""
    defs = schema.get("$defs", {})

    def size(node: dict) -> int:
        if "$ref" in node:
            return size(defs[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return max(size(n) for n in node["anyOf"])
        if "properties" in node:
            return 2 + sum(len(k) + 6 + size(v) for k, v in node["properties"].items())
        if "enum" in node:
            return max(len(str(v)) + 2 for v in node["enum"])
        if node.get("type") == "array":
            return 2 + node["maxItems"] * (size(node["items"]) + 2)
        if "const" in node:
            return len(str(node["const"])) + 2
        if node.get("type") == "string":
            return node["maxLength"] + 2
        return 10  # numbers: at most 5 digits, a point and 3 decimals (the grammar's cap)

    return size(schema)


def _schema(model: type[BaseModel]) -> dict:
    schema = model.model_json_schema()
    schema["required"] = list(schema["properties"])  # a model must say every field, in order
    for prop in schema["properties"].values():
        prop.pop("default", None)
        prop.pop("title", None)
    schema.pop("title", None)
    return schema


# ---------------------------------------------------------------- calls


@dataclass
class RoleCall:
    """One model call of one role: the full prompt, the raw answer, its cost."""

    role: str
    messages: list[dict[str, str]]
    output: str = ""
    ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    constrained: bool = False
    error: str | None = None
    prompt_evaluated: int | None = None
    prefill_ms: float | None = None
    decode_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "messages": self.messages, "output": self.output, "ms": round(self.ms, 1),
                "tokens_in": self.tokens_in, "tokens_out": self.tokens_out, "constrained": self.constrained,
                "prompt_evaluated": self.prompt_evaluated,
                "prefill_ms": None if self.prefill_ms is None else round(self.prefill_ms, 1),
                "decode_ms": None if self.decode_ms is None else round(self.decode_ms, 1), "error": self.error}


@dataclass
class Role:
    """A prompt file and the schema of its answer.

    ``output`` is a pydantic model, or ``"action"`` for the :data:`Action`
    union, or ``None`` for free text (the baseline).
    """

    name: str
    prompt: str
    output: type[BaseModel] | Literal["action"] | None
    max_tokens: int
    schema: dict | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.output == "action":
            self.schema = decider_schema("android")
        elif self.output is not None:
            self.schema = _schema(self.output)

    def messages(self, context: str, values: dict[str, Any], after: RoleCall | None = None,
                 system: str = "system", images: tuple[bytes, ...] = ()) -> list[Message]:
        if after is not None:  # a follow-up turn to an earlier call: its whole prompt is the cached prefix
            return [*(Message(role=m["role"], content=m["content"]) for m in after.messages),  # type: ignore[arg-type]
                    Message(role="assistant", content=after.output.strip()),
                    Message(role="user", content=render(self.prompt, **values).lstrip("\n"))]
        return [Message(role="system", content=render(system)),
                Message(role="user", content=context + render(self.prompt, **values), images=images)]

    def call(self, backend: ModelBackend, context: str, *, after: RoleCall | None = None,
             schema: dict | None = None, system: str = "system", images: tuple[bytes, ...] = (),
             temperature: float = 0.0, should_stop: StopCheck | None = None, **values: Any) -> tuple[Any, RoleCall]:
        """Ask the model; returns the parsed answer (None when it does not parse) and the call record.

        With ``after``, the question is a follow-up turn to that earlier call
        (the reflector follows the decider), so the whole earlier prompt is
        reused from llama.cpp's cache instead of evaluated again. ``schema``
        replaces the role's own (the decider's, narrowed to one screen).
        ``system`` names the system prompt file (``system_desktop`` on a desktop).
        ``images`` (PNG) go with the question, for a backend that sees images.
        ``temperature`` above 0 samples (self-consistent voting); 0 is greedy. ``should_stop`` goes to the
        backend, which ends the call when it says stop (a run's stop).

        Raises:
            ModelError: the backend failed (not: the answer did not parse).
            ConfigError: the prompt file does not fit ``values``.
        """
        messages = self.messages(context, values, after, system, images)
        record = RoleCall(self.name, [{"role": m.role, "content": m.content} | ({"images": len(m.images)}
                                                                                 if m.images else {})
                                      for m in messages])
        start = time.perf_counter()
        completion = backend.complete(messages, schema=schema or self.schema, max_tokens=self.max_tokens,
                                      temperature=temperature, should_stop=should_stop)
        record.ms = completion.ms or (time.perf_counter() - start) * 1000
        record.output = completion.text
        record.tokens_in, record.tokens_out = completion.tokens_in, completion.tokens_out
        record.constrained = completion.constrained
        record.prompt_evaluated = completion.prompt_evaluated
        record.prefill_ms, record.decode_ms = completion.prefill_ms, completion.decode_ms
        return self.parse(completion.text, record), record

    def parse(self, text: str, record: RoleCall) -> Any:
        if self.output is None:
            return text
        try:
            # strict=False: llama.cpp's grammar sampler has been seen letting a raw newline into a string
            data = json.loads(text, strict=False)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            if self.output == "action":
                return parse_action(data)
            return self.output.model_validate(data)
        except (ActionError, ValidationError, ValueError) as exc:
            record.error = f"answer does not parse: {str(exc).splitlines()[0][:200]}"
            return None


def decider_schema(kind: DeviceKind = "android") -> dict:
    """The decider's whole schema for a kind of device: its action set, strings bounded (a fresh copy)."""
    return copy.deepcopy(_decider_schema(kind))


DESKTOP_KEYS = ["enter", "delete", "tab", "space", "escape"]
"""The ``key`` names a desktop's decider is offered (the phone's system keys mean nothing there)."""
_CLICKS = ("Tap", "LongPress", "Click", "DoubleClick", "RightClick")


# max_tokens covers the longest answer the schema allows even at one token per character
# (tests/test_agent_loop.py checks), so a constrained answer is never cut off
def decider_schema_for(obs: Observation, banned: Iterable[int] = (), kind: DeviceKind = "android",
                       shown: Iterable[int] | None = None) -> dict:
    """The decider's schema narrowed to one screen: each kind of target is an index of an element that can take it.

    ``kind`` picks the action set (:data:`edgepilot.actions.ACTION_SETS`): a
    phone's taps, long presses and swipes, or a desktop's clicks, drags,
    scrolls and hotkeys. Taps and clicks aim at interactive elements
    (clickable, checkable, editable), typing at editable ones, swipes and
    scrolls at scrollable ones (or none), drags from and to any element;
    pixel targets go. Small models otherwise tap labels and titles that do
    nothing, or indices past the end of the list. A screen without
    interactive elements (a secure screen, an empty tree) keeps pixel
    targets. ``banned`` indices (taps that went round in circles here)
    cannot be tapped or clicked. ``shown``, where a long screen's rendering
    left elements out, limits every target to the elements the model was shown.
    """
    schema = decider_schema(kind)
    defs = schema["$defs"]
    if kind == "desktop":
        defs["Key"]["properties"]["key"] = {"enum": DESKTOP_KEYS, "type": "string"}
    elements = obs.elements
    banned = set(banned)
    listed = set(range(len(elements))) if shown is None else set(shown)
    interactive = [i for i, n in enumerate(elements) if i in listed and i not in banned and n.actionable]
    if not interactive:
        return schema
    for name in _CLICKS:
        if name in defs:
            defs[name]["properties"]["target"] = {"enum": interactive}
    if "Drag" in defs:
        defs["Drag"]["properties"]["target"] = {"enum": sorted(listed)}
        defs["Drag"]["properties"]["to"] = {"enum": sorted(listed)}
    editable = [i for i, n in enumerate(elements) if n.editable and i in listed]
    scrollable = [i for i, n in enumerate(elements) if n.scrollable and i in listed]
    for name, indices in (("Type", editable), ("Swipe", scrollable), ("Scroll", scrollable)):
        if name not in defs:
            continue
        if indices:
            defs[name]["properties"]["target"] = {"enum": indices}
        else:
            defs[name]["properties"].pop("target", None)
    del defs["Point"]
    return schema


def keep_targets(schema: dict, allowed: Iterable[int]) -> dict:
    """``schema`` (a copy) with every element target limited to ``allowed`` (a screen rendered shorter after its
    schema was built); an action left with no target it may take is taken out of the choice."""
    schema = copy.deepcopy(schema)
    allowed = set(allowed)
    defs = schema.get("$defs", {})
    gone = set()
    for name, definition in defs.items():
        for prop in ("target", "to"):
            spec = definition.get("properties", {}).get(prop)
            if isinstance(spec, dict) and "enum" in spec:
                spec["enum"] = [i for i in spec["enum"] if i in allowed]
                if not spec["enum"]:
                    gone.add(name)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            kept = [ref for ref in schema[key] if ref.get("$ref", "").rsplit("/", 1)[-1] not in gone]
            schema[key] = kept or schema[key]
    return schema


_TAP_SUBGOAL = re.compile(r'^(tap|click|long press|double click|right click) "(.+)"$')
_CLICK_ACTIONS = {"long press": "LongPress", "double click": "DoubleClick", "right click": "RightClick"}
_TYPE_SUBGOAL = re.compile(r'^type "(.*)"(?: into (.+))?$')
_REPLACE_SUBGOAL = re.compile(r'^replace the text in (.+) with "(.*)"$')
_KEY_SUBGOAL = re.compile(r"^press (\w+)$")
_HOTKEY_SUBGOAL = re.compile(r"^press ((?:(?:ctrl|alt|shift|super)\+)+\w+|f\d{1,2})$")
_SWIPE_SUBGOAL = re.compile(r"^swipe (up|down|left|right)$")
_OPEN_SUBGOAL = re.compile(r"^open (?:the )?(.+?)(?: app)?$", re.IGNORECASE)


def _matching(obs: Observation, indices: Iterable[int], name: str) -> list[int]:
    """Of ``indices``, the elements that ``name`` names, best first: by the rules an SOP step's quoted words
    follow (:func:`edgepilot.sop.screen.find`: a line, the description, the resource id, a line's first words)."""
    allowed = set(indices)
    screen = Screen.from_observation(obs)
    mine = Screen(screen.package, tuple(e for e in screen.elements if e.index in allowed), screen.secure)
    return [e.index for e in find(mine, name)]  # among those only: a label that says "Name:" does not hide the field
    # whose own name is "Name:" (GTK's file chooser)


def ground_subgoal(schema: dict, subgoal: str, obs: Observation, *,
                   scroll: Literal["up", "down"] | None = "up") -> dict | None:
    """The decider's ``schema`` narrowed to the one action a planner's subgoal names, or None.

    The planner names what to do in words, in the forms the distilled planner
    is taught (``tap "Network & internet"``, ``type "latte2024" into
    Password``, ``press back``, ``swipe up``; docs/architecture.md). When the subgoal
    has such a form and this screen has what it names (an element the schema
    already lets the decider act on, by its label), the grammar keeps only
    that action, on those elements, with that text: a small model's decider
    otherwise misreads which index carries the label.

    A tap on a label this screen does not have, on a screen with a list that scrolls, becomes a swipe
    ``scroll`` (up: towards the list's end) on that list: the element may be further down, which is what
    the teacher does in that case (the oracle scrolls until its target is in sight), where a small
    decider otherwise taps whatever index it guesses (a contact list's 15th row for a name not shown).
    ``scroll`` None: the list was searched both ways already, and the label is left to the decider.
    Anything else (free words, a label the screen does not have and no list) leaves the schema alone.
    """
    defs = schema["$defs"]

    def only(name: str, **props: Any) -> dict:
        return _only(schema, name, **props)

    def targets(name: str) -> list[int]:
        enum = defs.get(name, {}).get("properties", {}).get("target", {}).get("enum")
        return list(enum) if enum else []

    subgoal = subgoal.strip()
    if m := _TAP_SUBGOAL.match(subgoal):
        name = _CLICK_ACTIONS.get(m[1], "")
        if name not in defs:  # a tap, a click, or a double click on a phone: whichever plain press the device has
            name = "Tap" if "Tap" in defs else "Click"
        found = _matching(obs, targets(name), m[2])
        if found:
            return only(name, target={"enum": found})
        lists = targets("Swipe")
        return only("Swipe", direction={"enum": [scroll]}, target={"enum": lists}) if lists and scroll else None
    if (m := _REPLACE_SUBGOAL.match(subgoal)) and "Type" in defs:
        fields = targets("Type")
        if not fields or len(m[2]) > DECIDER_TEXT:
            return None
        found = _matching(obs, fields, m[1])
        return only("Type", target={"enum": found or fields}, text={"enum": [m[2]]}, clear={"enum": [True]})
    if m := _TYPE_SUBGOAL.match(subgoal):
        fields = targets("Type")
        if len(m[1]) > DECIDER_TEXT or "Type" not in defs:
            return None
        if not fields:  # nothing editable on a desktop's screen: the keys go to the window in front (a calculator)
            if "Hotkey" not in defs or m[2] or "target" in defs["Type"]["properties"]:
                return None
            return only("Type", text={"enum": [m[1]]})
        found = _matching(obs, fields, m[2]) if m[2] else []
        return only("Type", target={"enum": found or fields}, text={"enum": [m[1]]})
    if (m := _KEY_SUBGOAL.match(subgoal)) and m[1] in defs.get("Key", {}).get("properties", {}).get(
            "key", {}).get("enum", ()):
        return only("Key", key={"enum": [m[1]]})
    if (m := _HOTKEY_SUBGOAL.match(subgoal)) and "Hotkey" in defs:
        keys = m[1].split("+")
        allowed = defs["Hotkey"]["properties"]["keys"].get("items", {}).get("enum")
        if allowed is None or all(k in allowed for k in keys):
            return only("Hotkey", keys={"const": keys, "type": "array"})
    if (m := _SWIPE_SUBGOAL.match(subgoal)) and "Swipe" in defs:
        return only("Swipe", direction={"enum": [m[1]]})
    return None


def _only(schema: dict, name: str, **props: Any) -> dict:
    """A copy of ``schema`` that allows only the action ``name``, its properties ``props`` replaced."""
    narrowed = copy.deepcopy(schema)
    narrowed["anyOf"] = [{"$ref": f"#/$defs/{name}"}]
    narrowed["$defs"][name]["properties"].update(props)
    return narrowed


def ground_open(schema: dict, subgoal: str) -> dict | None:
    """``schema`` narrowed to opening the app a procedure's step names (``open Settings``: the words of ``Open the
    Settings app``), or None. Only for a procedure's own words: a planner's ``open Network & internet`` means a tap.
    """
    m = _OPEN_SUBGOAL.match(subgoal.strip())
    if m is None or "OpenApp" not in schema.get("$defs", {}) or "{" in m[1] or len(m[1]) > 100:
        return None
    return _only(schema, "OpenApp", app={"enum": [m[1]], "type": "string"})


def pinned_action(schema: dict, obs: Observation | None = None) -> Action | None:
    """The one action a grounded ``schema`` (:func:`ground_subgoal`) leaves the decider, or None when it leaves a
    choice: a single kind of action whose every required field has one value (``const`` or a one-value ``enum``),
    the others taking their defaults. Typing into a field that already holds text is left to the decider (add to it,
    or replace it). The decider's answer to such a grammar is this action whatever the model
    thinks, so asking it only costs time (docs/architecture.md, "A model call only where one is needed")."""
    refs = schema.get("anyOf") or schema.get("oneOf") or []
    if len(refs) != 1:
        return None
    definition = schema.get("$defs", {}).get(refs[0].get("$ref", "").rsplit("/", 1)[-1])
    if definition is None:
        return None
    fields: dict[str, Any] = {}
    for name in definition.get("required", ()):
        spec = definition.get("properties", {}).get(name, {})
        if "const" in spec:
            fields[name] = spec["const"]
        elif len(spec.get("enum", ())) == 1:
            fields[name] = spec["enum"][0]
        else:
            return None
    for name, spec in definition.get("properties", {}).items():  # a narrowed optional field (a swipe's one list)
        choices = spec.get("enum", ())
        if name in fields or not choices:
            continue
        if len(choices) > 1:  # a choice the decider would make (which field, which list)
            return None
        fields[name] = choices[0]
    try:
        action = parse_action(fields)
    except ActionError:
        return None
    if isinstance(action, Type) and isinstance(action.target, int) and obs is not None and not action.clear:
        node = obs.elements[action.target] if action.target < len(obs.elements) else None
        if node is None or (node.text and node.text != node.hint):  # add to the text there, or replace it?
            return None
    return action


def finishing(schema: dict, *, answer: bool, choices: Iterable[str] = ()) -> dict:
    """The decider's ``schema`` narrowed to finishing: the planner pointed at a procedure's step that the task
    ends on (``Finish when ...``, ``Read ...`` before ``Finish and answer ...``).

    With ``answer`` the procedure asks for one: the answer is one of ``choices`` (what the screen shows,
    :func:`answer_choices`), or, without choices, any string that is not empty. A small decider left free
    finished ``What version of Android do I have?`` with ``"answer": null``, and made one up when a string
    was required; picking among the screen's texts, it picked ``14``.
    """
    narrowed = copy.deepcopy(schema)
    narrowed["anyOf"] = [{"$ref": "#/$defs/Finish"}]
    if answer:
        finish = narrowed["$defs"]["Finish"]
        bound = next((a.get("maxLength") for a in finish["properties"]["answer"].get("anyOf", [])
                      if a.get("type") == "string"), None)
        allowed = [c for c in dict.fromkeys(choices) if c.strip() and (bound is None or len(c) <= bound)]
        finish["properties"]["answer"] = ({"enum": allowed} if allowed else
                                          {"type": "string", "minLength": 1, **({"maxLength": bound} if bound else {})})
        finish["required"] = ["type", "status", "answer"]  # in the properties' order, as trained
    return narrowed


_ASKED_SHAPES = ((re.compile(r"\be-?mail\b"), "email"), (re.compile(r"\b(?:phone )?number\b"), "phone"))
"""Words of a task that ask for a value of one shape (``what's the phone number of ...``); ``phone`` alone
does not (``the Android version of this phone``)."""


def answer_choices(obs: Observation, step: str, remembered: Iterable[str] = (), goal: str = "") -> list[str]:
    """What an answer read off ``obs`` for the procedure's ``step`` can be.

    Where the step quotes where to look, the texts it points to: a line that starts with quoted words (``the
    line that starts with "Saturday:"``, ``the line "Saturday: ..."``), else the line after a quoted label
    (``under "Phone"``) or before it (``above "Mobile"``). Else every text of the screen. With them, the
    values of a telling shape inside (a code in a message, an amount in a row:
    :func:`~edgepilot.sop.values.values_in`), then what the planner remembered that the screen shows. A quoted
    label itself is never an answer (it names where to look).
    Where ``goal`` asks for an email address or a phone number and some choices have that shape, only those
    stay (``Read the number above "Mobile" or the address above "Email", whichever was asked``), and of several
    quoted labels only those whose words the goal says (``under "Android version", "Device name" or "Phone
    number"`` for "what Android version"). Empty when the screen has no text.
    """

    lines = [line for node in obs.elements for line in _lines(node.text)]
    folded = [line.casefold() for line in lines]
    quotes = [(m[1].strip().casefold(), step[:m.start()].split()[-1:]) for m in re.finditer(r'"([^"]+)"', step)]
    labels = {q for q, _ in quotes}
    asked_words = set(re.findall(r"[a-z]{4,}", goal.casefold()))

    def said(label: str) -> float:  # the share of a label's words that the goal says
        words = set(re.findall(r"[a-z]{4,}", label))
        return len(words & asked_words) / len(words) if words else 0.0

    best = max((said(q) for q, _ in quotes), default=0.0)
    if best > 0 and len(quotes) > 1:  # ``under "Android version", "Device name" or ...``: the one asked
        quotes = [(q, b) for q, b in quotes if said(q) == best]
    starting: list[str] = []
    near: list[str] = []
    for quote, before in quotes:
        above = bool(before) and before[0].casefold() in ("above", "before")
        head = quote.rstrip(".… ")  # ``"Saturday: ..."``: a line that starts so
        for i, line in enumerate(folded):
            if line == quote:
                j = i - 1 if above else i + 1
                if 0 <= j < len(lines) and folded[j] not in labels:
                    near.append(lines[j])
            elif head and line.startswith(head):
                starting.append(lines[i])
    shown_texts = [node for node in obs.elements if node.text]
    readable = [node for node in shown_texts if node.class_name not in _CONTROL_CLASSES] or shown_texts
    texts = starting or near or [t for node in readable
                                 for t in (node.text.strip(), *_lines(node.text)) if t.casefold() not in labels]
    out = [choice for text in texts for choice in (text, *values_in(text)) if choice.strip()]
    shown = " ".join(lines).casefold()
    out += [m.strip() for m in remembered if m.strip() and m.strip().casefold() in shown]
    out = list(dict.fromkeys(out))
    asked = {wanted for words, wanted in _ASKED_SHAPES if words.search(goal.casefold())}
    out = [c for c in out if shape(c) in asked] or out
    said = _STEP_ASKS.search(step)
    if said is not None:  # ``Finish and answer with the number the display shows``: numbers only, where there are some
        fits = _STEP_VALUES[said[1].lower()]
        out = [c for c in out if fits.fullmatch(c.strip())] or out
    return out


_CONTROL_CLASSES = frozenset({"Button", "ImageButton", "ToggleButton", "Menu", "MenuItem", "RadioMenuItem",
                              "CheckMenuItem", "Window", "Dialog", "FileChooser"})
"""Controls and windows whose labels are never what a question asks (a calculator's keys, a dialog's OK, a
window's title: ``party.txt - Mousepad`` answered "where is it?"); their texts are answers only on a screen with
no other text."""
_STEP_ASKS = re.compile(r"\banswer with the (number|amount|time|size)\b", re.IGNORECASE)
_STEP_VALUES = {"number": re.compile(r"[-−]?\d[\d,]*(?:\.\d+)?"),
                "amount": re.compile(r"[-−]?\$?\s?\d[\d,]*(?:\.\d+)?"),
                "time": re.compile(r"\d{1,2}:\d{2}(?:\s?[ap]\.?m\.?)?", re.IGNORECASE),
                "size": re.compile(r"\d+ ?[x×] ?\d+")}


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def without_finish(schema: dict) -> dict:
    """The decider's ``schema`` without finishing: the planner pointed at a procedure's step that is not the
    last (``Find the row of the alarm``), and finishing does not do it."""
    narrowed = copy.deepcopy(schema)
    narrowed["anyOf"] = [ref for ref in narrowed["anyOf"] if ref.get("$ref") != "#/$defs/Finish"]
    return narrowed


PLANNER = Role("planner", "planner", Plan, max_tokens=200)
DECIDER = Role("decider", "decider", "action", max_tokens=240)
REFLECTOR = Role("reflector", "reflector", Verdict, max_tokens=100)
REACT = Role("react", "react", None, max_tokens=120)


def parse_react(text: str) -> tuple[str, Action]:
    """Split a ReAct answer ``Thought: ... Action: {json}`` into its thought and action.

    Small models often ramble on after their action, so the first ``Action:``
    followed by a JSON object that is a valid action wins.

    Raises:
        ActionError: no ``Action:`` is followed by a valid action; the message is about the first one.
    """
    lower = text.lower()
    starts = [i for i in range(len(lower)) if lower.startswith("action:", i)]
    if not starts:
        raise ActionError(f"no 'Action:' in the answer: {text[:120]!r}")
    first_error: ActionError | None = None
    for at, end in zip(starts, [*starts[1:], len(text)], strict=True):
        thought_at = lower.rfind("thought:", 0, at)
        thought = text[thought_at + 8:at].strip() if thought_at >= 0 else ""
        try:
            return thought, _action_after(text[at + 7:end])
        except ActionError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _action_after(rest: str) -> Action:
    brace = rest.find("{")
    if brace < 0:
        raise ActionError(f"no JSON object after 'Action:': {rest[:120]!r}")
    try:
        data, _ = json.JSONDecoder().raw_decode(rest[brace:])
    except json.JSONDecodeError as exc:
        raise ActionError(f"the action is not JSON ({exc.msg}): {rest[brace:brace + 120]!r}") from exc
    if not isinstance(data, dict):
        raise ActionError(f"the action is not a JSON object: {rest[brace:brace + 120]!r}")
    return parse_action(data)
