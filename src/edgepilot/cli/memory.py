"""``edgepilot explore`` and ``edgepilot memory``: learn apps once, and look at what was learned."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from edgepilot.safetext import for_terminal


@click.command()
@click.option("--app", "apps", multiple=True, help="An app to explore, by label or package (repeatable; default on "
              "the virtual phone: every app).")
@click.option("--device", "device_spec", default="virtual", show_default=True,
              help="virtual (a fresh virtual phone), a serial, SERIAL@HOST:PORT, or a desktop: desktop:xvfb (a "
                   "private Xvfb), desktop (this display).")
@click.option("--max-presses", default=600, show_default=True, type=click.IntRange(1, 100_000),
              help="Presses per app before the walk stops (what is left is resumed next time).")
@click.option("--max-seconds", default=600.0, show_default=True, type=click.FloatRange(1, 86_400),
              help="Seconds per app before the walk stops.")
@click.option("--fill", "fills", multiple=True, metavar="FIELD=TEXT",
              help="Virtual phone only: type TEXT into the field labelled FIELD before pressing a screen's "
                   "buttons (--fill PIN=2468 gets past the virtual bank's login). Never on a real phone.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write memories to (default: the user's memory folder; see `edgepilot memory list`).")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming a cut-short walk.")
@click.option("--yes", "-y", is_flag=True, help="Real phone: do not ask before starting.")
def explore(apps: tuple[str, ...], device_spec: str, max_presses: int, max_seconds: float, fills: tuple[str, ...],
            out: Path | None, fresh: bool, yes: bool) -> None:
    """Walk apps once and remember their screens, so the agent can act where no procedure exists.

    Each app is walked from its launch screen: every element is pressed and what it does is recorded (the
    screen it opens, a switch it flips, a field it focuses), and screens are grouped by structure into
    states. On the virtual phone everything is pressed (the phone is reset before every try). On a real
    phone, nothing the policy would ask about (send, pay, delete, call, install, permissions) is pressed and
    nothing is typed: such elements are remembered as present and unexplored. Ctrl-C stops; the next run
    resumes (docs/memory.md).

    \b
    Examples:
      edgepilot explore                             every app of a fresh virtual phone
      edgepilot explore --app Settings --app Clock
      edgepilot explore --device emulator-5554 --app Settings
      edgepilot explore --device desktop:xvfb --app mousepad --app thunar

    On a desktop each application is started afresh in a sandbox folder for every try (a text file, a
    table, a picture, a subfolder), with its own settings; nothing the policy would ask about is pressed.
    """
    from edgepilot import paths
    from edgepilot.actions import OpenApp
    from edgepilot.agent.session import load_run_policy
    from edgepilot.config import load_config
    from edgepilot.devices import open_device, parse_desktop_spec
    from edgepilot.errors import ConfigError
    from edgepilot.memory.explore import Budget, Explorer, checkpoint_to
    from edgepilot.memory.model import file_name

    desktop = parse_desktop_spec(device_spec)
    filled = {}
    for item in fills:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not FIELD=TEXT", param_hint="--fill")
        filled[name.strip()] = text
    folder = out or paths.memory_dir()
    judge = policy_judge(load_run_policy(load_config()))

    if desktop is not None:
        if filled:
            raise ConfigError("--fill types into fields, which exploration never does on a desktop; drop it")
        if not apps:
            raise click.UsageError("name the applications to explore: --app mousepad --app thunar")
    with open_device(device_spec, screenshot=False) as opened:
        device, phone = opened.device, opened.phone
        if desktop is not None:
            _explore_desktop(opened, apps, desktop.xvfb or yes, judge, folder, fresh,
                             Budget(actions=max_presses, seconds=max_seconds))
            return
        virtual = phone is not None
        if filled and not virtual:
            raise ConfigError("--fill types into fields, which exploration never does on a real phone; drop it")
        names = list(apps) or (_virtual_apps(phone) if virtual else [])
        if not names:
            raise click.UsageError("name the apps to explore on a real phone: --app Settings --app Clock")
        if not virtual and not yes:
            _go_on(f"Exploring {', '.join(names)} on {opened.description}: each app is closed and opened many times "
                   "and its buttons are pressed, except what the policy would ask about (send, pay, delete, call, "
                   "install, permissions); nothing is typed.")
        for app in names:
            package = device.package_of(app)
            label = _label(phone, package) if virtual else app
            version = device.app_version(package)

            def restart(package=package) -> None:
                if virtual:
                    phone.reset()
                else:
                    device.force_stop(package)
                device.act(OpenApp(app=package))

            explorer = Explorer(device, label, package, restart, judge=judge, press_all=virtual,
                                budget=Budget(actions=max_presses, seconds=max_seconds),
                                progress=lambda msg, label=label: click.echo(f"{label}: {for_terminal(msg)}",
                                                                             err=True),
                                checkpoint=checkpoint_to(folder), app_version=version,
                                device_name=opened.description, fills=filled)
            _walk(explorer, label, folder, folder / file_name(package, version), fresh)


def _go_on(what: str) -> None:
    """Say what exploring will do to a device a person uses, and stop unless they agree."""
    click.echo(what, err=True)
    if not click.confirm("Go on?", default=False, err=True):
        raise SystemExit(1)


DESKTOP_LABELS = {"lxterminal": "LXTerminal"}
"""Names of desktop applications that are not their command capitalised."""


def _walk(explorer, label: str, folder: Path, path: Path, fresh: bool, plain=None) -> None:
    """Run ``explorer`` (resuming a cut-short walk in ``path`` unless ``fresh``) and save what it learned;
    ``plain`` rewrites every text of it before saving (a desktop sandbox's folder, this machine's user and host
    taken out: titles, screen texts, labels and the states' keys)."""
    from edgepilot.errors import AppMemoryError
    from edgepilot.memory.model import AppMemory, load, save

    resume = None
    if path.exists() and not fresh:
        try:
            old = load(path)
        except AppMemoryError as exc:  # a broken partial file is started over, and the user told
            click.echo(f"{path}: {exc}; starting over", err=True)
            old = None
        if old is not None and not old.complete:
            resume = old
            click.echo(f"{label}: resuming a walk cut short after {old.actions} presses", err=True)
    try:
        memory = explorer.run(resume)
    except KeyboardInterrupt:
        click.echo(f"\n{label}: stopped; what was learned is kept in {folder} and the next "
                   "`edgepilot explore` resumes it", err=True)
        raise SystemExit(130) from None
    if plain is not None:
        memory = AppMemory.model_validate(_rewrite(memory.model_dump(mode="json"), plain))
    written = save(memory, folder)
    s = memory.summary()
    done = "complete" if memory.complete else "cut short by the budget (run again to resume)"
    click.echo(f"{label}: {s['states']} states, {s['elements']} elements, {s['unexplored']} left unpressed,"
               f" {memory.actions} presses in {memory.seconds:.1f} s, {done} -> {written}")


def _rewrite(data, plain):
    """Every string of a JSON-like structure (keys too) through ``plain``."""
    if isinstance(data, str):
        return plain(data)
    if isinstance(data, list):
        return [_rewrite(x, plain) for x in data]
    if isinstance(data, dict):
        return {plain(k) if isinstance(k, str) else k: _rewrite(v, plain) for k, v in data.items()}
    return data


def _explore_desktop(opened, apps: tuple[str, ...], asked: bool, judge, folder: Path, fresh: bool, budget) -> None:
    """Each application started afresh in a sandbox for every try (sim/desktop/sandbox.py)."""
    from edgepilot.memory.explore import Explorer, checkpoint_to
    from edgepilot.memory.model import file_name
    from edgepilot.sim.desktop.sandbox import DesktopSandbox, app_version

    if not asked:
        _go_on(f"Exploring {', '.join(apps)} on {opened.description}: each is started many times in a sandbox folder "
               "and its menus and buttons are pressed on this screen, except what the policy would ask about "
               "(delete, send...); nothing is typed. Keep your hands off the mouse meanwhile.")
    for app in apps:
        name = app.strip().lower()  # the command, and the application's name on the accessibility bus
        label = DESKTOP_LABELS.get(name, name.capitalize())
        version = app_version(name)
        sandbox = DesktopSandbox(opened.device, name)
        explorer = Explorer(opened.device, label, name, sandbox.restart, judge=judge, press_all=False,
                            budget=budget, checkpoint=checkpoint_to(folder), app_version=version,
                            progress=lambda msg, label=label: click.echo(f"{label}: {for_terminal(msg)}", err=True),
                            device_name=opened.description)
        try:
            _walk(explorer, label, folder, folder / file_name(name, version), fresh, plain=sandbox.plain_text)
        finally:
            sandbox.close()


def policy_judge(policy):
    """What the policy would ask about pressing element ``i`` for what it does (sending, paying, deleting...):
    exploration leaves such elements unpressed on a real phone. That no task is in scope while exploring
    (``unmatched``, ``out_of_scope``) is no reason to leave an element."""
    from edgepilot.actions import Tap
    from edgepilot.policy import PolicyEngine

    engine = PolicyEngine(policy)

    def judge(obs, index: int) -> str:
        verdict = engine.evaluate(Tap(target=index), obs)
        if verdict.effect == "allow" or verdict.category in ("unmatched", "out_of_scope"):
            return ""
        return verdict.category or verdict.reason or verdict.effect

    return judge


def _virtual_apps(phone) -> list[str]:
    return [app.label for app in phone.apps.values() if app.package != phone.launcher_package]


def _label(phone, package: str) -> str:
    return phone.apps[package].label if package in phone.apps else package


@click.group()
def memory() -> None:
    """App memories from `edgepilot explore` (docs/memory.md)."""


@memory.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def memory_list(as_json: bool) -> None:
    """Every app memory: the user's, then the ones shipped for the virtual phone."""
    from edgepilot.memory.store import folders, stored

    rows = []
    for s in stored():
        rows.append({"path": str(s.path), "bundled": s.bundled, "error": s.error,
                     **(s.memory.summary() if s.memory is not None else {})})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"user folder: {folders()[0]}")
    if not rows:
        click.echo("no memories; run `edgepilot explore`")
    for r in rows:
        if r["error"]:
            click.echo(f"  BROKEN  {r['path']}: {for_terminal(r['error'])}")
            continue
        where = "shipped" if r["bundled"] else "yours"
        version = f" {r['version']}" if r["version"] else ""
        left = "" if r["complete"] else " (cut short)"
        click.echo(f"  {r['app']:<10} {r['package']}{version}: {r['states']} states, {r['elements']} elements, "
                   f"{r['unexplored']} unpressed{left} [{where}]")


