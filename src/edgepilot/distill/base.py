"""The base model a LoRA is trained on: read from its GGUF, kept dequantized, and an adapter put on it.

The frozen weights are kept in bfloat16 where that multiplies fast (CUDA; an AVX-512 CPU) and in float32 where
it does not (:func:`frozen_dtype`). :func:`lora_from_gguf` puts a GGUF LoRA (a shipped model's) back on the
base so that training can go on from it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from edgepilot import paths
from edgepilot.distill.dataset import file_sha256
from edgepilot.errors import ConfigError, ModelError

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_MODULES = {"attn_q": "q_proj", "attn_k": "k_proj", "attn_v": "v_proj", "attn_output": "o_proj",
                "ffn_gate": "gate_proj", "ffn_up": "up_proj", "ffn_down": "down_proj"}
"""llama.cpp's tensor names (``blk.N.NAME.weight``) of the projections a LoRA adapts, and transformers' names."""
READ_BACK_ARCHITECTURES = ("llama",)
"""The GGUF architectures whose LoRAs :func:`lora_from_gguf` reads back: llama.cpp's converter reorders their
q and k rows (its ``permute``, for ``LlamaModel`` and its kin), which reading back undoes. Others are refused
rather than guessed."""


def frozen_dtype(device: str, torch: Any) -> Any:
    """The dtype of the frozen weights: bfloat16 where the device multiplies in it fast, float32 elsewhere.

    CUDA: bfloat16. A CPU: whichever of the two multiplies a 256x256 matrix faster, measured (a fraction of a
    second) once per process, so that every model a process trains, loads or resumes computes alike (a busy
    machine could otherwise time the two differently from one call to the next). With AVX-512 (BF16 or AMX)
    bfloat16 is about 4x faster than float32; on an AVX2-only CPU torch's
    bfloat16 product is a slow fallback (2-core AMD EPYC, torch 2.13: 0.95 GFLOPS, against 122 in float32).

    Args:
        device: the torch device the model runs on (``cpu``, ``cuda``, ``cuda:1``).
        torch: the torch module.

    Returns:
        ``torch.bfloat16`` or ``torch.float32``.
    """
    if device.startswith("cuda"):
        return torch.bfloat16
    if "cpu" not in _CPU_DTYPE:
        _CPU_DTYPE["cpu"] = _faster_on_cpu(torch)
    return _CPU_DTYPE["cpu"]


_CPU_DTYPE: dict[str, Any] = {}


def _faster_on_cpu(torch: Any) -> Any:
    square = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))  # leaves the seeded stream alone

    def seconds(x: Any) -> float:
        x @ x  # noqa: B018 - warm-up
        start = time.perf_counter()
        for _ in range(3):
            x @ x  # noqa: B018
        return time.perf_counter() - start

    return torch.bfloat16 if seconds(square.bfloat16()) < seconds(square) else torch.float32


BASE_CACHE_ENV = "EDGEPILOT_BASE_CACHE"
"""A folder for dequantized base models, or ``off``; default: edgepilot's user cache folder, ``hf-base/``."""


