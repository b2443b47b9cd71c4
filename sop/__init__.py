"""edgepilot.sop (placeholder package; built in a later change)."""
