"""The Python API: one object, one call per task.

    >>> from edgepilot import Agent
    >>> with Agent(device="virtual") as agent:                     # doctest: +SKIP
    ...     result = agent.run("turn on wifi")
    ...     print(result.status, result.steps, result.trajectory)

:class:`Agent` opens the model and the device once (on the first run) and
keeps them for the next runs; every action passes the same policy gate as
``edgepilot run``. Sensitive steps are put to ``confirm``, a callback that gets
the :class:`~edgepilot.policy.confirm.ConfirmRequest` (its ``consequence`` says
what the step will do) and answers True / False, or "yes" / "no" / "always";
without one they are refused, since no one is there to ask.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepilot.agent.loop import RunResult, StepReport
from edgepilot.agent.session import execute, load_run_policy, prepare_run
from edgepilot.config import Config, load_config
from edgepilot.devices import open_device
from edgepilot.models.base import ModelBackend
from edgepilot.models.registry import open_model
from edgepilot.policy.confirm import ConfirmRequest, ConfirmResult, RefuseAll

Answer = bool | str
ConfirmCallback = Callable[[ConfirmRequest], Answer]

__all__ = ["Agent", "AgentResult", "ConfirmCallback"]


@dataclass(frozen=True)
class AgentResult:
    """How a run ended.

    ``status`` is the loop's: ``finished`` (the agent said it is done), ``gave_up`` (it said the task cannot
    be done), ``stuck``, ``budget`` (out of steps), ``stopped`` (by the policy or a stop), ``interrupted`` or
    ``error``;
    ``reason`` says why in words; ``answer`` is what a question asked for.
    """

    task: str
    status: str
    reason: str
    answer: str | None
    steps: int
    seconds: float
    trajectory: Path | None
    confirmations: int = 0

    @property
    def finished(self) -> bool:
        """Whether the task is done and checked (``status == "finished"``); a finish nothing could confirm is
        ``unverified``, with the reason in :attr:`reason`."""
        return self.status == "finished"

    @classmethod
    def of(cls, task: str, result: RunResult, trajectory: Path | None) -> AgentResult:
        asked = sum(1 for s in result.steps if s.gate is not None and s.gate.asked)
        return cls(task=task, status=result.status, reason=result.reason, answer=result.answer,
                   steps=len(result.steps), seconds=round(result.seconds, 2), trajectory=trajectory,
                   confirmations=asked)


class _CallbackConfirmer:
    """The policy's :class:`~edgepilot.policy.confirm.Confirmer` over a plain callback."""

    def __init__(self, callback: ConfirmCallback) -> None:
        self.callback = callback

    def ask(self, request: ConfirmRequest, timeout: float) -> ConfirmResult:
        answer = self.callback(request)
        if isinstance(answer, bool):
            return ConfirmResult("yes" if answer else "no")
        word = str(answer).strip().casefold()
        if word in ("yes", "y", "always", "a"):
            return ConfirmResult("always" if word in ("always", "a") else "yes")
        return ConfirmResult("no", "" if word in ("no", "n", "") else str(answer)[:200])


class Agent:
    """The agent on one device with one model, under the policy.

    Args:
        device: ``virtual`` (a virtual phone started for this agent), an adb serial, ``desktop`` or
            ``desktop:xvfb`` (as ``edgepilot run --device``).
        model: a model name (``edgepilot models``), a GGUF path, an OpenAI-compatible URL, or a ready
            :class:`~edgepilot.models.base.ModelBackend`; None: config.toml's model (the bundled one).
        confirm: answers the policy's questions (see the module's docs); None refuses them.
        policy: a policy file; None: the one ``edgepilot run`` uses; False: no policy (nothing is checked).
        sop: ``auto`` (procedures retrieved for each task), ``off``, or a procedure's name.
        max_steps: the step budget of a run (None: config.toml's).
        on_step: called with each step as it ends (progress).
        config: settings (None: config.toml and ``EDGEPILOT_*``).
    """

    def __init__(self, device: str = "virtual", model: str | ModelBackend | None = None, *,
                 confirm: ConfirmCallback | None = None, policy: str | Path | None | bool = None,
                 sop: str = "auto", max_steps: int | None = None,
                 on_step: Callable[[StepReport], None] | None = None, config: Config | None = None) -> None:
        self.device_spec = device
        self.model_spec = model
        self.sop = sop
        self.max_steps = max_steps
        self.on_step = on_step
        self.config = config or load_config()
        self.policy = load_run_policy(self.config, policy if isinstance(policy, str | Path) else None,
                                      off=policy is False)  # a broken policy fails here, before anything opens
        self.confirmer = _CallbackConfirmer(confirm) if confirm is not None else RefuseAll(
            "no one is there to confirm: pass confirm=... to Agent to answer sensitive steps")
        self._stack: contextlib.ExitStack | None = None
        self._backend: Any = None
        self._opened: Any = None

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def model(self) -> Any:
        """The model backend (opened on first use)."""
        if self._backend is None:
            spec = self.model_spec
            self._backend = open_model(spec, self.config) if spec is None or isinstance(spec, str) else spec
        return self._backend

    def _device(self) -> Any:
        if self._opened is None:
            self._stack = contextlib.ExitStack()
            self._opened = self._stack.enter_context(open_device(self.device_spec))
        return self._opened

    def run(self, task: str, *, out: str | Path | None = None) -> AgentResult:
        """Do ``task``; the trajectory is saved as it goes (under the trajectories folder, or ``out``).

        Raises:
            ValueError: the task is empty.
            DeviceError, ModelError, PolicyError...: the device, the model or the policy cannot be opened.
        """
        if not task or not task.strip():
            raise ValueError('the task is empty: say what to do, e.g. "turn on airplane mode"')
        prepared = prepare_run(task, self._device(), self.model, config=self.config, policy=self.policy,
                               confirmer=self.confirmer, sop=self.sop, out=Path(out) if out else None,
                               max_steps=self.max_steps)
        result = execute(prepared, on_step=self.on_step)
        return AgentResult.of(task, result, prepared.writer.folder)

    def close(self) -> None:
        """Close the device (a virtual phone stops); the model is released with the object."""
        if self._stack is not None:
            self._stack.close()
        self._stack, self._opened = None, None
