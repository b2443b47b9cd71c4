"""A regular (non-editable) install has every subpackage and data file, importable from anywhere."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_non_editable_install_imports_from_any_directory(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    code = (
        "import sys, edgepilot, edgepilot.cli.main, edgepilot.sim.phone, edgepilot.sim.tasks.suite as s;"
        f"assert edgepilot.__file__.startswith({str(target)!r}), edgepilot.__file__;"
        "assert len(s.load_templates()) >= 25;"
        "assert not {'adbutils', 'llama_cpp', 'pyautogui', 'onnxruntime'} & set(sys.modules)"
    )
    # -S: no .pth files, so the editable install of the checkout cannot answer instead
    env = {"PYTHONPATH": f"{target}:{sysconfig.get_paths()['purelib']}"}
    for cwd in (tmp_path, ROOT):
        subprocess.run([sys.executable, "-S", "-c", code], check=True, cwd=cwd, env=env, timeout=60)
