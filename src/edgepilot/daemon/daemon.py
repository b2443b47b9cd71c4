"""The daemon process: the model kept warm, the run queue, the control socket, hotkeys and notifications.

    ControlServer (socket, one thread per client) ──requests──▶ Daemon.handle
    Hotkeys (pynput) ──prompt──▶ DesktopWindows (tkinter) ──task──▶ Runner (queue, one run at a time)
                     └──stop───▶ Runner.stop_all                     │ agent/session.py prepare_run / execute
    ModelHolder (loaded once, in the background) ◀───────────────────┤ DaemonConfirmer ──▶ Confirmations
    EventBus ◀── queued / started / step / confirm / confirmed / paused / resumed / finished
    DesktopWindows ◀── questions (Confirmations) · results of runs typed at the prompt (Daemon.announce)
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepilot import __version__
from edgepilot.config import Config
from edgepilot.daemon.bus import EventBus
from edgepilot.daemon.confirm import AnswerRefused, Confirmations, Notifier
from edgepilot.daemon.hotkeys import Hotkeys
from edgepilot.daemon.model import ModelHolder
from edgepilot.daemon.paths import DaemonPaths, ensure_token, private_dir
from edgepilot.daemon.protocol import (
    PROTOCOL,
    Answer,
    Control,
    Hello,
    Request,
    Run,
    Shutdown,
    Status,
    Subscribe,
    encode,
    error,
    ok,
)
from edgepilot.daemon.runs import Job, Runner, RunRefused
from edgepilot.daemon.server import Connection, ControlServer
from edgepilot.daemon.testing import ScriptedModel
from edgepilot.daemon.windows import DesktopWindows
from edgepilot.devices import default_device
from edgepilot.models.registry import open_model

log = logging.getLogger("edgepilot.daemon")


@dataclass(frozen=True)
class DaemonOptions:
    """What ``edgepilot daemon start`` was given; None means config.toml's ``[daemon]`` (then the defaults)."""

    model: str | None = None
    device: str | None = None
    hotkeys: bool | None = None
    notify: bool | None = None
    windows: bool | None = None
    policy_off: bool = False
    scripted_model: Path | None = None  # tests only: a ScriptedModel script instead of a real model


