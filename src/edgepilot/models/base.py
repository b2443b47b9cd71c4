"""The ModelBackend seam: chat messages in, one completion out, optionally schema-constrained."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str
    images: tuple[bytes, ...] = ()
    """PNG screenshots that go with ``content`` (only for backends that see images)."""


class Completion(BaseModel):
    """What a model answered, and what it cost."""

    model_config = ConfigDict(frozen=True)

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    ms: float = 0.0
    constrained: bool = False
    prompt_evaluated: int | None = None
    """Prompt tokens actually evaluated (the rest came from the prefix cache); None when unknown."""
    prefill_ms: float | None = None
    decode_ms: float | None = None


StopCheck = Callable[[], bool]
"""Asked while a model answers; True means stop now (a run's stop key, the daemon's safety stop)."""


@runtime_checkable
class ModelBackend(Protocol):
    """Anything that completes a chat: llama.cpp in-process, an OpenAI-compatible server, a script.

    Its capabilities are fixed when it is built: ``vision`` says whether it sees screenshots. Nothing is set on a
    backend from outside; what differs per call (the schema, a stop check) is an argument of :meth:`complete`.
    """

    name: str
    vision: int
    """The longest side, in pixels, of the screenshot sent with the question; 0: it reads text only."""

    def complete(self, messages: list[Message], *, schema: dict | None = None, max_tokens: int = 256,
                 temperature: float = 0.0, should_stop: StopCheck | None = None) -> Completion:
        """Answer the conversation; with ``schema``, the answer is JSON valid against it.

        ``should_stop`` is asked before the call and while it runs (between tokens, where the backend can);
        when it says stop, the call ends with a ModelError and nothing it produced is returned.

        Raises:
            ModelError: the model failed, cannot honour the schema, or was stopped.
        """
        ...
