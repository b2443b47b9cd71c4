"""``edgepilot sop``: list, show, lint, add and find Standard Operating Procedures; measure retrieval; draft
SOPs from demonstrations (learn), follow one on the virtual phone (check), measure learned SOPs (learn-eval)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edgepilot.errors import SopError

_PROJECT = click.option("--project", "project", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Project SOP folder, searched first (default: ./sops).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _library(project: Path | None):
    from edgepilot.sop.library import load_library

    return load_library(project=project)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group("sop")
def sop() -> None:
    """Standard Operating Procedures: step-by-step guides the agent follows for known tasks.

    An SOP is a Markdown file: YAML front matter (name, description, apps, phrasings, params,
    version), then numbered steps (docs/sops.md). SOPs are searched in the project folder
    (./sops), then the user folder ($EDGEPILOT_SOPS, else the platform's user data folder),
    then those bundled with edgepilot; an earlier folder shadows a later one by name.

    \b
      edgepilot sop list                        every SOP, where it comes from, broken files
      edgepilot sop show settings-wifi-toggle   one SOP, as the planner reads it
      edgepilot sop find "turn off wifi"        which SOP a task gets, with its parameters
      edgepilot sop lint my-sop.md              check files (exit 1 with file:line messages)
      edgepilot sop add my-sop.md               check, then copy into the user folder
      edgepilot sop eval --split test           retrieval top-1 accuracy on held-out tasks
      edgepilot sop learn TRAJECTORY... --out my.md   draft an SOP from demonstrations
      edgepilot sop check my.md "TASK"          follow an SOP on the virtual phone, without a model
      edgepilot sop learn-eval                  learned SOPs on held-out variants of suite tasks
    """


@sop.command("list")
@_PROJECT
@_JSON
def sop_list(project: Path | None, as_json: bool) -> None:
    """List the SOPs of every folder in search order, the ones shadowed, and files that could not be read."""
    lib = _library(project)
    if as_json:
        _echo_json({
            "folders": [{"origin": f.origin, "path": str(f.path)} for f in lib.folders],
            "sops": [{"name": e.sop.name, "apps": list(e.sop.app_labels), "origin": e.origin, "path": str(e.path),
                      "version": e.sop.version, "steps": len(e.sop.steps)} for e in lib.entries.values()],
            "shadowed": [{"name": hidden.sop.name, "path": str(hidden.path), "by": str(by.path)}
                         for hidden, by in lib.shadowed],
            "problems": [str(p) for p in lib.problems],
        })
        return
    width = max((len(name) for name in lib.entries), default=4)
    click.echo(f"{'NAME':{width}}  {'FROM':8} APPS")
    for e in sorted(lib.entries.values(), key=lambda e: e.sop.name):
        click.echo(f"{e.sop.name:{width}}  {e.origin:8} {', '.join(e.sop.app_labels)}")
    click.echo(f"\n{len(lib)} SOPs. Folders, first wins: "
               + "; ".join(f"{f.origin} {f.path}" + ("" if f.path.is_dir() else " (none)") for f in lib.folders))
    for hidden, by in lib.shadowed:
        click.echo(click.style(f"shadowed: {hidden.path} (by {by.path})", fg="yellow"))
    for problem in lib.problems:
        click.echo(click.style(f"problem: {problem}", fg="red"))


@sop.command("show")
@click.argument("name")
@_PROJECT
@click.option("--raw", is_flag=True, help="Print the file as written instead of the summary.")
@_JSON
def sop_show(name: str, project: Path | None, raw: bool, as_json: bool) -> None:
    """Show one SOP: where it comes from, its phrasings and parameters, and its steps as the planner reads them."""
    entry = _library(project).entry(name)
    s = entry.sop
    if raw:
        click.echo(entry.path.read_text(encoding="utf-8"), nl=False)
        return
    if as_json:
        _echo_json({"origin": entry.origin, "path": str(entry.path), **s.model_dump(mode="json")})
        return
    click.echo(f"{s.name} (version {s.version}, {entry.origin}: {entry.path})")
    click.echo(f"{s.description}\napps: {', '.join(s.apps)}")
    if s.params:
        click.echo("params:")
        for pname, p in s.params.items():
            click.echo(f"  {{{pname}}}: {p.description}" + (f" (e.g. {p.example})" if p.example else ""))
    click.echo("phrasings:\n" + "\n".join(f"  - {p}" for p in s.phrasings))
    click.echo("\n" + s.render())


@sop.command("lint")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def sop_lint(paths: tuple[Path, ...]) -> None:
    """Check SOP files (or every .md file of folders); print file:line for each problem, exit 1 if any."""
    from edgepilot.sop.format import load_sop

    files = [f for p in paths for f in (sorted(p.glob("*.md")) if p.is_dir() else [p])]
    bad = 0
    for path in files:
        try:
            s = load_sop(path)
        except SopError as exc:
            bad += 1
            for problem in exc.problems or [str(exc)]:
                click.echo(click.style(str(problem), fg="red"))
            continue
        click.echo(f"{path}: ok ({s.name}, {len(s.steps)} steps, {len(s.params)} params)")
    if not files:
        click.echo("no .md files found")
    if bad:
        click.echo(f"{bad} of {len(files)} files have problems", err=True)
        sys.exit(1)


@sop.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an SOP of the same name in the user folder.")
def sop_add(path: Path, force: bool) -> None:
    """Check an SOP file, then copy it into the user folder (as NAME.md) so every project can use it."""
    from edgepilot.sop.library import install_sop

    target = install_sop(path, force=force)
    click.echo(f"added {target}")


@sop.command("find")
@click.argument("task")
@_PROJECT
@click.option("-k", "top", default=1, show_default=True, help="Also list the next best SOPs, whatever their score.")
@click.option("--threshold", type=float, default=None, help="Lowest score accepted (default: the retriever's).")
@_JSON
def sop_find(task: str, project: Path | None, top: int, threshold: float | None, as_json: bool) -> None:
    """Show which SOP a task sentence gets: its score, the parameters filled from the sentence, the steps."""
    retriever = _library(project).retriever()
    match = retriever.retrieve(task, threshold=threshold)
    ranked = retriever.rank(task, k=max(1, top))
    limit = retriever.threshold if threshold is None else threshold
    if as_json:
        _echo_json({"task": task, "threshold": limit,
                    "match": None if match is None else {
                        "sop": match.sop.name, "score": match.score, "params": match.params,
                        "missing": list(match.missing), "phrasing": match.phrasing, "text": match.text},
                    "ranked": [{"sop": m.sop.name, "score": m.score} for m in ranked]})
        return
    if match is None:
        best = ranked[0] if ranked else None
        click.echo(f"no SOP for this task (threshold {limit}"
                   + (f"; closest: {best.sop.name}, score {best.score:.2f})" if best else ")"))
    else:
        click.echo(f"{match.sop.name}  score {match.score:.2f}")
        for name, value in match.params.items():
            click.echo(f"  {{{name}}} = {value}")
        for name in match.missing:
            click.echo(click.style(f"  {{{name}}} not found in the task", fg="yellow"))
        click.echo("\n" + match.text)
    if top > 1:
        click.echo("\nranking:")
        for m in ranked:
            click.echo(f"  {m.score:.2f}  {m.sop.name}")


@sop.command("eval")
@click.option("--split", type=click.Choice(["test", "test-instances", "train", "unrelated"]), default="test",
              show_default=True, help="Goal sentences of held-out templates (test), held-out goals of train "
                                      "templates (test-instances), train, or sentences no SOP serves (unrelated).")
@click.option("--per-template", default=20, show_default=True, help="Instances drawn per template (distinct goals).")
@_PROJECT
@_JSON
def sop_eval(split: str, per_template: int, project: Path | None, as_json: bool) -> None:
    """Retrieval top-1 accuracy on the task suite's goal sentences, with every miss.

    Each template maps to the SOP that should serve it (sop/eval_map.yaml; null: none should, and
    then retrieving nothing is correct).
    """
    from edgepilot.sop.evaluate import evaluate

    report = evaluate(split, library=_library(project), per_template=per_template)
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(report.format())


# ---------------------------------------------------------------- learned SOPs


def policy_classifier(policy_file: Path | None = None):
    """A :data:`~edgepilot.sop.learn.Classifier` from the policy's rules: a demonstrated action is a
    sensitive step when a rule of the policy (``--policy``, else the configured or bundled one) would ask the
    user before it, and the rule's category is a kind of sensitive step (send_message, payment, delete...).

    Raises:
        PolicyError: the policy file is missing or invalid.
    """
    from edgepilot.perception.types import Bounds, Observation, UINode
    from edgepilot.runtime.config import load_config
    from edgepilot.runtime.policy import PolicyEngine, load_policy, policy_path
    from edgepilot.sop.format import SENSITIVE_KINDS
    from edgepilot.sop.learn import DemoStep

    engine = PolicyEngine(load_policy(policy_path(policy_file, load_config().policy)))
    kinds = {**{k: k for k in SENSITIVE_KINDS}, "secure_screen": "password"}

    def classify(step: DemoStep) -> str | None:
        element, action = step.target, step.action
        node = None
        if element is not None:
            node = UINode(bounds=Bounds(left=0, top=0, right=1, bottom=1), text="\n".join(element.lines),
                          content_desc=element.desc, resource_id=element.rid, class_name=element.cls,
                          password=element.password, clickable=element.clickable, checkable=element.checkable,
                          checked=element.checked, package=step.screen.package)
            action = action.model_copy(update={"target": 0})
        obs = Observation(nodes=(node,) if node is not None else (), package=step.screen.package,
                          secure=step.screen.secure, screen_width=1080, screen_height=2400)
        verdict = engine.evaluate(action, obs, node)
        return None if verdict.effect == "allow" else kinds.get(verdict.category)

    return classify


def _load_sop(name_or_path: str, project: Path | None):
    """An SOP by library name, or from a file path (``.md``)."""
    from edgepilot.sop.format import load_sop

    path = Path(name_or_path)
    if path.suffix.lower() == ".md" or path.is_file():
        return load_sop(path)
    return _library(project).get(name_or_path)


def task_instance(spec: str):
    """A suite task by ``TEMPLATE`` or ``TEMPLATE#SEED``."""
    from edgepilot.errors import TaskError
    from edgepilot.sim.tasks.suite import load_templates

    template_id, _, seed = spec.partition("#")
    templates = load_templates()
    if template_id not in templates:
        raise TaskError(f"unknown task template {template_id!r}; `edgepilot tasks list` shows them")
    if seed and not seed.isdigit():
        raise TaskError(f"bad task {spec!r}: write TEMPLATE or TEMPLATE#SEED (a number)")
    return templates[template_id].instance(int(seed or 0))


def follower_factory(sop, library=()):
    """The episode runner's agent factory for the SOP checker: a fresh :class:`SopFollower` per task."""
    from edgepilot.runtime.agent import FnAgent
    from edgepilot.sop.follow import SopFollower

    def make(instance):
        follower = SopFollower(sop, instance.goal, library=library)
        return FnAgent(follower.name, follower.next_action, instance.goal)

    return make


@sop.command("learn")
@click.argument("trajectories", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", default=None, help="The SOP's name, a slug (default: learned-<app>-<words of the goal>).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the SOP to this file (or NAME.md in this folder); default: print it.")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy whose rules mark sensitive steps (default: the configured one).")
def sop_learn(trajectories: tuple[Path, ...], name: str | None, out: Path | None, policy_file: Path | None) -> None:
    """Draft an SOP from one or more successful trajectories of the same kind of task.

    A trajectory is a folder written by `edgepilot record` (a person's demonstration), `edgepilot run`
    or `bench --save`. Every action becomes a step; text typed and items tapped that the goal sentence
    names become {parameters}; several demonstrations are aligned and their common steps kept; the
    policy's rules mark sensitive steps. The draft passes `edgepilot sop lint`; read it, then
    `edgepilot sop check` it on the virtual phone and `edgepilot sop add` it.
    """
    from edgepilot.runtime.trajectory import read_trajectory
    from edgepilot.sop.learn import demos_from, learn_sop

    demos = demos_from(read_trajectory(folder) for folder in trajectories)
    learned = learn_sop(demos, name=name, classify=policy_classifier(policy_file),
                        path=str(out) if out is not None else "<learned>")
    for note in learned.notes:
        click.echo(click.style(f"note: {note}", fg="yellow"), err=True)
    if out is None:
        click.echo(learned.text, nl=False)
        return
    target = learned.write(out)
    s = learned.sop
    click.echo(f"wrote {target} ({s.name}: {len(s.steps)} steps, params {', '.join(s.params) or 'none'}, "
               f"{len(s.sensitive_steps)} sensitive)")


@sop.command("check")
@click.argument("name")
@click.argument("task")
@_PROJECT
@click.option("--setup", "setup_task", default=None, metavar="TEMPLATE[#SEED]",
              help="Set the virtual phone up for this suite task first, and judge its checks at the end.")
@click.option("--device", default="virtual", show_default=True, help="virtual or virtual-local.")
@click.option("--max-steps", type=int, default=None, help="Step budget (default: 3 per SOP step + 10).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the run's trajectory under this folder.")
def sop_check(name: str, task: str, project: Path | None, setup_task: str | None, device: str,
              max_steps: int | None, out: Path | None) -> None:
    """Follow an SOP (a NAME from the library, or a .md file) for TASK on the virtual phone, without a model.

    The SOP checker fills the parameters from TASK, then carries out each step by finding what it names
    on the screen (scrolling when needed). It shows whether a procedure can be followed to the end, and
    which step cannot; exit status 1 when it cannot (or when --setup's checks fail).
    """
    from edgepilot.errors import ConfigError
    from edgepilot.runtime.agent import FnAgent, describe_action
    from edgepilot.runtime.devices import open_device
    from edgepilot.runtime.loop import run_agent
    from edgepilot.runtime.trajectory import TrajectoryWriter
    from edgepilot.sim.tasks.model import apply_setup
    from edgepilot.sop.follow import SopFollower

    if not device.startswith("virtual"):
        raise ConfigError("the SOP checker acts without asking anyone, so it runs on the virtual phone only; "
                          "use --device virtual or virtual-local")
    s = _load_sop(name, project)
    follower = SopFollower(s, task, library=_library(project))
    click.echo(f"{s.name}: {len(s.steps)} steps; params " +
               (", ".join(f"{{{k}}}={v!r}" for k, v in follower.params.items()) or "none"))
    missing = [p for p in s.params if p not in follower.params]
    if missing:
        click.echo(click.style(f"not in the task: {', '.join('{' + m + '}' for m in missing)}", fg="yellow"))
    instance = task_instance(setup_task) if setup_task else None
    budget = max_steps or 3 * len(s.steps) + 10
    with open_device(device) as opened:
        if instance is not None:
            apply_setup(opened.phone, instance)
        writer = None
        if out is not None:
            info = opened.device.info
            writer = TrajectoryWriter.new(task, {"agent": follower.name, "sop": s.name, "device": info.serial,
                                                 "screen": [info.screen_width, info.screen_height],
                                                 "max_steps": budget}, root=out)

        def show(step) -> None:
            number = follower.done[-1] if follower.done else 0
            click.echo(f"  step {step.index + 1:2d}  (SOP step {number})  "
                       f"{describe_action(step.action, step.obs) if step.action is not None else '-'}")

        run = run_agent(opened.device, FnAgent(follower.name, follower.next_action, task), task,
                        max_steps=budget, writer=writer, on_step=show)
        verdict = None
        if instance is not None:
            success, failed = instance.evaluate(opened.phone.snapshot(), run.answer)
            verdict = "checks passed" if success else "checks failed: " + ", ".join(failed)
    if follower.loose:
        click.echo(click.style(f"read loosely (their words fit no form): step{'s' if len(follower.loose) > 1 else ''} "
                               + ", ".join(map(str, sorted(follower.loose))), fg="yellow"))
    ok = run.status == "finished" and (verdict is None or verdict == "checks passed")
    answer = f", answer {run.answer!r}" if run.answer else ""
    click.echo(click.style(f"{run.status}: {run.reason}{answer}" + (f"; {verdict}" if verdict else ""),
                           fg="green" if ok else "red"))
    if writer is not None:
        click.echo(f"trajectory: {writer.folder}")
    if not ok:
        sys.exit(1)


def learn_eval(*, templates: tuple[str, ...] = (), demos: int = 1, variants: int = 3, device: str = "virtual",
               keep: Path | None = None,
               progress: Callable[[str, Any, Any], None] | None = None) -> dict[str, Any]:
    """Learned SOPs on held-out variants: for each train template, the oracle's runs of its first ``demos``
    train instances are the demonstrations; the SOP learned from them is followed by the SOP checker (no
    oracle, no model) on ``variants`` other instances, from the held-out goals of the template
    (``test-instances``) first, then further train instances.

    Raises:
        TaskError: unknown templates.
        DeviceError: the virtual phone cannot be reached.
    """
    import tempfile

    from edgepilot.errors import EdgepilotError
    from edgepilot.runtime.bench import agent_factory
    from edgepilot.runtime.devices import open_device
    from edgepilot.runtime.episode import run_episode
    from edgepilot.runtime.trajectory import read_trajectory
    from edgepilot.sim.tasks.suite import instances, load_templates
    from edgepilot.sop.learn import Demo, learn_sop

    chosen = [t for t in load_templates().values() if t.split == "train" and (not templates or t.id in templates)]
    if templates:
        instances("train", 1, only=templates)  # unknown ids: TaskError
    from edgepilot.sop.library import load_library

    classify = policy_classifier()
    library = load_library().sops
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgepilot-learn-eval-") as scratch, open_device(device) as opened:
        root = keep if keep is not None else Path(scratch)
        for template in chosen:
            row: dict[str, Any] = {"template": template.id, "demos": [], "variants": []}
            rows.append(row)
            train = instances("train", demos + variants, only=[template.id])
            shown, rest = train[:demos], train[demos:]
            held = instances("test-instances", variants, only=[template.id])
            checks = (held + rest)[:variants]
            if len(shown) < demos or not checks:
                row["error"] = "the suite has too few distinct instances of this template"
                continue
            learned_from = []
            for inst in shown:
                result = run_episode(opened.device, opened.phone, inst, agent_factory("oracle", opened.phone),
                                     save_to=root / "demos" / template.id)
                row["demos"].append({"instance": inst.id, "goal": inst.goal, "success": result.success})
                learned_from.append(Demo.from_trajectory(read_trajectory(result.trajectory)))
            try:
                learned = learn_sop(learned_from, name="learned-" + template.id.replace("_", "-"), classify=classify)
            except EdgepilotError as exc:
                row["error"] = f"learning failed: {exc}"
                continue
            row.update(sop=learned.sop.name, steps=len(learned.sop.steps), params=list(learned.sop.params),
                       notes=list(learned.notes))
            if keep is not None:
                row["path"] = str(learned.write(keep / f"{learned.sop.name}.md"))
            factory = follower_factory(learned.sop, library)
            for inst in checks:
                result = run_episode(opened.device, opened.phone, inst, factory,
                                     save_to=root / "variants" / template.id if keep is not None else None)
                row["variants"].append({"instance": inst.id, "held_out": inst in held, "goal": inst.goal,
                                        "success": result.success, "status": result.status,
                                        "reason": result.reason if not result.success else "",
                                        "failed_checks": result.failed_checks})
                if progress is not None:
                    progress(template.id, inst, result)
    done = [v for row in rows for v in row["variants"]]
    held_out = [v for v in done if v["held_out"]]
    return {
        "benchmark": "sop-learn", "demos_per_template": demos, "variants_per_template": variants,
        "device": device, "templates": len(rows),
        "learned": sum(1 for row in rows if "sop" in row),
        "variants": len(done), "succeeded": sum(v["success"] for v in done),
        "success_rate": round(sum(v["success"] for v in done) / len(done), 4) if done else 0.0,
        "held_out_variants": len(held_out), "held_out_succeeded": sum(v["success"] for v in held_out),
        "rows": rows,
    }


def format_learn_eval(report: dict[str, Any]) -> str:
    """The learn-eval report as a table, with why each failure failed."""
    lines = [f"{'template':28} {'learned':8} {'variants':>9}  why runs failed"]
    for row in report["rows"]:
        vs = row["variants"]
        ok = sum(v["success"] for v in vs)
        why = row.get("error") or "; ".join(sorted({_failure(v) for v in vs if not v["success"]}))
        lines.append(f"{row['template']:28} {'yes' if 'sop' in row else 'no':8} {ok:>4}/{len(vs):<4}  {why}")
    lines.append(f"\nlearned {report['learned']}/{report['templates']} SOPs from {report['demos_per_template']} "
                 f"oracle demonstration(s) each; SOP checker on held-out variants: {report['succeeded']}/"
                 f"{report['variants']} = {report['success_rate']:.1%} (held-out goals of the templates: "
                 f"{report['held_out_succeeded']}/{report['held_out_variants']}; the rest are further train "
                 "instances)")
    return "\n".join(lines)


def _failure(variant: dict[str, Any]) -> str:
    """Why one run failed, in a few words: the SOP step that could not be followed, or the failed check."""
    if variant["status"] == "finished":  # the check without this run's values, so that runs group
        checks = [re.sub(r"\[\w+=[^\]]*\]", "[…]", re.sub(r"'[^']*'", "…", c)) for c in variant["failed_checks"]]
        return "wrong end state: " + ", ".join(checks)[:90]
    m = re.search(r"step (\d+) \(.*\): (.*?)(?: \(filled from.*)?$", variant["reason"])
    return f"step {m.group(1)}: {m.group(2)}"[:100] if m else variant["reason"][:100]


@sop.command("learn-eval")
@click.option("--template", "-t", "templates", multiple=True, help="Only these train templates (repeatable).")
@click.option("--demos", default=1, show_default=True, help="Oracle demonstrations per template to learn from.")
@click.option("--variants", default=3, show_default=True, help="Held-out variants per template to follow it on.")
@click.option("--device", default="virtual", show_default=True, help="virtual or virtual-local.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the trajectories and the learned SOPs in this folder.")
@_JSON
def sop_learn_eval(templates: tuple[str, ...], demos: int, variants: int, device: str, keep: Path | None,
                   as_json: bool) -> None:
    """How well SOPs learned from demonstrations carry over to variants of the task.

    For every train template: the oracle demonstrates --demos instances, `sop learn` drafts an SOP from
    those trajectories, and the SOP checker (no oracle, no model) follows it on --variants other
    instances, held-out goals (test-instances) first; the task's checks judge each run.
    """
    from edgepilot.errors import ConfigError

    if not device.startswith("virtual"):
        raise ConfigError("learn-eval sets tasks up on the virtual phone; use --device virtual or virtual-local")
    if demos < 1 or variants < 1:
        raise ConfigError("--demos and --variants must be at least 1")

    def progress(template: str, inst, result) -> None:
        if not as_json:
            mark = click.style("ok  ", fg="green") if result.success else click.style("FAIL", fg="red")
            click.echo(f"{mark} {inst.id:34} {inst.goal[:70]}", err=True)

    report = learn_eval(templates=templates, demos=demos, variants=variants, device=device, keep=keep,
                        progress=progress)
    if as_json:
        _echo_json(report)
    else:
        click.echo(format_learn_eval(report))
