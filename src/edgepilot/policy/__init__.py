"""The least-privilege policy engine: every action passes one deterministic check before it reaches a device.

- :mod:`.language`: rules, conditions, loading policy files with errors that name file, line and field.
- :mod:`.engine`: facts about an action, the first matching rule, :class:`PolicyGate` (the loop's gate).
- :mod:`.scope`: allow rules derived from the task sentence alone.
- :mod:`.confirm`: the ``Confirmer`` seam and the terminal prompt.
- :mod:`.audit`: the hash-chained, append-only audit log.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgepilot import paths
from edgepilot.config import Config
from edgepilot.policy.audit import AuditLog, verify
from edgepilot.policy.confirm import Confirmer, ConfirmRequest, ConfirmResult, RefuseAll, TerminalConfirmer
from edgepilot.policy.engine import PolicyEngine, PolicyGate, Verdict, facts, resolve_target
from edgepilot.policy.language import Policy, Rule, load_policy, make_rule, parse_policy
from edgepilot.policy.scope import TaskScope, derive_scope

DEFAULT_POLICY = Path(__file__).with_name("default.yaml")

__all__ = [
    "AuditLog", "ConfirmRequest", "ConfirmResult", "Confirmer", "DEFAULT_POLICY", "Policy", "PolicyEngine",
    "PolicyGate", "RefuseAll", "Rule", "TaskScope", "TerminalConfirmer", "Verdict", "derive_scope", "facts",
    "load_policy", "make_rule", "parse_policy", "policy_path", "resolve_target", "user_policy_path", "verify",
    "engine_for_task", "gate_for",
]


def user_policy_path() -> Path:
    """Where ``edgepilot policy init`` puts the user's own copy: ``policy.yaml`` beside config.toml."""

    return paths.config_file().with_name("policy.yaml")


def policy_path(explicit: str | Path | None = None, configured: str | Path | None = None) -> Path:
    """Which policy file applies: ``--policy``, else ``policy`` in config.toml, else ``$EDGEPILOT_POLICY``,
    else the user's ``policy.yaml`` when it exists, else the bundled default."""
    for candidate in (explicit, configured, os.environ.get("EDGEPILOT_POLICY")):
        if candidate:
            return Path(candidate).expanduser()
    user = user_policy_path()
    return user if user.exists() else DEFAULT_POLICY


def engine_for_task(task: str, policy: Policy | None) -> PolicyEngine:
    """The policy plus the task's scope rules."""
    return PolicyEngine(policy, derive_scope(task).rules() if policy is not None else [])


def gate_for(task: str, *, device=None, config=None, policy: Policy | None = None,
             policy_file: str | Path | None = None, confirmer: Confirmer | None = None, audit: AuditLog | None = None,
             sensitive_step=None, run_id: str | None = None) -> PolicyGate:
    """The gate for one run: the policy (given, or the applicable file), the task's scope, the terminal prompt,
    the audit log, the screen re-check when config.toml wants it.

    Raises:
        PolicyError: the policy file is missing or invalid, or the audit log cannot be continued (signed with
            another key, cut, edited): the run does not start (fail closed).
    """

    config = config or Config()
    policy = policy or load_policy(policy_path(policy_file, config.policy))
    audit = audit or AuditLog(config.audit)
    audit.check()  # a log the run could not add to stops it before its first step
    return PolicyGate(engine_for_task(task, policy), task=task, confirmer=confirmer or TerminalConfirmer(),
                      audit=audit, device=device if config.recheck_screen else None,
                      timeout=config.confirm_timeout, sensitive_step=sensitive_step,
                      run_id=run_id)
