"""edgepilot.distill (placeholder package; built in a later change)."""
