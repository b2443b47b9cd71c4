"""The home screen: a grid of app icons."""

from __future__ import annotations

from edgepilot.sim import ui
from edgepilot.sim.apps.base import App, Route
from edgepilot.sim.ui import Page, View

COLUMNS = 4


class Launcher(App):
    package = "com.android.launcher3"
    label = "Home"
    key = "launcher"
    activity = ".Launcher"
    launchable = False

    def page(self, route: Route) -> Page:
        apps = [a for a in self.phone.apps.values() if a.launchable]
        rows = []
        for i in range(0, len(apps), COLUMNS):
            icons = [self._icon(a) for a in apps[i : i + COLUMNS]]
            while len(icons) < COLUMNS:
                icons.append(ui.View(cls="android.view.View", height=280))
            rows.append(ui.row(*icons, height=280))
        return Page(title="Home", body=[ui.spacer(60), *rows], back=False, activity=self.activity)

    def _icon(self, app: App) -> View:
        return ui.View(cls="android.widget.TextView", text=app.label, desc=app.label, rid="icon",
                       on_click=lambda: self.phone.start_app(app.package), height=280, size=36,
                       style="appicon", align="center")
