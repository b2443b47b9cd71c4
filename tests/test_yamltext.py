"""The nesting bound of the loader that reads a user's SOP, policy or task file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgepilot import yamltext
from edgepilot.config import load_config
from edgepilot.errors import ConfigError, TaskError
from edgepilot.sim.tasks.suite import load_templates

ROOT = Path(__file__).resolve().parents[1]


def _refused_at(text: str) -> int | None:
    """The 1-based line the loader refuses ``text`` at for its nesting, or None when it loads."""
    try:
        yamltext.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        assert "nest deeper than 32" in exc.problem, exc
        return exc.problem_mark.line + 1
    return None


@pytest.mark.parametrize("text, line", [
    pytest.param("a: " + "[" * 33 + "]" * 33, 1, id="33-deep"),
    pytest.param("a: " + "[" * 32 + "]" * 32, None, id="32-deep"),
    pytest.param("a:\n  b: {c: " + "{d: " * 40, 2, id="mappings"),
    pytest.param("a: [\n" + "[\n" * 40, 33, id="one-a-line"),
    pytest.param("a: ! " + "[" * 40, 1, id="after-a-tag"),
    pytest.param("a: !!seq " + "[" * 40, 1, id="after-a-seq-tag"),
    pytest.param("a:\u2028" + "[" * 40, 2, id="after-a-unicode-line-break"),
    pytest.param("a: '" + "[" * 100 + "'", None, id="in-a-quoted-scalar"),
    pytest.param('a: "\\"' + "[" * 100 + '"', None, id="after-an-escaped-quote"),
    pytest.param("a: x" + "[" * 100, None, id="in-a-plain-scalar"),
    pytest.param("# " + "[" * 100 + "\na: 1", None, id="in-a-comment"),
    pytest.param("a: |\n  " + "[" * 100 + "\n", None, id="in-a-block-scalar"),
])
def test_flow_nesting_is_bounded_where_yaml_counts_it(text, line):
    assert _refused_at(text) == line


def test_deep_block_nesting_is_a_yaml_error_not_a_recursion_error():
    with pytest.raises(yaml.YAMLError, match="nests too deep"):
        yamltext.safe_load("- " * 5000 + "x")


def test_every_bundled_yaml_file_loads_as_before():
    files = [*ROOT.glob("src/edgepilot/**/*.y*ml")]
    assert len(files) > 8
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert yamltext.safe_load(text) == yaml.safe_load(text), path


def test_a_task_file_nested_too_deep_is_a_task_error(tmp_path):
    (tmp_path / "deep.yaml").write_text("- id: x\n  goal: " + "[" * 5000 + "\n")
    with pytest.raises(TaskError, match="deep.yaml: not valid YAML: .*brackets nest deeper"):
        load_templates([tmp_path])


def test_a_config_nested_too_deep_is_a_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("a = " + "[" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nests too deep"):
        load_config(path)
