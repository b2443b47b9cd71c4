"""``edgepilot sop``: list, show, lint, add and find Standard Operating Procedures; measure retrieval."""

from __future__ import annotations

import json
import sys
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
