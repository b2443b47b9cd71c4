"""Every benchmark suite, behind one registry (:mod:`.registry`): what ``edgepilot bench --suite`` runs."""
