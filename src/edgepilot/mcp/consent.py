"""The policy's questions as MCP elicitations: the client of the tool call in progress answers them.

    policy gate ──ask──▶ ClientConfirmer ──the call's asker──▶ elicitation ──▶ the MCP client's user
         ◀──────────── yes / always / no (decline, cancel, no answer in time, a client that cannot be asked) ◀──┘

A gate lives longer than one tool call (``act`` calls with the same device and goal share one, so an "always"
and a refusal hold for the goal), but the client to ask is the one whose call is running: each tool call puts
its asker in a context variable (:func:`asking`), which the worker thread running the call inherits.

How the question travels depends on the protocol the client speaks. Up to MCP 2025-11-25 the server sends an
``elicitation/create`` request in the middle of the call and waits for the answer (``confirm_timeout``). From
2026-07-28 a server may not send requests; an ``act`` then ends with the question as its result
(``input_required``, :class:`QuestionPending`) and the client calls again with the answer, which counts only
for the very question it was shown (:func:`digest`). A run (``run_task``) cannot pause that way, so on such a
connection its questions are refused.

A client that cannot answer (no elicitation capability, or no way for a question to reach it) gets every
question refused, with a message saying why: the step is never taken without a yes, and never skipped silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pydantic import BaseModel, Field

from edgepilot.policy.confirm import ConfirmRequest, ConfirmResult

Asker = Callable[[ConfirmRequest, float], ConfirmResult]
"""Asks the client of one tool call: ``(request, timeout) -> answer``; called from the call's worker thread."""

_ASKER: ContextVar[Asker | None] = ContextVar("edgepilot_mcp_asker", default=None)


class ClientConfirmer:
    """The ``Confirmer`` of every gate an MCP server builds: asks the client whose tool call is in progress."""

    def ask(self, request: ConfirmRequest, timeout: float) -> ConfirmResult:
        asker = _ASKER.get()
        if asker is None:
            return ConfirmResult("no", "no MCP client call is in progress to ask")
        return asker(request, timeout)


@contextmanager
def asking(asker: Asker) -> Iterator[None]:
    """While inside (and in worker threads started inside), :class:`ClientConfirmer` asks through ``asker``."""
    token = _ASKER.set(asker)
    try:
        yield
    finally:
        _ASKER.reset(token)


class Consent(BaseModel):
    """The form a client shows with the question (a yes/no, and an "always" for the rest of the goal)."""

    allow: bool = Field(description="Yes: let the agent do this. No: refuse it.")
    always: bool = Field(default=False, description="Also allow this kind of step, without asking again, for the "
                                                    "rest of this goal.")


class GivenValue(BaseModel):
    """The form a client shows for a value the goal left out (never a secret: MCP forbids asking for those)."""

    value: str = Field(description="The value, as you would have written it in the task.")


def value_question(name: str, description: str) -> str:
    """The question for a value the goal left out."""
    return (f"The task does not say {description or name} ({name}), which its procedure needs. What is it? "
            "No answer leaves the task undone.")


def question(request: ConfirmRequest) -> str:
    """The question's text: what will happen first, each value on one line with control characters shown as
    escapes (:meth:`ConfirmRequest.lines`)."""
    return "\n".join([*request.lines(), "", "Allow it? No answer is a refusal."])


def why_not(capabilities: Any, can_send_request: bool) -> str:
    """Why this client cannot be asked ('' when it can): ``capabilities`` are the client's declared
    ``ClientCapabilities`` (None when it declared none)."""
    elicitation = getattr(capabilities, "elicitation", None)
    if elicitation is None:
        return ("this MCP client does not support elicitation, so nobody can be asked to confirm: refused. Use a "
                "client that answers elicitations, or let `edgepilot run` ask on a terminal")
    if getattr(elicitation, "form", None) is None and getattr(elicitation, "url", None) is not None:
        return "this MCP client supports only URL elicitation, not the yes/no form a confirmation needs: refused"
    if not can_send_request:
        return ("this connection cannot carry a question back to the client (a stateless or JSON-only HTTP "
                "request): refused; connect over stdio, or over streamable HTTP with a session")
    return ""


def answer_of(action: str, consent: Consent | None) -> ConfirmResult:
    """A :class:`ConfirmResult` from an elicitation's outcome: ``accept`` with the form filled in, ``decline``,
    ``cancel``."""
    if action != "accept" or consent is None:
        return ConfirmResult("no", {"decline": "declined by the user", "cancel": "cancelled by the user"}.get(
            action, "no answer"))
    if not consent.allow:
        return ConfirmResult("no", "refused by the user")
    return ConfirmResult("always" if consent.always else "yes")


class QuestionPending(Exception):  # noqa: N818 - not an error: the call ends to ask, and is made again with the answer
    """Raised by an asker on a connection where a question is the call's result (MCP 2026-07-28: the client
    answers and calls again); ``question`` is the text to ask, ``digest`` binds the answer to it."""

    def __init__(self, question: str) -> None:
        super().__init__(question)
        self.question = question
        self.digest = digest(question)


def digest(question: str) -> str:
    """What the client echoes back with its answer: an answer counts only for the very question it was shown."""
    return hashlib.sha256(question.encode("utf-8")).hexdigest()
