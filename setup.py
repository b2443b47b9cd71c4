"""Map the top-level folders onto the ``edgepilot`` package.

``core/`` is ``edgepilot`` itself (version, error tree, action space); every
other top-level folder is one subpackage: ``runtime/`` is ``edgepilot.runtime``
and so on. Nothing is installed under a bare name.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
SUBPACKAGES = ["runtime", "perception", "controllers", "sim", "sop", "distill", "tui"]
DATA = [f"{folder}{ext}" for folder in ("", "*/", "*/*/")
        for ext in ("*.yaml", "*.yml", "*.md", "*.txt", "*.json", "*.html", "*.j2", "*.ttf", "*.gguf")]


def _packages() -> tuple[list[str], dict[str, str]]:
    package_dir = {"edgepilot": "core"}
    packages = ["edgepilot"]
    for top in SUBPACKAGES:
        package_dir[f"edgepilot.{top}"] = top
        for init in sorted((ROOT / top).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / top)
            packages.append(".".join(["edgepilot", top, *rel.parts]))
    return packages, package_dir


packages, package_dir = _packages()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={name: DATA for name in packages},
    include_package_data=True,
)
