"""The policy language: rules with conditions over an action, its resolved target and the screen.

A policy file (YAML or TOML)::

    version: 1
    default: ask_user            # what happens when no rule matches (never allow)
    rules:
      - id: type-password
        priority: 10             # lower first
        effect: forbid           # allow | forbid
        actions: [type]          # action types, or "*"
        when: {target.password: true}
        fallback: ask_user       # for forbid: block | ask_user | terminate
        category: password
        reason: typing into a password field

A condition is a mapping of fact → test (all must hold) or ``all: [...]``,
``any: [...]``, ``not: {...}``. A test is a scalar (equality; strings compare
case-insensitively) or a mapping of ``equals``, ``in``, ``regex`` (Python
``re.search``), ``min``, ``max``. Conditions are three-valued: a test of a
fact the action does not have (``target.text`` of a ``wait``) is *unknown*,
``not`` of unknown is unknown, and a rule only fires on *true*, so a missing
attribute never makes a rule match (Progent's negation pitfall).
"""

from __future__ import annotations

import difflib
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from edgepilot import yamltext
from edgepilot.actions import Action
from edgepilot.errors import PolicyError
from edgepilot.policy.effects import ACTION_EFFECTS, EFFECT_KINDS
from edgepilot.policy.labels import normalise

MAX_POLICY_BYTES = 1 << 20

FACTS: dict[str, str] = {
    "effect": "what the action does: activate, focus, enter_text, dismiss, scroll, key, hotkey, drag, open_app, "
              "wait, finish, unknown (docs/policy.md)",
    "action.type": "the plain action for that effect (tap for activate, type for enter_text, swipe for scroll...)",
    "action.text": "the text a `type` action enters",
    "action.app": "the app an `open_app` action opens, as the model named it",
    "action.key": "the key a `key` action presses (back, home, enter, ...)",
    "action.direction": "a swipe's direction",
    "action.seconds": "a `wait` action's seconds",
    "action.status": "a `finish` action's status (success, failure)",
    "action.keys": "a desktop `hotkey`'s keys joined with +, modifiers first (ctrl+s, alt+f4)",
    "target.text": "the text of the element the effect is on, normalised (lower-case plain words: docs/policy.md)",
    "target.desc": "its content description, normalised",
    "target.label": "its text, or its content description when it has no text, normalised",
    "target.resource_id": "its resource id without the package prefix, as words (btnSend, send_button: btn send, "
                          "send button)",
    "target.class": "its class name (android.widget.Button)",
    "target.password": "whether it is a password field",
    "target.secret": "whether typing into it enters a secret (a password field, or a field whose label, id or "
                     "nearest text says PIN, password, CVV, card number, security code...)",
    "target.editable": "whether it takes text",
    "target.clickable": "whether it is clickable",
    "target.checked": "whether it is checked",
    "target.package": "the package that drew it",
    "screen.package": "the foreground app's package",
    "screen.activity": "the foreground activity",
    "screen.secure": "whether the screen is FLAG_SECURE (banking, passwords)",
    "screen.keyboard": "whether the on-screen keyboard is shown",
}
TESTS = ("equals", "in", "regex", "words", "min", "max")
SHORT_LABEL_WORDS = 6
"""``words`` matches anywhere in a label this short (a button: "Yes, delete"), else only at its start."""
Fallback = Literal["block", "ask_user", "terminate"]


def action_types() -> list[str]:
    """Every action type of the action space (the values ``actions:`` may list)."""
    union = typing.get_args(Action)[0]
    return sorted(cls.model_fields["type"].default for cls in typing.get_args(union))


# ---------------------------------------------------------------- conditions

Truth = bool | None  # None: unknown (a fact the action does not have)


