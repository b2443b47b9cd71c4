"""The daemon's run queue: tasks run one at a time, each through agent/session.py like every other front end.

A job is queued, then run (device opened, run prepared with a
:class:`DaemonConfirmer`, executed under its own :class:`RunControl`), then
finished; it emits ``queued``, ``started``, ``step``..., ``finished``. Every
job ends with exactly one ``finished`` event, whatever happens: a job stopped
in the queue, a device that cannot be opened or goes away, a model that
failed to load, a bug. The worker thread survives all of them.
"""

from __future__ import annotations

import base64
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from edgepilot.agent.events import (
    ended_event,
    finished_fields,
    paused_event,
    queued_event,
    resumed_event,
    started_event,
    step_event,
)
from edgepilot.agent.loop import RunControl, StepReport
from edgepilot.agent.records import RunRecord
from edgepilot.agent.session import AskValue, execute, load_run_policy, prepare_run
from edgepilot.config import Config
from edgepilot.daemon.bus import EventBus
from edgepilot.daemon.confirm import Confirmations, DaemonConfirmer
from edgepilot.daemon.model import ModelHolder
from edgepilot.devices import open_device as open_device_default
from edgepilot.errors import EdgepilotError, MissingInput

log = logging.getLogger("edgepilot.daemon")

JobState = Literal["queued", "running", "finished"]
KEEP_RECENT = 20


