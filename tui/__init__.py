"""edgepilot.tui (placeholder package; built in a later change)."""
