"""Clock: alarms (list with on/off switches, add, edit, delete) and a world clock tab."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from edgepilot.sim import ui
from edgepilot.sim.apps.base import App, AppState, Route
from edgepilot.sim.ui import Page, View

ACTIVITY = "com.android.deskclock.DeskClock"
EDIT_ACTIVITY = "com.android.deskclock.alarms.AlarmActivity"
TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})$")
WORLD = [("New York", "9:41", "Local time"), ("London", "14:41", "5 hr ahead"),
         ("Tokyo", "22:41", "13 hr ahead"), ("Sydney", "23:41", "14 hr ahead")]


class Alarm(BaseModel):
    """One alarm; ``time`` is 24-hour ``HH:MM``."""

    id: int
    time: str
    label: str = ""
    enabled: bool = True


def _default_alarms() -> list[Alarm]:
    return [
        Alarm(id=1, time="06:15", label="Run", enabled=False),
        Alarm(id=2, time="07:00", label="Wake up", enabled=True),
        Alarm(id=3, time="08:30", label="", enabled=False),
        Alarm(id=4, time="12:30", label="Vitamins", enabled=True),
        Alarm(id=5, time="22:00", label="Bedtime", enabled=False),
    ]


class ClockState(AppState):
    alarms: list[Alarm] = Field(default_factory=_default_alarms)


def normalize_time(value: str) -> str | None:
    """``"7:05"`` → ``"07:05"``; None when it is not a valid 24-hour time."""
    m = TIME_RE.match(value.strip())
    if not m:
        return None
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours > 23 or minutes > 59:
        return None
    return f"{hours:02d}:{minutes:02d}"


class Clock(App):
    """The clock app (``com.google.android.deskclock``)."""

    package = "com.google.android.deskclock"
    label = "Clock"
    key = "clock"
    activity = ACTIVITY
    State = ClockState
    state: ClockState

    def page(self, route: Route) -> Page:
        if route.name in ("edit", "delete") and self.find(route.get("id")) is None:
            return Page(title="Alarm", body=[ui.text("This alarm no longer exists.", muted=True)],
                        activity=EDIT_ACTIVITY)
        return getattr(self, f"_page_{route.name}")(route)

    def find(self, alarm_id: int | None) -> Alarm | None:
        """The alarm with that id, if any."""
        return next((a for a in self.state.alarms if a.id == alarm_id), None)

    # ------------------------------------------------------------ pages

    def _page_main(self, route: Route) -> Page:
        alarms = sorted(self.state.alarms, key=lambda a: (a.time, a.id))
        body: list[View] = [self._alarm_row(a) for a in alarms]
        if not body:
            body.append(ui.text("No alarms", rid="empty", muted=True))
        fab = View(cls="android.widget.ImageButton", desc="Add alarm", rid="fab", hint="+",
                   on_click=lambda: self.push(Route("add")))
        return Page(title="Alarm", body=body, fab=fab, bottom=[self._tabs("main")], activity=ACTIVITY)

    def _page_world(self, route: Route) -> Page:
        body: list[View] = [ui.text("9:41", rid="digital_clock", size=120, bold=True),
                            ui.text("Local time", rid="date", muted=True), ui.header("World clock")]
        body += [ui.item(f"{city}  {time}", subtitle=diff, rid="city") for city, time, diff in WORLD]
        return Page(title="Clock", body=body, bottom=[self._tabs("world")], activity=ACTIVITY)

    def _page_add(self, route: Route) -> Page:
        return Page(title="Add alarm", body=self._form_body(None), activity=EDIT_ACTIVITY)

    def _page_edit(self, route: Route) -> Page:
        alarm_id = route.get("id")
        body = self._form_body(alarm_id)
        body += [ui.spacer(60), ui.button("Delete", lambda: self.push(Route.to("delete", id=alarm_id)),
                                          rid="delete", danger=True)]
        return Page(title="Edit alarm", body=body, activity=EDIT_ACTIVITY)

    def _page_delete(self, route: Route) -> Page:
        a = self.find(route.get("id"))
        assert a is not None
        name = f"{a.time} {a.label}".strip()
        body = [
            ui.text(f"The {name} alarm will be deleted.", rid="dialog_message"),
            ui.row(ui.button("Cancel", self.pop, rid="cancel"),
                   ui.button("Delete", lambda: self._delete(a.id), rid="confirm_delete", danger=True)),
        ]
        return Page(title="Delete alarm?", body=body, back=False, activity=EDIT_ACTIVITY)

    def _form_body(self, alarm_id: int | None) -> list[View]:
        f = self.form
        save = lambda: self._save(alarm_id)  # noqa: E731
        return [
            ui.text("Time (24-hour, HH:MM)", size=36, muted=True, height=80),
            ui.field(f.get("time"), f.setter("time"), rid="time", hint="HH:MM"),
            ui.text("Label", size=36, muted=True, height=80),
            ui.field(f.get("label"), f.setter("label"), rid="label", hint="Label", on_submit=save),
            ui.row(ui.button("Cancel", self.pop, rid="cancel"), ui.button("Save", save, rid="save")),
        ]

    def _alarm_row(self, a: Alarm) -> View:
        info = [View(cls="android.widget.TextView", text=a.time, rid="alarm_time", size=64, bold=True,
                     height=110)]
        if a.label:
            info.append(View(cls="android.widget.TextView", text=a.label, rid="alarm_label", size=36,
                             height=60, style="muted"))
        column = View(cls="android.widget.LinearLayout", children=info, weight=4.0, height=190)
        switch = View(cls="android.widget.Switch", text="ON" if a.enabled else "OFF", rid="alarm_switch",
                      desc=f"{a.time} alarm", checkable=True, checked=a.enabled, on_click=self._toggle(a.id),
                      style="switch", weight=1.0)
        return View(cls="android.widget.LinearLayout", rid="alarm_row", layout="row", children=[column, switch],
                    height=190, on_click=self._editor(a.id), style="row")

    def _tabs(self, current: str) -> View:
        tabs = [("Alarm", "main"), ("Clock", "world")]
        views = [View(cls="android.widget.TextView", text=label, desc=label, rid=f"tab_{name}", size=40,
                      height=140, align="center", selected=name == current, on_click=self._tab(name),
                      bold=name == current)
                 for label, name in tabs]
        return ui.row(*views, height=140)

    # ------------------------------------------------------------ handlers

    def _tab(self, name: str):
        def switch() -> None:
            self.stack = [Route(name)]
            self.form.clear()
            self.phone.focus_cleared()

        return switch

    def _toggle(self, alarm_id: int):
        def toggle() -> None:
            a = self.find(alarm_id)
            if a is not None:
                a.enabled = not a.enabled
                if a.enabled:
                    self.toast(f"Alarm set for {a.time}")

        return toggle

    def _editor(self, alarm_id: int):
        def edit() -> None:
            a = self.find(alarm_id)
            if a is None:
                return
            self.push(Route.to("edit", id=alarm_id))
            self.form.values.update(time=a.time, label=a.label)

        return edit

    def _save(self, alarm_id: int | None) -> None:
        time = normalize_time(self.form.get("time"))
        if time is None:
            self.toast("Enter a valid time as HH:MM (24-hour)")
            return
        label = self.form.get("label").strip()
        a = self.find(alarm_id)
        if a is not None:
            if a.time != time:
                a.enabled = True
            a.time, a.label = time, label
        else:
            new_id = max((x.id for x in self.state.alarms), default=0) + 1
            self.state.alarms.append(Alarm(id=new_id, time=time, label=label, enabled=True))
        self.pop()
        self.toast(f"Alarm set for {time}")

    def _delete(self, alarm_id: int) -> None:
        self.state.alarms = [a for a in self.state.alarms if a.id != alarm_id]
        self.stack = [self.root()]
        self.form.clear()
        self.phone.focus_cleared()
        self.toast("Alarm deleted")
