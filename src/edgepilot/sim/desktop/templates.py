"""Desktop tasks as templates: the phone's task format (docs/tasks.md) over real applications and real state.

A desktop template is a phone template with ``device: desktop``, read by the
same loader (:func:`edgepilot.sim.tasks.suite.load_templates`) with the same
parameters, splits and seeded instances. What differs is the world:

- ``{dir}`` in any field is the task's own folder (``.../Documents`` in a fresh
  temporary folder), filled when the task starts;
- ``setup`` writes files and folders there and launches applications
  (:data:`SETUP_OPS`);
- ``check`` paths address :func:`desktop_state`, read from the real world when
  the agent has finished: the folder's files and their text, the clipboard,
  the windows' titles, the calculator's display;
- ``solution`` is the scripted reference: each step finds its element by class
  and name in the accessibility tree and waits until it is there
  (:data:`SOLUTION_OPS`).

docs/desktop.md lists the templates and the applications.
"""

from __future__ import annotations

import csv
import io
import shutil
import string
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edgepilot.actions import Action, Click, DoubleClick, Finish, Hotkey, Key, OpenApp, Type, Wait
from edgepilot.errors import EdgepilotError, TaskError
from edgepilot.perception.atspi import AtspiReader
from edgepilot.perception.types import Observation, UINode
from edgepilot.sim.desktop.tasks import (
    CheckResult,
    DesktopTask,
    Step,
    TaskContext,
    _norm,
    _number,
    calculator_display,
    find,
)
from edgepilot.sim.tasks.model import TaskInstance, TaskTemplate
from edgepilot.sim.tasks.suite import SPLITS, instances, load_templates

DESKTOP_DIR = Path(__file__).with_name("templates")
DIR = "{dir}"
"""The placeholder of the task's folder; a template's parameters leave it in place for the start to fill."""
FOLDER = "Documents"
MAX_FILE_CHARS = 20_000


def desktop_templates(extra_dirs: Iterable[Path] = ()) -> dict[str, TaskTemplate]:
    """The desktop templates (``src/edgepilot/sim/desktop/templates/*.yaml``), then those in ``extra_dirs``.

    Raises:
        TaskError: a file is invalid, two templates share an id, or a template is not for the desktop.
    """
    return load_templates(extra_dirs, builtin=DESKTOP_DIR, device="desktop")


# ---------------------------------------------------------------- conditions


def condition(spec: dict[str, Any] | None) -> Callable[[Observation], bool]:
    """A test on the screen from its YAML form (``{title_has: X}``, ``{shows: {cls, label}}``...; docs/desktop.md).

    Raises:
        TaskError: an unknown condition.
    """
    if not spec:
        return lambda obs: True
    tests = [_one_condition(name, arg) for name, arg in spec.items()]
    return lambda obs: all(test(obs) for test in tests)


def _one_condition(name: str, arg: Any) -> Callable[[Observation], bool]:
    if name == "title_has":
        return lambda obs: _norm(str(arg)) in _norm(obs.activity)
    if name == "title_lacks":
        return lambda obs: bool(obs.activity) and _norm(str(arg)) not in _norm(obs.activity)
    if name == "saved":  # an editor's title loses its leading "*" once the file is saved
        return lambda obs: bool(obs.activity) and not obs.activity.startswith("*")
    if name == "shows":
        return lambda obs: _find(obs, arg) is not None
    if name == "gone":
        return lambda obs: _find(obs, arg) is None
    if name == "text_has":  # some element's text (a field's content, a terminal's screen) holds this
        return lambda obs: find(obs, text_has=str(arg)) is not None
    if name == "display":
        return lambda obs: _number(calculator_display(obs.nodes) or "") == _number(str(arg))
    raise TaskError(f"unknown condition {name!r} (use title_has, title_lacks, saved, shows, gone, text_has, "
                    "display)")


_WHERE = ("cls", "label", "after", "enabled", "package", "text_has")


def _find(obs: Observation, where: dict[str, Any]) -> int | None:
    """The element a step means: ``{cls, label, after, enabled, package, text_has}`` (docs/desktop.md).

    Raises:
        TaskError: ``where`` has another key.
    """
    unknown = sorted(map(str, set(where) - set(_WHERE)))
    if unknown:
        raise TaskError(f"an element is found by {', '.join(_WHERE)}, not by {', '.join(unknown)}")
    return find(obs, cls=where.get("cls"), **{k: (str(v) if k in ("label", "after", "text_has") else v)
                                              for k, v in where.items() if k != "cls" and v is not None})


# ---------------------------------------------------------------- the reference's steps


