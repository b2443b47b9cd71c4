"""``edgepilot distill train``: LoRA fine-tuning of the base GGUF model on the collected examples.

The base model is loaded from its GGUF by transformers (dequantized), a peft
LoRA is put on every linear layer of the transformer blocks, and the loss
covers the assistant tokens only (:mod:`edgepilot.distill.encode`, with
llama.cpp's own template and tokenizer). The frozen weights are kept in
bfloat16 where that multiplies fast (CUDA; an AVX-512 CPU: 154 against 40
GFLOPS for float32, measured) and in float32 where it does not (an AVX2-only
CPU: :func:`frozen_dtype` measures it), the LoRA weights in float32. The
prompts are long screens and the answers a few dozen tokens, so the forward
passes avoid repeating work (:func:`_group_loss`):

- the logits are computed only where there is a label (``logits_to_keep``);
- the system prompt, which every example starts with, runs once every
  ``prefix_refresh`` optimizer steps, without gradient, into a key/value cache;
- the rest of the prompt that a trajectory step's planner and decider examples
  share (task, screen) runs once per trajectory step, without gradient, from that cache;
- of each example's own tokens, only the ``window`` tokens before each answer
  and the answer itself run with gradient; the rest runs without;
- with ``top_layers``, the blocks below the adapted ones run once for every
  token before the first step (:func:`frozen_blocks`), and training runs the
  top blocks on their output (:func:`run_blocks`).

On a GPU these savings do not pay: a pass there costs a fixed ~0.2 s whatever
its size, so ``batch`` > 1 runs that many whole examples in one padded pass
instead (:func:`_batch_loss`).

The forward values (and the loss) are those of running each example whole
(but for the system prompt's cache, up to ``prefix_refresh`` - 1 steps old);
the gradient is truncated: the adapter learns how the answer reads the prompt,
not how the prompt's tokens are encoded (docs/distill.md has the measured gain:
small on 2 CPU cores, where a backward pass has a large fixed cost).

Writes ``OUT/adapter/`` (peft's files, plus the base model's ``config.json``
that the GGUF converter reads), ``OUT/recipe.json`` (data and base-model
hashes, hyper-parameters, seed, library versions, loss curve, time) and
``OUT/train-log.jsonl``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgepilot.distill.dataset import file_sha256
from edgepilot.distill.encode import IGNORE, Encoded, EncodedDataset, encode_dataset_file
from edgepilot.errors import ConfigError, ModelError

TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_MODULES = {"attn_q": "q_proj", "attn_k": "k_proj", "attn_v": "v_proj", "attn_output": "o_proj",
                "ffn_gate": "gate_proj", "ffn_up": "up_proj", "ffn_down": "down_proj"}
"""llama.cpp's tensor names (``blk.N.NAME.weight``) of the projections a LoRA adapts, and transformers' names."""
READ_BACK_ARCHITECTURES = ("llama",)
"""The GGUF architectures whose LoRAs :func:`lora_from_gguf` reads back: llama.cpp's converter reorders their
q and k rows (its ``permute``, for ``LlamaModel`` and its kin), which reading back undoes. Others are refused
rather than guessed."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one fine-tuning run (all recorded in recipe.json)."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    lr: float = 3e-4
    warmup: float = 0.05
    weight_decay: float = 0.0
    grad_accum: int = 4
    epochs: float = 1.0
    max_examples: int | None = None
    skip_examples: int = 0
    """Leave out the first this many examples of the seeded order (those an earlier run, resumed with
    ``init_adapter``, trained on)."""
    max_len: int = 2048
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    kinds: list[str] = field(default_factory=lambda: ["planner", "decider"])
    shared_prefix: bool = True
    """Run the prompt prefix a step's examples share (system + task + screen) once, without gradient."""
    window: int | None = 32
    """Prompt tokens before each answer that run with gradient (the rest of the prompt runs without);
    None: every token after the shared prefix."""
    prefix_refresh: int = 8
    """Recompute the system prompt's cache (the token prefix all examples share) every this many optimizer
    steps; 0: recompute it for every step of a trajectory (exact, slower)."""
    init_adapter: str | None = None
    """Continue from this adapter instead of a fresh LoRA: an earlier ``train``'s ``OUT/adapter`` folder, or a
    GGUF LoRA (:func:`lora_from_gguf`; its rank and alpha then replace ``rank`` and ``alpha``)."""
    max_minutes: float | None = None
    """Stop (and save) after the optimizer step that passes this much training time."""
    top_layers: int | None = None
    """Put the LoRA on only the last this many transformer blocks (None: all): the backward pass then stops
    at the lowest adapted block."""
    batch: int = 1
    """Examples per forward pass. 1: each example alone, with the caches and windows below (the CPU path).
    Above 1: that many examples padded into one full-sequence pass, the gradient through every token, no
    caches (``shared_prefix``, ``window``, ``prefix_refresh`` and the frozen-block pass do not apply): the
    GPU path, where one pass costs about the same for 1 example as for 16 (:func:`_batch_loss`)."""
    decision_weight: float = 1.0
    """Weight of the answer tokens that decide a step (:attr:`Encoded.deciding`: the planner's subgoal, the
    action's values) in the loss; the other answer tokens weigh 1."""


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "gguf", "accelerate", "llama_cpp_python"):
        try:  # the installed distribution's version (gguf has no __version__)
            out[name.removesuffix("_python")] = version(name)
        except PackageNotFoundError:
            out[name.removesuffix("_python")] = "missing"
    from edgepilot import __version__

    out["edgepilot"] = __version__
    return out


