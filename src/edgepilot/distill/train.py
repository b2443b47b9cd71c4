"""``edgepilot distill train``: LoRA fine-tuning of the base GGUF model on the collected examples.

The base model is loaded from its GGUF by transformers (dequantized), a peft
LoRA is put on every linear layer of the transformer blocks, and the loss
covers the assistant tokens only (:mod:`edgepilot.distill.encode`, with
llama.cpp's own template and tokenizer). The frozen weights are kept in
bfloat16 where that multiplies fast (CUDA; an AVX-512 CPU: 154 against 40
GFLOPS for float32, measured) and in float32 where it does not (an AVX2-only
CPU: :func:`~edgepilot.distill.base.frozen_dtype` measures it), the LoRA weights in float32. The
prompts are long screens and the answers a few dozen tokens, so the forward
passes avoid repeating work (:func:`~edgepilot.distill.loss._group_loss`):

- the logits are computed only where there is a label (``logits_to_keep``);
- the system prompt, which every example starts with, runs once every
  ``prefix_refresh`` optimizer steps, without gradient, into a key/value cache;
- the rest of the prompt that a trajectory step's planner and decider examples
  share (task, screen) runs once per trajectory step, without gradient, from that cache;
- of each example's own tokens, only the ``window`` tokens before each answer
  and the answer itself run with gradient; the rest runs without;
- with ``top_layers``, the blocks below the adapted ones run once for every
  token before the first step (:func:`~edgepilot.distill.loss.frozen_blocks`), and training runs the
  top blocks on their output (:func:`~edgepilot.distill.loss.run_blocks`).

On a GPU these savings do not pay: a pass there costs a fixed ~0.2 s whatever
its size, so ``batch`` > 1 runs that many whole examples in one padded pass
instead (:func:`~edgepilot.distill.loss._batch_loss`).

The forward values (and the loss) are those of running each example whole
(but for the system prompt's cache, up to ``prefix_refresh`` - 1 steps old);
the gradient is truncated: the adapter learns how the answer reads the prompt,
not how the prompt's tokens are encoded (docs/distill.md has the measured gain:
small on 2 CPU cores, where a backward pass has a large fixed cost).

Writes ``OUT/adapter/`` (peft's files, plus the base model's ``config.json``
that the GGUF converter reads), ``OUT/recipe.json`` (data and base-model
hashes, hyper-parameters, seed, library versions, loss curve, time),
``OUT/train-log.jsonl`` and ``OUT/loss.png`` (the loss curve drawn:
:func:`write_loss_curve`).

This module holds the run: :class:`TrainConfig`, :func:`train` and its steps.
:mod:`edgepilot.distill.base` holds the base model and its adapter,
:mod:`edgepilot.distill.schedule` the order the examples train in, and
:mod:`edgepilot.distill.loss` the passes; the public names of ``base`` and
``loss`` are re-exported here for the callers that import them from this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from edgepilot import __version__
from edgepilot.distill.base import (
    BASE_CACHE_ENV,
    GGUF_MODULES,
    READ_BACK_ARCHITECTURES,
    TARGET_MODULES,
    base_cache,
    frozen_dtype,
    load_base,
    lora_from_gguf,
    pick_device,
)
from edgepilot.distill.dataset import file_sha256
from edgepilot.distill.encode import Encoded, EncodedDataset, encode_dataset_file
from edgepilot.distill.loss import (
    LONE_SUFFIX,
    _batch_loss,
    _group_loss,
    _prefix_cache,
    chunks,
    common_prefix,
    frozen_blocks,
    group_by_step,
    group_cut,
    run_blocks,
    shared_cut,
)
from edgepilot.distill.schedule import Schedule, plan_schedule
from edgepilot.errors import ConfigError

__all__ = [
    "BASE_CACHE_ENV", "GGUF_MODULES", "LONE_SUFFIX", "READ_BACK_ARCHITECTURES", "TARGET_MODULES", "TrainConfig",
    "base_cache", "chunks", "common_prefix", "frozen_blocks", "frozen_dtype", "group_by_step", "group_cut",
    "load_base", "lora_from_gguf", "pick_device", "run_blocks", "select_examples", "shared_cut", "train",
    "write_loss_curve",
]


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
    GGUF LoRA (:func:`~edgepilot.distill.base.lora_from_gguf`; its rank and alpha then replace ``rank`` and
    ``alpha``)."""
    max_minutes: float | None = None
    """Stop (and save) after the optimizer step that passes this much training time."""
    top_layers: int | None = None
    """Put the LoRA on only the last this many transformer blocks (None: all): the backward pass then stops
    at the lowest adapted block."""
    batch: int = 1
    """Examples per forward pass. 1: each example alone, with the caches and windows below (the CPU path).
    Above 1: that many examples padded into one full-sequence pass, the gradient through every token, no
    caches (``shared_prefix``, ``window``, ``prefix_refresh`` and the frozen-block pass do not apply): the
    GPU path, where one pass costs about the same for 1 example as for 16
    (:func:`~edgepilot.distill.loss._batch_loss`)."""
    decision_weight: float = 1.0
    """Weight of the answer tokens that decide a step (:attr:`~edgepilot.distill.encode.Encoded.deciding`: the
    planner's subgoal, the action's values) in the loss; the other answer tokens weigh 1."""