@memory.command("show")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True, help="Print the memory file's JSON.")
def memory_show(app: str, as_json: bool) -> None:
    """What is remembered of APP (label or package): its states, their elements and what each does."""
    from edgepilot.errors import AppMemoryError
    from edgepilot.memory.store import find

    found = find(app)
    if not found:
        raise AppMemoryError(f"no memory of {app!r}; see `edgepilot memory list`, or `edgepilot explore --app {app}`")
    m = found[0].memory
    if as_json:
        click.echo(json.dumps(m.model_dump(mode="json"), indent=1, ensure_ascii=False))
        return
    click.echo(f"{m.app} ({m.package} {m.app_version or 'version unknown'}), explored {m.explored_at or '?'} on "
               f"{m.device or '?'}: {found[0].path}")
    for s in m.states:
        way = " › ".join(e.label or e.role for _, e in m.route(s.id)) or "launch screen"
        click.echo(f"{s.id} {for_terminal(s.title) or '(untitled)'}  [{for_terminal(way)}]")
        for e in s.elements:
            what = {"opens": f"opens {e.leads_to}", "unexplored": f"unpressed ({e.sensitive or 'budget'})"}.get(
                e.effect, e.effect.replace("_", " "))
            extra = f" e.g. {', '.join(e.examples[:3])}" if e.collection and e.examples else ""
            click.echo(f"    {e.role:<6} {for_terminal(e.label)!r:<36} {what}{for_terminal(extra)}")


@memory.command("forget")
@click.argument("app")
def memory_forget(app: str) -> None:
    """Delete your memories of APP (label, package, or a broken file's name)."""
    from edgepilot.memory.store import forget

    gone = forget(app)
    if not gone:
        click.echo(f"no memory of {app!r} in your folder", err=True)
        sys.exit(1)
    for path in gone:
        click.echo(f"forgot {path}")
