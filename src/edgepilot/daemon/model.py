"""The daemon's model: loaded once in the background, kept warm, shared by the runs (one at a time)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from edgepilot.errors import EdgepilotError, ModelError
from edgepilot.models.base import Message

log = logging.getLogger("edgepilot.daemon")

ModelState = Literal["loading", "ready", "failed"]


class ModelHolder:
    """Loads the model on a background thread (and asks it for one token: warm); runs wait for it, or learn why
    it failed.

    Args:
        spec: what was asked for (shown in status).
        opener: builds the backend (``open_model(spec, config)``); called once.
    """

    def __init__(self, spec: str, opener: Callable[[], Any]) -> None:
        self.spec = spec
        self._opener = opener
        self.state: ModelState = "loading"
        self.error = ""
        self.backend: Any = None
        self.load_s: float | None = None
        self._ready = threading.Event()

    def load_async(self) -> None:
        threading.Thread(target=self._load, name="daemon-model", daemon=True).start()

    def _load(self) -> None:
        start = time.perf_counter()
        try:
            backend = self._opener()
            # one token, so that the weights are paged in and llama.cpp's buffers exist before the first task
            backend.complete([Message(role="user", content="Hello")], max_tokens=1)
        except EdgepilotError as exc:
            self.state, self.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a broken model must not take the daemon down
            log.exception("the model failed to load")
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            self.backend, self.state = backend, "ready"
        self.load_s = round(time.perf_counter() - start, 2)
        if self.state == "failed":
            log.error("model %s failed to load: %s", self.spec, self.error)
        else:
            log.info("model %s ready in %.1f s", getattr(self.backend, "name", self.spec), self.load_s)
        self._ready.set()

    def refusal(self) -> str | None:
        """Why runs cannot be accepted now (None: they can)."""
        if self.state == "failed":
            return (f"the model {self.spec!r} failed to load: {self.error}; fix it (`edgepilot models`, "
                    "config.toml) and restart the daemon")
        return None

    def wait(self, stopped: Callable[[], bool]) -> Any:
        """The backend once loaded (or None when ``stopped`` turned true while waiting).

        Raises:
            ModelError: the model failed to load.
        """
        while not self._ready.wait(0.1):
            if stopped():
                return None
        if self.backend is None:
            raise ModelError(self.refusal() or "the model is not loaded")
        return self.backend

    def status(self) -> dict[str, Any]:
        return {"spec": self.spec, "name": getattr(self.backend, "name", None), "state": self.state,
                "error": self.error or None, "load_s": self.load_s}
