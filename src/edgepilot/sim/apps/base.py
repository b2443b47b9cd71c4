"""The base of every virtual-phone app: a typed state, a back stack of routes, pages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from edgepilot.errors import SimError, TaskError
from edgepilot.sim.ui import Page

if TYPE_CHECKING:
    from edgepilot.sim.phone import VirtualPhone


class AppState(BaseModel):
    """Base of app states: plain data, JSON round-trippable, strict about field names."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


@dataclass(frozen=True)
class Route:
    """One screen of an app: a name and its arguments (``Route("contact", id=3)``)."""

    name: str
    args: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def to(cls, name: str, **args: Any) -> Route:
        return cls(name, tuple(sorted(args.items())))

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)


@dataclass
class Form:
    """Text typed into an app's fields that the app has not saved yet."""

    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.values.get(key, "")

    def setter(self, key: str):
        def set_value(value: str) -> None:
            self.values[key] = value

        return set_value

    def clear(self) -> None:
        self.values.clear()


class App:
    """An app of the virtual phone.

    Subclasses set ``package``, ``label``, ``key`` (the app's name in state
    snapshots and task paths) and ``State``; they implement :meth:`page`.
    Handlers change ``self.state`` and the back stack; the phone re-renders.
    """

    package: ClassVar[str]
    label: ClassVar[str]
    key: ClassVar[str]
    activity: ClassVar[str] = ".MainActivity"
    State: ClassVar[type[AppState]] = AppState
    launchable: ClassVar[bool] = True

    def __init__(self, phone: VirtualPhone) -> None:
        self.phone = phone
        self.state = self.State()
        self.form = Form()
        self.stack: list[Route] = [self.root()]
        self.scroll: dict[Route, int] = {}

    # ------------------------------------------------------------ navigation

    def root(self) -> Route:
        return Route("main")

    @property
    def route(self) -> Route:
        return self.stack[-1]

    def push(self, route: Route, *, keep_form: bool = False) -> None:
        if not keep_form:
            self.form.clear()
        self.stack.append(route)
        self.scroll.pop(route, None)
        self.phone.focus_cleared()

    def replace(self, route: Route) -> None:
        self.form.clear()
        self.stack[-1] = route
        self.scroll.pop(route, None)
        self.phone.focus_cleared()

    def pop(self) -> None:
        """Leave the current screen (like the up arrow)."""
        if len(self.stack) > 1:
            self.stack.pop()
            self.form.clear()
            self.phone.focus_cleared()
        else:
            self.phone.go_home()

    def back(self) -> bool:
        """Handle the back key; return False to let the phone go home."""
        if len(self.stack) > 1:
            self.pop()
            return True
        return False

    def reset(self) -> None:
        self.stack = [self.root()]
        self.form.clear()
        self.scroll.clear()

    def page(self, route: Route) -> Page:
        """The page for a route: by default the method ``_page_<route name>``."""
        build = getattr(self, f"_page_{route.name}", None)
        if build is None:
            raise SimError(f"app {self.key!r} has no screen {route.name!r}")
        return build(route)

    def toast(self, message: str) -> None:
        self.phone.toast(message)

    # ------------------------------------------------------------ state

    def snapshot(self) -> dict[str, Any]:
        data = self.state.model_dump(mode="json")
        data["screen"] = self.route.name
        return data

    def load(self, data: dict[str, Any]) -> None:
        """Replace the state (task set-up); the ``screen`` key is ignored."""
        data = {k: v for k, v in data.items() if k != "screen"}
        try:
            self.state = self.State.model_validate(data)
        except ValidationError as exc:
            raise TaskError(f"invalid state for app {self.key!r}: {exc}") from exc
        self.reset()
