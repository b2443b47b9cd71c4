"""The Device seam: what every controller (phone, desktop, virtual phone) offers."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from edgepilot.actions import Action
from edgepilot.perception.types import Observation


class DeviceInfo(BaseModel):
    """What a device is."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["android", "desktop"]
    serial: str
    model: str = ""
    screen_width: int
    screen_height: int
    sdk: int | None = None


class ActResult(BaseModel):
    """What happened when an action was carried out."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    message: str = ""
    duration_ms: float = 0.0
    finished: bool = False


@runtime_checkable
class Device(Protocol):
    """A screen to observe and act on."""

    @property
    def info(self) -> DeviceInfo: ...

    def observe(self) -> Observation:
        """Read the screen now.

        Raises:
            DeviceError: the device went away.
            PerceptionError: the screen could not be read.
        """
        ...

    def act(self, action: Action) -> ActResult:
        """Carry out one action; element indices refer to the last observation.

        Raises:
            ActionError: the action does not fit the last observation.
            DeviceError: the device went away or refused.
        """
        ...

    def close(self) -> None: ...
