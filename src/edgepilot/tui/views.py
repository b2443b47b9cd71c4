"""Text of the read-only views: one SOP (like ``edgepilot sop show``) and the effective policy
(like ``edgepilot policy explain``).

Paths inside the installed package are shown relative to it (``bundled: default.yaml``), so a
view reads the same on every machine.
"""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from edgepilot.config import Config
from edgepilot.policy import DEFAULT_POLICY, derive_scope, engine_for_task, load_policy, policy_path
from edgepilot.tui.steps import clean


def policy_label(path: Path) -> str:
    """A policy file as the user thinks of it: ``bundled default`` for the shipped one, else its path."""

    try:
        if path.resolve() == DEFAULT_POLICY.resolve():
            return "bundled default"
    except OSError:
        pass
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


def sop_text(entry) -> Text:
    """One SOP library entry: name, version, origin, description, apps, parameters, phrasings, steps."""
    s = entry.sop
    out = Text()
    out.append(clean(s.name, 80), style="bold")
    out.append(f"  version {s.version} · {entry.origin}: {clean(entry.path.name, 80)}\n", style="dim")
    out.append(clean(s.description, 300) + "\n")
    out.append("apps: ", style="dim")
    out.append(", ".join(clean(a, 60) for a in s.apps) + "\n")
    if s.params:
        out.append("params:\n", style="dim")
        for name, p in s.params.items():
            out.append(f"  {{{clean(name, 40)}}}", style="cyan")
            out.append(f": {clean(p.description, 200)}" + (f" (e.g. {clean(p.example, 80)})" if p.example else "")
                       + "\n")
    out.append("phrasings:\n", style="dim")
    for phrasing in s.phrasings:
        out.append(f"  - {clean(phrasing, 200)}\n")
    out.append("\n")
    for line in s.render().splitlines():
        sensitive = "sensitive" in line.lower()
        out.append(clean(line, 400) + "\n", style="yellow" if sensitive else "")
    return out


def policy_text(task: str, config: Config, policy_file: Path | None = None) -> Text:
    """The rules in force for ``task``, in the order they are tried, like ``edgepilot policy explain``.

    Raises:
        PolicyError: the policy file is missing or invalid.
    """

    path = policy_path(policy_file, config.policy)
    loaded = load_policy(path)
    out = Text()
    out.append("policy: ", style="dim")
    out.append(policy_label(path) + "\n")
    task = task.strip()
    out.append("task:   ", style="dim")
    if task:
        out.append(clean(task, 300) + "\n")
        apps = derive_scope(task).apps
        out.append("apps the task needs (from its words): ", style="dim")
        out.append((", ".join(apps) or "none found") + "\n")
    else:
        out.append("(none typed yet: the rules without a task's scope)\n", style="italic")
    engine = engine_for_task(task, loaded)
    out.append("\nrules, in the order they are tried (first match decides):\n", style="bold")
    for rule in engine.rules:
        allow = rule.effect == "allow"
        out.append("  " + clean(rule.describe(), 600), style="green" if allow else "")
        if rule.source == "task":
            out.append(" (task)", style="cyan")
        out.append("\n")
        if rule.reason:
            out.append(f"         {clean(rule.reason, 300)}\n", style="dim")
    out.append(f"  no rule matches: {loaded.default}\n", style="bold")
    return out
