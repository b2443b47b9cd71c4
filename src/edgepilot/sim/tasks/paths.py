"""Paths into the phone's state snapshot: ``app.list[key=value].field``, ``app.list[-1]``."""

from __future__ import annotations

import re
from typing import Any

from edgepilot.errors import TaskError

_TOKEN = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")

Token = tuple[str, Any]  # ("key", name) | ("index", int) | ("select", (field, value))



class _Missing:
    """The value at a path that does not exist (survives copying and pickling, unlike a bare object())."""

    def __repr__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict) -> _Missing:
        return self

    def __reduce__(self) -> str:  # unpickled as the module's MISSING itself (checks compare by identity)
        return "MISSING"


MISSING: Any = _Missing()


def parse_path(path: str) -> list[Token]:
    """Split a path into tokens.

    Raises:
        TaskError: the path is empty or malformed.
    """
    tokens: list[Token] = []
    pos = 0
    path = path.strip()
    while pos < len(path):
        if path[pos] == ".":
            pos += 1
            continue
        m = _TOKEN.match(path, pos)
        if not m:
            raise TaskError(f"bad path {path!r} at character {pos}: expected a name or [selector]")
        name, selector = m.groups()
        if name is not None:
            tokens.append(("key", name.strip()))
        elif re.fullmatch(r"-?\d+", selector.strip()):
            tokens.append(("index", int(selector)))
        elif "=" in selector:
            field, value = selector.split("=", 1)
            tokens.append(("select", (field.strip(), value.strip())))
        else:
            raise TaskError(f"bad selector [{selector}] in path {path!r}: use [N] or [field=value]")
        pos = m.end()
    if not tokens:
        raise TaskError("empty path")
    return tokens


def _matches(element: Any, field: str, value: str) -> bool:
    return isinstance(element, dict) and str(element.get(field, MISSING)) == value


def _step(node: Any, token: Token) -> Any:
    kind, arg = token
    if kind == "key":
        if isinstance(node, dict) and arg in node:
            return node[arg]
        return MISSING
    if not isinstance(node, list):
        return MISSING
    if kind == "index":
        return node[arg] if -len(node) <= arg < len(node) else MISSING
    field, value = arg
    return next((e for e in node if _matches(e, field, value)), MISSING)


def get_path(data: Any, path: str) -> Any:
    """The value at ``path``, or :data:`MISSING`."""
    node = data
    for token in parse_path(path):
        node = _step(node, token)
        if node is MISSING:
            return MISSING
    return node


def _parent(data: Any, path: str) -> tuple[Any, Token]:
    tokens = parse_path(path)
    node = data
    for token in tokens[:-1]:
        node = _step(node, token)
        if node is MISSING:
            raise TaskError(f"path {path!r} does not exist in the phone's state (stopped at {token[1]!r})")
    return node, tokens[-1]


def set_path(data: Any, path: str, value: Any) -> None:
    """Set the value at ``path``; the parent must exist.

    Raises:
        TaskError: the parent does not exist, or the last part cannot be set.
    """
    parent, (kind, arg) = _parent(data, path)
    if kind == "key" and isinstance(parent, dict):
        parent[arg] = value
    elif kind == "index" and isinstance(parent, list) and -len(parent) <= arg < len(parent):
        parent[arg] = value
    elif kind == "select" and isinstance(parent, list):
        for i, element in enumerate(parent):
            if _matches(element, *arg):
                parent[i] = value
                return
        raise TaskError(f"nothing in {path!r} matches [{arg[0]}={arg[1]}]")
    else:
        raise TaskError(f"cannot set {path!r}")


def append_path(data: Any, path: str, value: Any) -> None:
    """Append ``value`` to the list at ``path``.

    Raises:
        TaskError: the path is not a list.
    """
    target = get_path(data, path)
    if not isinstance(target, list):
        raise TaskError(f"cannot append to {path!r}: it is not a list in the phone's state")
    target.append(value)


def remove_path(data: Any, path: str) -> int:
    """Remove every list element that the last selector of ``path`` matches; return how many."""
    parent, (kind, arg) = _parent(data, path)
    if not isinstance(parent, list):
        raise TaskError(f"cannot remove {path!r}: its parent is not a list")
    if kind == "index":
        if -len(parent) <= arg < len(parent):
            del parent[arg]
            return 1
        return 0
    if kind != "select":
        raise TaskError(f"cannot remove {path!r}: end it with [field=value] or [N]")
    before = len(parent)
    parent[:] = [e for e in parent if not _matches(e, *arg)]
    return before - len(parent)