class _CondError(Exception):
    def __init__(self, path: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


NORMALISED_FACTS = frozenset({"target.text", "target.desc", "target.label", "target.resource_id"})
"""Facts whose values are normalised words (:func:`~edgepilot.policy.labels.normalise`); so are the values that
``equals`` and ``in`` compare them with."""


def _norm(value: Any, fact: str = "") -> Any:
    if not isinstance(value, str):
        return value
    return normalise(value) if fact in NORMALISED_FACTS else value.casefold()


@dataclass(frozen=True)
class Test:
    """One fact compared one way."""

    fact: str
    op: str
    value: Any

    def holds(self, facts: dict[str, Any]) -> Truth:
        if facts.get(self.fact) is None:
            return None
        have = facts[self.fact]
        if isinstance(have, tuple):  # a label's readings (labels.readings): the test holds when one reading does
            return any(self._one(h) for h in have)
        return self._one(have)

    def _one(self, have: Any) -> Truth:
        if self.op == "equals":
            return _norm(have, self.fact) == _norm(self.value, self.fact)
        if self.op == "in":
            return _norm(have, self.fact) in {_norm(v, self.fact) for v in self.value}
        if self.op == "regex":
            return self.value.search(str(have)) is not None
        if self.op == "words":
            return self.value.says(str(have))
        if isinstance(have, bool) or not isinstance(have, int | float):
            return None
        return have >= self.value if self.op == "min" else have <= self.value

    def __str__(self) -> str:
        value = self.value.pattern if self.op == "regex" else self.value
        return f"{self.fact} {self.op} {value!r}"


def _unspaced(text: str) -> bool:
    """Written without spaces between words (Chinese, Japanese, Thai...): matched as a substring."""
    return any("\u0e00" <= c <= "\u0e7f" or "\u3040" <= c <= "\u30ff" or "\u3400" <= c <= "\u9fff"
               or "\uac00" <= c <= "\ud7af" for c in text)


@dataclass(frozen=True)
class Words:
    """The ``words`` test: a label that says one of these words or phrases, in the label's normalised form, at its
    start or anywhere in a short label (at most :data:`SHORT_LABEL_WORDS` words: "Yes, delete", "Start video
    call"); phrases in scripts written without spaces match as substrings."""

    phrases: tuple[str, ...]
    _start: re.Pattern
    _anywhere: re.Pattern
    written: tuple[str, ...] = ()

    @classmethod
    def of(cls, phrases: list[str]) -> Words:
        normal = tuple(dict.fromkeys(p for p in (normalise(str(x)) for x in phrases) if p))
        spaced = [re.escape(p) for p in normal if not _unspaced(p)]
        unspaced = [re.escape(p) for p in normal if _unspaced(p)]
        alternatives = "|".join([*(f"{p}\\b" for p in spaced), *unspaced]) or "(?!)"
        return cls(normal, re.compile(f"^(?:{alternatives})"), re.compile(f"(?:^|\\b|(?<=\\W))(?:{alternatives})"),
                   tuple(str(x) for x in phrases))

    def says(self, label: str) -> bool:
        if self._start.search(label):
            return True
        short = len(label.split()) <= SHORT_LABEL_WORDS if not _unspaced(label) else len(label) <= 4 * SHORT_LABEL_WORDS
        return short and self._anywhere.search(label) is not None

    def __repr__(self) -> str:
        return repr(list(self.written or self.phrases))


@dataclass(frozen=True)
class Node:
    """``all`` / ``any`` / ``not`` over other conditions."""

    op: Literal["all", "any", "not"]
    parts: tuple[Test | Node, ...]

    def holds(self, facts: dict[str, Any]) -> Truth:
        values = [p.holds(facts) for p in self.parts]
        if self.op == "not":
            return None if values[0] is None else not values[0]
        if self.op == "all":
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)

    def __str__(self) -> str:
        if self.op == "not":
            return f"not ({self.parts[0]})"
        return f" {'and' if self.op == 'all' else 'or'} ".join(
            f"({p})" if isinstance(p, Node) and len(p.parts) > 1 else str(p) for p in self.parts)


Condition = Test | Node


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(choices)})"


def compile_condition(raw: Any, path: tuple[Any, ...] = ()) -> Condition:
    """A condition from its file form.

    Raises:
        _CondError: the condition is malformed; ``path`` says where.
    """
    if not isinstance(raw, dict) or not raw:
        raise _CondError(path, "a condition is a non-empty mapping of fact: test, or all/any/not")
    parts: list[Condition] = []
    for key, value in raw.items():
        here = (*path, key)
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise _CondError(here, f"`{key}` takes a non-empty list of conditions")
            parts.append(Node(key, tuple(compile_condition(v, (*here, i)) for i, v in enumerate(value))))
        elif key == "not":
            parts.append(Node("not", (compile_condition(value, here),)))
        elif key in FACTS:
            parts.extend(_compile_tests(key, value, here))
        else:
            raise _CondError(here, f"unknown fact {key!r}" + _suggest(str(key), [*FACTS, "all", "any", "not"]))
    return parts[0] if len(parts) == 1 else Node("all", tuple(parts))


