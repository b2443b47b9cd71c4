"""How real apps' screens read to the model: ``edgepilot bench --suite screens --dumps DIR``.

Each ``*.xml`` in the folders is a ``uiautomator dump`` of a real app. For
each the suite reports the tree's size, the elements the agent is shown, the
screen's text in the model's tokens listed whole and rendered within the
budget (:func:`~edgepilot.perception.render.render_screen`), what the budget
left out, and how long reading and rendering took.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from edgepilot import __version__
from edgepilot.errors import ConfigError, PerceptionError

SHARED_DUMPS = Path(__file__).resolve().parents[3].parent / "shared" / "real-android-dumps"
"""Where a checkout of this project keeps its real dumps (beside the repository); used when --dumps is not given."""


def dump_files(folders: tuple[Path, ...]) -> list[Path]:
    """The dumps to read: every ``*.xml`` in ``folders`` (default: :data:`SHARED_DUMPS`).

    Raises:
        ConfigError: no folder given and no shared dumps, or no dump in the folders.
    """
    if not folders:
        if not SHARED_DUMPS.is_dir():
            raise ConfigError("give --dumps DIR: a folder of `adb shell uiautomator dump` XML files")
        folders = (SHARED_DUMPS,)
    files = sorted(p for folder in folders for p in Path(folder).glob("*.xml"))
    if not files:
        raise ConfigError(f"no *.xml dumps in {', '.join(map(str, folders))}; save some with "
                          "`adb shell uiautomator dump /sdcard/d.xml && adb pull /sdcard/d.xml`")
    return files


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def screens_bench(folders: tuple[Path, ...] = (), *, model: str | None = None, budget: int | None = None,
                  progress: Any = None) -> dict[str, Any]:
    """Read and render every dump; the report's rows are per dump, its summary over all."""
    from edgepilot.models.registry import token_counter
    from edgepilot.perception.android_tree import parse_uiautomator_xml
    from edgepilot.perception.render import SCREEN_BUDGET, estimate_tokens, render_screen
    from edgepilot.perception.types import Observation

    budget = budget or SCREEN_BUDGET
    count = token_counter(model) or estimate_tokens
    rows = []
    for path in dump_files(folders):
        data = path.read_bytes()
        start = time.perf_counter()
        try:
            tree = parse_uiautomator_xml(data)
        except PerceptionError as exc:
            rows.append({"dump": path.name, "error": str(exc)})
            continue
        width, height = tree.extent
        obs = Observation(nodes=tree.nodes, package=tree.package, screen_width=max(1, width),
                          screen_height=max(1, height), keyboard_shown=tree.keyboard)
        elements = obs.elements
        whole = render_screen(obs, budget=None, count=count, limit=10_000)
        fitted = render_screen(obs, budget=budget, count=count)
        ms = (time.perf_counter() - start) * 1000
        row = {"dump": path.name, "nodes": len(tree.nodes), "elements": len(elements), "keyboard": tree.keyboard,
               "rotation": tree.rotation, "whole_tokens": whole.tokens, "tokens": fitted.tokens,
               "left_out": fitted.left_out, "ms": round(ms, 1),
               "unnamed": sum(1 for n in elements if (n.clickable or n.editable) and not n.label.strip())}
        rows.append(row)
        if progress is not None:
            progress(f"  {path.name[:44]:44} {row['nodes']:4d} nodes {row['elements']:4d} elements "
                     f"{row['whole_tokens']:5d} -> {row['tokens']:4d} tokens, {row['left_out']:3d} left out")
    ok = [r for r in rows if "error" not in r]
    tokens = [r["tokens"] for r in ok]
    whole = [r["whole_tokens"] for r in ok]
    return {
        "benchmark": "screens", "edgepilot": __version__, "budget": budget, "dumps": len(rows),
        "errors": len(rows) - len(ok), "tokenizer": "model" if count is not estimate_tokens else "estimate",
        "median_nodes": statistics.median([r["nodes"] for r in ok]) if ok else 0,
        "median_elements": statistics.median([r["elements"] for r in ok]) if ok else 0,
        "whole_median": statistics.median(whole) if ok else 0, "whole_max": max(whole, default=0),
        "median": statistics.median(tokens) if ok else 0, "p90": _pct(tokens, 0.9), "max": max(tokens, default=0),
        "over_budget": sum(1 for t in tokens if t > budget), "trimmed": sum(1 for r in ok if r["left_out"]),
        "median_ms": statistics.median([r["ms"] for r in ok]) if ok else 0, "rows": rows,
    }


def format_screens(report: dict[str, Any]) -> str:
    return (f"{report['dumps']} real screens ({report['errors']} unreadable), tokens by the "
            f"{report['tokenizer']}'s count, budget {report['budget']}:\n"
            f"  tree: median {report['median_nodes']:.0f} nodes -> {report['median_elements']:.0f} elements\n"
            f"  listed whole: median {report['whole_median']:.0f} tokens, max {report['whole_max']}\n"
            f"  within the budget: median {report['median']:.0f}, p90 {report['p90']:.0f}, max {report['max']} "
            f"tokens; {report['over_budget']} over the budget, {report['trimmed']} with elements left out\n"
            f"  read and rendered in a median {report['median_ms']:.1f} ms")