def _when(arg: dict[str, Any]) -> Callable[[Observation], bool]:
    return condition(arg.get("when"))


def _click(arg: dict[str, Any]) -> Step:
    ready, where = _when(arg), {k: v for k, v in arg.items() if k not in ("when", "double")}
    where.setdefault("enabled", True)

    def step(obs: Observation) -> Action | None:
        i = _find(obs, where) if ready(obs) else None
        return None if i is None else (DoubleClick if arg.get("double") else Click)(target=i)
    return step


def _type(arg: dict[str, Any]) -> Step:
    ready = _when(arg)
    where = {k: arg[k] for k in ("cls", "label", "after", "package", "text_has") if k in arg}
    focused = bool(arg.get("focused", False))  # type where the keyboard focus is (no click)

    def step(obs: Observation) -> Action | None:
        if not ready(obs):
            return None
        if focused:
            return Type(text=str(arg["text"]), clear=bool(arg.get("clear")))
        i = _find(obs, {"cls": "EditText", **where})
        return None if i is None else Type(text=str(arg["text"]), target=i, clear=bool(arg.get("clear")))
    return step


def _hotkey(arg: Any) -> Step:
    spec = arg if isinstance(arg, dict) else {"keys": arg}
    ready = _when(spec)
    keys = tuple(str(k) for k in spec["keys"])
    return lambda obs: Hotkey(keys=keys) if ready(obs) else None  # type: ignore[arg-type]


def _key(arg: Any) -> Step:
    spec = arg if isinstance(arg, dict) else {"key": arg}
    ready = _when(spec)
    return lambda obs: Key(key=spec["key"]) if ready(obs) else None


def _wait(arg: dict[str, Any]) -> Step:
    ready = condition(arg)
    return lambda obs: Wait(seconds=0.0) if ready(obs) else None


def _toggle(arg: dict[str, Any]) -> Step:
    """Click a check box only if it is not already as wanted (``checked: true``, the default, or false; not
    ``on``, which YAML reads as the key ``True``)."""
    ready, want = _when(arg), bool(arg.get("checked", True))
    where = {k: v for k, v in arg.items() if k not in ("when", "checked")}

    def step(obs: Observation) -> Action | None:
        i = _find(obs, where) if ready(obs) else None
        if i is None:
            return None
        return Wait(seconds=0.0) if obs.elements[i].checked == want else Click(target=i)
    return step


def _open_app(arg: Any) -> Step:
    spec = arg if isinstance(arg, dict) else {"app": arg}
    ready = _when(spec)
    return lambda obs: OpenApp(app=str(spec["app"])) if ready(obs) else None


def _finish(arg: dict[str, Any] | None) -> Step:
    arg = arg or {}
    ready = _when(arg)
    answer = arg.get("answer")

    def step(obs: Observation) -> Action | None:
        if not ready(obs):
            return None
        said = calculator_display(obs.nodes) if answer == "display" else None if answer is None else str(answer)
        return Finish(status="success", answer=said)
    return step


def _buttons(arg: Any) -> list[Step]:
    """Click buttons named by the characters of ``text`` in turn (a calculator's keys: ``12*7=``)."""
    spec = arg if isinstance(arg, dict) else {"text": arg}
    where = {k: v for k, v in spec.items() if k != "text"}
    return [_click({"label": ch, "cls": ["ToggleButton", "Button"], **where}) for ch in str(spec["text"])]


SOLUTION_OPS: dict[str, Callable[[Any], Step | list[Step]]] = {
    "click": _click, "type": _type, "hotkey": _hotkey, "key": _key, "wait": _wait, "toggle": _toggle,
    "buttons": _buttons, "open_app": _open_app, "finish": _finish,
}
"""The reference's step kinds (docs/desktop.md): each makes a :data:`Step` (or several) from its YAML argument."""


# ---------------------------------------------------------------- the task