def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "gguf", "accelerate", "llama_cpp_python"):
        try:  # the installed distribution's version (gguf has no __version__)
            out[name.removesuffix("_python")] = version(name)
        except PackageNotFoundError:
            out[name.removesuffix("_python")] = "missing"

    out["edgepilot"] = __version__
    return out


def _libraries() -> tuple[Any, Any, Any]:
    try:
        import matplotlib  # noqa: F401 - the loss curve's PNG at the end: missing, say so before training
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise ConfigError("training needs the distill extra: pip install 'edgepilot[distill]' "
                          "(torch, transformers, peft, gguf, accelerate, matplotlib)") from exc
    return torch, transformers, peft


def select_examples(data: EncodedDataset, cfg: TrainConfig) -> tuple[list[Encoded], int]:
    """Encoded examples of the wanted kinds that fit ``max_len``; and how many were too long.

    Args:
        data: the encoded dataset.
        cfg: the run's hyper-parameters (``kinds``, ``max_len``).

    Returns:
        The examples that train, in the dataset's order, and the number left out for being too long.
    """
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


@dataclass
class _Init:
    """The adapter a run goes on from (``init_adapter``)."""

    path: Path
    gguf: Any
    """:func:`edgepilot.models.merge.read_lora`'s, where ``path`` is a GGUF LoRA; None for an adapter folder."""
    blocks: list[int] | None
    """The blocks it adapts (None: all)."""


@dataclass
class _Tally:
    """What the training steps did, for the log and the recipe."""

    losses: list[float] = field(default_factory=list)
    decision_losses: list[float | None] = field(default_factory=list)
    tokens: int = 0
    examples: int = 0
    stopped_early: bool = False
    started: float = 0.0
    """When training started (``time.perf_counter()``), the frozen blocks' pass included."""
    frozen_s: float = 0.0
    train_s: float = 0.0


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
    torch, _, peft = _libraries()
    start = time.perf_counter()
    init = _read_init(cfg)
    data, examples, too_long = _examples(dataset, base_gguf, cfg)
    plan = plan_schedule(examples, seed=cfg.seed, epochs=cfg.epochs, grad_accum=cfg.grad_accum,
                         shared_prefix=cfg.shared_prefix, skip_examples=cfg.skip_examples,
                         max_examples=cfg.max_examples, batch=cfg.batch)
    model, device, load_s = _model(base_gguf, cfg, init, torch, peft)
    tally = _fit(model, plan, common_prefix(examples), out, cfg, device, torch, progress=progress, prepare=prepare)
    adapter = out / "adapter"
    model.save_pretrained(str(adapter))
    model.base_model.model.config.save_pretrained(str(adapter / "base"))  # what the GGUF converter reads
    recipe = _recipe(dataset, base_gguf, cfg, data=data, selected=(len(examples), too_long), init=init,
                     model=model, device=device, torch=torch, plan=plan, tally=tally, load_s=load_s, start=start,
                     adapter=adapter)
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    write_loss_curve(out / "loss.png", tally.losses, tally.decision_losses)
    return recipe