class RunRefused(Exception):
    """A run the daemon does not accept (no model, empty task, shutting down)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Job:
    """One task given to the daemon, from queued to finished."""

    id: str
    task: str
    device: str
    max_steps: int | None = None
    sop: str = "auto"
    source: str = "client"
    control: RunControl = field(default_factory=RunControl)
    state: JobState = "queued"
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    steps: int = 0
    trajectory: str | None = None
    result: dict[str, Any] | None = None
    stop_by: str = ""

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.id, "task": self.task, "device": self.device, "state": self.state,
                               "source": self.source, "submitted": self.submitted}
        if self.state != "queued":
            out.update(started=self.started, steps=self.steps, trajectory=self.trajectory)
        if self.state == "running":
            out["paused"] = self.control.paused
            out["stopping"] = self.control.stopped()
        if self.result is not None:
            out.update(status=self.result.get("status"), reason=self.result.get("reason"))
        return out


OpenDevice = Callable[[str], Any]  # spec -> a context manager yielding an OpenDevice


class Runner:
    """Takes jobs from the queue and runs them on a worker thread, one at a time.

    Args:
        config: config.toml (step budget, confirm timeout, policy, trajectories).
        model: the shared model.
        bus: where events go.
        confirmations: the open confirmations (the run's Confirmer asks through them).
        default_device: device spec of jobs that name none.
        policy_off: run without the policy (``--no-policy``, for experiments).
        open_device: opens a device spec (default :func:`edgepilot.devices.open_device`).
    """

    def __init__(self, config: Config, model: ModelHolder, bus: EventBus, confirmations: Confirmations, *,
                 default_device: str, policy_off: bool = False, open_device: OpenDevice | None = None,
                 on_start: Callable[[Job], None] | None = None,
                 on_finish: Callable[[Job, dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.on_start = on_start  # just before a run opens its device
        self.on_finish = on_finish  # after its ``finished`` event
        self.model = model
        self.bus = bus
        self.confirmations = confirmations
        self.default_device = default_device
        self.policy_off = policy_off
        if open_device is None:
            open_device = open_device_default
        self._open_device = open_device
        self._lock = threading.Condition()
        self._queue: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._recent: deque[Job] = deque(maxlen=KEEP_RECENT)
        self.current: Job | None = None
        self._ids = itertools.count(1)
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="daemon-runner", daemon=True)

    # ------------------------------------------------------------ API (any thread)

    def start(self) -> None:
        self._thread.start()

    def submit(self, task: str, *, device: str | None = None, max_steps: int | None = None, sop: str = "auto",
               source: str = "client") -> Job:
        """Queue a task.

        Raises:
            RunRefused: the task is empty, the model failed to load, or the daemon is shutting down.
        """
        task = task.strip()
        if not task:
            raise RunRefused("bad_request", 'the task is empty: say what to do, e.g. "turn on airplane mode"')
        why = self.model.refusal()
        if why:
            raise RunRefused("no_model", why)
        with self._lock:
            if self._closing:
                raise RunRefused("shutting_down", "the daemon is shutting down")
            job = Job(id=f"r{next(self._ids)}", task=task, device=device or self.default_device, max_steps=max_steps,
                      sop=sop, source=source)
            self._queue.append(job)
            self._jobs[job.id] = job
            position = len(self._queue) + (self.current is not None)
            self._lock.notify_all()
        log.info("queued %s (%s): %r on %s", job.id, source, task, job.device)
        self.bus.emit(queued_event(job.id, task=job.task, device=job.device, position=position, source=source))
        return job

    def find(self, run: str | None) -> Job | None:
        """The job with id ``run``, or the current one (None: no such job / nothing running)."""
        with self._lock:
            return self._jobs.get(run) if run else self.current

    def pause(self, job: Job) -> bool:
        if job.state == "finished" or job.control.stopped():
            return False
        if not job.control.paused:
            job.control.pause()
            self.bus.emit(paused_event(job.id))
        return True

    def resume(self, job: Job) -> bool:
        if job.state == "finished" or job.control.stopped():
            return False
        if job.control.paused:
            job.control.resume()
            self.bus.emit(resumed_event(job.id))
        return True

    def stop(self, job: Job, reason: str = "stopped by the user", by: str = "client") -> None:
        """Stop a job: a running one ends with no further action; a queued one never starts."""
        if job.state == "finished":
            return
        if not job.control.stopped():
            job.stop_by = by
        job.control.stop(reason)
        self.confirmations.refuse_run(job.id, reason)
        with self._lock:
            dequeued = job in self._queue
            if dequeued:
                self._queue.remove(job)
            self._lock.notify_all()
        if dequeued:  # it never starts: its finished event goes out now, not when the worker gets to it
            self._finish(job, {**self._ended_early("stopped", f"{reason} (before it started)"), "seconds": 0.0})

    def stop_all(self, reason: str, by: str) -> list[str]:
        """Stop the running job and every queued one; their ids."""
        with self._lock:
            jobs = ([self.current] if self.current is not None else []) + list(self._queue)
        for job in jobs:
            self.stop(job, reason, by)
        return [job.id for job in jobs]

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, stop everything, and wait for the worker to write the last ``finished``."""
        with self._lock:
            self._closing = True
        self.stop_all("the daemon is shutting down", "shutdown")
        with self._lock:
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"current": self.current.summary() if self.current else None,
                    "queue": [job.summary() for job in self._queue],
                    "recent": [job.summary() for job in reversed(self._recent)]}

    # ------------------------------------------------------------ worker

    def _next(self) -> Job | None:
        with self._lock:
            while not self._queue:
                if self._closing:
                    return None
                self._lock.wait()
            job = self._queue.popleft()
            self.current = job
            job.state = "running"
            job.started = time.time()
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            start = time.perf_counter()
            try:
                result = self._run(job)
            except Exception as exc:  # noqa: BLE001 - a bug in one run must not end the daemon
                log.exception("run %s crashed", job.id)
                result = {"status": "error", "reason": f"internal error: {type(exc).__name__}: {exc}",
                          "answer": None, "steps": job.steps}
            result.setdefault("seconds", round(time.perf_counter() - start, 3))
            self._finish(job, result)

    def _finish(self, job: Job, result: dict[str, Any]) -> None:
        stop = ({"stop": {"by": job.stop_by or "policy", "requested_at": job.control.stopped_at}}
                if job.control.stopped() else {})
        event = ended_event(job.id, **result, trajectory=job.trajectory, **stop)
        with self._lock:
            job.result, job.state = result, "finished"
            if self.current is job:
                self.current = None
            self._recent.append(job)
            live = [self.current] if self.current is not None else []
            self._jobs = {j.id: j for j in (*self._recent, *live, *self._queue)}
        log.info("finished %s: %s (%s)", job.id, result.get("status"), result.get("reason"))
        self.bus.emit(event)
        self._hook(self.on_finish, job, result)

    @staticmethod
    def _hook(hook: Callable[..., None] | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception:  # noqa: BLE001 - showing a window must never end the worker
            log.exception("daemon hook %s", getattr(hook, "__name__", hook))

    def _ended_early(self, status: str, reason: str) -> dict[str, Any]:
        return {"status": status, "reason": reason, "answer": None, "steps": 0}

    def _run(self, job: Job) -> dict[str, Any]:
        if job.control.stopped():
            return self._ended_early("stopped", f"{job.control.reason} (before it started)")
        try:
            backend = self.model.wait(job.control.stopped)
            policy = load_run_policy(self.config, off=self.policy_off)  # re-read per run: edits apply to the next
        except EdgepilotError as exc:
            return self._ended_early("error", str(exc))
        if backend is None:
            return self._ended_early("stopped", f"{job.control.reason} (before it started)")
        self._hook(self.on_start, job)
        try:
            opening = self._open_device(job.device)
            opened = opening.__enter__()
        except EdgepilotError as exc:
            return self._ended_early("error", f"device {job.device!r}: {exc}")
        try:
            return self._run_on(job, opened, backend, policy)
        finally:
            try:
                opening.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001 - a device that went away may fail to close; the run is over
                log.warning("closing device %s after run %s: %s", job.device, job.id, exc)

    def _run_on(self, job: Job, opened: Any, backend: Any, policy: Any) -> dict[str, Any]:
        try:
            confirmer = DaemonConfirmer(self.confirmations, job.id, job.control)
            prepared = prepare_run(job.task, opened, backend, config=self.config, policy=policy,
                                   confirmer=confirmer, sop=job.sop, max_steps=job.max_steps,
                                   extra_meta={"daemon_run": job.id, "source": job.source}, run_id=job.id,
                                   control=job.control, ask_value=self._asker(job))
        except MissingInput as exc:
            if job.control.stopped():  # stopped while a window asked for the value
                return self._ended_early("stopped", f"{job.control.reason} (before it started)")
            return self._ended_early("needs_input", str(exc))
        except (EdgepilotError, ValueError) as exc:
            return self._ended_early("error", f"{type(exc).__name__}: {exc}")
        job.trajectory = str(prepared.writer.folder)
        self.bus.emit(started_event(job.id, task=job.task, device=opened.description, trajectory=job.trajectory,
                                    sop=prepared.meta.get("sop"), policy=prepared.meta.get("policy")))
        try:
            return finished_fields(execute(prepared, on_step=lambda step: self._step(job, step)))
        except Exception as exc:  # edgepilot errors end the run inside the loop; this is a bug: keep the trajectory
            if not (prepared.writer.folder / "result.json").exists():
                prepared.writer.finish(RunRecord(status="error", steps=job.steps,
                                                 reason=f"internal error: {type(exc).__name__}: {exc}"))
            raise

    def _asker(self, job: Job) -> AskValue:
        """How a run asks for a value its goal left out: a window on this desktop, where there is one."""
        def ask(name: str, description: str, secret: bool) -> str | None:
            return self.confirmations.ask_value(job.id, name, description, secret, self.config.confirm_timeout,
                                                job.control)

        return ask

    def _step(self, job: Job, step: StepReport) -> None:
        job.steps = step.index + 1
        event = step_event(job.id, step)
        full = None
        png = step.obs.screenshot_png
        if png and self.bus.wants_screenshots():
            full = {**event, "screenshot_png": base64.b64encode(png).decode("ascii")}
        self.bus.emit(event, full)