class TemplateTask(DesktopTask):
    """One instance of a desktop template, runnable by :func:`edgepilot.bench.desktop.run_desktop_episode`."""

    def __init__(self, instance: TaskInstance) -> None:
        self.instance = instance
        self.id = instance.id
        self.split = instance.template.split
        self.app = instance.template.apps[0]
        self.sensitive = tuple(instance.template.sensitive)

    @property
    def template(self) -> str:
        return self.instance.template.id

    @property
    def apps(self) -> tuple[str, ...]:
        return tuple(self.instance.template.apps)

    def folder(self, ctx: TaskContext) -> Path:
        return ctx.workdir / FOLDER

    def _filled(self, ctx: TaskContext, value: Any) -> Any:
        return _replace_dir(value, str(self.folder(ctx)))

    def goal(self, ctx: TaskContext) -> str:
        return self._filled(ctx, self.instance.goal)

    def available(self) -> str | None:
        missing = [app for app in self.apps if shutil.which(APP_COMMANDS.get(app, [app])[0]) is None]
        if missing:
            return f"{', '.join(missing)} not installed (scripts/system-deps.sh installs them)"
        return None

    def start(self, ctx: TaskContext) -> None:
        self.folder(ctx).mkdir(parents=True, exist_ok=True)
        for make, arg in self._ops(ctx, self.instance.template.setup, SETUP_OPS, "set-up operation"):
            make(self, ctx, arg)

    def reference(self, ctx: TaskContext) -> list[Step]:
        steps = []
        for make, arg in self._ops(ctx, self.instance.template.solution, SOLUTION_OPS, "solution step"):
            made = make(arg)
            steps.extend(made if isinstance(made, list) else [made])
        return steps

    def _ops(self, ctx: TaskContext, ops: list[dict[str, Any]], table: dict[str, Any],
             what: str) -> list[tuple[Any, Any]]:
        """The template's ``ops`` filled for this run, each as (its maker in ``table``, its argument).

        Raises:
            TaskError: an entry is not one ``kind: argument`` pair, or its kind is unknown.
        """
        out = []
        for op in self._filled(ctx, self.instance.filled(ops)):
            if not isinstance(op, dict) or len(op) != 1:
                raise TaskError(f"{self.template}: a {what} must have exactly one key, got {op!r}")
            (kind, arg), = op.items()
            if kind not in table:
                raise TaskError(f"{self.template}: unknown {what} {kind!r} (use {', '.join(table)})")
            out.append((table[kind], arg))
        return out

    def check(self, ctx: TaskContext, answer: str | None) -> CheckResult:
        state = desktop_state(ctx, self.folder(ctx), self.apps)
        checks = [c.model_copy(update={"path": self._filled(ctx, c.path)}) if c.path else c
                  for c in self.instance.checks()]
        failed = tuple(c.describe() for c in checks if not c.holds(state, answer))
        return CheckResult(not failed, failed, _summary(state))


