"""Task-scoped rules: from the task sentence alone, the apps a task needs, as allow rules.

The scope is derived before the first screen is seen and never from screen
content, so text on the screen (a notification, a web page) cannot widen
what the agent may do. Interacting with an app outside the scope, or opening
it, falls through to the policy's ``default`` (ask the user, by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgepilot.controllers.android import APP_PACKAGES
from edgepilot.policy.language import Rule, make_rule

SCOPE_PRIORITY = 50
INTERACTIONS = ["activate", "focus", "enter_text", "scroll", "key", "hotkey", "drag"]
"""Effects allowed inside the task's apps (a swipe that dismisses a list item is not among them: it may delete)."""
# desktop applications, by the name the desktop's accessibility tree gives them (Observation.package)
DESKTOP_APPS: dict[str, tuple[str, ...]] = {
    "editor": ("mousepad", "gedit", "gnome-text-editor", "org.gnome.TextEditor", "kate", "kwrite", "xed", "pluma"),
    "calculator": ("galculator", "gnome-calculator", "org.gnome.Calculator", "kcalc", "mate-calc"),
}
LAUNCHERS = ["com.android.launcher3", "com.google.android.apps.nexuslauncher", "com.sec.android.app.launcher",
             "com.miui.home", "com.huawei.android.launcher"]

# app → words in a task sentence that mean the task needs it (whole words, case-insensitive)
APP_WORDS: dict[str, tuple[str, ...]] = {
    "settings": ("settings?", "wi-?fi", "wlan", "bluetooth", "airplane", "aeroplane", "flight mode",
                 "dark (theme|mode)", "light (theme|mode)", "theme", "screen timeout", "timeout", "brightness",
                 "android version",
                 "network", "hotspot", "battery", "display", "sound", "volume", "about phone", "build number",
                 "paired?", "headphones", "earbuds", "speaker"),
    "messages": ("messages?", "messaging", "text(ed|ing)?", "sms", "send", "saying", "reply", "replies",
                 "verification code",
                 "(one-time|login|security) code", "code", "chat", "conversation", "share"),
    "contacts": ("contacts?", "phone number", "number of", "email (address )?of", "address book", "call", "dial",
                 "share"),
    "phone": ("call", "dial", "ring"),
    "clock": ("clock", "alarms?", "timer", "stopwatch", "wake me"),
    "notes": ("notes?", "keep", "notepad", "jot", "write down", "memo"),
    "browser": ("browser", "chrome", "web", "website", "web ?page", "page", "search", "news", "headlines?",
                "weather", "forecast", "library", "shop", "store", "buy", "order", "cart", "url", r"https?://\S+",
                r"\w+\.(com|org|net|example)"),
    "bank": ("bank(ing)?", "balance", "transfer", "checking", "savings", "account", "pay", "send \\$", r"\$\d+"),
    "editor": ("mousepad", "gedit", "kate", "text editor", "editor", r"\S+\.(txt|md|csv|ini|conf)", "text file"),
    "calculator": ("calculator", "galculator", "calculate", "compute", "calc"),
}
# names an `open_app` may use for each app, beyond the key itself
APP_NAMES: dict[str, tuple[str, ...]] = {
    "browser": ("browser", "chrome", "internet", "web"),
    "notes": ("notes", "keep", "google keep"),
    "messages": ("messages", "messaging", "sms"),
    "phone": ("phone", "dialer"),
    "bank": ("bank", "banking"),
    "editor": ("editor", "text editor", "mousepad", "gedit"),
    "calculator": ("calculator", "galculator", "gnome-calculator"),
}


@dataclass(frozen=True)
class TaskScope:
    """What a task may touch without asking: apps (keys of ``APP_PACKAGES``)."""

    task: str
    apps: tuple[str, ...]

    def packages(self) -> list[str]:
        return sorted({p for app in self.apps for p in (*APP_PACKAGES.get(app, ()), *DESKTOP_APPS.get(app, ()))})

    def names(self) -> list[str]:
        return sorted({n for app in self.apps for n in (app, *APP_NAMES.get(app, ()))}
                      | {k for k, pkgs in APP_PACKAGES.items() if set(pkgs) & set(self.packages())})

    def rules(self) -> list[Rule]:
        """The allow rules this scope adds to a policy."""
        if not self.apps:
            return []
        why = f"the task needs {', '.join(self.apps)}"
        return [
            make_rule(id="task-apps", priority=SCOPE_PRIORITY, effect="allow", actions=INTERACTIONS,
                      when={"screen.package": {"in": self.packages()}}, reason=why),
            make_rule(id="task-open-apps", priority=SCOPE_PRIORITY, effect="allow", actions=["open_app"],
                      when={"action.app": {"in": self.names()}}, reason=why),
            make_rule(id="task-launcher-icons", priority=SCOPE_PRIORITY, effect="allow", actions=["tap"],
                      when={"screen.package": {"in": LAUNCHERS}, "target.label": {"in": self.names()}}, reason=why),
        ]


def derive_scope(task: str) -> TaskScope:
    """The apps a task sentence asks for, by keyword (rule-based; no model, no screen)."""
    text = task.casefold()
    apps = [app for app, words in APP_WORDS.items()
            if any(re.search(rf"(?<![\w-])(?:{w})(?![\w-])", text) for w in words)]
    return TaskScope(task=task, apps=tuple(apps))