def write_loss_curve(path: Path, losses: list[float], decision_losses: list[float | None] | None = None) -> Path | None:
    """Draw the loss of each optimizer step as a PNG (and the deciding tokens' loss, on the steps that had some).

    matplotlib is imported here and draws with its Agg canvas: no display, no pyplot state.

    Args:
        path: the PNG to write (``OUT/loss.png`` beside ``recipe.json``).
        losses: each step's loss per trained token (``recipe.json``'s ``loss.curve``).
        decision_losses: each step's loss on its deciding tokens (None: the step had none).

    Returns:
        The path written; None when there was no step to draw.
    """
    if not losses:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, label="loss per trained token", color="#4e79a7")
    decided = [(n, v) for n, v in zip(steps, decision_losses or [], strict=False) if v is not None]
    if decided:
        ax.plot(*zip(*decided, strict=True), label="deciding tokens", color="#e15759")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(f"training loss: {losses[0]:.3f} → {losses[-1]:.3f} over {len(losses)} steps")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _too_low(cfg: TrainConfig) -> ConfigError:
    return ConfigError(f"--top-layers {cfg.top_layers}: the adapter of --init {cfg.init_adapter} also adapts lower "
                       "blocks; continue it without --top-layers, or with the number it was trained with")


def _read_init(cfg: TrainConfig) -> _Init | None:
    """The adapter ``cfg.init_adapter`` names (None: a fresh LoRA), checked before any data is read.

    Raises:
        ConfigError: it is neither a GGUF LoRA nor an adapter folder, or it adapts blocks below ``top_layers``.
    """
    if not cfg.init_adapter:
        return None
    path = Path(cfg.init_adapter)
    if path.is_file():  # a GGUF LoRA (a shipped model)
        from edgepilot.models.merge import read_lora

        gguf = read_lora(path)
        init = _Init(path, gguf, gguf.blocks)
    elif (path / "adapter_config.json").is_file():
        blocks = json.loads((path / "adapter_config.json").read_text()).get("layers_to_transform")
        init = _Init(path, None, blocks)
    else:
        raise ConfigError(f"--init {cfg.init_adapter}: neither a GGUF LoRA nor a folder with adapter_config.json "
                          "(an earlier train's OUT/adapter)")
    if cfg.top_layers and init.blocks is None:
        raise _too_low(cfg)
    return init


def _examples(dataset: Path, base_gguf: Path, cfg: TrainConfig) -> tuple[EncodedDataset, list[Encoded], int]:
    """The encoded dataset, the examples that train (:func:`select_examples`) and how many were too long.

    Raises:
        ConfigError: the dataset was collected on a held-out split, or has no example to train on.
    """
    summary = dataset.parent / "collect.json"
    if summary.is_file() and json.loads(summary.read_text(encoding="utf-8")).get("split", "train") != "train":
        raise ConfigError(f"{dataset} was collected on a held-out split; it is for evaluation, never for training")
    data = encode_dataset_file(dataset, base_gguf)
    examples, too_long = select_examples(data, cfg)
    if not examples:
        raise ConfigError(f"{dataset} has no trainable examples of kinds {cfg.kinds}")
    return data, examples, too_long


def _model(base_gguf: Path, cfg: TrainConfig, init: _Init | None, torch: Any, peft: Any) -> tuple[Any, str, float]:
    """The base model with the LoRA to train; the device it is on, and the seconds loading the base took."""
    torch.manual_seed(cfg.seed)  # before the LoRA's random initialisation
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, torch)
    load_start = time.perf_counter()
    model = load_base(base_gguf, device, torch)
    load_s = time.perf_counter() - load_start
    return _adapt(model, cfg, init, torch, peft), device, load_s