def _replace_dir(value: Any, folder: str) -> Any:
    if isinstance(value, str):
        return value.replace(DIR, folder)
    if isinstance(value, list):
        return [_replace_dir(v, folder) for v in value]
    if isinstance(value, dict):
        return {k: _replace_dir(v, folder) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- set-up


APP_COMMANDS: dict[str, list[str]] = {
    "mousepad": ["mousepad", "--disable-server"],
    "galculator": ["galculator"],
    "thunar": ["thunar"],
    "lxterminal": ["lxterminal"],
    "gnumeric": ["gnumeric", "--no-splash"],
    "ristretto": ["ristretto"],
}
"""How each application starts for a task (its own instance: no server shared with other tasks)."""

XFCONF_CHANNELS = {"thunar": "thunar", "ristretto": "ristretto"}
"""Applications that keep their settings in xfconfd, one daemon per session bus that outlives the task: their
channel is reset before each start (else one task's "show hidden files" is the next task's start)."""


def _setup_file(task: TemplateTask, ctx: TaskContext, arg: dict[str, Any]) -> None:
    """``{name, text}``; ``lines: N`` writes the text N times; ``copies: N`` writes N files, ``#`` in the
    name numbered 1 to N."""
    text = str(arg.get("text", "")) * int(arg.get("lines", 1))
    copies = int(arg.get("copies", 1))
    for i in range(1, copies + 1):
        path = _inside(task.folder(ctx), str(arg["name"]).replace("#", str(i)) if "copies" in arg else arg["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _setup_dir(task: TemplateTask, ctx: TaskContext, arg: dict[str, Any]) -> None:
    _inside(task.folder(ctx), arg["name"]).mkdir(parents=True, exist_ok=True)


def _setup_launch(task: TemplateTask, ctx: TaskContext, arg: dict[str, Any]) -> None:
    app = arg["app"]
    if app in XFCONF_CHANNELS:
        reset_xfconf(ctx, XFCONF_CHANNELS[app])
    argv = [*APP_COMMANDS.get(app, [app]), *(str(a) for a in arg.get("args", []))]
    ctx.launch(argv, cwd=task.folder(ctx))
    ready = condition(arg.get("ready") or {"shows": {"package": app}})
    ctx.wait_for(lambda obs: bool(obs.elements) and obs.elements[0].package == app and ready(obs),
                 f"{app}'s window", timeout=float(arg.get("timeout", 30)))


def reset_xfconf(ctx: TaskContext, channel: str) -> None:
    if shutil.which("xfconf-query") is None:
        return
    try:
        subprocess.run(["xfconf-query", "-c", channel, "-p", "/", "-r", "-R"], env=ctx.device.app_env(),  # noqa: S603,S607
                       capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TaskError(f"cannot reset the {channel} settings with xfconf-query: {exc}") from exc


def _setup_keys(task: TemplateTask, ctx: TaskContext, arg: Any) -> None:
    """Press keys in the application (Thunar's detailed list: ctrl+2), then wait for what they show."""
    spec = arg if isinstance(arg, dict) else {"keys": arg}
    ctx.device.act(Hotkey(keys=tuple(spec["keys"])))
    if spec.get("ready"):
        ctx.wait_for(condition(spec["ready"]), f"the screen after {'+'.join(spec['keys'])}")


def _setup_sheet(task: TemplateTask, ctx: TaskContext, arg: dict[str, Any]) -> None:
    """A spreadsheet file (``name``, a Gnumeric or other format by its suffix) made from ``csv`` text."""
    path = _inside(task.folder(ctx), arg["name"])
    source = ctx.workdir / "sheet-source.csv"
    source.write_text(str(arg["csv"]), encoding="utf-8")
    try:
        subprocess.run(["ssconvert", str(source), str(path)], capture_output=True, timeout=30,  # noqa: S603,S607
                       check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise TaskError(f"cannot write {path.name} with ssconvert ({exc}); install gnumeric") from exc


def _setup_image(task: TemplateTask, ctx: TaskContext, arg: dict[str, Any]) -> None:
    """A PNG of ``width`` × ``height`` pixels in one colour."""
    from PIL import Image

    path = _inside(task.folder(ctx), arg["name"])
    Image.new("RGB", (int(arg["width"]), int(arg["height"])), str(arg.get("color", "steelblue"))).save(path)


def _setup_press(task: TemplateTask, ctx: TaskContext, arg: dict[str, Any]) -> None:
    """Click an element if it shows within a few seconds (a first-run warning's OK), until it is gone."""
    where = {k: v for k, v in arg.items() if k != "within"}
    deadline, clicked = time.monotonic() + float(arg.get("within", 3)), False
    while time.monotonic() < deadline:
        obs = ctx.device.observe()
        i = _find(obs, where)
        if i is None and clicked:
            return
        if i is not None:
            ctx.device.act(Click(target=i))
            clicked = True
        time.sleep(0.3)
    if clicked:
        raise TaskError(f"{where} still shows after clicking it")


SETUP_OPS: dict[str, Callable[[TemplateTask, TaskContext, Any], None]] = {
    "file": _setup_file, "sheet": _setup_sheet, "image": _setup_image, "dir": _setup_dir, "launch": _setup_launch,
    "keys": _setup_keys, "press": _setup_press,
}
"""The set-up operations (docs/desktop.md)."""


def _inside(folder: Path, name: str) -> Path:
    path = (folder / name).resolve()
    if folder.resolve() not in (path, *path.parents):
        raise TaskError(f"{name!r} is outside the task's folder")
    return path


# ---------------------------------------------------------------- the world, read for the checks


def desktop_state(ctx: TaskContext, folder: Path, apps: Iterable[str] = ()) -> dict[str, Any]:
    """What the checks address: ``files``, ``clipboard``, ``windows``, ``calculator.display`` (with Galculator
    among ``apps``), ``texts`` and ``screen`` by application (docs/desktop.md).

    ``files`` lists everything under ``folder`` (``name`` relative to it, with
    ``/``; ``dir``; ``text`` for text files up to 20,000 characters, else None;
    ``cells`` for CSV files (:func:`csv_cells`) and spreadsheets (:func:`sheet_cells`);
    ``image``, ``WIDTHxHEIGHT``, for images).
    """
    files = []
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            entry: dict[str, Any] = {"name": path.relative_to(folder).as_posix(), "dir": path.is_dir(), "text": None}
            if path.is_file():
                try:
                    entry["text"] = path.read_text(encoding="utf-8")[:MAX_FILE_CHARS]
                except (OSError, UnicodeDecodeError):
                    pass
                if path.suffix == ".csv" and entry["text"] is not None:
                    entry["cells"] = csv_cells(entry["text"])
                elif path.suffix in SHEET_SUFFIXES:
                    entry["cells"] = sheet_cells(path)
                elif path.suffix in (".png", ".jpg", ".jpeg"):
                    entry["image"] = image_size(path)
            files.append(entry)
    state: dict[str, Any] = {"files": files, "clipboard": clipboard(ctx.device), "windows": []}
    try:
        reader = AtspiReader(ctx.device.a11y_address(), active_only=False)
        try:
            nodes = reader.read().nodes
        finally:
            reader.close()
    except EdgepilotError as exc:
        state["a11y_error"] = str(exc)
        nodes = []
    state["windows"] = [{"app": n.package, "title": n.text} for n in nodes
                        if n.class_name in ("Window", "Frame", "Dialog") and n.depth <= 1]
    if "galculator" in apps:
        state["calculator"] = {"display": calculator_display(nodes)}
    state["texts"] = _texts(nodes)
    state["screen"] = _screens(nodes)
    return state


def _screens(nodes: Iterable[UINode]) -> dict[str, str]:
    """Each application's visible labels, one a line (a settings task's check: the mode's buttons show)."""
    out: dict[str, list[str]] = {}
    for n in nodes:
        if n.label:
            out.setdefault(n.package or "?", []).append(n.label)
    return {app: "\n".join(parts) for app, parts in out.items()}


def image_size(path: Path) -> str | None:
    """An image file's ``WIDTHxHEIGHT``, or None when it is no image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return f"{image.width}x{image.height}"
    except (OSError, UnidentifiedImageError):
        return None


SHEET_SUFFIXES = (".gnumeric", ".ods", ".xlsx")


def sheet_cells(path: Path) -> dict[str, str] | None:
    """A spreadsheet file's cells as shown (formulas computed), read with Gnumeric's ``ssconvert``; None
    when it cannot be read."""
    with tempfile.TemporaryDirectory(prefix="edgepilot-sheet-") as tmp:
        out = Path(tmp) / "sheet.csv"
        try:
            subprocess.run(["ssconvert", str(path), str(out)], capture_output=True, timeout=20,  # noqa: S603,S607
                           check=True)
            return csv_cells(out.read_text(encoding="utf-8"))
        except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
            return None


def csv_cells(text: str) -> dict[str, str]:
    """A CSV file's non-empty cells by spreadsheet name: ``{"A1": "item", "B2": "12"}``."""
    cells = {}
    for r, row in enumerate(csv.reader(io.StringIO(text)), 1):
        for c, value in enumerate(row):
            if value.strip() and c < 26:
                cells[f"{string.ascii_uppercase[c]}{r}"] = value.strip()
    return cells


def _texts(nodes: Iterable[UINode]) -> dict[str, str]:
    """Each application's editable and terminal text, joined (what an editor shows that is not saved yet)."""
    out: dict[str, list[str]] = {}
    for n in nodes:
        if n.editable:  # a terminal too
            out.setdefault(n.package or "?", []).append(n.text)
    return {app: "\n".join(parts) for app, parts in out.items()}


def clipboard(device: Any) -> str | None:
    """The X clipboard's text (``xclip``), or None when it is empty or cannot be read."""
    if shutil.which("xclip") is None:
        return None
    try:
        done = subprocess.run(["xclip", "-o", "-selection", "clipboard"], env=device.app_env(),  # noqa: S603,S607
                              capture_output=True, timeout=3, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def _summary(state: dict[str, Any]) -> str:
    names = [f["name"] for f in state["files"]]
    parts = [f"files: {', '.join(names) or 'none'}"]
    if "calculator" in state:
        parts.append(f"display: {state['calculator']['display']}")
    if state.get("clipboard"):
        parts.append(f"clipboard: {state['clipboard'][:60]!r}")
    return "; ".join(parts)


# ---------------------------------------------------------------- the suite


DESKTOP_SPLITS = ("all", *SPLITS)


def desktop_tasks(split: str = "all", per_template: int = 1, *, only: Iterable[str] = (),
                  templates: dict[str, TaskTemplate] | None = None) -> list[TemplateTask]:
    """The desktop suite: ``all`` (each template's first instance) or a split, as the phone's
    (``train``, ``test-instances``: held-out goals of train templates, ``test``: held-out templates).

    Raises:
        TaskError: unknown split or template.
    """
    templates = templates if templates is not None else desktop_templates()
    only = list(only)
    unknown = [name for name in only if name not in templates]
    if unknown:
        raise TaskError(f"no desktop task template {unknown[0]!r}; the suite has {', '.join(templates)}")
    if split == "all":
        return [TemplateTask(t.instance(0)) for t in templates.values() if not only or t.id in only]
    if split not in SPLITS:
        raise TaskError(f"unknown split {split!r}; use one of {', '.join(DESKTOP_SPLITS)}")
    return [TemplateTask(i) for i in instances(split, per_template, templates=templates, only=only)]  # type: ignore[arg-type]

