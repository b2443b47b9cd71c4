"""The one error tree of edgepilot.

    EdgepilotError
     ├── ConfigError          a setting, file or flag is wrong
     │    └── SopError        an SOP file is invalid (each problem names file and line)
     ├── PerceptionError      a screen could not be read (bad dump, bad image)
     ├── DeviceError          a device is missing, disconnected or refused an action
     │    ├── ActionError     an action does not fit the current observation
     │    └── OutputTooLarge  a device sent more than edgepilot reads from one command
     ├── ModelError           a model failed to load or answered nonsense
     │    └── PromptTooLong   a prompt and its answer would not fit the model's context
     ├── PolicyError          a policy file is invalid
     ├── TaskError            a task template is invalid or cannot be set up
     └── SimError             the virtual phone was asked something it cannot do

Every message says what happened and what to do about it.
"""

from __future__ import annotations


class EdgepilotError(Exception):
    """Base of every error edgepilot raises on purpose."""


class ConfigError(EdgepilotError):
    """A setting, a file or a command-line flag is wrong."""


class SopError(ConfigError):
    """One or more SOP files are invalid; ``problems`` lists each as ``file:line: message``."""

    def __init__(self, message: str, problems: tuple = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class AppMemoryError(ConfigError):
    """An app memory file is corrupt, of another format, or missing (docs/memory.md)."""


class PerceptionError(EdgepilotError):
    """A screen could not be read: malformed dump, unreadable image."""


class DeviceError(EdgepilotError):
    """A device is missing, went away, or failed to carry out an action."""


class ActionError(DeviceError):
    """An action does not fit the current observation (bad index, no focus)."""


class OutputTooLarge(DeviceError):
    """A device sent more than edgepilot reads from one command (a huge UI dump or screenshot); reading stopped
    at ``received`` bytes, past the ``limit``."""

    def __init__(self, message: str, *, received: int, limit: int) -> None:
        super().__init__(message)
        self.received = received
        self.limit = limit


class ModelError(EdgepilotError):
    """A model failed to load, or its answer could not be used."""


class PromptTooLong(ModelError):
    """A prompt plus the room for its answer is longer than the model's context; nothing was asked.

    ``tokens`` is what the prompt and the answer's room would take, ``limit`` the context's length.
    """

    def __init__(self, message: str, *, tokens: int, limit: int) -> None:
        super().__init__(message)
        self.tokens, self.limit = tokens, limit


class PolicyError(EdgepilotError):
    """A policy file is invalid."""


class TaskError(EdgepilotError):
    """A task template is invalid, or a task could not be set up or checked."""


class SimError(EdgepilotError):
    """The virtual phone was asked for something it cannot do."""


class GoalError(EdgepilotError):
    """A goal sentence the agent cannot take: empty, far too long, or without words."""


class MissingInput(GoalError):
    """A goal that leaves out a value its procedure needs (a PIN, a day), and no one gave it."""

    def __init__(self, message: str, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing
