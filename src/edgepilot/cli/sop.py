"""``edgepilot sop``: list, show, lint, add and find Standard Operating Procedures; measure retrieval; draft
SOPs from demonstrations (learn), follow one on the virtual phone (check), measure learned SOPs (learn-eval)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from edgepilot.agent.learn import policy_classifier
from edgepilot.bench.sop import format_learn_eval, learn_eval
from edgepilot.errors import SopError
from edgepilot.safetext import for_json, for_terminal
from edgepilot.sim.tasks.suite import task_instance
from edgepilot.sop.retrieve import retriever_for

_PROJECT = click.option("--project", "project", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Project SOP folder, searched first (default: ./sops).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _library(project: Path | None):
    from edgepilot.sop.library import load_library

    return load_library(project=project)


def _echo_json(data: Any) -> None:
    click.echo(for_json(json.dumps(data, indent=2, ensure_ascii=False)))


def _line(value: object) -> str:
    """Text of an SOP file or a task sentence (neither is trusted) as one line safe to print."""
    return for_terminal(value, newlines=False)


def _text(value: object) -> str:
    """The same for text of several lines."""
    return for_terminal(value)


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
      edgepilot sop draft --from-memory "GOAL"  draft an SOP from an explored app's memory
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
    width = max((len(_line(name)) for name in lib.entries), default=4)
    click.echo(f"{'NAME':{width}}  {'FROM':8} APPS")
    for e in sorted(lib.entries.values(), key=lambda e: e.sop.name):
        click.echo(f"{_line(e.sop.name):{width}}  {e.origin:8} {_line(', '.join(e.sop.app_labels))}")
    click.echo(f"\n{len(lib)} SOPs. Folders, first wins: "
               + "; ".join(f"{f.origin} {_line(f.path)}" + ("" if f.path.is_dir() else " (none)")
                           for f in lib.folders))
    for hidden, by in lib.shadowed:
        click.echo(click.style(f"shadowed: {_line(hidden.path)} (by {_line(by.path)})", fg="yellow"))
    for problem in lib.problems:
        click.echo(click.style(f"problem: {_text(problem)}", fg="red"))


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
        click.echo(_text(entry.path.read_text(encoding="utf-8")), nl=False)
        return
    if as_json:
        _echo_json({"origin": entry.origin, "path": str(entry.path), **s.model_dump(mode="json")})
        return
    click.echo(f"{_line(s.name)} (version {_line(s.version)}, {entry.origin}: {_line(entry.path)})")
    click.echo(f"{_line(s.description)}\napps: {_line(', '.join(s.apps))}")
    if s.params:
        click.echo("params:")
        for pname, p in s.params.items():
            click.echo(f"  {{{_line(pname)}}}: {_line(p.description)}"
                       + (f" (e.g. {_line(p.example)})" if p.example else ""))
    click.echo("phrasings:\n" + "\n".join(f"  - {_line(p)}" for p in s.phrasings))
    click.echo("\n" + _text(s.render()))


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
                click.echo(click.style(_text(problem), fg="red"))
            continue
        click.echo(f"{_line(path)}: ok ({_line(s.name)}, {len(s.steps)} steps, {len(s.params)} params)")
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
    click.echo(f"added {_line(target)}")


@sop.command("find")
@click.argument("task")
@_PROJECT
@click.option("-k", "top", default=1, show_default=True, help="Also list the next best SOPs, whatever their score.")
@click.option("--threshold", type=float, default=None, help="Lowest score accepted (default: the retriever's).")
@_JSON
def sop_find(task: str, project: Path | None, top: int, threshold: float | None, as_json: bool) -> None:
    """Show how a goal is understood (as `edgepilot run` does it): the procedure it gets, or none and why, the
    parameters typed from the sentence, what it leaves out, and the steps filled in."""
    from edgepilot.sop.understand import understand

    retriever = retriever_for(_library(project))
    understood = understand(task, retriever, threshold=threshold)  # GoalError: a clear message (main's handler)
    match = understood.match
    ranked = retriever.rank(understood.text, k=max(1, top))
    limit = retriever.threshold if threshold is None else threshold
    if as_json:
        _echo_json({"task": task, "threshold": limit, "rewritten": understood.text,
                    "question": understood.question, "reason": understood.reason,
                    "match": None if match is None else {
                        "sop": match.sop.name, "score": match.score, "params": match.params,
                        "missing": list(match.missing), "phrasing": match.phrasing, "text": match.text},
                    "ranked": [{"sop": m.sop.name, "score": m.score} for m in ranked]})
        return
    if understood.text != understood.goal:
        click.echo(f"read as: {_line(understood.text)}")
    if match is None:
        click.echo(f"no SOP for this goal: {_line(understood.reason)}")
    else:
        click.echo(f"{_line(match.sop.name)}  score {match.score:.2f}")
        for name, value in match.params.items():
            click.echo(f"  {{{_line(name)}}} = {_line(value)}")
        for name in match.missing:
            click.echo(click.style(f"  {{{_line(name)}}} not given by the goal (the run asks for it)", fg="yellow"))
        click.echo("\n" + _text(match.text))  # the steps, with values from the task filled in
    if top > 1:
        click.echo("\nranking:")
        for m in ranked:
            click.echo(f"  {m.score:.2f}  {_line(m.sop.name)}")


@sop.command("eval")
@click.option("--split", type=click.Choice(["test", "test-instances", "train", "unrelated", "phrasings"]),
              default="test", show_default=True,
              help="Goal sentences of held-out templates (test), held-out goals of train templates (test-instances), "
                   "train, sentences no SOP serves (unrelated), or people's wordings of every template plus goals "
                   "no procedure covers (phrasings: also parameter exact match, none precision and recall, and "
                   "the understanding step's time).")
@click.option("--per-template", default=20, show_default=True, help="Instances drawn per template (distinct goals).")
@_PROJECT
@_JSON
def sop_eval(split: str, per_template: int, project: Path | None, as_json: bool) -> None:
    """How well goals are understood: procedure top-1 accuracy on the task suite's goal sentences, with every
    miss. Each goal goes through the same understanding step as `edgepilot run` (docs/sops.md).

    Each template maps to the SOP that should serve it (sop/eval_map.yaml; null: none should, and
    then retrieving nothing is correct).
    """
    from edgepilot.bench.sop import evaluate, evaluate_phrasings, format_phrasings

    if split == "phrasings":
        found = evaluate_phrasings(library=_library(project))
        if as_json:
            _echo_json(found)
        else:
            click.echo(_text(format_phrasings(found)))
        return
    report = evaluate(split, library=_library(project), per_template=per_template)
    if as_json:
        _echo_json(report.to_dict())
    else:
        click.echo(_text(report.format()))


# ---------------------------------------------------------------- learned SOPs




def _load_sop(name_or_path: str, project: Path | None):
    """An SOP by library name, or from a file path (``.md``)."""
    from edgepilot.sop.format import load_sop

    path = Path(name_or_path)
    if path.suffix.lower() == ".md" or path.is_file():
        return load_sop(path)
    return _library(project).get(name_or_path)






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
    from edgepilot.agent.learn import demos_from
    from edgepilot.agent.trajectory import read_trajectory
    from edgepilot.sop.learn import learn_sop

    demos = demos_from(read_trajectory(folder) for folder in trajectories)
    learned = learn_sop(demos, name=name, classify=policy_classifier(policy_file),
                        path=str(out) if out is not None else "<learned>")
    for note in learned.notes:
        click.echo(click.style(f"note: {_text(note)}", fg="yellow"), err=True)
    if out is None:
        click.echo(_text(learned.text), nl=False)  # it quotes what the demonstrations typed and tapped
        return
    target = learned.write(out)
    s = learned.sop
    click.echo(f"wrote {_line(target)} ({_line(s.name)}: {len(s.steps)} steps, params "
               f"{_line(', '.join(s.params)) or 'none'}, {len(s.sensitive_steps)} sensitive)")


@sop.command("draft")
@click.option("--from-memory", "goal", required=True, metavar="GOAL",
              help="Draft the procedure the app memories' route gives this goal (`edgepilot explore` writes them).")
@click.option("--app", "apps", multiple=True, help="Only the memories of this app (repeatable; default: every "
                                                   "memory, yours over the shipped ones).")
@click.option("--name", default=None, help="The SOP's name, a slug (default: memory-<app>-<words of the goal>).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the SOP to this file (or NAME.md in this folder); default: print it.")
def sop_draft(goal: str, apps: tuple[str, ...], name: str | None, out: Path | None) -> None:
    """Draft an SOP from an app memory: the route the agent would take for GOAL, as steps.

    Values the goal gives (text typed into a field, an item picked from a list) become {parameters};
    the goal, with them, is the first phrasing. Read the draft, then `edgepilot sop check` it on the
    virtual phone and `edgepilot sop add` it (docs/memory.md).
    """
    from edgepilot.memory.draft import draft_from_memory
    from edgepilot.memory.store import find, memories

    if apps:
        chosen = [s.memory for app in apps for s in find(app) if s.memory is not None]
        if not chosen:
            raise SopError(f"no memory of {', '.join(apps)}: `edgepilot memory list` shows the explored apps")
    else:
        chosen = list(memories().values())
    drafted = draft_from_memory(goal, chosen, name=name)
    for note in drafted.notes:
        click.echo(click.style(f"note: {_text(note)}", fg="yellow"), err=True)
    if out is None:
        click.echo(_text(drafted.text).rstrip("\n"))
        return
    target = drafted.write(out)
    s = drafted.sop
    click.echo(f"wrote {_line(target)} ({_line(s.name)}: {len(s.steps)} steps, params "
               f"{_line(', '.join(s.params)) or 'none'})")


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
    from edgepilot.agent.agents import FnAgent
    from edgepilot.agent.loop import run_agent
    from edgepilot.agent.trajectory import TrajectoryWriter
    from edgepilot.devices import open_device
    from edgepilot.errors import ConfigError
    from edgepilot.perception.describe import describe_action
    from edgepilot.sim.tasks.model import apply_setup
    from edgepilot.sop.follow import SopFollower

    if not device.startswith("virtual"):
        raise ConfigError("the SOP checker acts without asking anyone, so it runs on the virtual phone only; "
                          "use --device virtual or virtual-local")
    s = _load_sop(name, project)
    follower = SopFollower(s, task, library=_library(project))
    click.echo(f"{_line(s.name)}: {len(s.steps)} steps; params " +
               (_line(", ".join(f"{{{k}}}={v!r}" for k, v in follower.params.items())) or "none"))
    missing = [p for p in s.params if p not in follower.params]
    if missing:
        click.echo(click.style(f"not in the task: {_line(', '.join('{' + m + '}' for m in missing))}", fg="yellow"))
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
                       f"{_line(describe_action(step.action, step.obs)) if step.action is not None else '-'}")

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
    click.echo(click.style(_line(f"{run.status}: {run.reason}{answer}" + (f"; {verdict}" if verdict else "")),
                           fg="green" if ok else "red"))
    if writer is not None:
        click.echo(f"trajectory: {_line(writer.folder)}")
    if not ok:
        sys.exit(1)








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
            click.echo(f"{mark} {inst.id:34} {_line(inst.goal[:70])}", err=True)

    report = learn_eval(templates=templates, demos=demos, variants=variants, device=device, keep=keep,
                        progress=progress)
    if as_json:
        _echo_json(report)
    else:
        click.echo(_text(format_learn_eval(report)))
