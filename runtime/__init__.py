"""The agent runtime: the loop and its roles, model backends, policy, trajectories, CLI."""

from edgepilot.actions import Action, parse_action

__all__ = ["Action", "parse_action"]
