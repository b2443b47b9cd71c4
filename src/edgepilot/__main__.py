"""``python -m edgepilot ...``: the same commands as ``edgepilot ...``."""

from edgepilot.cli import main

if __name__ == "__main__":
    main()
