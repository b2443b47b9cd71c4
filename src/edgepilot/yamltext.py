"""PyYAML's safe loader with a bound on nesting, for the YAML files users write (SOPs, policies, task files).

PyYAML's scanner takes time quadratic in the depth of nested ``[`` and ``{``
(20,000 brackets, a 20 KB file, took 55 s to be refused), and its composer
recurses once per level (a few thousand levels end in a RecursionError, not a
YAMLError). No SOP, policy or task file nests more than a few levels, so
``Loader`` stops at the ``[`` or ``{`` that opens level ``MAX_NESTING + 1``,
inside PyYAML's own scanner: it counts exactly what YAML counts (not brackets
in quoted scalars, comments, block scalars or tags' neighbours).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_NESTING = 32


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses flow collections nested deeper than ``MAX_NESTING``."""

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        if self.flow_level >= MAX_NESTING:
            raise yaml.scanner.ScannerError(None, None, f"brackets nest deeper than {MAX_NESTING} levels",
                                            self.get_mark())
        super().fetch_flow_collection_start(TokenClass)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with ``Loader``; nesting deep enough to exhaust the recursion is a YAMLError too.

    Raises:
        yaml.YAMLError: the text is not YAML, or nests too deep.
    """
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader
    except RecursionError:
        raise yaml.YAMLError("the YAML nests too deep for the parser") from None


def load_file(path: Path, what: str, error: type[Exception]) -> Any:
    """A YAML file read with :func:`safe_load`.

    Raises:
        error: the file cannot be read or is not YAML (``cannot read the WHAT PATH: ...``).
    """
    try:
        return safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read the {what} {path}: {exc}") from exc
