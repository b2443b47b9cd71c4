"""Settings: Wi-Fi, Bluetooth, airplane mode, dark theme, screen timeout, about."""

from __future__ import annotations

from pydantic import BaseModel, Field

from edgepilot.sim import ui
from edgepilot.sim.apps.base import App, AppState, Route
from edgepilot.sim.ui import Page

TIMEOUTS = ["15 seconds", "30 seconds", "1 minute", "2 minutes", "5 minutes", "10 minutes", "30 minutes"]


class Network(BaseModel):
    ssid: str
    password: str = ""
    saved: bool = False


class BluetoothDevice(BaseModel):
    name: str
    connected: bool = False


def _default_networks() -> list[Network]:
    return [
        Network(ssid="HomeNet", password="sunflower42", saved=True),
        Network(ssid="CoffeeShop", password="latte2024"),
        Network(ssid="Library_Guest", password="readmore"),
        Network(ssid="Office-5G", password="quarterly88"),
    ]


def _default_devices() -> list[BluetoothDevice]:
    return [BluetoothDevice(name="Car Audio"), BluetoothDevice(name="Headphones")]


class SettingsState(AppState):
    wifi: bool = True
    wifi_connected: str | None = "HomeNet"
    networks: list[Network] = Field(default_factory=_default_networks)
    bluetooth: bool = False
    bluetooth_devices: list[BluetoothDevice] = Field(default_factory=_default_devices)
    airplane_mode: bool = False
    dark_theme: bool = False
    screen_timeout: str = "30 seconds"


