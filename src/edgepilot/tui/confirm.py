"""The TUI's side of the ``Confirmer`` seam: a question posted as a ``confirm`` event, answered later by id.

The run executes in a worker thread; when the policy asks, :meth:`TuiConfirmer.ask`
posts a ``confirm`` event (the shape of :mod:`edgepilot.agent.events`) to
whoever listens (the app shows a modal) and waits on a
:class:`threading.Event` for :meth:`TuiConfirmer.answer` with the same id.
No answer within the timeout, a stopped run, or anything but a clear yes is a
refusal; a ``confirmed`` event tells the listeners how it ended either way.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from edgepilot.agent.events import confirm_event, confirmed_event, input_event
from edgepilot.policy.confirm import Answer, ConfirmRequest, ConfirmResult

ANSWERS: tuple[str, ...] = get_args(Answer)
EventSink = Callable[[dict[str, Any]], None]


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None
    note: str = ""
    value: str | None = None


class TuiConfirmer:
    """Asks through events and waits for the answer; thread-safe.

    Args:
        run_id: the run the questions belong to (the events' ``run``).
        emit: where ``confirm`` and ``confirmed`` events go (called from the run's thread).
    """

    def __init__(self, run_id: str, emit: EventSink) -> None:
        self.run_id = run_id
        self._emit = emit
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._closed = ""

    def ask(self, request: ConfirmRequest, timeout: float) -> ConfirmResult:
        confirm_id = uuid.uuid4().hex[:12]
        slot = _Pending()
        with self._lock:
            if self._closed:
                return ConfirmResult("no", self._closed)
            self._pending[confirm_id] = slot
        self._emit(confirm_event(self.run_id, id=confirm_id, timeout=timeout, request=request.to_json(screenshot=True)))
        slot.done.wait(timeout)
        with self._lock:
            self._pending.pop(confirm_id, None)
            answer, note = slot.answer, slot.note
        if answer is None:
            answer, note = "no", f"no answer within {timeout:g} s"
        self._emit(confirmed_event(self.run_id, id=confirm_id, answer=answer))
        return ConfirmResult(answer, note)

    def ask_value(self, name: str, description: str, secret: bool, timeout: float) -> str | None:
        """Ask for a value the goal left out (an ``input`` event); the value given, or None (no answer within
        ``timeout``, a cancel, or a stop): the run then ends saying what is missing."""
        input_id = uuid.uuid4().hex[:12]
        slot = _Pending()
        with self._lock:
            if self._closed:
                return None
            self._pending[input_id] = slot
        self._emit(input_event(self.run_id, id=input_id, name=name, description=description, secret=secret,
                               timeout=timeout))
        slot.done.wait(timeout)
        with self._lock:
            self._pending.pop(input_id, None)
        return slot.value

    def give(self, input_id: str, value: str | None) -> bool:
        """Answer the ``input`` question ``input_id`` (None: cancelled); False when it is no longer waiting."""
        with self._lock:
            slot = self._pending.get(input_id)
            if slot is None or slot.done.is_set():
                return False
            slot.value = value
        slot.done.set()
        return True

    def answer(self, confirm_id: str, answer: str, note: str = "") -> bool:
        """Answer the question ``confirm_id``; False when it is no longer waiting (answered, timed out).

        Raises:
            ValueError: ``answer`` is not yes, no or always.
        """
        if answer not in ANSWERS:
            raise ValueError(f"answer must be one of {', '.join(ANSWERS)}, not {answer!r}")
        with self._lock:
            slot = self._pending.get(confirm_id)
            if slot is None or slot.answer is not None:
                return False
            slot.answer, slot.note = answer, note or ("refused by the user" if answer == "no" else "")  # type: ignore[assignment]
        slot.done.set()
        return True

    def pending(self) -> list[str]:
        """Ids of the questions waiting for an answer."""
        with self._lock:
            return list(self._pending)

    def close(self, why: str) -> None:
        """Refuse every waiting question and every later one (the run is stopping)."""
        with self._lock:
            self._closed = why
            waiting = list(self._pending.values())
            for slot in waiting:
                if slot.answer is None:
                    slot.answer, slot.note = "no", why
        for slot in waiting:
            slot.done.set()