def _adapt(model: Any, cfg: TrainConfig, init: _Init | None, torch: Any, peft: Any) -> Any:
    """``model`` with ``init``'s adapter or a fresh LoRA (on the ``top_layers`` blocks), its weights float32.

    Raises:
        ConfigError: ``top_layers`` does not fit the model, or ``init`` adapts blocks below them.
    """
    n_blocks = model.config.num_hidden_layers
    if cfg.top_layers is not None and not 1 <= cfg.top_layers <= n_blocks:
        raise ConfigError(f"--top-layers {cfg.top_layers}: the base model has {n_blocks} blocks; give 1 to {n_blocks}")
    if init is not None:
        if cfg.top_layers and (init.blocks is None or min(init.blocks) < n_blocks - cfg.top_layers):
            raise _too_low(cfg)
        model = (lora_from_gguf(model, init.gguf, peft, torch, dropout=cfg.dropout) if init.gguf is not None else
                 peft.PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True))
    else:
        layers = list(range(n_blocks - cfg.top_layers, n_blocks)) if cfg.top_layers else None
        model = peft.get_peft_model(model, peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                           target_modules=TARGET_MODULES, layers_to_transform=layers,
                                                           task_type="CAUSAL_LM"))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return model


def _optimizer(model: Any, cfg: TrainConfig, steps: int, torch: Any) -> tuple[list[Any], Any, Any]:
    """The trained parameters, AdamW on them, and its schedule: a linear warm-up, then a linear decay to 0."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, round(steps * cfg.warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    return params, optimizer, schedule


def _fit(model: Any, plan: Schedule, common: list[int], out: Path, cfg: TrainConfig, device: str, torch: Any, *,
         progress: Callable[[int, int, float], None] | None,
         prepare: Callable[[int, int], None] | None) -> _Tally:
    """Run the planned optimizer steps (or as many as ``max_minutes`` allows), each logged to
    ``out/train-log.jsonl``; ``common`` is the token prefix every example starts with."""
    params, optimizer, schedule = _optimizer(model, cfg, plan.steps, torch)
    model.train()
    out.mkdir(parents=True, exist_ok=True)
    tally = _Tally()
    with open(out / "train-log.jsonl", "w", encoding="utf-8") as log:
        tally.started = time.perf_counter()
        states, top = _frozen(model, plan, common, cfg, device, torch, prepare, tally)
        prefix = None
        with top:
            for step in range(plan.steps):
                batch = plan.order[step * cfg.grad_accum:(step + 1) * cfg.grad_accum]
                if cfg.batch == 1 and cfg.prefix_refresh and common and step % cfg.prefix_refresh == 0:
                    prefix = _prefix_cache(model, common, device, torch,
                                           states[id(batch[0][0])] if states is not None else None)
                loss, decision_loss = _step_loss(model, batch, cfg, device, torch, prefix, states, tally)
                _update(params, optimizer, schedule, torch)
                tally.losses.append(loss)
                tally.decision_losses.append(decision_loss)
                _log_step(log, step, schedule.get_last_lr()[0], tally)
                if progress is not None:
                    progress(step + 1, plan.steps, loss)
                if cfg.max_minutes is not None and time.perf_counter() - tally.started > cfg.max_minutes * 60:
                    tally.stopped_early = step + 1 < plan.steps
                    break
    tally.train_s = time.perf_counter() - tally.started
    return tally


def _frozen(model: Any, plan: Schedule, common: list[int], cfg: TrainConfig, device: str, torch: Any,
            prepare: Callable[[int, int], None] | None, tally: _Tally) -> tuple[dict[int, Any] | None, Any]:
    """With ``top_layers`` (one example a pass), the blocks below them run once now (:func:`frozen_blocks`).

    Returns:
        Their output for every token of the examples that train (None: not run), and a context in which the
        model runs only the top blocks (:func:`run_blocks`; a no-op where the blocks below were not run).
    """
    n_blocks = model.config.num_hidden_layers
    if not (cfg.top_layers and cfg.top_layers < n_blocks and cfg.batch == 1):
        return None, contextlib.nullcontext()
    frozen_start = time.perf_counter()
    needed = {id(e) for g in plan.order for e in g}
    states = frozen_blocks(model, [g for g in plan.groups if any(id(e) in needed for e in g)], common,
                           n_blocks - cfg.top_layers, device, torch, prepare)
    tally.frozen_s = time.perf_counter() - frozen_start
    return states, run_blocks(model, n_blocks - cfg.top_layers, n_blocks)


def _step_loss(model: Any, batch: list[list[Encoded]], cfg: TrainConfig, device: str, torch: Any,
               prefix: tuple[int, Any] | None, states: dict[int, Any] | None,
               tally: _Tally) -> tuple[float, float | None]:
    """Back-propagate one optimizer step's loss, each token weighing 1 / the step's trained tokens.

    Returns:
        The step's loss per trained token, and that of its deciding tokens (None: it had none).
    """
    trained = sum(e.trained_tokens for g in batch for e in g)
    total = 0.0
    deciding = [0.0, 0]
    for group in batch:
        if cfg.batch > 1:
            total += _batch_loss(model, group, trained, device, torch,
                                 decision_weight=cfg.decision_weight, deciding=deciding)
        else:
            total += _group_loss(model, group, trained, device, torch, window=cfg.window, prefix=prefix,
                                 decision_weight=cfg.decision_weight, deciding=deciding, states=states)
        tally.tokens += sum(len(e.input_ids) for e in group)
        tally.examples += len(group)
    return total / trained, deciding[0] / deciding[1] if deciding[1] else None


def _update(params: list[Any], optimizer: Any, schedule: Any, torch: Any) -> None:
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)


def _log_step(log: IO[str], step: int, lr: float, tally: _Tally) -> None:
    """Append optimizer step ``step`` (from 0) to train-log.jsonl, flushed so that a run can be followed."""
    log.write(json.dumps({"step": step + 1, "loss": round(tally.losses[-1], 5),
                          "decision_loss": _round(tally.decision_losses[-1], 5), "lr": lr,
                          "examples": tally.examples, "tokens": tally.tokens,
                          "seconds": round(time.perf_counter() - tally.started, 1)}) + "\n")
    log.flush()


def _recipe(dataset: Path, base_gguf: Path, cfg: TrainConfig, *, data: EncodedDataset, selected: tuple[int, int],
            init: _Init | None, model: Any, device: str, torch: Any, plan: Schedule, tally: _Tally, load_s: float,
            start: float, adapter: Path) -> dict[str, Any]:
    """What recipe.json records: enough to tell what was trained on what, how, and how it went.

    ``selected``: the number of examples that trained and of those too long (:func:`select_examples`).
    """
    return {
        "format": 1,
        "base_model": {"gguf": str(base_gguf), "name": base_gguf.name, "sha256": data.base_sha256},
        "dataset": {"path": str(dataset), "sha256": data.dataset_sha256, "rows": data.rows,
                    "examples": selected[0], "too_long": selected[1], "trained_on": tally.examples,
                    "kinds": cfg.kinds},
        "hyper_parameters": asdict(cfg),
        **({"init_adapter": {"gguf": cfg.init_adapter, "sha256": file_sha256(init.path),
                             "rank": model.peft_config["default"].r, "alpha": model.peft_config["default"].lora_alpha}}
           if init is not None and init.gguf is not None else {}),
        "seed": cfg.seed,
        "device": device,
        "frozen_dtype": str(model.get_input_embeddings().weight.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "steps": len(tally.losses),
        "planned_steps": plan.steps,
        "stopped_by_time_budget": tally.stopped_early,
        "tokens": tally.tokens,
        "loss": {**(_loss_summary(tally.losses) or {}), "curve": [round(x, 4) for x in tally.losses]},
        "decision_loss": _loss_summary(tally.decision_losses),
        "seconds": {"load": round(load_s, 1), "frozen_blocks": round(tally.frozen_s, 1),
                    "train": round(tally.train_s, 1), "total": round(time.perf_counter() - start, 1),
                    "tokens_per_s": round(tally.tokens / tally.train_s, 1) if tally.train_s else None},
        "versions": _versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "adapter": str(adapter),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _loss_summary(values: list[float] | list[float | None]) -> dict[str, Any] | None:
    """first / last / mean of the last 10% of the steps that had deciding tokens (None: no step had)."""
    seen = [v for v in values if v is not None]
    if not seen:
        return None
    tail = seen[-max(1, len(seen) // 10):]
    return {"first": round(seen[0], 4), "last": round(seen[-1], 4), "mean_last_10pct": round(sum(tail) / len(tail), 4)}