def base_cache(gguf: Path) -> Path | None:
    """Where the dequantized copy of ``gguf`` is kept (None: the cache is off).

    Reading a GGUF through transformers takes about 28 s for the bundled 98 MB model on 2 cores (its reader walks
    the tokenizer's 49,152 strings twice and maps tensor names one by one); the float32 copy in safetensors (about
    514 MB) loads in under a second. The folder is named by the GGUF's sha256 and the transformers version that
    dequantized it, so an edited file, or a transformers that converts differently, is read again. Safe to
    delete at any time.

    Args:
        gguf: the base model's GGUF.

    Returns:
        The folder under ``$EDGEPILOT_BASE_CACHE`` (or the user cache), or None where that is ``off``.
    """
    import transformers

    setting = os.environ.get(BASE_CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    if setting:
        root = Path(setting).expanduser()
    else:
        root = paths.cache_dir() / "hf-base"
    return root / f"{gguf.stem}-{file_sha256(gguf)[:16]}-transformers{transformers.__version__}"


def load_base(gguf: Path, device: str, torch: Any, dtype: Any = None) -> Any:
    """The base model from its GGUF through transformers, its frozen weights in ``dtype``.

    A dequantized copy is kept in :func:`base_cache` and read instead of the GGUF next time; a copy that does
    not load is deleted and the GGUF read again.

    Args:
        gguf: the base model's GGUF.
        device: the torch device to put the model on.
        torch: the torch module.
        dtype: the frozen weights' dtype (None: :func:`frozen_dtype`); the rotary frequencies stay float32.

    Returns:
        The transformers causal-LM model on ``device``.

    Raises:
        ModelError: transformers cannot read the file (its architecture or quantization is not supported).
    """
    from transformers import AutoModelForCausalLM

    if not gguf.is_file():
        raise ModelError(f"the base model {gguf} does not exist")
    dtype = dtype or frozen_dtype(device, torch)
    cached = base_cache(gguf)
    if cached is not None and (cached / "config.json").is_file():
        try:
            model = AutoModelForCausalLM.from_pretrained(str(cached), dtype=dtype)
            for tensor in (*model.parameters(), *model.buffers()):
                # safetensors maps the file: a copy rewritten or cut short during a run would end it with SIGBUS
                tensor.data = tensor.data.clone()
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with a cached copy, the GGUF is read again
            print(f"edgepilot: the cached copy {cached} does not load ({exc}); reading {gguf} again",
                  file=sys.stderr)
            shutil.rmtree(cached, ignore_errors=True)
        else:
            return model.to(device)
    extra: dict[str, Any] = {}
    try:  # transformers >= 5 keeps GGUF weights packed unless told otherwise; training wants them dense
        from transformers import GgufConfig

        extra["quantization_config"] = GgufConfig(gguf_file=gguf.name, dequantize=True)
    except ImportError:
        pass
    try:  # float32: the dequantized values exactly, whatever dtype this run computes in
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32, **extra)
    except (ValueError, OSError, RuntimeError, KeyError, ImportError) as exc:
        raise ModelError(f"transformers could not load {gguf} ({exc}); it needs the gguf and accelerate "
                         "packages and a GGUF architecture transformers supports") from exc
    if cached is not None:
        _keep(model, cached)
    for weight in model.parameters():  # not model.to(dtype): the rotary frequencies (buffers) stay float32
        weight.data = weight.data.to(dtype)
    return model.to(device)


def _keep(model: Any, folder: Path) -> None:
    """Save ``model`` to ``folder`` whole or not at all (written beside it, then renamed); a failure only warns.

    Where another process kept a copy first, that one stays; a folder without its ``config.json`` (cut short
    while being deleted) is replaced.
    """
    import tempfile

    partial = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        model.save_pretrained(str(partial), safe_serialization=True)
        if folder.exists() and not (folder / "config.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            os.replace(partial, folder)
    except Exception as exc:  # noqa: BLE001 - a full disk (safetensors' own error), a read-only cache: only warn
        if not (folder / "config.json").is_file():
            print(f"edgepilot: could not keep a dequantized copy in {folder} ({exc})", file=sys.stderr)
    finally:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)


