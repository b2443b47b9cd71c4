"""The task suite: templates (docs/tasks.md), seeded splits, set-up and checks, and the oracle."""
