"""The control API's wire format: one JSON object per line, in both directions.

A request is an object with ``op``; it may carry ``id`` (echoed in the reply)
and ``token``. A reply has ``ok`` (true, with the op's fields; or false, with
``code`` and ``error``). A subscribed connection also receives events: objects
with ``event`` (agent/events.py shapes). The ops and their fields are
listed in docs/daemon.md; :func:`parse_request` checks every field's type.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

PROTOCOL = 1
MAX_LINE = 1 << 20  # a request line longer than 1 MiB is refused and the connection closed



class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | int | None = None
    token: str | None = Field(default=None, max_length=256)


class Hello(_Op):
    """Authenticate this connection (``token`` required)."""

    op: Literal["hello"]
    token: str = Field(max_length=256)


class Status(_Op):
    op: Literal["status"]


class Run(_Op):
    """Queue a task; ``device`` defaults to the daemon's device."""

    op: Literal["run"]
    task: str = Field(min_length=1, max_length=4000)
    device: str | None = Field(default=None, min_length=1, max_length=200)
    max_steps: int | None = Field(default=None, ge=1, le=500)
    sop: str = Field(default="auto", min_length=1, max_length=200)


class Control(_Op):
    """Pause, resume or stop a run (``run`` omitted: the current one); ``all`` on stop also empties the queue."""

    op: Literal["pause", "resume", "stop"]
    run: str | None = Field(default=None, max_length=64)
    all: bool = False


class Subscribe(_Op):
    """Stream events on this connection: of one run (``run``) or all; ``replay`` sends that run's past events first
    (of the current run when no run is named); ``screenshots`` adds base64 PNGs to step and confirm events."""

    op: Literal["subscribe"]
    run: str | None = Field(default=None, max_length=64)
    replay: bool = True
    screenshots: bool = False


class Answer(_Op):
    """Answer a pending confirmation; the first answer wins."""

    op: Literal["answer"]
    confirm: str = Field(min_length=1, max_length=64)
    answer: Literal["yes", "no", "always"]


class Shutdown(_Op):
    op: Literal["shutdown"]


Request = Hello | Status | Run | Control | Subscribe | Answer | Shutdown
OPS = ("hello", "status", "run", "pause", "resume", "stop", "subscribe", "answer", "shutdown")
_ADAPTER: TypeAdapter[Request] = TypeAdapter(Annotated[Request, Field(discriminator="op")])


class ProtocolError(Exception):
    """A request the daemon refuses; ``code`` is machine-readable, the message says what to send instead."""

    def __init__(self, code: str, message: str, request_id: str | int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


def parse_request(line: bytes) -> Request:
    """One request from one line (without its newline).

    Raises:
        ProtocolError: not UTF-8, not JSON, not an object, unknown op, or a field missing or of the wrong type.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_request", f"the request is not UTF-8 text (byte {exc.start}); "
                            "send one JSON object per line") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("bad_request", f"the request is not JSON ({getattr(exc, 'msg', 'nested too deep')}); "
                            'send one JSON object per line, e.g. {"op": "status"}') from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", f"a request is a JSON object, not {type(data).__name__}; "
                            'e.g. {"op": "status"}')
    request_id = data.get("id") if isinstance(data.get("id"), str | int) and not isinstance(data.get("id"), bool) \
        else None
    op = data.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {op!r}; known ops: {', '.join(OPS)}", request_id)
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"][1:]) or "request"
            problems.append(f"{where}: {err['msg']}")
        raise ProtocolError("bad_request", f"bad {op!r} request: " + "; ".join(problems), request_id) from None


def encode(message: dict[str, Any]) -> bytes:
    """One line of the protocol."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def ok(request_id: str | int | None = None, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": True, **fields}
    if request_id is not None:
        out["id"] = request_id
    return out


def error(code: str, message: str, request_id: str | int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": False, "code": code, "error": message}
    if request_id is not None:
        out["id"] = request_id
    return out