class Settings(App):
    package = "com.android.settings"
    label = "Settings"
    key = "settings"
    activity = ".Settings"
    State = SettingsState
    state: SettingsState

    # ------------------------------------------------------------ pages

    def _page_main(self, route: Route) -> Page:
        s = self.state
        wifi = "Off" if not s.wifi else (f"Connected to {s.wifi_connected}" if s.wifi_connected else "On")
        body = [
            ui.item("Network & internet", self._go("network"), subtitle=f"Wi-Fi: {wifi}", rid="network"),
            ui.item("Connected devices", self._go("devices"),
                    subtitle="Bluetooth: " + ("On" if s.bluetooth else "Off"), rid="devices"),
            ui.item("Display", self._go("display"), subtitle="Dark theme, screen timeout", rid="display"),
            ui.item("Sound & vibration", self._go("sound"), subtitle="Volume, ringtone", rid="sound"),
            ui.item("Battery", self._go("battery"), subtitle=f"{self.phone.battery_level}%", rid="battery"),
            ui.item("About phone", self._go("about"), subtitle="Virtual Phone", rid="about"),
        ]
        return Page(title="Settings", body=body, activity=".Settings")

    def _page_network(self, route: Route) -> Page:
        s = self.state
        body = [
            ui.item("Wi-Fi", self._go("wifi"), rid="wifi",
                    subtitle="Off" if not s.wifi else (s.wifi_connected or "Not connected")),
            ui.item("Airplane mode", self._go("airplane"), rid="airplane",
                    subtitle="On" if s.airplane_mode else "Off"),
            ui.item("Mobile network", self._go("mobile"), subtitle="Virtual Carrier", rid="mobile"),
        ]
        return Page(title="Network & internet", body=body, activity=".network.NetworkDashboard")

    def _page_wifi(self, route: Route) -> Page:
        s = self.state
        body = [ui.toggle("Use Wi-Fi", s.wifi, self._set_wifi, rid="wifi_switch")]
        if s.wifi:
            body.append(ui.header("Available networks"))
            for net in s.networks:
                status = "Connected" if net.ssid == s.wifi_connected else ("Saved" if net.saved else "Secured")
                body.append(ui.item(net.ssid, self._tap_network(net.ssid), subtitle=status, rid="network_name"))
        else:
            body.append(ui.text("To see available networks, turn Wi-Fi on.", muted=True))
        return Page(title="Wi-Fi", body=body, activity=".wifi.WifiSettings")

    def _page_wifi_password(self, route: Route) -> Page:
        ssid = route.get("ssid")
        body = [
            ui.text(f"Enter the password for {ssid}", rid="dialog_title"),
            ui.field(self.form.get("password"), self.form.setter("password"), rid="password",
                     hint="Password", password=True, on_submit=lambda: self._connect(ssid)),
            ui.row(ui.button("Cancel", self.pop, rid="cancel"),
                   ui.button("Connect", lambda: self._connect(ssid), rid="connect")),
        ]
        return Page(title=ssid, body=body, activity=".wifi.WifiDialog")

    def _page_airplane(self, route: Route) -> Page:
        body = [
            ui.toggle("Use airplane mode", self.state.airplane_mode, self._set_airplane, rid="airplane_switch"),
            ui.text("Airplane mode turns off Wi-Fi, Bluetooth and mobile data.", muted=True),
        ]
        return Page(title="Airplane mode", body=body, activity=".AirplaneModeSettings")

    def _page_mobile(self, route: Route) -> Page:
        return Page(title="Mobile network", body=[ui.text("Virtual Carrier · 5G"),
                                                   ui.text("Data used this month: 1.2 GB", muted=True)])

    def _page_devices(self, route: Route) -> Page:
        s = self.state
        body = [ui.item("Bluetooth", self._go("bluetooth"), rid="bluetooth",
                        subtitle="On" if s.bluetooth else "Off")]
        return Page(title="Connected devices", body=body, activity=".ConnectedDeviceDashboard")

    def _page_bluetooth(self, route: Route) -> Page:
        s = self.state
        body = [ui.toggle("Use Bluetooth", s.bluetooth, self._set_bluetooth, rid="bluetooth_switch")]
        if s.bluetooth:
            body.append(ui.header("Paired devices"))
            for dev in s.bluetooth_devices:
                body.append(ui.item(dev.name, self._tap_device(dev.name), rid="device_name",
                                    subtitle="Connected" if dev.connected else "Paired"))
        return Page(title="Bluetooth", body=body, activity=".bluetooth.BluetoothSettings")

    def _page_display(self, route: Route) -> Page:
        s = self.state
        body = [
            ui.item("Dark theme", self._go("dark_theme"), rid="dark_theme", subtitle="On" if s.dark_theme else "Off"),
            ui.item("Screen timeout", self._go("timeout"), rid="screen_timeout",
                    subtitle=f"After {s.screen_timeout} of inactivity"),
            ui.item("Font size", self._go("font"), rid="font_size", subtitle="Default"),
        ]
        return Page(title="Display", body=body, activity=".DisplaySettings")

    def _page_dark_theme(self, route: Route) -> Page:
        body = [ui.toggle("Use dark theme", self.state.dark_theme, self._flip("dark_theme"), rid="dark_theme_switch"),
                ui.text("Dark theme uses a black background to help keep your battery alive longer.", muted=True)]
        return Page(title="Dark theme", body=body, activity=".display.DarkUIPreference")

    def _page_timeout(self, route: Route) -> Page:
        body = [ui.radio(t, t == self.state.screen_timeout, self._set_timeout(t), rid="timeout_option")
                for t in TIMEOUTS]
        return Page(title="Screen timeout", body=body, activity=".display.ScreenTimeoutSettings")

    def _page_font(self, route: Route) -> Page:
        return Page(title="Font size", body=[ui.text("Default")])

    def _page_sound(self, route: Route) -> Page:
        return Page(title="Sound & vibration", body=[ui.text("Media volume: 60%"), ui.text("Ring volume: 80%")])

    def _page_battery(self, route: Route) -> Page:
        level = self.phone.battery_level  # the status bar's battery, draining as the phone is used
        return Page(title="Battery", body=[ui.text(f"{level}% · about {max(1, level // 6)} hours left")])

    def _page_about(self, route: Route) -> Page:
        props = self.phone.props()
        body = [ui.item("Device name", subtitle=props["ro.product.model"], rid="device_name"),
                ui.item("Android version", subtitle=props["ro.build.version.release"], rid="android_version"),
                ui.item("Phone number", subtitle="+1 555-0100", rid="phone_number")]
        return Page(title="About phone", body=body, activity=".DeviceInfoSettings")

    # ------------------------------------------------------------ handlers

    def _go(self, name: str):
        return lambda: self.push(Route(name))

    def _flip(self, attr: str):
        def flip() -> None:
            setattr(self.state, attr, not getattr(self.state, attr))

        return flip

    def _set_wifi(self) -> None:
        s = self.state
        s.wifi = not s.wifi
        if s.wifi:
            s.airplane_mode = False
            saved = [n.ssid for n in s.networks if n.saved]
            s.wifi_connected = saved[0] if saved else None
        else:
            s.wifi_connected = None

    def _set_bluetooth(self) -> None:
        s = self.state
        s.bluetooth = not s.bluetooth
        if s.bluetooth:
            s.airplane_mode = False
        else:
            for dev in s.bluetooth_devices:
                dev.connected = False

    def _set_airplane(self) -> None:
        s = self.state
        s.airplane_mode = not s.airplane_mode
        if s.airplane_mode:
            s.wifi, s.wifi_connected, s.bluetooth = False, None, False
            for dev in s.bluetooth_devices:
                dev.connected = False

    def _set_timeout(self, value: str):
        def choose() -> None:
            self.state.screen_timeout = value
            self.pop()

        return choose

    def _tap_network(self, ssid: str):
        def tap() -> None:
            net = next(n for n in self.state.networks if n.ssid == ssid)
            if net.saved:
                self.state.wifi_connected = ssid
            else:
                self.push(Route.to("wifi_password", ssid=ssid))

        return tap

    def _connect(self, ssid: str) -> None:
        net = next(n for n in self.state.networks if n.ssid == ssid)
        if self.form.get("password") == net.password:
            net.saved = True
            self.state.wifi_connected = ssid
            self.pop()
        else:
            self.toast("Incorrect password")
            self.form.values["password"] = ""

    def _tap_device(self, name: str):
        def tap() -> None:
            for dev in self.state.bluetooth_devices:
                dev.connected = (dev.name == name) and not dev.connected

        return tap
