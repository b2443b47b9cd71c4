"""The nesting guard run before PyYAML reads a user's SOP, policy or task file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edgepilot import yamltext
from edgepilot.errors import ConfigError, TaskError
from edgepilot.runtime.config import load_config
from edgepilot.sim.tasks.suite import load_templates

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, line", [
    ("a: " + "[" * 33 + "]" * 33, 1),
    ("a: " + "[" * 32 + "]" * 32, None),
    ("a:\n  b: {c: " + "{d: " * 40, 2),
    ("a: [\n" + "[\n" * 40, 33),  # the 33rd bracket is on line 33
    ("a: '" + "[" * 100 + "'", None),  # in a quoted scalar
    ('a: "\\"' + "[" * 100 + '"', None),  # after an escaped quote
    ("a: 'it''s " + "[" * 100 + "'", None),
    ("a: x" + "[" * 100, None),  # inside a plain scalar
    ("# " + "[" * 100 + "\na: 1", None),  # in a comment
    ("a: [x, '" + "[" * 100 + "', " + "[" * 40, 1),
])
def test_flow_nesting_is_counted_where_yaml_would_count_it(text, line):
    assert yamltext.too_deep(text) == line


def test_the_guard_refuses_quickly_with_a_line_yaml_handlers_read():
    with pytest.raises(yaml.MarkedYAMLError) as err:
        yamltext.guard("a: 1\nb: " + "[" * 20000)
    assert err.value.problem_mark.line == 1 and "nest deeper than 32" in err.value.problem


def test_deep_block_nesting_is_a_yaml_error_not_a_recursion_error():
    with pytest.raises(yaml.YAMLError, match="nests too deep"):
        yamltext.safe_load("- " * 5000 + "x")


def test_every_bundled_yaml_file_passes_the_guard():
    files = [*ROOT.glob("sim/tasks/**/*.yaml"), ROOT / "runtime/policy/default.yaml", *ROOT.glob("sop/**/*.md"),
             *ROOT.glob("sop/**/*.yaml")]
    assert len(files) > 30
    for path in files:
        assert yamltext.too_deep(path.read_text(encoding="utf-8")) is None, path


def test_a_task_file_nested_too_deep_is_a_task_error(tmp_path):
    (tmp_path / "deep.yaml").write_text("- id: x\n  goal: " + "[" * 5000 + "\n")
    with pytest.raises(TaskError, match="deep.yaml: not valid YAML: brackets nest deeper"):
        load_templates([tmp_path])


def test_a_config_nested_too_deep_is_a_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("a = " + "[" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nests too deep"):
        load_config(path)