class Daemon:
    """One daemon: :meth:`serve` runs it until a ``shutdown`` request, SIGTERM or SIGINT."""

    def __init__(self, config: Config, options: DaemonOptions | None = None, paths: DaemonPaths | None = None) -> None:
        options = options or DaemonOptions()
        self.config = config
        self.options = options
        self.paths = paths or DaemonPaths.default()
        self.device = options.device or config.daemon.device
        self.device_reason = "--device" if options.device else "[daemon] device in config.toml"
        if self.device is None:
            self.device, self.device_reason = default_device()
        spec = options.model or config.daemon.model or config.model
        self.model = ModelHolder("scripted (tests only)" if options.scripted_model else spec, self._opener(spec))
        self.bus = EventBus()
        self.notifier = Notifier.detect(config.daemon.notify if options.notify is None else options.notify)
        self.windows = DesktopWindows(self.submit_from_prompt, self.device)
        self.windows_reason = "not started"
        self.confirmations = Confirmations(self.bus, self.notifier)
        self.runner = Runner(config, self.model, self.bus, self.confirmations, default_device=self.device,
                             policy_off=options.policy_off, on_start=self._clear_screen, on_finish=self.announce)
        self.hotkeys = Hotkeys(config.daemon.hotkey, config.daemon.stop_hotkey, self.open_prompt, self.safety_stop)
        self.server: ControlServer | None = None
        self.started = time.monotonic()
        self._shutdown = threading.Event()
        self._shutdown_reason = ""

    def _opener(self, spec: str):
        if self.options.scripted_model is not None:
            path = self.options.scripted_model
            return lambda: ScriptedModel.from_file(path)

        def open_it() -> Any:
            return open_model(spec, self.config)

        return open_it

    # ------------------------------------------------------------ life

    def serve(self) -> None:
        """Run until shut down.

        Raises:
            ConfigError: another daemon is running on the socket, or the daemon's files cannot be written.
        """
        token = ensure_token(self.paths.token)
        self.server = ControlServer(self.paths, token, self.handle)
        self.server.bind()  # another daemon on the socket: stop here, before anything else starts
        try:
            self._write_pid()
            self.model.load_async()
            self._start_windows()
            self.runner.start()
            self._start_hotkeys()
            self._handle_signals()
            self.server.start()  # clients get answers once everything above is up
            log.info("edgepilot daemon %s ready (pid %d); model %s; device %s (%s); notifications: %s",
                     __version__, os.getpid(), self.model.spec, self.device, self.device_reason,
                     self.notifier.reason)
            while not self._shutdown.wait(0.5):
                pass
            log.info("shutting down: %s", self._shutdown_reason)
        finally:
            self._close()

    def request_shutdown(self, reason: str) -> None:
        self._shutdown_reason = self._shutdown_reason or reason
        self._shutdown.set()

    def _start_windows(self) -> None:
        """The prompt, questions and notices on this desktop: where there is a display, unless turned off."""
        enabled = self.config.daemon.windows if self.options.windows is None else self.options.windows
        if not enabled:
            self.windows_reason = "turned off (--no-windows or [daemon] windows = false)"
        elif not os.environ.get("DISPLAY"):
            self.windows_reason = "no display ($DISPLAY is not set)"
        elif self.windows.start():
            self.windows_reason = f"on display {os.environ['DISPLAY']}"
            self.confirmations.windows = self.windows
        else:
            self.windows_reason = self.windows.error
            log.warning(self.windows.error)

    def _start_hotkeys(self) -> None:
        enabled = self.config.daemon.hotkeys if self.options.hotkeys is None else self.options.hotkeys
        if not enabled:
            self.hotkeys.reason = "turned off (--no-hotkeys or [daemon] hotkeys = false)"
        elif not self.hotkeys.start():
            log.warning(self.hotkeys.reason)
        elif not self.windows.ready:
            log.warning("the hotkey cannot open the task prompt: the desktop windows are off (%s); the stop "
                        "hotkey works", self.windows_reason)

    def _handle_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: self.request_shutdown(f"signal {signal.Signals(signum).name}"))

    def _write_pid(self) -> None:
        private_dir(self.paths.pid.parent)
        self.paths.pid.write_text(f"{os.getpid()}\n", encoding="ascii")

    def _close(self) -> None:
        self.hotkeys.close()
        if self.windows.ready:
            self.windows.close()
        self.runner.close()
        self.bus.close_all()
        time.sleep(0.2)  # let subscribers' writers send the last events
        if self.server is not None:
            self.server.close()
        try:
            if self.paths.pid.read_text(encoding="ascii").strip() == str(os.getpid()):
                self.paths.pid.unlink()
        except OSError:
            pass
        log.info("stopped")

    # ------------------------------------------------------------ hotkeys

    def open_prompt(self) -> None:
        if self.windows.ready:
            self.windows.open()

    def submit_from_prompt(self, task: str) -> str | None:
        try:
            self.runner.submit(task, source="hotkey")
        except RunRefused as exc:
            return str(exc)
        return None

    def safety_stop(self) -> None:
        """The stop hotkey: stop the running task at once and drop the queued ones."""
        stopped = self.runner.stop_all("safety stop (hotkey)", "hotkey")
        log.warning("safety stop: %s", ", ".join(stopped) or "nothing was running")

    # ------------------------------------------------------------ the desktop

    def _clear_screen(self, job: Job) -> None:
        """A run is about to look at its device: notices of earlier runs leave this desktop first."""
        if self.windows.ready and not self.windows.clear_notices():
            log.warning("run %s: the notices did not close within 2 s", job.id)

    def announce(self, job: Job, result: dict[str, Any]) -> None:
        """Say how a run ended, on this desktop: a notice window and a notification (``[daemon] announce`` says
        which runs: ``hotkey``, those typed at the prompt, who have nowhere else to read it; ``all``; ``off``)."""
        mode = self.config.daemon.announce
        if mode == "off" or (mode == "hotkey" and job.source != "hotkey"):
            return
        current = self.runner.current
        if current is not None and current is not job:  # a queued run stopped while another looks at the screen
            log.info("run %s ended while run %s runs: its result is not shown on the screen", job.id, current.id)
            return
        lines = outcome_lines(job.task, result)
        if self.windows.ready:
            self.windows.notice(lines, self.config.daemon.announce_seconds)
        self.notifier.announce(lines, self.config.daemon.announce_seconds)

    # ------------------------------------------------------------ requests

    def handle(self, conn: Connection, request: Request) -> dict[str, Any] | None:
        """Answer one authenticated request (the server has checked its shape)."""
        rid = request.id
        match request:
            case Hello():
                return ok(rid, daemon=__version__, pid=os.getpid(), protocol=PROTOCOL)
            case Status():
                return ok(rid, status=self.status())
            case Run():
                try:
                    job = self.runner.submit(request.task, device=request.device, max_steps=request.max_steps,
                                             sop=request.sop)
                except RunRefused as exc:
                    return error(exc.code, str(exc), rid)
                return ok(rid, run=job.id, device=job.device)
            case Control():
                return self._control(request)
            case Subscribe():
                return self._subscribe(conn, request)
            case Answer():
                try:
                    pending = self.confirmations.answer(request.confirm, request.answer)
                except AnswerRefused as exc:
                    return error(exc.code, str(exc), rid)
                return ok(rid, confirm=pending.id, run=pending.run, answer=request.answer)
            case Shutdown():
                self.request_shutdown("shutdown requested by a client")
                return ok(rid, stopping=True)
        return error("unknown_op", f"unknown op {request.op!r}", rid)  # pragma: no cover - parse_request checks ops

    def _control(self, request: Control) -> dict[str, Any]:
        rid = request.id
        if request.op == "stop" and request.all:
            return ok(rid, stopped=self.runner.stop_all("stopped by the user", "client"))
        job = self.runner.find(request.run)
        if job is None:
            what = f"no run {request.run!r} (`edgepilot daemon status` lists them)" if request.run \
                else "nothing is running"
            return error("not_found", what, rid)
        if job.state == "finished":
            return error("finished", f"run {job.id} has already finished ({job.result and job.result['status']})",
                         rid)
        if request.op == "stop":
            self.runner.stop(job, "stopped by the user", "client")
            return ok(rid, run=job.id, state=job.state)
        done = self.runner.pause(job) if request.op == "pause" else self.runner.resume(job)
        if not done:
            return error("finished", f"run {job.id} is stopping; it cannot be paused or resumed", rid)
        return ok(rid, run=job.id, paused=job.control.paused)

    def _subscribe(self, conn: Connection, request: Subscribe) -> dict[str, Any] | None:
        rid = request.id
        if conn.subscriber is not None:
            return error("bad_request", "this connection is already subscribed; open another one", rid)
        replay_run = None
        if request.run is not None:
            job = self.runner.find(request.run)
            if job is None:
                return error("not_found", f"no run {request.run!r} (`edgepilot daemon status` lists them)", rid)
            replay_run = job.id if request.replay else None
            state = job.state
        else:
            current = self.runner.find(None)
            replay_run = current.id if current is not None and request.replay else None
            state = None
        first = encode(ok(rid, subscribed=True, run=request.run, state=state))
        conn.subscriber = self.bus.subscribe(conn, run=request.run, replay_run=replay_run,
                                             screenshots=request.screenshots, first=first)
        return None

    def status(self) -> dict[str, Any]:
        hotkeys = self.hotkeys.status()
        hotkeys["prompt_window"] = self.windows.ready
        hotkeys["prompt_open"] = self.windows.is_open
        return {
            "pid": os.getpid(), "version": __version__, "protocol": PROTOCOL,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "socket": str(self.paths.socket), "log": str(self.paths.log), "token_file": str(self.paths.token),
            "model": self.model.status(), "device": self.device, "device_reason": self.device_reason,
            "policy": "off" if self.options.policy_off else "on",
            **self.runner.status(),
            "confirmations": self.confirmations.open(),
            "hotkeys": hotkeys,
            "windows": {"enabled": self.windows.ready, "reason": self.windows_reason,
                        "asking": list(self.windows.asking), "notices": self.windows.notices,
                        "last_notice": list(self.windows.last_notice),
                        "announce": self.config.daemon.announce},
            "notifications": {"mode": self.notifier.mode, "reason": self.notifier.reason,
                              "last_error": self.notifier.last_error or None},
            "clients": self.server.client_count if self.server else 0,
            "subscribers": self.bus.subscriber_count,
        }


def outcome_lines(task: str, result: dict[str, Any]) -> list[str]:
    """How a run ended, for a person: a headline, then the answer, why, and how long it took."""
    status = str(result.get("status") or "?")
    head = {"finished": "Done", "unverified": "Ended, not checked", "stopped": "Stopped",
            "needs_input": "Needs more from you"}.get(status, f"Not done ({status})")
    lines = [f"{head}: {task}"]
    if result.get("answer"):
        lines.append(f"Answer: {result['answer']}")
    if result.get("reason"):
        lines.append(str(result["reason"]))
    steps, seconds = result.get("steps"), result.get("seconds")
    if steps is not None:
        lines.append(f"{steps} steps" + (f" in {float(seconds):.1f} s" if seconds is not None else ""))
    return lines
