"""``edgepilot policy ...`` and ``edgepilot audit ...``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click

from edgepilot.safetext import for_terminal


def _line(value: object) -> str:
    """Text from the task or a policy file, as one line safe to print."""
    return for_terminal(value, newlines=False)


@click.group()
def policy() -> None:
    """Read, check and explain the least-privilege policy every action passes.

    \b
    The policy in force is, first found: --policy FILE, `policy` in config.toml,
    $EDGEPILOT_POLICY, policy.yaml beside config.toml, the bundled default.
      edgepilot policy explain "send hello to Alice"   the rules, in the order they are tried
      edgepilot policy init                            copy the default policy to edit it
      edgepilot policy check FILE                      check a policy file
    """


def _load(file: Path | None):
    from edgepilot.config import load_config
    from edgepilot.policy import load_policy, policy_path

    path = policy_path(file, load_config().policy)
    return path, load_policy(path)


@policy.command()
@click.argument("task")
@click.option("--policy", "file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy file (default: the one in force).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def explain(task: str, file: Path | None, as_json: bool) -> None:
    """Print the effective rules for TASK: the policy's plus the ones the task sentence adds."""
    from edgepilot.policy import derive_scope, engine_for_task

    path, loaded = _load(file)
    scope = derive_scope(task)
    engine = engine_for_task(task, loaded)
    if as_json:
        click.echo(json.dumps({
            "policy": str(path), "default": loaded.default, "task_apps": list(scope.apps),
            "rules": [{**r.model_dump(mode="json"), "source": r.source} for r in engine.rules]}, indent=2))
        return
    click.echo(f"policy: {_line(path)}")
    click.echo(f"task:   {_line(task)}")
    click.echo(f"apps the task needs (from its words): {_line(', '.join(scope.apps)) or 'none found'}")
    click.echo("rules, in the order they are tried (first match decides):")
    for rule in engine.rules:
        origin = click.style(" (task)", fg="cyan") if rule.source == "task" else ""
        click.echo(f"  {_line(rule.describe())}{origin}")
        if rule.reason:
            click.echo(f"         {_line(rule.reason)}")
    click.echo(f"  no rule matches: {_line(loaded.default)}")


@policy.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def check(files: tuple[Path, ...]) -> None:
    """Check policy files; print FILE:LINE: problem and exit 1 on the first problem of each."""
    from edgepilot.errors import PolicyError
    from edgepilot.policy import load_policy

    bad = 0
    for path in files:
        try:
            loaded = load_policy(path)
        except PolicyError as exc:
            click.secho(f"error: {for_terminal(exc)}", fg="red", err=True)
            bad += 1
            continue
        click.echo(f"{for_terminal(path)}: ok ({len(loaded.rules)} rules, default {for_terminal(loaded.default)})")
    if bad:
        sys.exit(1)


@policy.command()
@click.option("--policy", "file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Policy file (default: the one in force).")
def show(file: Path | None) -> None:
    """Print the policy file in force (its path first)."""
    path, _ = _load(file)
    click.echo(f"# {for_terminal(path, newlines=False)}")
    click.echo(for_terminal(path.read_text(encoding="utf-8")))


@policy.command()
@click.option("--force", is_flag=True, help="Overwrite an existing copy.")
def init(force: bool) -> None:
    """Copy the bundled default policy to policy.yaml beside config.toml, where it is used from then on."""
    from edgepilot.errors import PolicyError
    from edgepilot.policy import DEFAULT_POLICY, user_policy_path

    target = user_policy_path()
    if target.exists() and not force:
        raise PolicyError(f"{target} exists; edit it, or pass --force to replace it with the default")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEFAULT_POLICY, target)
    click.echo(f"wrote {target}; edit it, then check it with: edgepilot policy check {target}")


@click.group()
def audit() -> None:
    """The audit log: every policy decision, chained and signed with a key kept apart, so edits, removals and
    cuts show."""


@audit.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The audit key (default: $EDGEPILOT_AUDIT_KEY, else keys/audit.key in the user config folder).")
def verify(path: Path | None, key_path: Path | None) -> None:
    """Check the audit log (default: the log in force) against its key and signed head; exit 1 when an entry
    was edited, reordered, inserted or removed, the log was cut, or the head or the key is missing or wrong."""
    from edgepilot.config import load_config
    from edgepilot.policy import AuditLog
    from edgepilot.policy import verify as verify_log

    path = path or AuditLog(load_config().audit).path
    report = verify_log(path, key_path=key_path)
    for note in report.notes:
        click.secho(f"{path}: note: {note}", fg="yellow")
    if report.ok:
        click.echo(f"{path}: ok, {report.entries} entries, chain intact and signed")
        return
    for problem in report.problems:
        click.secho(f"{path}: {problem}", fg="red", err=True)
    sys.exit(1)


@audit.command(name="show")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-n", "last", type=click.IntRange(1, 100_000), default=20, show_default=True, help="How many entries.")
def show_audit(path: Path | None, last: int) -> None:
    """Print the last entries of the audit log."""
    from collections import deque

    from edgepilot.config import load_config
    from edgepilot.errors import PolicyError
    from edgepilot.policy import AuditLog

    path = path or AuditLog(load_config().audit).path
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = deque(f, maxlen=last)
    except OSError as exc:
        raise PolicyError(f"cannot read the audit log {path}: {exc.strerror or exc}") from None
    for line in lines:
        try:
            e = json.loads(line)
            answer = f" → user: {e['answer']}" if e.get("asked") else ""
            label = (e.get("target") or {}).get("label", "")
            click.echo(f"#{e.get('seq')} {e.get('verdict', '?'):9} {e.get('rule', ''):22} "
                       f"{e.get('action', {}).get('type', '?'):9} {label[:30]!r:32} {e.get('app', '')}{answer}")
        except (ValueError, AttributeError, TypeError):
            click.secho(f"(damaged line) {line[:80].rstrip()}", fg="red")
