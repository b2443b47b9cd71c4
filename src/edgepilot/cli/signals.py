"""SIGTERM ends ``edgepilot run`` the way Ctrl-C does: the trajectory gets its result.json, nothing is lost.

Without this, SIGTERM (``kill``, systemd, a container stopping) kills the
process where it stands: no result.json, the run's end never reached. With it:

* before the run starts (the model loading, the device opening), SIGTERM
  raises :class:`KeyboardInterrupt`, exactly as Ctrl-C;
* during the run, it stops the run's :class:`RunControl`: no action is taken
  after it, a model call is cut short where the backend can, a question
  waiting on the terminal is refused, and the run ends with status
  ``stopped`` (reason :data:`REASON`) through the loop's usual end;
* a run that has not ended :data:`GRACE_S` seconds later (a call that cannot
  be cut short), or a second SIGTERM, gets a :class:`KeyboardInterrupt` in the
  main thread: status ``interrupted``, result.json still written.

The previous handler is put back afterwards.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from edgepilot.agent.loop import RunControl

REASON = "ended by SIGTERM"
GRACE_S = 5.0
EXIT_CODE = 128 + signal.SIGTERM


class Termination:
    """The SIGTERM handler of one command; :meth:`stopping` hands it the run's control while the run goes."""

    def __init__(self, grace: float = GRACE_S) -> None:
        self.grace = grace
        self.received = False
        self._control: RunControl | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.RLock()  # the handler runs in the main thread, between any two lines
        self._armed = False

    def handle(self, signum: int, frame: object) -> None:
        if self._control is None or self.received:
            self.received = True
            raise KeyboardInterrupt
        self.received = True
        self._control.stop(REASON)
        with self._lock:
            self._armed = True
            self._timer = threading.Timer(self.grace, self._interrupt)
            self._timer.daemon = True
            self._timer.start()

    def _interrupt(self) -> None:
        """SIGTERM again, to the main thread itself: a signal (unlike ``_thread.interrupt_main``) also ends the
        system call it is blocked in, such as the read of an HTTP answer. Under the lock, so that it never comes
        after :meth:`cancel` (the default handler, put back, would kill the process)."""
        with self._lock:
            if self._armed:
                signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)

    @contextmanager
    def stopping(self, control: RunControl) -> Iterator[None]:
        """While inside, SIGTERM stops ``control``'s run instead of interrupting at once."""
        self._control = control
        try:
            yield
        finally:
            self._control = None
            self.cancel()

    def cancel(self) -> None:
        """No KeyboardInterrupt after the grace period (the run ended in time)."""
        with self._lock:
            self._armed = False
            if self._timer is not None:
                self._timer.cancel()


@contextmanager
def sigterm_like_ctrl_c(grace: float = GRACE_S) -> Iterator[Termination]:
    """Handle SIGTERM as described above while inside (only in the main thread; elsewhere nothing changes)."""
    termination = Termination(grace)
    if threading.current_thread() is not threading.main_thread():
        yield termination
        return
    previous = signal.signal(signal.SIGTERM, termination.handle)
    try:
        yield termination
    finally:
        termination.cancel()
        signal.signal(signal.SIGTERM, previous)
