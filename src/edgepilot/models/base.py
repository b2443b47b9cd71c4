"""The ModelBackend seam: chat messages in, one completion out, optionally schema-constrained."""

from __future__ import annotations

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


@runtime_checkable
class ModelBackend(Protocol):
    """Anything that completes a chat: llama.cpp in-process, an OpenAI-compatible server, a script."""

    name: str

    def complete(self, messages: list[Message], *, schema: dict | None = None, max_tokens: int = 256,
                 temperature: float = 0.0) -> Completion:
        """Answer the conversation; with ``schema``, the answer is JSON valid against it.

        Raises:
            ModelError: the model failed, or cannot honour the schema.
        """
        ...