def _libraries() -> tuple[Any, Any, Any]:
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise ConfigError("training needs the distill extra: pip install 'edgepilot[distill]' "
                          "(torch, transformers, peft, gguf, accelerate)") from exc
    return torch, transformers, peft


def frozen_dtype(device: str, torch: Any) -> Any:
    """The dtype of the frozen weights: bfloat16 where the device multiplies in it fast, float32 elsewhere.

    CUDA: bfloat16. A CPU: whichever of the two multiplies a 256x256 matrix faster, measured (a fraction of a
    second). With AVX-512 (BF16 or AMX) bfloat16 is about 4x faster than float32; on an AVX2-only CPU torch's
    bfloat16 product is a slow fallback (2-core AMD EPYC, torch 2.13: 0.95 GFLOPS, against 122 in float32).
    """
    if device.startswith("cuda"):
        return torch.bfloat16
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
    """
    import transformers

    setting = os.environ.get(BASE_CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    if setting:
        root = Path(setting).expanduser()
    else:
        from platformdirs import user_cache_dir

        root = Path(user_cache_dir("edgepilot")) / "hf-base"
    return root / f"{gguf.stem}-{file_sha256(gguf)[:16]}-transformers{transformers.__version__}"


def load_base(gguf: Path, device: str, torch: Any, dtype: Any = None) -> Any:
    """The base model from its GGUF through transformers, frozen weights in ``dtype`` (None:
    :func:`frozen_dtype`). A dequantized copy is kept in :func:`base_cache` and read instead of the GGUF next
    time; a copy that does not load is deleted and the GGUF read again.

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

    ``lora`` is :func:`edgepilot.distill.export.read_lora`'s. The rank, alpha, adapted projections and blocks
    are the GGUF's; the converter's row order of a llama model's ``attn_q``'s and ``attn_k``'s B is undone, so
    the model computes what llama.cpp computes with the adapter.

    Raises:
        ConfigError: the GGUF is of an architecture edgepilot does not map, adapts a tensor this model has no
            LoRA name for, or its shapes do not fit the model.
    """
    if lora.architecture not in READ_BACK_ARCHITECTURES:
        raise ConfigError(f"the GGUF LoRA is for a {lora.architecture or 'unnamed'} model; edgepilot reads back "
                          f"LoRAs of {', '.join(READ_BACK_ARCHITECTURES)} models only (or pass --init an adapter "
                          "folder)")
    config = model.config
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
    ranks = {a.shape[0] for a, _ in parsed.values()}
    if len(ranks) != 1:
        raise ConfigError(f"the GGUF LoRA mixes ranks {sorted(ranks)}; edgepilot continues one rank only")
    modules = sorted({module for _, module in parsed})
    layers = None if lora.blocks == list(range(config.num_hidden_layers)) else lora.blocks
    model = peft.get_peft_model(model, peft.LoraConfig(r=ranks.pop(), lora_alpha=lora.alpha, lora_dropout=dropout,
                                                       target_modules=modules, layers_to_transform=layers,
                                                       task_type="CAUSAL_LM"))
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
    return model


def pick_device(wanted: str, torch: Any) -> str:
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible to torch (a CPU build of torch, or no GPU)")
    return wanted


def select_examples(data: EncodedDataset, cfg: TrainConfig) -> tuple[list[Encoded], int]:
    """Encoded examples of the wanted kinds that fit ``max_len``; and how many were too long."""
    out, too_long = [], 0
    for kind, enc in data.examples:
        if kind not in cfg.kinds:
            continue
        if enc.trained_tokens == 0:
            continue
        if len(enc.input_ids) > cfg.max_len:
            too_long += 1
            continue
        out.append(enc)
    return out, too_long


def train(dataset: Path, out: Path, *, base_gguf: Path, cfg: TrainConfig | None = None,
          progress: Callable[[int, int, float], None] | None = None,
          prepare: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Fine-tune a LoRA on ``dataset`` and write it with its recipe under ``out``.

    Args:
        dataset: the JSON-lines examples (``edgepilot distill collect`` writes ``RUN/dataset.jsonl``).
        out: the output folder.
        base_gguf: the base model's GGUF (the one the adapter will be applied to by llama.cpp).
        cfg: hyper-parameters.
        progress: called after each optimizer step with (step, steps, loss).
        prepare: called with (done, total) as the frozen blocks' output is computed (``top_layers``).

    Returns:
        The recipe (also written to ``out/recipe.json``).

    Raises:
        ConfigError: the libraries are missing, the dataset is empty, or the device is not there.
        ModelError: the base model cannot be loaded or tokenized.
    """
    cfg = cfg or TrainConfig()
    torch, transformers, peft = _libraries()
    start = time.perf_counter()
    from_gguf = bool(cfg.init_adapter) and Path(cfg.init_adapter).is_file()  # a GGUF LoRA (a shipped model)
    if cfg.init_adapter and not from_gguf and not (Path(cfg.init_adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"--init {cfg.init_adapter}: neither a GGUF LoRA nor a folder with adapter_config.json "
                          "(an earlier train's OUT/adapter)")
    adapted = None  # the blocks the --init adapter adapts (None: all)
    gguf_lora = None
    if from_gguf:
        from edgepilot.distill.export import read_lora

        gguf_lora = read_lora(Path(cfg.init_adapter))
        adapted = gguf_lora.blocks
    elif cfg.init_adapter:
        adapted = json.loads((Path(cfg.init_adapter) / "adapter_config.json").read_text()).get("layers_to_transform")
    if cfg.init_adapter:
        too_low = (f"--top-layers {cfg.top_layers}: the adapter of --init {cfg.init_adapter} also adapts lower "
                   "blocks; continue it without --top-layers, or with the number it was trained with")
        if cfg.top_layers and adapted is None:
            raise ConfigError(too_low)
    summary = dataset.parent / "collect.json"
    if summary.is_file() and json.loads(summary.read_text(encoding="utf-8")).get("split", "train") != "train":
        raise ConfigError(f"{dataset} was collected on a held-out split; it is for evaluation, never for training")
    data = encode_dataset_file(dataset, base_gguf)
    examples, too_long = select_examples(data, cfg)
    if not examples:
        raise ConfigError(f"{dataset} has no trainable examples of kinds {cfg.kinds}")
    rng = random.Random(cfg.seed)
    groups = group_by_step(examples) if cfg.shared_prefix else [[e] for e in examples]
    order: list[list[Encoded]] = []
    whole = math.floor(cfg.epochs)
    for _ in range(whole):
        epoch = groups[:]
        rng.shuffle(epoch)
        order += epoch
    if cfg.epochs > whole:
        epoch = groups[:]
        rng.shuffle(epoch)
        order += epoch[: round(len(groups) * (cfg.epochs - whole))]
    if cfg.skip_examples:
        n = 0
        while order and n < cfg.skip_examples:
            n += len(order.pop(0))
        if not order:
            raise ConfigError(f"--skip-examples {cfg.skip_examples} leaves no examples to train on")
    if cfg.max_examples is not None:
        kept, n = [], 0
        for g in order:
            if n >= cfg.max_examples:
                break
            kept.append(g[: cfg.max_examples - n])
            n += len(kept[-1])
        order = kept
    if cfg.batch > 1:  # whole examples, in the seeded order, padded together with others of about their length
        flat = [e for g in order for e in g]
        pool = 8 * cfg.batch
        order = []
        for at in range(0, len(flat), pool):
            by_length = sorted(flat[at:at + pool], key=lambda e: len(e.input_ids))
            order += [by_length[i:i + cfg.batch] for i in range(0, len(by_length), cfg.batch)]
    steps = max(1, math.ceil(len(order) / cfg.grad_accum))

    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, torch)
    load_start = time.perf_counter()
    model = load_base(base_gguf, device, torch)
    load_s = time.perf_counter() - load_start
    n_blocks = model.config.num_hidden_layers
    if cfg.top_layers is not None and not 1 <= cfg.top_layers <= n_blocks:
        raise ConfigError(f"--top-layers {cfg.top_layers}: the base model has {n_blocks} blocks; give 1 to {n_blocks}")
    if cfg.init_adapter:
        if cfg.top_layers and (adapted is None or min(adapted) < n_blocks - cfg.top_layers):
            raise ConfigError(too_low)
        model = (lora_from_gguf(model, gguf_lora, peft, torch, dropout=cfg.dropout) if gguf_lora else
                 peft.PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True))
    else:
        layers = list(range(n_blocks - cfg.top_layers, n_blocks)) if cfg.top_layers else None
        model = peft.get_peft_model(model, peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                           target_modules=TARGET_MODULES, layers_to_transform=layers,
                                                           task_type="CAUSAL_LM"))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    params = [p for p in model.parameters() if p.requires_grad]
    common = common_prefix(examples)  # what every example starts with; the steps' examples are among them
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, round(steps * cfg.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    model.train()
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / "train-log.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    losses: list[float] = []
    decision_losses: list[float | None] = []
    tokens_seen = examples_seen = 0
    stopped_early = False
    train_start = time.perf_counter()
    states, frozen_s, top = None, 0.0, contextlib.nullcontext()
    if cfg.top_layers and cfg.top_layers < n_blocks and cfg.batch == 1:
        frozen_start = time.perf_counter()
        needed = {id(e) for g in order for e in g}
        states = frozen_blocks(model, [g for g in groups if any(id(e) in needed for e in g)], common,
                               n_blocks - cfg.top_layers, device, torch, prepare)
        frozen_s = time.perf_counter() - frozen_start
        top = run_blocks(model, n_blocks - cfg.top_layers, n_blocks)
    prefix = None
    try:
        with top:
            for step in range(steps):
                batch = order[step * cfg.grad_accum:(step + 1) * cfg.grad_accum]
                trained = sum(e.trained_tokens for g in batch for e in g)
                if cfg.batch == 1 and cfg.prefix_refresh and common and step % cfg.prefix_refresh == 0:
                    prefix = _prefix_cache(model, common, device, torch,
                                           states[id(batch[0][0])] if states is not None else None)
                total = 0.0
                deciding = [0.0, 0]
                for group in batch:
                    if cfg.batch > 1:
                        total += _batch_loss(model, group, trained, device, torch,
                                             decision_weight=cfg.decision_weight, deciding=deciding)
                    else:
                        total += _group_loss(model, group, trained, device, torch, window=cfg.window, prefix=prefix,
                                             decision_weight=cfg.decision_weight, deciding=deciding, states=states)
                    tokens_seen += sum(len(e.input_ids) for e in group)
                    examples_seen += len(group)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                loss = total / trained
                losses.append(loss)
                decision_losses.append(deciding[0] / deciding[1] if deciding[1] else None)
                log.write(json.dumps({"step": step + 1, "loss": round(loss, 5),
                                      "decision_loss": _round(decision_losses[-1], 5), "lr": schedule.get_last_lr()[0],
                                      "examples": examples_seen, "tokens": tokens_seen,
                                      "seconds": round(time.perf_counter() - train_start, 1)}) + "\n")
                log.flush()
                if progress is not None:
                    progress(step + 1, steps, loss)
                if cfg.max_minutes is not None and time.perf_counter() - train_start > cfg.max_minutes * 60:
                    stopped_early = step + 1 < steps
                    break
    finally:
        log.close()
    train_s = time.perf_counter() - train_start
    adapter = out / "adapter"
    model.save_pretrained(str(adapter))
    model.base_model.model.config.save_pretrained(str(adapter / "base"))
    recipe = {
        "format": 1,
        "base_model": {"gguf": str(base_gguf), "name": base_gguf.name, "sha256": data.base_sha256},
        "dataset": {"path": str(dataset), "sha256": data.dataset_sha256, "rows": data.rows,
                    "examples": len(examples), "too_long": too_long, "trained_on": examples_seen,
                    "kinds": cfg.kinds},
        "hyper_parameters": asdict(cfg),
        **({"init_adapter": {"gguf": cfg.init_adapter, "sha256": file_sha256(Path(cfg.init_adapter)),
                             "rank": model.peft_config["default"].r, "alpha": model.peft_config["default"].lora_alpha}}
           if from_gguf else {}),
        "seed": cfg.seed,
        "device": device,
        "frozen_dtype": str(model.get_input_embeddings().weight.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "steps": len(losses),
        "planned_steps": steps,
        "stopped_by_time_budget": stopped_early,
        "tokens": tokens_seen,
        "loss": {**(_loss_summary(losses) or {}), "curve": [round(x, 4) for x in losses]},
        "decision_loss": _loss_summary(decision_losses),
        "seconds": {"load": round(load_s, 1), "frozen_blocks": round(frozen_s, 1), "train": round(train_s, 1),
                    "total": round(time.perf_counter() - start, 1),
                    "tokens_per_s": round(tokens_seen / train_s, 1) if train_s else None},
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "adapter": str(adapter),
    }
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    return recipe


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _loss_summary(values: list[float] | list[float | None]) -> dict[str, Any] | None:
    """first / last / mean of the last 10% of the steps that had deciding tokens (None: no step had)."""
    seen = [v for v in values if v is not None]
    if not seen:
        return None
    tail = seen[-max(1, len(seen) // 10):]
    return {"first": round(seen[0], 4), "last": round(seen[-1], 4), "mean_last_10pct": round(sum(tail) / len(tail), 4)}


def group_by_step(examples: list[Encoded]) -> list[list[Encoded]]:
    """Examples of the same step (``instance/step/kind`` ids) together: they share their prompt's start."""
    groups: dict[str, list[Encoded]] = {}
    for e in examples:
        key = e.id.rsplit("/", 1)[0] if e.id.count("/") >= 2 else e.id
        groups.setdefault(key, []).append(e)
    return list(groups.values())


LONE_SUFFIX = 128
"""Prompt tokens with gradient before a lone example's first answer (no other example shares its prefix)."""


def shared_cut(group: list[Encoded]) -> int:
    """How many leading tokens the group's examples share and none of them has a label in (0: none)."""
    first_label = min(next(i for i, t in enumerate(e.labels) if t != IGNORE) for e in group)
    if len(group) == 1:
        cut = first_label - LONE_SUFFIX
    else:
        ids = [e.input_ids for e in group]
        cut = 0
        while all(cut < len(x) for x in ids) and len({x[cut] for x in ids}) == 1:
            cut += 1
    return max(0, min(cut, first_label - 1))


def group_cut(group: list[Encoded]) -> int:
    """Where a group's examples stop running without gradient from a shared cache: :func:`shared_cut`, for a
    lone example only when it is long enough to have a prompt worth caching (0: no shared part)."""
    return shared_cut(group) if len(group) > 1 or len(group[0].input_ids) > 2 * LONE_SUFFIX else 0


def common_prefix(examples: list[Encoded]) -> list[int]:
    """The token prefix every example starts with (the chat template's start and the system prompt), short of
    any label."""
    if not examples:
        return []
    first = examples[0].input_ids
    n = min(min(len(e.input_ids) for e in examples),
            min(next(i for i, t in enumerate(e.labels) if t != IGNORE) for e in examples))
    for e in examples[1:]:
        ids = e.input_ids
        n = next((i for i in range(n) if ids[i] != first[i]), n)
    return first[:n]


def _autocast(model: Any, device: str, torch: Any) -> Any:
    """Compute in the frozen weights' dtype (:func:`frozen_dtype`); the LoRA's weights are float32."""
    dtype = model.get_input_embeddings().weight.dtype
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def _inputs(ids: list[int], states: Any, device: str, torch: Any) -> dict[str, Any]:
    """A forward pass's inputs for the tokens ``ids``: the ids, or ``states`` (the frozen blocks' output for
    those same tokens, :func:`frozen_blocks`) when the model runs only its top blocks."""
    if states is not None:
        return {"inputs_embeds": states.unsqueeze(0)}
    return {"input_ids": torch.tensor([ids], device=device)}


def _prefix_cache(model: Any, ids: list[int], device: str, torch: Any, states: Any = None) -> tuple[int, Any]:
    """``(length, key/value cache)`` of ``ids`` under the adapter as it is now, without gradient (``states``:
    the frozen blocks' output for an example that starts with ``ids``, fed instead of the ids)."""
    feed = _inputs(ids, states[: len(ids)] if states is not None else None, device, torch)
    with torch.no_grad(), _autocast(model, device, torch):
        return len(ids), model(**feed, use_cache=True).past_key_values


@contextlib.contextmanager
def run_blocks(model: Any, start: int, stop: int, *, norm: bool = True) -> Iterator[None]:
    """Make ``model`` run only its transformer blocks ``start:stop`` (and, with ``norm`` False, leave out the
    final norm, so its last hidden state is block ``stop - 1``'s output); restored on exit.

    Fed ``inputs_embeds`` = block ``start - 1``'s output, the top blocks compute exactly what they compute
    in the whole model. Each block's cache index is renumbered from 0 meanwhile, so a key/value cache
    holds the running blocks only.
    """
    import torch

    inner = _inner(model)
    config = inner.config
    saved_layers, saved_norm, saved_count = inner.layers, inner.norm, config.num_hidden_layers
    saved_types = getattr(config, "layer_types", None)
    chosen = list(saved_layers)[start:stop]
    saved_idx = [layer.self_attn.layer_idx for layer in chosen]
    try:
        inner.layers = torch.nn.ModuleList(chosen)
        for i, layer in enumerate(chosen):
            layer.self_attn.layer_idx = i
        config.num_hidden_layers = len(chosen)
        if saved_types is not None:
            config.layer_types = list(saved_types)[start:stop]
        if not norm:
            inner.norm = torch.nn.Identity()
        yield
    finally:
        inner.layers, inner.norm, config.num_hidden_layers = saved_layers, saved_norm, saved_count
        if saved_types is not None:
            config.layer_types = saved_types
        for layer, idx in zip(chosen, saved_idx, strict=True):
            layer.self_attn.layer_idx = idx


def _inner(model: Any) -> Any:
    """The transformer under the peft wrapper and the language-model head (its ``layers``, ``norm``)."""
    return model.get_base_model().model if hasattr(model, "get_base_model") else model.model


def frozen_blocks(model: Any, groups: list[list[Encoded]], common: list[int], stop: int, device: str, torch: Any,
                  progress: Callable[[int, int], None] | None = None) -> dict[int, Any]:
    """The output of blocks ``0:stop`` (which carry no adapter) for every token of every example, keyed by
    ``id(example)``, shape (tokens, hidden): computed once, they are the same in every epoch, so training
    runs only the blocks above (:func:`run_blocks`). As in training, the system prompt runs once and the
    prompt a step's examples share once per step."""
    inner = _inner(model)
    states: dict[int, Any] = {}

    def run(ids: list[int], cache: Any) -> tuple[Any, Any]:
        out = inner(input_ids=torch.tensor([ids], device=device), past_key_values=cache, use_cache=True)
        return out.last_hidden_state[0], out.past_key_values

    with run_blocks(model, 0, stop, norm=False), torch.no_grad(), _autocast(model, device, torch):
        base = (len(common), *run(common, None)) if common else None
        for n, group in enumerate(groups):
            cut = group_cut(group)
            done, head, cache = 0, None, None
            if base is not None and cut >= base[0]:
                done, head, cache = base[0], base[1], copy.deepcopy(base[2])
            if cut > done:
                part, cache = run(group[0].input_ids[done:cut], cache)
                head = part if head is None else torch.cat([head, part])
                done = cut
            for example in group:
                rest, _ = run(example.input_ids[done:], copy.deepcopy(cache) if cache is not None else None)
                states[id(example)] = rest if head is None else torch.cat([head, rest])
            if progress is not None:
                progress(n + 1, len(groups))
    return states


def chunks(labels: list[int], start: int, window: int | None) -> list[tuple[int, int, bool]]:
    """``(begin, end, with_gradient)`` spans that cover ``labels[start:]`` up to the last label.

    Each answer (a run of labels) runs with gradient together with the
    ``window`` tokens before it (from the previous answer's end at most); the
    tokens between run without. ``window`` None: one span with gradient.
    The logit at position j predicts token j+1, so a span with gradient
    always holds the position before its first label.
    """
    labelled = [i for i in range(start + 1, len(labels)) if labels[i] != IGNORE]
    if not labelled:
        return []
    if window is None:
        return [(start, labelled[-1] + 1, True)]
    window = max(1, window)
    spans: list[tuple[int, int, bool]] = []
    pos = start
    i = 0
    while i < len(labelled):
        begin = labelled[i]
        while i + 1 < len(labelled) and labelled[i + 1] == labelled[i] + 1:
            i += 1
        end = labelled[i] + 1
        grad_from = max(begin - window, pos)
        if grad_from > pos:
            spans.append((pos, grad_from, False))
        if spans and spans[-1][2] and spans[-1][1] == grad_from:
            spans[-1] = (spans[-1][0], end, True)  # two answers with no prompt between: one span
        else:
            spans.append((grad_from, end, True))
        pos = end
        i += 1
    return spans


def _batch_loss(model: Any, batch: list[Encoded], trained: int, device: str, torch: Any, *,
                decision_weight: float = 1.0, deciding: list | None = None) -> float:
    """Back-propagate the summed loss / ``trained`` of ``batch``'s examples, run whole in one padded pass
    (padding on the right, masked); returns the summed loss. Logits are computed only where a label is.

    The loss of each example is the one it has alone; the gradient runs through every token. On an H100 a
    pass of 16 examples of 900 tokens (forward and backward, SmolLM2-135M's shape, LoRA on all 30 blocks)
    took 224 ms against 208 ms for one; ``deciding`` and ``decision_weight`` as in :func:`_group_loss`.
    """
    width = max(len(e.input_ids) for e in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    targets = torch.full_like(ids, IGNORE)
    marks = torch.zeros_like(ids, dtype=torch.bool)
    for row, e in enumerate(batch):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        mask[row, :n] = 1
        targets[row, :n - 1] = torch.tensor(e.labels[1:n])  # the logit at j predicts token j+1
        if e.deciding:
            marks[row, :n - 1] = torch.tensor(e.deciding[1:n])
    ids, mask, targets, marks = (t.to(device) for t in (ids, mask, targets, marks))
    where = targets != IGNORE
    with _autocast(model, device, torch):
        hidden = _inner(model)(input_ids=ids, attention_mask=mask).last_hidden_state
        logits = model.get_base_model().lm_head(hidden[where])
    nll = torch.nn.functional.cross_entropy(logits.float(), targets[where], reduction="none")
    return _backward(nll, marks[where], trained, decision_weight, deciding)


def _backward(nll: Any, marks: Any, trained: int, decision_weight: float, deciding: list | None) -> float:
    """Back-propagate the summed ``nll`` (one value per label) / ``trained``, the deciding tokens (``marks``)
    weighing ``decision_weight``; add their loss and count to ``deciding`` (``[sum, count]``); return the
    unweighted sum."""
    weights = 1.0 + (decision_weight - 1.0) * marks.float()
    ((nll * weights).sum() / trained).backward()
    if deciding is not None and bool(marks.any()):
        deciding[0] += nll[marks].sum().item()
        deciding[1] += int(marks.sum().item())
    return nll.sum().item()


def _group_loss(model: Any, group: list[Encoded], trained: int, device: str, torch: Any, *,
                window: int | None = None, prefix: tuple[int, Any] | None = None,
                decision_weight: float = 1.0, deciding: list | None = None,
                states: dict[int, Any] | None = None) -> float:
    """Back-propagate the group's summed loss / ``trained``; returns the summed loss.

    Deciding tokens (:attr:`Encoded.deciding`) weigh ``decision_weight`` in what is back-propagated
    (the returned sum stays unweighted); ``deciding``, a ``[sum, count]`` pair, gathers their loss.

    ``prefix`` is the cache of the tokens every example starts with (``common_prefix``);
    the rest of the prefix the group's examples share runs once on top of it,
    without gradient (its keys and values are computed with the adapter, but
    the adapter is not trained through them); each example's own tokens go on
    from a copy of that cache, in :func:`chunks`. Forward values are those of
    running each example whole, except that ``prefix`` may have been computed
    with the adapter of a few optimizer steps ago (``prefix_refresh``).

    ``states`` (:func:`frozen_blocks`): the model runs only its top blocks (:func:`run_blocks`), fed the
    frozen blocks' output for the tokens instead of the tokens.
    """
    autocast = _autocast(model, device, torch)

    def feed(example: Encoded, begin: int, end: int) -> dict[str, Any]:
        return _inputs(example.input_ids[begin:end], states[id(example)][begin:end] if states is not None else None,
                       device, torch)

    cut = group_cut(group)
    cache = None
    if prefix is not None and cut >= prefix[0]:
        done, cache = prefix
        if cut > done:
            cache = copy.deepcopy(cache)
            with torch.no_grad(), autocast:
                model(**feed(group[0], done, cut), past_key_values=cache, use_cache=True)
    elif cut > 0:
        cache = _prefix_cache(model, group[0].input_ids[:cut], device, torch,
                              states[id(group[0])] if states is not None else None)[1]
    total = 0.0
    for example in group:
        own = copy.deepcopy(cache) if cache is not None else None
        for begin, end, grad in chunks(example.labels, cut, window):
            if not grad:
                with torch.no_grad(), autocast:
                    out = model(**feed(example, begin, end), past_key_values=own, use_cache=True)
                own = out.past_key_values
                continue
            # the logit at span position j predicts token begin+j+1
            targets = torch.tensor(example.labels[begin + 1:end + 1], device=device)
            where = (targets != IGNORE).nonzero(as_tuple=True)[0]
            with autocast:
                out = model(**feed(example, begin, end), past_key_values=own, use_cache=True, logits_to_keep=where)
            own = out.past_key_values
            nll = torch.nn.functional.cross_entropy(out.logits[0].float(), targets[where], reduction="none")
            marks = (torch.tensor(example.deciding[begin + 1:end + 1], device=device)[where]
                     if example.deciding else torch.zeros_like(nll, dtype=torch.bool))
            total += _backward(nll, marks, trained, decision_weight, deciding)
    return total
