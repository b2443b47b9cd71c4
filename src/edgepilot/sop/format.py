"""The SOP file format: YAML front matter, then numbered steps (docs/sops.md).

```
---
name: wifi-toggle
description: Turn Wi-Fi on or off in Settings.
apps: [Settings, com.android.settings]
phrasings:
  - Turn {state} Wi-Fi
params:
  state: {description: "on or off", example: "on"}
version: 1
---
1. Open the Settings app.
2. Tap "Network & internet". (screen: Settings)
3. Tap the "Use Wi-Fi" switch so that it is {state}. (screen: Wi-Fi)
```

A step is one line: ``N. instruction``, then optionally ``(screen: TITLE)``,
the screen it expects, and ``[sensitive]`` or ``[sensitive: KIND]``, a step the
policy engine must confirm with the user. Every problem is reported as
``file:line: message``; parsing never executes anything (``yaml.safe_load``
semantics, anchors and aliases refused, files over :data:`MAX_BYTES` refused).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgepilot import yamltext
from edgepilot.errors import SopError
from edgepilot.sop.keys import hotkey_problem

MAX_BYTES = 64 * 1024
MAX_STEPS = 40
MAX_STEP_CHARS = 200
SENSITIVE_KINDS = ("send_message", "payment", "password", "delete", "call", "install", "permission")
FRONT_KEYS = ("name", "description", "apps", "phrasings", "params", "device", "version")
PARAM_KEYS = ("description", "example")

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_STEP = re.compile(r"^(\d+)[.)]\s+(.*)$")
_SCREEN = re.compile(r"\s*\(screen:\s*([^()]*?)\s*\)\s*$", re.IGNORECASE)
_SENSITIVE = re.compile(r"\s*\[sensitive(?::\s*([A-Za-z_]+))?\s*\]\s*$", re.IGNORECASE)
_TRAILING_BRACKET = re.compile(r"\s*\[([^\[\]]*)\]\s*$")
_TRAILING_PAREN = re.compile(r"\s*\(\s*screen\b[^()]*\)\s*$", re.IGNORECASE)
_FENCE = re.compile(r"^(---|\.\.\.)\s*$")


@dataclass(frozen=True)
class SopProblem:
    """One thing wrong with an SOP file, at a line (1-based; 0 when the file as a whole is wrong)."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SopParam(_Frozen):
    """A parameter of an SOP: what it means, and an example value."""

    description: str = Field(min_length=1, max_length=200)
    example: str | None = Field(default=None, max_length=200)


class SopStep(_Frozen):
    """One numbered step: a short instruction, the screen it expects, whether it is sensitive."""

    number: int = Field(ge=1)
    text: str = Field(min_length=1, max_length=MAX_STEP_CHARS)
    screen: str | None = None
    sensitive: bool = False
    kind: str | None = None
    """The kind of sensitive step (one of :data:`SENSITIVE_KINDS`), when the file names it."""
    line: int = 0

    @property
    def placeholders(self) -> set[str]:
        return set(PLACEHOLDER.findall(self.text)) | set(PLACEHOLDER.findall(self.screen or ""))

    def fill(self, params: Mapping[str, object]) -> SopStep:
        """This step with ``{name}`` placeholders replaced; a name without a value stays ``{name}``."""
        return self.model_copy(update={"text": fill_text(self.text, params),
                                       "screen": fill_text(self.screen, params) if self.screen else None})

    def render(self, *, screens: bool = True) -> str:
        """``3. Tap "Wi-Fi" (screen: Network & internet) [sensitive]``: one line for a prompt."""
        out = f"{self.number}. {self.text}"
        if screens and self.screen:
            out += f" (screen: {self.screen})"
        if self.sensitive:
            out += " [sensitive]"
        return out


SopDevice = Literal["phone", "desktop", "any"]
"""Where a procedure applies: a phone's apps, a desktop's, or either (the default)."""