def _unpermute(rows: Any, heads: int) -> Any:
    """Undo llama.cpp's converter's reordering of a q or k projection's output rows (its ``permute``: within
    each head, the two rotary halves are interleaved)."""
    return rows.reshape(heads, rows.shape[0] // heads // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def lora_from_gguf(model: Any, lora: Any, peft: Any, torch: Any, *, dropout: float = 0.0) -> Any:
    """``model`` (a transformers llama-family model) with a trainable LoRA holding a GGUF LoRA's weights.

    ``lora`` is :func:`edgepilot.models.merge.read_lora`'s. The rank, alpha, adapted projections and blocks
    are the GGUF's; the converter's row order of a llama model's ``attn_q``'s and ``attn_k``'s B is undone, so
    the model computes what llama.cpp computes with the adapter.

    Args:
        model: the base model (:func:`load_base`).
        lora: the GGUF LoRA.
        peft: the peft module.
        torch: the torch module.
        dropout: the LoRA's dropout while training on.

    Returns:
        The peft model, its LoRA weights trainable.

    Raises:
        ConfigError: the GGUF is of an architecture edgepilot does not map, adapts a tensor this model has no
            LoRA name for, or its shapes do not fit the model.
    """
    if lora.architecture not in READ_BACK_ARCHITECTURES:
        raise ConfigError(f"the GGUF LoRA is for a {lora.architecture or 'unnamed'} model; edgepilot reads back "
                          f"LoRAs of {', '.join(READ_BACK_ARCHITECTURES)} models only (or pass --init an adapter "
                          "folder)")
    config = model.config
    parsed = _gguf_pairs(lora, config)
    ranks = {a.shape[0] for a, _ in parsed.values()}
    if len(ranks) != 1:
        raise ConfigError(f"the GGUF LoRA mixes ranks {sorted(ranks)}; edgepilot continues one rank only")
    modules = sorted({module for _, module in parsed})
    layers = None if lora.blocks == list(range(config.num_hidden_layers)) else lora.blocks
    model = peft.get_peft_model(model, peft.LoraConfig(r=ranks.pop(), lora_alpha=lora.alpha, lora_dropout=dropout,
                                                       target_modules=modules, layers_to_transform=layers,
                                                       task_type="CAUSAL_LM"))
    _fill(model, parsed, torch)
    return model


def _gguf_pairs(lora: Any, config: Any) -> dict[tuple[int, str], tuple[Any, Any]]:
    """``(block, transformers module name) -> (A, B)`` of a GGUF LoRA, B's rows in transformers' order.

    Raises:
        ConfigError: a tensor name edgepilot cannot map, or q/k rows that do not fit the model's heads.
    """
    heads = {"q_proj": config.num_attention_heads,
             "k_proj": getattr(config, "num_key_value_heads", None) or config.num_attention_heads}
    parsed: dict[tuple[int, str], tuple[Any, Any]] = {}
    for name, (a, b) in lora.pairs.items():
        parts = name.split(".")
        if len(parts) != 4 or parts[0] != "blk" or parts[2] not in GGUF_MODULES or not parts[1].isdigit():
            raise ConfigError(f"the GGUF LoRA adapts {name}, which edgepilot cannot map onto the model's "
                              f"projections ({', '.join(GGUF_MODULES)})")
        module = GGUF_MODULES[parts[2]]
        if module in heads:
            if b.shape[0] % (2 * heads[module]):
                raise ConfigError(f"{name}: the GGUF LoRA's {b.shape[0]} rows do not fit the model's "
                                  f"{heads[module]} heads; it was made for another base model")
            b = _unpermute(b, heads[module])
        parsed[(int(parts[1]), module)] = (a, b)
    return parsed


def _fill(model: Any, parsed: dict[tuple[int, str], tuple[Any, Any]], torch: Any) -> None:
    """Copy ``parsed`` (:func:`_gguf_pairs`) into the peft model's LoRA weights, every one of them.

    Raises:
        ConfigError: the model has a LoRA the GGUF has no weights for, or one of another shape, or the GGUF
            has weights the model took none of.
    """
    filled = 0
    for name, module in model.named_modules():
        parts = name.split(".")
        if not hasattr(module, "lora_A") or "layers" not in parts:
            continue
        key = (int(parts[parts.index("layers") + 1]), parts[-1])
        if key not in parsed:
            raise ConfigError(f"the GGUF LoRA has no weights for {name}")
        a, b = parsed[key]
        for target, value in ((module.lora_A["default"].weight, a), (module.lora_B["default"].weight, b)):
            if tuple(target.shape) != value.shape:
                raise ConfigError(f"{name}: the GGUF LoRA's {value.shape} does not fit the model's "
                                  f"{tuple(target.shape)}")
            with torch.no_grad():
                target.copy_(torch.from_numpy(value.copy()))
        filled += 1
    if filled != len(parsed):
        raise ConfigError(f"the GGUF LoRA adapts {len(parsed)} projections; the model took {filled}")


def pick_device(wanted: str, torch: Any) -> str:
    """The torch device a run trains on.

    Args:
        wanted: ``auto`` (CUDA where torch sees a GPU, else the CPU), or a torch device name.
        torch: the torch module.

    Returns:
        The device name.

    Raises:
        ConfigError: ``cuda`` was asked for and torch sees no CUDA device.
    """
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to torch (a CPU build of torch, or no GPU)")
    return wanted
