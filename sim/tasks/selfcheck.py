"""``python -m edgepilot.sim.tasks.selfcheck``: the same as ``edgepilot tasks check``.

A convenience for task authors; it runs the oracle on the templates in-process.
"""

from edgepilot.runtime.cli import main

if __name__ == "__main__":
    main(["tasks", "check", *__import__("sys").argv[1:]])