class Sop(_Frozen):
    """A Standard Operating Procedure: what it is for, how tasks that need it are phrased, its steps."""

    name: str
    description: str
    apps: tuple[str, ...]
    phrasings: tuple[str, ...]
    params: dict[str, SopParam] = {}
    device: SopDevice = "any"
    version: int = 1
    steps: tuple[SopStep, ...]
    path: str | None = None

    def fits(self, kind: str) -> bool:
        """Whether this procedure is for a device of this kind (``android``, ``desktop``; docs/sops.md)."""
        return self.device == "any" or self.device == ("desktop" if kind == "desktop" else "phone")

    @property
    def app_labels(self) -> tuple[str, ...]:
        """The apps named by label (``Settings``), not by package (``com.android.settings``)."""
        return tuple(a for a in self.apps if not _is_package(a))

    @property
    def packages(self) -> tuple[str, ...]:
        """The apps named by package name."""
        return tuple(a for a in self.apps if _is_package(a))

    @property
    def sensitive_steps(self) -> tuple[SopStep, ...]:
        return tuple(s for s in self.steps if s.sensitive)

    def fill(self, params: Mapping[str, object] | None = None) -> tuple[SopStep, ...]:
        """The steps with the given parameter values filled in (missing ones stay ``{name}``)."""
        return tuple(step.fill(params or {}) for step in self.steps)

    def render(self, params: Mapping[str, object] | None = None, *, current: int | None = None,
               screens: bool = True) -> str:
        """The procedure as compact prompt text: a title line, then one line per step.

        Args:
            params: values for the placeholders; those missing stay visible as ``{name}``.
            current: the number of the step the run is on; that line ends with ``<- now``.
            screens: include each step's expected screen.
        """
        return render_steps(self.description, self.fill(params), current=current, screens=screens)


def render_steps(title: str, steps: Iterable[SopStep], *, current: int | None = None, screens: bool = True) -> str:
    """Render a title and steps as prompt text (see :meth:`Sop.render`)."""
    lines = [f"Procedure: {title.rstrip('.')}"]
    for step in steps:
        line = step.render(screens=screens)
        lines.append(line + " <- now" if step.number == current else line)
    return "\n".join(lines)


def fill_text(text: str, params: Mapping[str, object]) -> str:
    """Replace ``{name}`` with ``params[name]``; unknown names stay as they are (never ``str.format``)."""
    def one(m: re.Match[str]) -> str:
        value = params.get(m.group(1))
        return m.group(0) if value is None or value == "" else str(value)

    return PLACEHOLDER.sub(one, text)


def _is_package(app: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", app) is not None


# ---------------------------------------------------------------- front matter schema


class _FrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)
    description: str = Field(min_length=1, max_length=300)
    apps: list[str] = Field(min_length=1, max_length=10)
    phrasings: list[str] = Field(min_length=1, max_length=50)
    params: dict[str, SopParam] = {}
    device: SopDevice = "any"
    version: int = Field(default=1, ge=1)


_SLUG_HELP = "a slug of lower-case letters, digits and dashes, like wifi-toggle"


# ---------------------------------------------------------------- parsing


