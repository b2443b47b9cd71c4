"""Task templates, their instances, set-up and success checks (format: docs/tasks.md)."""

from __future__ import annotations

import ast
import operator
import random
import re
import string
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgepilot.errors import TaskError
from edgepilot.sim.tasks.paths import MISSING, append_path, get_path, remove_path, set_path

SENSITIVE_KINDS = ("send_message", "payment", "password", "delete", "call", "install", "permission")
_ONE_PLACEHOLDER = re.compile(r"^\{(\w+)(?:\[(\w+)\])?\}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(_Strict):
    """One condition on the phone's state (``path``) or on the agent's answer (``answer: true``)."""

    path: str | None = None
    answer: bool = False
    equals: Any = MISSING
    not_equals: Any = MISSING
    contains: str | None = None
    matches: str | None = None
    digits_equal: str | None = None
    exists: bool | None = None
    count: int | None = None

    @field_validator("contains", "matches", "digits_equal", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_subject_one_test(self) -> Check:
        if (self.path is None) == (not self.answer):
            raise ValueError("a check needs exactly one of `path` or `answer: true`")
        tests = [name for name in ("equals", "not_equals") if getattr(self, name) is not MISSING]
        tests += [name for name in ("contains", "matches", "digits_equal", "exists", "count")
                  if getattr(self, name) is not None]
        if len(tests) != 1:
            raise ValueError(f"a check needs exactly one test, got {tests or 'none'}")
        return self

    def holds(self, state: dict[str, Any], answer: str | None) -> bool:
        value = (answer if answer is not None else MISSING) if self.answer else get_path(state, self.path or "")
        if self.exists is not None:
            return (value is not MISSING) == self.exists
        if value is MISSING:
            return False
        if self.equals is not MISSING:
            return _same(value, self.equals)
        if self.not_equals is not MISSING:
            return not _same(value, self.not_equals)
        if self.contains is not None:
            return self.contains.casefold() in str(value).casefold()
        if self.matches is not None:
            return re.fullmatch(self.matches, str(value), flags=re.IGNORECASE | re.DOTALL) is not None
        if self.digits_equal is not None:
            return _digits(str(value)) == _digits(self.digits_equal) != ""
        if self.count is not None:
            return isinstance(value, list) and len(value) == self.count
        return False

    def describe(self) -> str:
        subject = "answer" if self.answer else self.path
        for name in ("equals", "not_equals", "contains", "matches", "digits_equal", "exists", "count"):
            value = getattr(self, name)
            if value is not MISSING and value is not None:
                return f"{subject} {name} {value!r}"
        return str(subject)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (str(a).lower() == str(b).lower())
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) < 1e-9
    return str(a).strip().casefold() == str(b).strip().casefold()


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


class TaskTemplate(_Strict):
    """A kind of task with parameters; :meth:`instance` makes one concrete task."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    split: Literal["train", "test"]
    device: Literal["phone", "desktop"] = "phone"
    apps: list[str]
    steps: int = Field(ge=1, le=30)
    sensitive: list[Literal[SENSITIVE_KINDS]] = []  # type: ignore[valid-type]
    goal: str
    params: dict[str, dict[str, Any]] = {}
    setup: list[dict[str, Any]] = []
    check: list[Check]
    solution: list[dict[str, Any]]
    source: str = ""

    @model_validator(mode="after")
    def _known_generators(self) -> TaskTemplate:
        for name, spec in self.params.items():
            kinds = [k for k in spec if k in GENERATORS]
            if len(kinds) != 1 or set(spec) - {*GENERATORS, "distinct"}:
                raise ValueError(f"parameter {name!r} needs exactly one of {'/'.join(GENERATORS)}, got {spec}")
        return self

    def instance(self, seed: int) -> TaskInstance:
        """The concrete task for one seed (same seed, same task).

        Raises:
            TaskError: a parameter cannot be generated or a placeholder is unknown.
        """
        rng = random.Random(f"{self.id}:{seed}")
        # a desktop task's folder is known only when it starts: "{dir}" stays in place until then
        params: dict[str, Any] = {"dir": "{dir}"} if self.device == "desktop" else {}
        for name, spec in self.params.items():
            params[name] = _generate(name, spec, params, rng)
        return TaskInstance(template=self, seed=seed, params=params, goal=fill(self.goal, params))


class TaskInstance(BaseModel):
    """One concrete task: a template with its parameters drawn."""

    model_config = ConfigDict(frozen=True)

    template: TaskTemplate
    seed: int
    params: dict[str, Any]
    goal: str

    @property
    def id(self) -> str:
        return f"{self.template.id}#{self.seed}"

    def filled(self, value: Any) -> Any:
        return fill(value, self.params)

    def checks(self) -> list[Check]:
        return [Check.model_validate(fill(c.model_dump(exclude_defaults=True), self.params))
                for c in self.template.check]

    def evaluate(self, state: dict[str, Any], answer: str | None) -> tuple[bool, list[str]]:
        """Whether every check holds; and the descriptions of those that fail."""
        failed = [c.describe() for c in self.checks() if not c.holds(state, answer)]
        return not failed, failed


# ---------------------------------------------------------------- parameters


@lru_cache(maxsize=1)
def pools() -> dict[str, list[Any]]:
    with open(Path(__file__).with_name("pools.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def _generate(name: str, spec: dict[str, Any], params: dict[str, Any], rng: random.Random) -> Any:
    distinct = spec.get("distinct", [])
    for _ in range(100):
        value = _draw(name, spec, params, rng)
        if all(value != params.get(other) for other in distinct):
            return value
    raise TaskError(f"parameter {name!r}: could not draw a value distinct from {distinct}")


def _draw(name: str, spec: dict[str, Any], params: dict[str, Any], rng: random.Random) -> Any:
    if "choice" in spec:
        return fill(rng.choice(list(spec["choice"])), params)
    if "pool" in spec:
        pool = pools().get(spec["pool"])
        if not pool:
            raise TaskError(f"parameter {name!r}: no pool {spec['pool']!r} in pools.yaml")
        return rng.choice(pool)
    if "pattern" in spec:
        return "".join(
            rng.choice(string.digits) if ch == "#" else rng.choice(string.ascii_lowercase) if ch == "?" else ch
            for ch in spec["pattern"]
        )
    if "int" in spec:
        lo, hi = spec["int"]
        return rng.randint(lo, hi)
    if "arith" in spec:
        return arith(fill(spec["arith"], params))
    return fill(spec["format"], params)


GENERATORS = ("choice", "pool", "pattern", "int", "format", "arith")

_ARITH_OPS: dict[type, Any] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                               ast.Div: operator.truediv}


def arith(expression: str) -> int | float:
    """The value of an arithmetic expression of numbers, ``+ - * /`` and brackets (an ``arith`` parameter:
    a calculator task's result); an integer when it is whole.

    Raises:
        TaskError: anything else in the expression, or a division by zero.
    """
    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_OPS:
            return _ARITH_OPS[type(node.op)](value(node.left), value(node.right))
        raise TaskError(f"arith: {expression!r} is not plain arithmetic")

    try:
        result = value(ast.parse(str(expression), mode="eval"))
    except (SyntaxError, ZeroDivisionError) as exc:
        raise TaskError(f"arith: cannot compute {expression!r}: {exc}") from exc
    return int(result) if float(result).is_integer() else round(result, 10)


def fill(value: Any, params: dict[str, Any]) -> Any:
    """Fill ``{name}`` placeholders in strings, recursively through lists and dicts.

    Raises:
        TaskError: a placeholder names no parameter.
    """
    if isinstance(value, str):
        whole = _ONE_PLACEHOLDER.match(value)
        if whole and whole.group(1) in params:
            found = params[whole.group(1)]
            if whole.group(2) is None:
                return found
            if isinstance(found, dict) and whole.group(2) in found:
                return found[whole.group(2)]
        try:
            return value.format(**params)
        except (KeyError, IndexError, ValueError) as exc:
            raise TaskError(f"cannot fill {value!r}: {exc!r} (known parameters: {sorted(params)})") from exc
    if isinstance(value, list):
        return [fill(v, params) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, params) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- set-up


def apply_setup(phone: Any, instance: TaskInstance) -> None:
    """Reset the phone and apply the instance's set-up operations in order.

    Raises:
        TaskError: an operation is unknown or does not fit the phone's state.
    """
    phone.reset()
    opened: str | None = None
    with phone.lock:
        for op in instance.filled(instance.template.setup):
            if not isinstance(op, dict) or len(op) != 1:
                raise TaskError(f"{instance.template.id}: a set-up step must have exactly one key, got {op!r}")
            (kind, arg), = op.items()
            if kind == "open":
                opened = arg
            else:
                _apply_op(phone, kind, arg, instance.template.id)
        if opened:
            phone.start_app(phone.app(opened).package)
        phone.changed()


def _apply_op(phone: Any, kind: str, arg: Any, tid: str) -> None:
    if kind in ("set", "append", "remove"):
        path = arg.get("path", "")
        key = path.split(".", 1)[0].split("[", 1)[0]
        app = phone.app(key)
        data = app.snapshot()
        rest = path[len(key):].lstrip(".")
        if kind == "set":
            set_path(data, rest, arg["value"])
        elif kind == "append":
            append_path(data, rest, arg["value"])
        else:
            remove_path(data, rest)
        app.load(data)
    elif kind == "notify":
        app = phone.app(arg["app"])
        phone.notify(app.package, arg["title"], arg.get("text", ""))
    elif kind == "call":
        app = phone.app(arg["app"])
        hook = getattr(app, f"setup_{arg['method']}", None)
        if hook is None:
            raise TaskError(f"{tid}: app {app.key!r} has no set-up hook setup_{arg['method']}")
        hook(**arg.get("args", {}))
    else:
        raise TaskError(f"{tid}: unknown set-up operation {kind!r} (use set, append, remove, notify, call, open)")