def _compile_tests(fact: str, value: Any, path: tuple[Any, ...]) -> list[Test]:
    if not isinstance(value, dict):
        if not isinstance(value, str | int | float | bool):
            raise _CondError(path, f"{fact}: expected a value or a mapping of {', '.join(TESTS)}, got {value!r}")
        return [Test(fact, "equals", value)]
    if not value:
        raise _CondError(path, f"{fact}: empty test; use one of {', '.join(TESTS)}")
    tests = []
    for op, arg in value.items():
        where = (*path, op)
        if op not in TESTS:
            raise _CondError(where, f"unknown test {op!r}" + _suggest(str(op), TESTS))
        if op == "in":
            if not isinstance(arg, list) or not arg or not all(isinstance(a, str | int | float) for a in arg):
                raise _CondError(where, f"{fact}: `in` takes a non-empty list of values")
        elif op == "words":
            if not isinstance(arg, list) or not arg or not all(isinstance(a, str) and a.strip() for a in arg):
                raise _CondError(where, f"{fact}: `words` takes a non-empty list of words or phrases")
            arg = Words.of(arg)
        elif op == "regex":
            if not isinstance(arg, str):
                raise _CondError(where, f"{fact}: `regex` takes a string")
            try:
                arg = re.compile(arg)
            except re.error as exc:
                raise _CondError(where, f"{fact}: bad regular expression {arg!r}: {exc}") from None
        elif op in ("min", "max"):
            if isinstance(arg, bool) or not isinstance(arg, int | float):
                raise _CondError(where, f"{fact}: `{op}` takes a number")
        elif not isinstance(arg, str | int | float | bool):
            raise _CondError(where, f"{fact}: `equals` takes a value")
        tests.append(Test(fact, op, arg))
    return tests


# ---------------------------------------------------------------- rules and policies


class Rule(BaseModel):
    """One rule: which actions it covers, when it fires, and what it decides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")
    priority: int = Field(100, ge=0, le=100_000)
    effect: Literal["allow", "forbid"]
    actions: tuple[str, ...] = ("*",)
    when: dict[str, Any] | None = None
    fallback: Fallback = "block"
    category: str = Field("", max_length=40)
    reason: str = Field("", max_length=300)
    _condition: Condition | None = PrivateAttr(None)
    _source: str = PrivateAttr("")

    def covers(self, effect: str) -> bool:
        """Whether the rule applies to an effect of this kind (``actions:`` names effects, or actions standing for
        the effect they have when spelled plainly: ``tap`` for ``activate``)."""
        return "*" in self.actions or effect in self._effects

    @property
    def _effects(self) -> frozenset[str]:
        return frozenset(e for a in self.actions for e in ACTION_EFFECTS.get(a, (a,)))

    def describe(self) -> str:
        what = "any action" if "*" in self.actions else "/".join(self.actions)
        when = f" when {self.condition}" if self.condition is not None else ""
        decision = "allow" if self.effect == "allow" else f"forbid → {self.fallback}"
        return f"[{self.priority:>4}] {self.id}: {decision}: {what}{when}"

    @property
    def condition(self) -> Condition | None:
        return self._condition

    @property
    def source(self) -> str:
        """Where the rule came from: a file, or ``task`` for task-scoped rules."""
        return self._source


class Policy(BaseModel):
    """A whole policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    name: str = ""
    default: Fallback = "ask_user"
    rules: tuple[Rule, ...] = ()
    _source: str = PrivateAttr("")

    @property
    def source(self) -> str:
        return self._source


def make_rule(source: str = "task", **fields: Any) -> Rule:
    """A rule built in code (task-scoped rules), its condition compiled.

    Raises:
        PolicyError: the rule is malformed.
    """
    try:
        rule = Rule(**fields)
        rule._source = source
        _attach(rule, ())
    except ValidationError as exc:
        raise PolicyError(f"rule {fields.get('id')!r}: {exc.errors()[0]['msg']}") from None
    except _CondError as exc:
        raise PolicyError(f"rule {fields.get('id')!r}: {exc}") from None
    return rule


def _attach(rule: Rule, path: tuple[Any, ...]) -> None:
    known = [*action_types(), *EFFECT_KINDS]
    unknown = [a for a in rule.actions if a != "*" and a not in known]
    if unknown:
        raise _CondError((*path, "actions"),
                         f"unknown action or effect {unknown[0]!r}" + _suggest(unknown[0], known))
    rule._condition = compile_condition(rule.when, (*path, "when")) if rule.when is not None else None