def load_sop(path: str | Path) -> Sop:
    """Read and validate one SOP file.

    Raises:
        SopError: the file cannot be read or is invalid; ``problems`` has every problem found.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _error([SopProblem(str(path), 0, f"cannot read the file: {exc.strerror or exc}")]) from exc
    return parse_sop(raw, path)


def parse_sop(source: str | bytes, path: str | Path = "<sop>") -> Sop:
    """Validate the text of an SOP file; ``path`` is only used in messages.

    Raises:
        SopError: with every problem found, each naming the file and line.
    """
    where = str(path)
    problems: list[SopProblem] = []
    text = _decode(source, where, problems)
    if text is None:
        raise _error(problems)
    lines = text.split("\n")
    if not lines or not _FENCE.match(lines[0]) or lines[0].startswith("..."):
        raise _error([SopProblem(where, 1, "an SOP starts with a front matter block: a line '---', the YAML "
                                            "fields (name, description, apps, phrasings, params, version), "
                                            "then '---'")])
    close = next((i for i in range(1, len(lines)) if _FENCE.match(lines[i])), None)
    if close is None:
        raise _error([SopProblem(where, 1, "the front matter opened here is never closed: add a line '---' "
                                            "after the YAML fields")])
    front = _front_matter("\n".join(lines[1:close]), where, problems)
    steps = _steps(lines, close + 1, where, problems)
    if front is not None and not problems:
        _check_placeholders(front, steps, where, problems)
    if problems or front is None:
        raise _error(problems)
    data, _ = front
    return Sop(name=data.name, description=data.description, apps=tuple(data.apps), phrasings=tuple(data.phrasings),
               params=data.params, device=data.device, version=data.version, steps=tuple(steps), path=where)


def _error(problems: list[SopProblem]) -> SopError:
    problems = sorted(problems, key=lambda p: p.line)
    return SopError("\n".join(map(str, problems)) or "invalid SOP", tuple(problems))


def _decode(source: str | bytes, where: str, problems: list[SopProblem]) -> str | None:
    if isinstance(source, str):
        source = source.encode("utf-8", "surrogatepass")
    if len(source) > MAX_BYTES:
        problems.append(SopProblem(where, 0, f"the file is larger than {MAX_BYTES // 1024} KiB; an SOP is a short "
                                             "list of steps, split it into several SOPs"))
        return None
    nul = source.find(b"\x00")
    if nul >= 0:
        problems.append(SopProblem(where, source.count(b"\n", 0, nul) + 1,
                                   "binary data (a NUL byte): an SOP is a Markdown text file"))
        return None
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(SopProblem(where, source.count(b"\n", 0, exc.start) + 1,
                                   f"not UTF-8 text (byte {source[exc.start]:#04x}); save the file as UTF-8"))
        return None
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _front_matter(yaml_text: str, where: str, problems: list[SopProblem]) -> tuple[_FrontMatter, dict] | None:
    """Parse and validate the YAML block (which starts on file line 2)."""
    def at(mark_line: int) -> int:
        return mark_line + 2

    try:
        for event in yaml.parse(yaml_text, Loader=yamltext.Loader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                problems.append(SopProblem(where, at(event.start_mark.line),
                                           "YAML anchors and aliases (&name, *name) are not allowed in an SOP"))
                return None
        loader = yamltext.Loader(yaml_text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = at(mark.line) if mark is not None else 2
        text_lines = yaml_text.split("\n")
        bad_line = text_lines[min(mark.line, len(text_lines) - 1)] if mark is not None else ""
        hint = " (put quotes around a value that starts with a {placeholder})" if re.search(
            r"(^\s*-|:)\s*\{", bad_line) and "nest deeper" not in str(exc.problem) else ""
        problems.append(SopProblem(where, line, f"front matter is not valid YAML: {exc.problem or exc}{hint}"))
        return None
    except (yaml.YAMLError, RecursionError) as exc:
        problems.append(SopProblem(where, 2, f"front matter is not valid YAML: {type(exc).__name__}"))
        return None
    if not isinstance(data, dict):
        problems.append(SopProblem(where, 2, "the front matter must be a mapping of fields "
                                             f"({', '.join(FRONT_KEYS)})"))
        return None
    lines: dict[tuple, int] = {}
    _key_lines(node, (), lines, at, where, problems)
    before = len(problems)
    _unknown_keys(data, lines, where, problems)
    _yaml_surprises(data, lines, where, problems)
    if len(problems) > before:
        return None
    try:
        return _FrontMatter.model_validate(data), lines
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append(SopProblem(where, _line_of(loc, lines), _message(loc, err)))
        return None


def _key_lines(node: Any, path: tuple, lines: dict[tuple, int], at, where: str, problems: list[SopProblem]) -> None:
    """Record the line of every mapping key and list item; report duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.value)
            if name in seen:
                problems.append(SopProblem(where, at(key.start_mark.line), f"{_dotted(path + (name,))} is given "
                                                                          "twice; keep one"))
            seen.add(name)
            lines.setdefault(path + (name,), at(key.start_mark.line))
            _key_lines(value, path + (name,), lines, at, where, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.setdefault(path + (i,), at(item.start_mark.line))
            _key_lines(item, path + (i,), lines, at, where, problems)


def _unknown_keys(data: dict, lines: dict[tuple, int], where: str, problems: list[SopProblem]) -> None:
    for key in data:
        if str(key) not in FRONT_KEYS:
            problems.append(SopProblem(where, lines.get((str(key),), 2), _unknown(str(key), FRONT_KEYS, "field")))
    params = data.get("params")
    if isinstance(params, dict):
        for name, spec in params.items():
            if isinstance(spec, dict):
                for key in spec:
                    if str(key) not in PARAM_KEYS:
                        problems.append(SopProblem(where, lines.get(("params", str(name), str(key)), 2),
                                                   f"parameter {name!r}: " + _unknown(str(key), PARAM_KEYS, "key")))


def _yaml_surprises(data: dict, lines: dict[tuple, int], where: str, problems: list[SopProblem]) -> None:
    """Name the YAML pitfalls (an unquoted ``{x} ...`` phrasing is a mapping; ``on`` is a boolean)."""
    for field in ("apps", "phrasings"):
        items = data.get(field)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    problems.append(SopProblem(where, lines.get((field, i), 2),
                                               f"{field}[{i}] was read as a YAML mapping: put quotes around an "
                                               "entry that starts with a {placeholder}"))
    params = data.get("params")
    if isinstance(params, dict):
        for name, spec in list(params.items()):
            line = lines.get(("params", str(name)), 2)
            if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                problems.append(SopProblem(where, line, f"parameter name {name!r} must be lower-case letters, "
                                                        "digits and underscores, starting with a letter"))
            elif isinstance(spec, str):
                params[name] = {"description": spec}
            elif not isinstance(spec, dict):
                problems.append(SopProblem(where, line, f"parameter {name!r}: give a description, or a mapping "
                                                        "with description and example"))


def _unknown(key: str, known: tuple[str, ...], what: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    return f"unknown {what} {key!r}{hint}"


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int:
    loc = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 2


def _message(loc: tuple, err: dict) -> str:
    field = _dotted(loc)
    if loc[:1] == ("name",) and err["type"] == "string_pattern_mismatch":
        return f"name {err.get('input')!r} must be {_SLUG_HELP}"
    if err["type"] == "missing":
        return f"missing field {field!r}"
    if err["type"] == "string_type" and isinstance(err.get("input"), bool):
        return f"{field}: YAML reads yes/no/on/off/true/false as booleans; put quotes around the value"
    if err["type"] == "string_type" and isinstance(err.get("input"), (int, float)):
        return f"{field}: YAML reads {err['input']!r} as a number (7:30 is even read as 450); put quotes around it"
    return f"{field}: {err['msg']}"


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------- body


def _steps(lines: list[str], start: int, where: str, problems: list[SopProblem]) -> list[SopStep]:
    """Parse the body: numbered steps; blank lines, headings (#), notes (>) and HTML comments are skipped."""
    steps: list[SopStep] = []
    last = 0
    for index in range(start, len(lines)):
        lineno = index + 1
        raw = lines[index]
        line = raw.strip()
        if not line or line.startswith(("#", ">")) or (line.startswith("<!--") and line.endswith("-->")):
            continue
        m = _STEP.match(line)
        if m is None:
            hint = ("a step is a single line; split this into two steps" if raw[:1].isspace() and steps
                    else "expected a numbered step like '1. Open the Settings app.'")
            problems.append(SopProblem(where, lineno, hint))
            continue
        number, body = int(m.group(1)), m.group(2)
        if number != last + 1:
            problems.append(SopProblem(where, lineno, f"step numbered {number}, expected {last + 1} "
                                                      "(number the steps 1, 2, 3... in order)"))
        last = number
        step = _step(len(steps) + 1, body, lineno, where, problems)
        if step is not None:
            steps.append(step)
    if not steps:
        problems.append(SopProblem(where, len(lines), "no steps: after the front matter, write numbered steps "
                                                      "('1. Open the Settings app.')"))
    elif len(steps) > MAX_STEPS:
        problems.append(SopProblem(where, steps[MAX_STEPS].line, f"more than {MAX_STEPS} steps; split the SOP"))
    return steps


def _step(number: int, body: str, lineno: int, where: str, problems: list[SopProblem]) -> SopStep | None:
    screen: str | None = None
    sensitive, kind = False, None
    while True:
        if (m := _SENSITIVE.search(body)) is not None:
            if sensitive:
                problems.append(SopProblem(where, lineno, "[sensitive] is given twice"))
            sensitive, kind = True, (m.group(1) or "").lower() or None
            if kind is not None and kind not in SENSITIVE_KINDS:
                problems.append(SopProblem(where, lineno, _unknown(kind, SENSITIVE_KINDS, "kind of sensitive step")))
        elif (m := _SCREEN.search(body)) is not None:
            if screen is not None:
                problems.append(SopProblem(where, lineno, "(screen: ...) is given twice"))
            screen = m.group(1)
            if not screen:
                problems.append(SopProblem(where, lineno, "(screen: ) names no screen; write its title"))
        elif (m := _TRAILING_BRACKET.search(body)) is not None:
            problems.append(SopProblem(where, lineno, _unknown(m.group(1).strip(), ("sensitive",), "marker")
                                       + " (write [sensitive] or [sensitive: KIND])"))
        elif (m := _TRAILING_PAREN.search(body)) is not None:
            problems.append(SopProblem(where, lineno, "write the expected screen as (screen: TITLE)"))
        else:
            break
        body = body[: m.start()]
    text = body.strip()
    if not text:
        problems.append(SopProblem(where, lineno, "the step has no instruction"))
        return None
    if len(text) > MAX_STEP_CHARS:
        problems.append(SopProblem(where, lineno, f"the step is {len(text)} characters; keep it under "
                                                  f"{MAX_STEP_CHARS} (a small model reads it) or split it"))
        return None
    if (problem := hotkey_problem(text)) is not None:
        problems.append(SopProblem(where, lineno, problem))
    for part in (text, screen or ""):
        stray = PLACEHOLDER.sub("", part)
        if "{" in stray or "}" in stray:
            problems.append(SopProblem(where, lineno, "a brace that is not a {placeholder}: placeholders are "
                                                      "lower-case names in braces, like {contact}"))
            break
    return SopStep(number=number, text=text, screen=screen, sensitive=sensitive, kind=kind, line=lineno)


def _check_placeholders(front: tuple[_FrontMatter, dict], steps: list[SopStep], where: str,
                        problems: list[SopProblem]) -> None:
    data, lines = front
    declared = set(data.params)
    used: set[str] = set()
    for i, phrasing in enumerate(data.phrasings):
        line = lines.get(("phrasings", i), 2)
        names = PLACEHOLDER.findall(phrasing)
        stray = PLACEHOLDER.sub("", phrasing)
        if "{" in stray or "}" in stray:
            problems.append(SopProblem(where, line, f"phrasing {phrasing!r} has a brace that is not a "
                                                    "{placeholder} (lower-case name in braces)"))
        for name in names:
            used.add(name)
            if name not in declared:
                problems.append(SopProblem(where, line, _undeclared(name, declared)))
        if len(names) != len(set(names)):
            problems.append(SopProblem(where, line, f"phrasing {phrasing!r} uses a placeholder twice"))
    for step in steps:
        for name in sorted(step.placeholders):
            used.add(name)
            if name not in declared:
                problems.append(SopProblem(where, step.line, _undeclared(name, declared)))
    for name in sorted(declared - used):
        problems.append(SopProblem(where, lines.get(("params", name), 2),
                                   f"parameter {name!r} is declared but no phrasing or step uses {{{name}}}"))


def _undeclared(name: str, declared: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(declared), n=1, cutoff=0.6)
    hint = f"; did you mean {{{close[0]}}}?" if close else ""
    return f"placeholder {{{name}}} is not declared under params{hint}"


SECRET_PARAMS = frozenset({"pin", "password", "passcode", "card", "card_number", "cvv"})
_SECRET_WORDS = frozenset({"pin", "pincode", "password", "passwd", "passphrase", "passcode", "cvv", "secret"})
"""A parameter with one of these words in its name (``bank_pin``) is a secret; ``card_name`` is not."""


def is_secret(name: str) -> bool:
    """Whether a procedure's parameter holds a secret: asked for hidden, shown masked, never told."""
    parts = set(name.casefold().split("_"))  # pin, bank_pin, wifi_password; not shipping_address or start_typing
    return name in SECRET_PARAMS or bool(parts & _SECRET_WORDS) or any(p.endswith("password") for p in parts)
