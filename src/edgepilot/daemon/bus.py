"""Events of the daemon's runs, fanned out to subscribed clients without ever waiting for them.

Each subscriber has its own bounded queue and writer thread: emitting is a
``put_nowait`` per subscriber, so a slow or stuck client never holds up a
run. A client whose queue fills up (it stopped reading) is disconnected. The
last events of recent runs are kept so that a client attaching mid-run can
catch up (``replay``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edgepilot.daemon.protocol import encode

log = logging.getLogger("edgepilot.daemon")

QUEUE_SIZE = 512  # events a subscriber may fall behind before it is dropped
KEEP_RUNS = 20  # runs whose events are kept for replay
KEEP_EVENTS = 1000  # events kept per run


class Sink(Protocol):
    """Where a subscriber's lines go (the server's connection)."""

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Event:
    """One event, encoded once: ``line`` for every subscriber, ``full`` (with screenshots) for those who asked."""

    run: str | None
    kind: str
    line: bytes
    full: bytes | None = None

    def for_subscriber(self, screenshots: bool) -> bytes:
        return self.full if screenshots and self.full is not None else self.line


class Subscriber:
    """One connection's stream of events: of one run (``run``) or of all runs."""

    def __init__(self, sink: Sink, run: str | None, screenshots: bool, on_gone: Callable[[Subscriber], None]) -> None:
        self.sink = sink
        self.run = run
        self.screenshots = screenshots
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_SIZE)
        self._on_gone = on_gone
        self.dropped = ""
        self._thread = threading.Thread(target=self._write, name="daemon-subscriber", daemon=True)

    def wants(self, event: Event) -> bool:
        return self.run is None or event.run in (None, self.run)

    def offer(self, line: bytes) -> bool:
        """Queue a line without waiting; False when the subscriber has fallen too far behind."""
        try:
            self._queue.put_nowait(line)
            return True
        except queue.Full:
            return False

    def start(self) -> None:
        self._thread.start()

    def end(self) -> None:
        """Stop writing (the connection is closing)."""
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the writer ends when the connection closes under it

    def _write(self) -> None:
        try:
            while (line := self._queue.get()) is not None:
                self.sink.send(line)
        except OSError as exc:
            log.info("subscriber gone: %s", exc)
            self.sink.close()
        finally:
            self._on_gone(self)


class EventBus:
    """Fans events out to subscribers and keeps recent runs' events for replay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._history: OrderedDict[str, list[Event]] = OrderedDict()

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def wants_screenshots(self) -> bool:
        """Whether any subscriber asked for screenshots (only then are they encoded)."""
        with self._lock:
            return any(s.screenshots for s in self._subscribers)

    def emit(self, event: dict[str, Any], full: dict[str, Any] | None = None, *, keep_full: bool = False) -> None:
        """Send ``event`` to every subscriber that wants it (``full`` to those who asked for screenshots).

        ``keep_full`` keeps the full version for replay (a pending confirmation's screenshot).
        """
        item = Event(run=event.get("run"), kind=str(event.get("event")), line=encode(event),
                     full=encode(full) if full is not None else None)
        slow: list[Subscriber] = []
        with self._lock:
            if item.run is not None:
                kept = self._history.setdefault(item.run, [])
                self._history.move_to_end(item.run)
                kept.append(item if keep_full else Event(item.run, item.kind, item.line))
                del kept[:-KEEP_EVENTS]
                while len(self._history) > KEEP_RUNS:
                    self._history.popitem(last=False)
            for sub in self._subscribers:
                if sub.wants(item) and not sub.offer(item.for_subscriber(sub.screenshots)):
                    slow.append(sub)
            for sub in slow:
                self._subscribers.remove(sub)
        for sub in slow:
            log.warning("dropping a subscriber that stopped reading (%d events behind)", QUEUE_SIZE)
            sub.dropped = "too slow"
            sub.sink.close()

    def subscribe(self, sink: Sink, *, run: str | None, replay_run: str | None, screenshots: bool,
                  first: bytes) -> Subscriber:
        """Register a subscriber; it is sent ``first`` (the reply), then ``replay_run``'s kept events, then live ones.

        Replay and registration happen under one lock, so no event is missed or sent twice.
        """
        sub = Subscriber(sink, run, screenshots, self._gone)
        with self._lock:
            sub.offer(first)
            for item in self._history.get(replay_run, []) if replay_run else []:
                if not sub.offer(item.for_subscriber(screenshots)):
                    break
            self._subscribers.append(sub)
        sub.start()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._gone(sub)
        sub.end()

    def close_all(self) -> None:
        with self._lock:
            subs, self._subscribers = self._subscribers, []
        for sub in subs:
            sub.end()

    def _gone(self, sub: Subscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
