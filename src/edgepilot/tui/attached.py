"""``edgepilot tui --attach``: runs in the background daemon, through its client.

The daemon owns the model and the devices; this runner submits the task, reads
the run's events on a thread of its own (a connection of their own, with
screenshots) and sends pauses, stops and answers on the client's request
connection. Quitting the app leaves the daemon's run going: it is the
daemon's, and its confirmations still reach the desktop notification.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from edgepilot.agent.events import ended_event
from edgepilot.config import Config
from edgepilot.daemon.client import DaemonClient, DaemonError
from edgepilot.errors import ConfigError, EdgepilotError
from edgepilot.tui.confirm import EventSink

ClientFactory = Callable[[], Any]


class AttachedRunner:
    """A :class:`~edgepilot.tui.runner.Runner` whose runs execute in the daemon.

    Args:
        connect: opens an authenticated :class:`~edgepilot.daemon.client.DaemonClient`
            (default: ``DaemonClient.connect()``, the socket and token of the user's folders).
    """

    def __init__(self, connect: ClientFactory | None = None) -> None:
        self._connect = connect or _default_connect
        self._client: Any = None
        self._lock = threading.Lock()
        self._sink: EventSink = lambda event: None
        self._run: str | None = None
        self._stream: Any = None
        self._reader: threading.Thread | None = None
        self._closed = threading.Event()

    def listen(self, sink: EventSink) -> None:
        self._sink = sink

    def _daemon(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def warm_up(self) -> str:
        """Connect; the daemon's model name. Raises EdgepilotError when there is no daemon or its model failed."""
        model = self._daemon().status().get("model") or {}
        if model.get("state") in ("error", "failed"):
            raise EdgepilotError(f"the daemon's model did not load: {model.get('error') or 'unknown error'}; "
                                 "see `edgepilot daemon status`")
        return f"{model.get('name') or model.get('spec') or 'model'} (in the daemon)"

    def start(self, task: str, device: str) -> str:
        if not task.strip():
            raise EdgepilotError('the task is empty: say what to do, e.g. "turn on airplane mode"')
        if self._reader is not None and self._reader.is_alive():
            raise EdgepilotError("this window is watching a run already; stop it first (ctrl+s)")
        client = self._daemon()
        run = client.submit(task.strip(), device=device)
        # its own connection; replay brings the events sent between the submit and the subscription
        stream = client.events(run=run, replay=True, screenshots=True)
        self._run, self._stream = run, stream
        self._reader = threading.Thread(target=self._read, args=(stream, run), name=f"edgepilot-attached-{run}",
                                        daemon=True)
        self._reader.start()
        return run

    def _read(self, stream: Any, run: str) -> None:
        finished = False
        try:
            for event in stream:
                if self._closed.is_set():
                    return
                finished = finished or event.get("event") == "finished"
                self._sink(event)
        except EdgepilotError as exc:
            if not self._closed.is_set():
                self._sink(ended_event(run, status="error", reason=f"lost the daemon's events: {exc}; the run may "
                                                                   "go on there (`edgepilot daemon status`)"))
            return
        if not finished and not self._closed.is_set():
            self._sink(ended_event(run, status="error",
                                   reason="the daemon closed the event stream (did it shut down?)"))

    def pause(self) -> None:
        if self._run is not None:
            self._daemon().pause(self._run)

    def resume(self) -> None:
        if self._run is not None:
            self._daemon().resume(self._run)

    def stop(self) -> None:
        if self._run is not None:
            self._daemon().stop(self._run)

    def answer(self, confirm_id: str, answer: str) -> None:
        try:
            self._daemon().answer(confirm_id, answer)
        except DaemonError as exc:
            if exc.code not in ("answered", "not_found"):  # another client answered first, or it timed out
                raise

    def give(self, input_id: str, value: str | None) -> None:
        """The daemon asks for values in a window on its own desktop, never through its clients: nothing to do."""

    def close(self) -> None:
        """Stop watching; the daemon's run goes on."""
        self._closed.set()
        self._sink = lambda event: None
        if self._stream is not None:
            self._stream.close()  # the reader's blocked read returns
        if self._reader is not None:
            self._reader.join(5)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _default_connect() -> Any:
    return DaemonClient.connect()


def attached_runner(config: Config | None = None) -> AttachedRunner:
    """The runner of ``edgepilot tui --attach``.

    Raises:
        ConfigError: this edgepilot has no daemon client.
    """

    try:
        from edgepilot.daemon import client  # noqa: F401
    except ImportError:
        raise ConfigError("--attach needs the daemon (edgepilot.daemon), which this edgepilot does not "
                          "have; run `edgepilot tui` without --attach") from None
    return AttachedRunner()
