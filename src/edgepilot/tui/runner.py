"""Where the TUI's runs come from: the :class:`Runner` seam and the in-process :class:`LocalRunner`.

A runner starts a task on a device, pauses, resumes and stops it, takes the
answers to confirmations, and reports everything as the JSON events of
:mod:`edgepilot.agent.events` (``started``, ``step``, ``confirm``,
``confirmed``, ``paused``, ``resumed``, ``finished``) to one listener. The app
only reads events, so a run in this process and a run in the daemon look the
same. A run that cannot start (broken policy, model that does not load,
device that cannot be reached) ends with a ``finished`` event of status
``error`` whose ``reason`` says what to do.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any, Protocol

from edgepilot.agent.events import (
    Event,
    ended_event,
    finished_event,
    paused_event,
    resumed_event,
    started_event,
    step_event,
)
from edgepilot.agent.loop import RunControl
from edgepilot.agent.session import execute, load_run_policy, prepare_run
from edgepilot.config import Config
from edgepilot.devices import OpenDevice, open_device
from edgepilot.errors import EdgepilotError, MissingInput
from edgepilot.tui.confirm import EventSink, TuiConfirmer

RunEvent = Event
BackendFactory = Callable[[], Any]
DeviceOpener = Callable[[str], AbstractContextManager[OpenDevice]]


class Runner(Protocol):
    """A source of runs for the TUI. Methods other than :meth:`warm_up` return at once."""

    def listen(self, sink: EventSink) -> None:
        """Send every event from now on to ``sink`` (called from any thread; it must not block)."""

    def warm_up(self) -> str:
        """Get ready (load the model, connect); blocks. Returns a label of what runs the tasks.

        Raises:
            EdgepilotError: not ready (the message says why and what to do).
        """

    def start(self, task: str, device: str) -> str:
        """Start ``task`` on ``device`` (a spec of :func:`~edgepilot.devices.open_device`); the run's id.

        Raises:
            EdgepilotError: a run is already going, or the request was refused.
        """

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self) -> None: ...

    def answer(self, confirm_id: str, answer: str) -> None:
        """Answer a ``confirm`` event: ``yes``, ``no`` or ``always``."""

    def give(self, input_id: str, value: str | None) -> None:
        """Answer an ``input`` event with the value (None: cancelled)."""

    def close(self) -> None:
        """Stop what runs and let go of models, devices and connections."""


class RunBusy(EdgepilotError):
    """A run is already going; one at a time."""


def _default_opener(spec: str) -> AbstractContextManager[OpenDevice]:
    return open_device(spec)


class LocalRunner:
    """Runs tasks in this process, in a worker thread, set up by :mod:`edgepilot.agent.session`.

    The model is opened once (:meth:`warm_up`, or the first run) and kept; the
    device too, until another one is picked or it fails. One run at a time.

    Args:
        config: the user's settings (trajectories folder, confirm timeout...).
        model: a model spec for :func:`~edgepilot.models.registry.open_model` (None: the configured one).
        policy_file: the policy file (None: the one in force, as ``edgepilot policy show`` finds it).
        backend_factory: makes the model instead of ``open_model`` (a scripted model in tests).
        opener: opens a device spec (default :func:`~edgepilot.devices.open_device`).
        max_steps: step budget of each run (None: the config's).
    """

    def __init__(self, config: Config | None = None, *, model: str | None = None, policy_file: Path | None = None,
                 backend_factory: BackendFactory | None = None, opener: DeviceOpener | None = None,
                 max_steps: int | None = None) -> None:
        self.config = config or Config()
        self.model = model
        self.policy_file = policy_file
        self.max_steps = max_steps
        self._factory = backend_factory
        self._opener = opener or _default_opener
        self._sink: EventSink = lambda event: None
        self._lock = threading.RLock()
        self._model_lock = threading.Lock()
        self._backend: Any = None
        self._device: tuple[str, OpenDevice, ExitStack] | None = None
        self._thread: threading.Thread | None = None
        self._control: RunControl | None = None
        self._confirmer: TuiConfirmer | None = None
        self._run_id = ""

    # ------------------------------------------------------------ the seam

    def listen(self, sink: EventSink) -> None:
        self._sink = sink

    def warm_up(self) -> str:
        try:
            backend = self._load_model()
        except Exception as exc:  # ModelError, ConfigError, or llama.cpp missing (ImportError)
            raise EdgepilotError(f"the model did not load: {exc}") from exc
        return str(getattr(backend, "name", "model"))

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self, task: str, device: str) -> str:
        if not task.strip():
            raise EdgepilotError('the task is empty: say what to do, e.g. "turn on airplane mode"')
        with self._lock:
            if self.running:
                raise RunBusy("a run is already going; stop it first (ctrl+s)")
            run_id = uuid.uuid4().hex[:12]
            control = RunControl()
            confirmer = TuiConfirmer(run_id, self._emit)
            self._run_id, self._control, self._confirmer = run_id, control, confirmer
            self._thread = threading.Thread(target=self._run, args=(run_id, task.strip(), device, control, confirmer),
                                            name=f"edgepilot-run-{run_id}", daemon=True)
            self._thread.start()
        return run_id

    def pause(self) -> None:
        with self._lock:
            control = self._control if self.running else None
            if control is None or control.stopped() or control.paused:
                return
            control.pause()
            self._emit(paused_event(self._run_id))

    def resume(self) -> None:
        with self._lock:
            control = self._control if self.running else None
            if control is None or not control.paused:
                return
            control.resume()
            self._emit(resumed_event(self._run_id))

    def stop(self) -> None:
        with self._lock:
            control, confirmer = self._control, self._confirmer
            if control is None or not self.running:
                return
            control.stop("stopped by the user")
        if confirmer is not None:
            confirmer.close("the run was stopped")

    def answer(self, confirm_id: str, answer: str) -> None:
        confirmer = self._confirmer
        if confirmer is not None:
            confirmer.answer(confirm_id, answer)

    def give(self, input_id: str, value: str | None) -> None:
        confirmer = self._confirmer
        if confirmer is not None:
            confirmer.give(input_id, value)

    def close(self) -> None:
        self._sink = lambda event: None
        self.stop()
        thread = self._thread
        if thread is not None:
            thread.join(15)
        self._close_device()

    # ------------------------------------------------------------ one run

    def _emit(self, event: RunEvent) -> None:
        try:
            self._sink(event)
        except Exception:  # a listener that went away must not kill the run
            pass

    def _load_model(self) -> Any:
        with self._model_lock:
            if self._backend is None:
                if self._factory is not None:
                    self._backend = self._factory()
                else:
                    from edgepilot.models.registry import open_model

                    self._backend = open_model(self.model, self.config)
            return self._backend

    def _open(self, spec: str) -> OpenDevice:
        if self._device is not None and self._device[0] == spec:
            return self._device[1]
        self._close_device()
        stack = ExitStack()
        try:
            opened = stack.enter_context(self._opener(spec))
        except BaseException:
            stack.close()
            raise
        self._device = (spec, opened, stack)
        return opened

    def _close_device(self) -> None:
        held, self._device = self._device, None
        if held is not None:
            try:
                held[2].close()
            except Exception:  # a device that is gone cannot be closed cleanly; nothing to do about it
                pass

    def _run(self, run_id: str, task: str, device: str, control: RunControl, confirmer: TuiConfirmer) -> None:
        started = time.perf_counter()
        try:
            prepared = self._prepare(task, device, control, confirmer)
        except _CannotStart as why:
            self._emit(ended_event(run_id, status=why.status, reason=str(why), steps=0,
                                   seconds=round(time.perf_counter() - started, 3)))
            return
        self._emit(started_event(run_id, task=task, device=prepared.meta.get("device", device),
                                 trajectory=str(prepared.writer.folder),
                                 sop=prepared.sop.sop.name if prepared.sop is not None else None,
                                 policy=prepared.meta.get("policy", "off")))
        try:
            result = execute(prepared, on_step=lambda step: self._emit(step_event(run_id, step)))
        except Exception as exc:  # a bug must still end the run on screen, not leave it spinning
            self._emit(ended_event(run_id, status="error", reason=f"internal error: {type(exc).__name__}: {exc}",
                                   steps=prepared.writer.count, seconds=round(time.perf_counter() - started, 3)))
            return
        finally:
            confirmer.close("the run has ended")
        if result.status == "error" and result.reason.startswith("device:"):
            self._close_device()  # it went away: open it afresh next time
        self._emit(finished_event(run_id, result))

    def _prepare(self, task: str, device: str, control: RunControl, confirmer: TuiConfirmer) -> Any:
        """Policy, model, device, then the run itself; each failure says which of them failed.

        Raises:
            _CannotStart: the run cannot start (or was stopped before it did).
        """

        try:
            policy = load_run_policy(self.config, self.policy_file)  # a broken policy stops the run before the model
        except EdgepilotError as exc:
            raise _CannotStart(f"policy: {exc}") from exc
        try:
            backend = self._load_model()
        except Exception as exc:  # ModelError, ConfigError, or llama.cpp missing (ImportError)
            raise _CannotStart(f"model: {exc}") from exc
        if control.stopped():
            raise _CannotStart(control.reason, "stopped")
        try:
            opened = self._open(device)
        except Exception as exc:  # DeviceError, ConfigError, or a socket that would not open
            raise _CannotStart(f"device {device!r} cannot be reached: {exc}") from exc
        try:
            prepared = prepare_run(task, opened, backend, config=self.config, policy=policy, confirmer=confirmer,
                                   max_steps=self.max_steps, control=control,
                                   ask_value=lambda name, description, secret: confirmer.ask_value(
                                       name, description, secret, self.config.confirm_timeout))
        except MissingInput as exc:  # the goal leaves out a value the procedure needs, and it was not given
            if control.stopped():
                raise _CannotStart(control.reason, "stopped") from exc
            raise _CannotStart(str(exc), "needs_input") from exc
        except (EdgepilotError, ValueError) as exc:  # an SOP that does not exist, an audit log that cannot be opened
            raise _CannotStart(str(exc)) from exc
        return prepared


class _CannotStart(Exception):
    """Why a run did not start; ``status`` is ``error``, or ``stopped`` when the user stopped it first."""

    def __init__(self, reason: str, status: str = "error") -> None:
        super().__init__(reason)
        self.status = status