# ---------------------------------------------------------------- loading with line numbers


def load_policy(path: str | Path) -> Policy:
    """Read and check a policy file (``.yaml``/``.yml`` or ``.toml``).

    Raises:
        PolicyError: the file is missing, unreadable or invalid; the message names the file, line and field.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from None
    return parse_policy(data, name=str(path), toml=path.suffix.lower() == ".toml")


def parse_policy(data: bytes | str, *, name: str = "<policy>", toml: bool = False) -> Policy:
    """Check a policy given as text. See :func:`load_policy`."""
    if isinstance(data, bytes):
        if len(data) > MAX_POLICY_BYTES:
            raise PolicyError(f"{name}: {len(data)} bytes is too large for a policy file (limit 1 MiB)")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(f"{name}: not UTF-8 text (byte {exc.start}); is this a policy file?") from None
    else:
        text = data
    raw, lines = _read_toml(text, name) if toml else _read_yaml(text, name)
    if not isinstance(raw, dict):
        raise PolicyError(f"{name}:1: a policy is a mapping with `rules:` (and optionally version, name, default)")

    def where(loc: tuple[Any, ...]) -> str:
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in lines:
                return f"{name}:{lines[loc[:cut]]}"
        return name

    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a typo explains the rest
        loc = tuple(err["loc"])
        field = _dotted(loc) or "(top)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            known = list(Rule.model_fields) if len(loc) > 1 and loc[0] == "rules" else list(Policy.model_fields)
            msg = "unknown key" + _suggest(str(loc[-1]), known)
        more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
        raise PolicyError(f"{where(loc)}: {field}: {msg}{more}") from None
    seen: dict[str, int] = {}
    for i, rule in enumerate(policy.rules):
        if rule.id in seen:
            raise PolicyError(f"{where(('rules', i, 'id'))}: rule id {rule.id!r} is used twice (rules {seen[rule.id]} "
                              f"and {i}); ids must be unique")
        seen[rule.id] = i
        rule._source = name
        try:
            _attach(rule, ("rules", i))
        except _CondError as exc:
            field = _dotted(exc.path)
            raise PolicyError(f"{where(exc.path)}: {field}: {exc}") from None
    policy._source = name
    return policy


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _read_yaml(text: str, name: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    try:
        loader = yamltext.Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None and _count_aliases(node) > 0:
                raise PolicyError(f"{name}: YAML anchors and aliases are not allowed in policy files")
            if node is not None:
                _duplicate_key(node, name)
            raw = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{name}{line}: not valid YAML: {problem}") from None
    except RecursionError:
        raise PolicyError(f"{name}: not valid YAML: it nests too deep") from None
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _yaml_lines(node, (), lines)
    return raw, lines


def _count_aliases(node: yaml.Node, seen: set[int] | None = None) -> int:
    seen = seen if seen is not None else set()
    if id(node) in seen:
        return 1
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        return sum(_count_aliases(k, seen) + _count_aliases(v, seen) for k, v in node.value)
    if isinstance(node, yaml.SequenceNode):
        return sum(_count_aliases(v, seen) for v in node.value)
    return 0


def _duplicate_key(node: yaml.Node, name: str) -> None:
    """Raise on the first mapping that names a key twice (PyYAML keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise PolicyError(f"{name}:{line}: key {key.value!r} appears twice in one mapping (first on line "
                                      f"{seen[key.value]}); YAML would silently keep only the last one")
                seen[key.value] = line
            _duplicate_key(value, name)
    elif isinstance(node, yaml.SequenceNode):
        for value in node.value:
            _duplicate_key(value, name)


def _yaml_lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*path, key.value)
            out[here] = key.start_mark.line + 1
            _yaml_lines(value, here, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _yaml_lines(value, (*path, i), out)


def _read_toml(text: str, name: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{name}: not valid TOML: {exc}") from None
    except RecursionError:
        raise PolicyError(f"{name}: not valid TOML: it nests too deep") from None
    lines: dict[tuple[Any, ...], int] = {}
    rule = -1
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("[[rules]]"):
            rule += 1
            lines[("rules", rule)] = number
            continue
        key = re.match(r"([A-Za-z_][\w.]*|\"[^\"]+\")\s*=", stripped)
        if key:
            top = key.group(1).strip('"').split(".")[0]
            lines.setdefault(("rules", rule, top) if rule >= 0 else (top,), number)
    return raw, lines
