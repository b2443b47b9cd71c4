"""``edgepilot distill``: teacher roll-outs → LoRA fine-tuning → GGUF adapter → held-out evaluation.

Each stage writes into a run folder and can be re-run; docs/distill.md has the whole recipe.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from edgepilot.distill.export import QUANT_TYPES
from edgepilot.errors import ConfigError, EdgepilotError
from edgepilot.safetext import for_json, for_terminal

_RUN = click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
                    help="The run folder (created): trajectories, dataset, adapter, eval.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _fail(exc: EdgepilotError) -> None:
    click.echo(f"error: {for_terminal(exc)}", err=True)
    sys.exit(1)


def _echo(data: Any, as_json: bool, text: str) -> None:
    """JSON or text; either way safe to print (results quote the model's output and the screen)."""
    click.echo(for_json(json.dumps(data, indent=2, ensure_ascii=False)) if as_json else for_terminal(text))


def _base(model: str | None) -> Path:
    from edgepilot.config import load_config
    from edgepilot.models.builtin import builtin_path
    from edgepilot.models.registry import resolve

    found = resolve(model, load_config())
    if found.kind == "url":
        raise click.UsageError("distillation fine-tunes a local GGUF model, not a server")
    return builtin_path(found.location) if found.kind == "builtin" else Path(found.location)


@click.group("distill")
def distill() -> None:
    """Distil a teacher into the small local model: collect, train, export, eval.

    \b
      edgepilot distill synth   --run RUN                     (optional: tasks from exploration)
      edgepilot distill collect --run RUN --per-template 3 --workers 2 [--tasks RUN/synth]
      edgepilot distill encode  --run RUN                     (optional: to train where llama.cpp is not)
      edgepilot distill train   --run RUN --max-examples 400
      edgepilot distill export  --run RUN
      edgepilot distill eval    --run RUN --split test-instances --split test
    """


@distill.command("collect")
@_RUN
@click.option("--per-template", default=3, show_default=True, help="Train instances of each template.")
@click.option("--template", "templates", multiple=True, help="Only these template ids (repeatable).")
@click.option("--tasks", "task_dirs", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Extra folders of task templates (your own apps' tasks; repeatable).")
@click.option("--sop-share", default=0.5, show_default=True,
              help="Share of the instances whose prompts carry their retrieved SOP.")
@click.option("--reflection-share", default=0.0, show_default=True,
              help="Share of the instances rolled out again with a wrong step injected, diagnosed and undone "
                   "(self-reflection examples; the wrong step is masked in training).")
@click.option("--teacher", "teacher_url", default=None,
              help="A model behind an OpenAI-compatible URL (http://host:port/v1#model) plays the tasks in the "
                   "runtime's agent instead of the oracle; its successful runs are kept.")
@click.option("--step-refs/--no-step-refs", default=False, show_default=True,
              help='Teach the planner to point at the procedure\'s current step ("next step") where doing that step '
                   "as written is what the oracle does, instead of saying the step in its own words.")
@click.option("--paraphrase", "paraphrase_share", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              metavar="SHARE",
              help="Share of the train instances (a stable draw by instance id) whose goal is reworded the way "
                   "people type it (casual, terse, polite, typos, abbreviations, reordered, synonyms; every value "
                   "kept; the style goes in the manifest). Held-out splits are never paraphrased.")
@click.option("--workers", default=2, show_default=True, help="Parallel worker processes.")
@click.option("--ray", "ray_address", default=None, help="Run the roll-outs as Ray tasks on this cluster address.")
@_JSON
def collect_cmd(run_dir: Path, per_template: int, templates: tuple[str, ...], task_dirs: tuple[Path, ...],
                sop_share: float, reflection_share: float, step_refs: bool, teacher_url: str | None,
                paraphrase_share: float, workers: int, ray_address: str | None, as_json: bool) -> None:
    """Roll out the oracle teacher on train instances; write trajectories and RUN/dataset.jsonl (resumable)."""
    from tqdm import tqdm

    from edgepilot.distill.collect import collect

    bar = tqdm(desc="collect", unit="task", disable=as_json)

    def progress(row: dict[str, Any], done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(f"{row['instance']} {'ok' if row['success'] else row['status']}")
        bar.refresh()

    try:
        summary = collect(run_dir, per_template=per_template, templates=templates, sop_share=sop_share,
                          reflection_share=reflection_share, teacher_url=teacher_url, workers=workers,
                          ray_address=ray_address, task_dirs=task_dirs, step_refs=step_refs,
                          paraphrase_share=paraphrase_share, progress=progress)
    except EdgepilotError as exc:
        _fail(exc)
    finally:
        bar.close()
    text = (f"kept {summary['kept']}/{summary['instances']} trajectories ({summary['templates']} templates, "
            f"{summary['with_sop']} with an SOP, {summary['self_reflection']} with a wrong step undone, "
            f"{summary['steps']} steps) in {summary['seconds']:.1f} s\n"
            f"{summary['examples']} examples {summary['by_kind']} → {summary['dataset']}")
    for failed in summary["failed"]:
        text += f"\nFAILED {failed['instance']}: {failed['status']}: {failed['reason']}"
    _echo(summary, as_json, text)


@distill.command("synth")
@_RUN
@click.option("--walks", default=140, show_default=True, help="Exploration walks (one app per walk, in turn).")
@click.option("--depth", default=8, show_default=True, help="Taps per walk.")
@click.option("--seed", default=0, show_default=True)
@_JSON
def synth_cmd(run_dir: Path, walks: int, depth: int, seed: int, as_json: bool) -> None:
    """Explore the phone, derive tasks backwards from what the walks changed, keep those the oracle confirms.

    Writes RUN/synth/tasks.yaml; add them to the training mix with `collect --tasks RUN/synth`.
    """
    from tqdm import tqdm

    from edgepilot.distill.synth import synthesize

    bar = tqdm(desc="explore", unit="walk", total=walks, disable=as_json)
    try:
        report = synthesize(run_dir, walks=walks, depth=depth, seed=seed,
                            progress=lambda done, total: bar.update(done - bar.n))
    except EdgepilotError as exc:
        _fail(exc)
    finally:
        bar.close()
    _echo(report, as_json, f"{report['walks']} walks: {report['candidates']} state changes, {report['distinct']} "
                           f"distinct, {report['excluded_as_test_kinds']} dropped (test kinds), "
                           f"{len(report['rejected'])} not confirmed; kept {report['kept']} tasks "
                           f"({report['new_kinds']} checking a field no train template checks) "
                           f"in {report['seconds']:.0f} s → {report['tasks']}")


@distill.command("encode")
@_RUN
@click.option("--model", default=None, help="Base model whose tokenizer encodes (default: the configured one).")
@_JSON
def encode_cmd(run_dir: Path, model: str | None, as_json: bool) -> None:
    """Tokenize RUN/dataset.jsonl with llama.cpp into RUN/encoded.jsonl.gz (train reads it; then the run folder
    trains on a machine without llama-cpp-python, such as a rented GPU: copy the folder and the base GGUF there
    and run `edgepilot distill train --run RUN --model BASE.gguf --device cuda ...`)."""
    from edgepilot.distill.encode import encode_dataset_file, encoded_path

    start = time.perf_counter()
    try:
        data = encode_dataset_file(run_dir / "dataset.jsonl", _base(model))
    except EdgepilotError as exc:
        _fail(exc)
    path = encoded_path(run_dir / "dataset.jsonl")
    summary = {"encoded": str(path), "examples": len(data.examples),
               "tokens": sum(len(e.input_ids) for _, e in data.examples),
               "seconds": round(time.perf_counter() - start, 1)}
    _echo(summary, as_json, f"{summary['examples']} examples, {summary['tokens']} tokens → {path} "
                            f"({summary['seconds']} s)")


@distill.command("train")
@_RUN
@click.option("--model", default=None, help="Base model (built-in name or GGUF path; default: the configured one).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the adapter goes (default: RUN/student).")
@click.option("--rank", default=16, show_default=True)
@click.option("--alpha", default=32, show_default=True)
@click.option("--lr", default=3e-4, show_default=True)
@click.option("--epochs", default=1.0, show_default=True)
@click.option("--max-examples", type=int, default=None, help="Stop after this many examples.")
@click.option("--grad-accum", default=4, show_default=True,
              help="Steps of trajectories per optimizer step (a step's planner and decider examples go together).")
@click.option("--seed", default=0, show_default=True)
@click.option("--init", "init_adapter", type=click.Path(exists=True, path_type=Path), default=None,
              help="Go on training this adapter instead of a fresh LoRA: an earlier run's OUT/adapter folder, "
                   "or a GGUF LoRA (the shipped models/adapters/smollm2-135m-agent.lora.gguf, to teach "
                   "it your own apps).")
@click.option("--skip-examples", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leave out the first N examples of the seeded order: with --init and the same --seed, "
                   "a run goes on where an earlier --max-examples N run stopped.")
@click.option("--max-minutes", type=float, default=None,
              help="Stop after the optimizer step that passes this much training time (the adapter is saved).")
@click.option("--window", type=click.IntRange(min=1), default=32, show_default=True,
              help="Prompt tokens before each answer that run with gradient; the rest runs without (faster).")
@click.option("--full-gradient", is_flag=True,
              help="Gradient through every prompt token after the prefix a step's examples share (no --window).")
@click.option("--decision-weight", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
              help="Loss weight of the answer tokens that decide a step (the planner's subgoal, the action's "
                   "values) against the rest (JSON keys, copied progress), which weigh 1.")
@click.option("--top-layers", type=click.IntRange(min=1), default=None,
              help="Adapt only the last N transformer blocks (default: all). The blocks below then run once, "
                   "before the first epoch, and never again: each epoch costs about N/blocks of a full one.")
@click.option("--prefix-refresh", type=click.IntRange(min=0), default=8, show_default=True,
              help="Recompute the system prompt's cache every N optimizer steps (0: for every step of a "
                   "trajectory, exact and slower).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Examples per pass. 1: one at a time, with the prompt caches and --window (fast on a CPU). "
                   "Above 1 (16 on a GPU): that many whole examples padded into one pass, the gradient "
                   "through every token; a GPU runs 16 in about the time of one.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@_JSON
def train_cmd(run_dir: Path, model: str | None, out: Path | None, rank: int, alpha: int, lr: float, epochs: float,
              max_examples: int | None, grad_accum: int, seed: int, init_adapter: Path | None, skip_examples: int,
              max_minutes: float | None, window: int, full_gradient: bool, decision_weight: float,
              top_layers: int | None, prefix_refresh: int, batch: int, threads: int | None, device: str,
              as_json: bool) -> None:
    """LoRA fine-tuning of the base model on RUN/dataset.jsonl (assistant tokens only); writes adapter + recipe."""
    from tqdm import tqdm

    from edgepilot.distill.train import TrainConfig, train

    cfg = TrainConfig(rank=rank, alpha=alpha, lr=lr, epochs=epochs, max_examples=max_examples,
                      grad_accum=grad_accum, seed=seed, max_minutes=max_minutes, threads=threads, device=device,
                      init_adapter=str(init_adapter) if init_adapter else None, skip_examples=skip_examples,
                      window=None if full_gradient else window, prefix_refresh=prefix_refresh,
                      decision_weight=decision_weight, top_layers=top_layers, batch=batch)
    bar = tqdm(desc="train", unit="step", disable=as_json)
    frozen = tqdm(desc="frozen blocks", unit="step", disable=as_json or not top_layers or batch > 1, leave=False)

    def prepare(done: int, total: int) -> None:
        frozen.total = total
        frozen.update(done - frozen.n)

    def progress(step: int, steps: int, loss: float) -> None:
        bar.total = steps
        bar.n = step
        bar.set_postfix_str(f"loss {loss:.3f}")
        bar.refresh()

    try:
        recipe = train(run_dir / "dataset.jsonl", out or run_dir / "student", base_gguf=_base(model), cfg=cfg,
                       progress=progress, prepare=prepare)
    except EdgepilotError as exc:
        _fail(exc)
    finally:
        frozen.close()
        bar.close()
    loss, deciding = recipe["loss"], recipe["decision_loss"]
    _echo(recipe, as_json, f"{recipe['steps']} steps on {recipe['dataset']['trained_on']} examples "
                           f"({recipe['tokens']} tokens, {recipe['seconds']['tokens_per_s']} tokens/s, "
                           f"{recipe['device']}): loss {loss['first']:.3f} → {loss['last']:.3f}"
                           + (f" (deciding tokens {deciding['first']:.3f} → {deciding['mean_last_10pct']:.3f}, "
                              "mean of the last 10% of steps)" if deciding else "")
                           + f" in {recipe['seconds']['total']:.0f} s\nadapter: {recipe['adapter']}")


@distill.command("export")
@_RUN
@click.option("--model", default=None, help="Base model the adapter is applied to (default: the configured one).")
@click.option("--adapter", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="The peft adapter folder (default: RUN/student/adapter).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The GGUF LoRA to write (default: RUN/student-lora.gguf).")
@click.option("--outtype", type=click.Choice(["f32", "f16", "bf16", "q8_0"]), default="f16", show_default=True)
@click.option("--llama-cpp", "llama_cpp", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Run convert_lora_to_gguf.py of this unpacked llama.cpp tree instead of edgepilot's own writer "
                   "(for a base architecture it does not map).")
@click.option("--merged", is_flag=True,
              help="Also fold the adapter into the base weights: RUN/student-merged-f16.gguf, then each --quant.")
@click.option("--quant", "quants", multiple=True, type=click.Choice(list(QUANT_TYPES)),
              help="Quantizations of the merged model (repeatable; default with --merged: all), written as "
                   "RUN/student-QUANT.gguf.")
@_JSON
def export_cmd(run_dir: Path, model: str | None, adapter: Path | None, out: Path | None, outtype: str,
               llama_cpp: Path | None, merged: bool, quants: tuple[str, ...], as_json: bool) -> None:
    """Convert the adapter to a GGUF LoRA and check that llama.cpp loads it on the base model.

    With --merged, also a whole model with the adapter folded in (f16, and quantized), each loaded by llama.cpp
    as a check: for runtimes that take no LoRA, or to spare the adapter's cost per token.
    """
    from edgepilot.distill.export import check_loads, export_lora, quantize
    from edgepilot.models.merge import merge_lora

    if quants and not merged:
        _fail(ConfigError("--quant quantizes the merged model: add --merged"))
    lines = []
    try:
        base = _base(model)
        result = export_lora(adapter or run_dir / "student" / "adapter", out or run_dir / "student-lora.gguf",
                             outtype=outtype, llama_cpp=llama_cpp)
        result["check"] = check_loads(base, Path(result["lora_gguf"]))
        lines.append(f"{result['lora_gguf']} ({result['bytes'] / 1e6:.1f} MB, {outtype}) in "
                     f"{result['seconds']:.1f} s; llama.cpp loads it on {base.name}")
        if merged:
            f16 = run_dir / "student-merged-f16.gguf"
            result["merged"] = [merge_lora(base, Path(result["lora_gguf"]), f16)]
            result["merged"] += [quantize(f16, run_dir / f"student-{q}.gguf", q) for q in quants or QUANT_TYPES]
            for m in result["merged"]:
                path = Path(m["gguf"])
                m["check"] = check_loads(path, None)
                lines.append(f"{path} ({m['bytes'] / 1e6:.1f} MB) in {m['seconds']:.1f} s; llama.cpp loads it")
    except EdgepilotError as exc:
        _fail(exc)
    _echo(result, as_json, "\n".join(lines))


@distill.command("eval")
@_RUN
@click.option("--model", default=None, help="Base model (default: the configured one).")
@click.option("--lora", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The GGUF adapter (default: RUN/student-lora.gguf).")
@click.option("--arm", "arms", multiple=True, type=click.Choice(["base", "student", "student-vote", "teacher"]),
              help="What to evaluate (repeatable; default: base and student). student-vote: the student "
                   "with self-consistent action voting (--vote answers a step, the commonest valid one wins).")
@click.option("--vote", type=click.IntRange(min=2), default=5, show_default=True,
              help="Answers per step for the student-vote arm (the greedy one and the rest sampled).")
@click.option("--split", "splits", multiple=True, type=click.Choice(["test-instances", "test", "train"]),
              help="Splits (repeatable; default: test-instances and test).")
@click.option("--per-template", default=1, show_default=True)
@click.option("--template", "templates", multiple=True, help="Only these template ids (repeatable).")
@click.option("--max-steps", type=int, default=None, help="Step budget per episode (default: the template's).")
@click.option("--save", is_flag=True, help="Keep every episode's trajectory under RUN/eval/trajectories.")
@click.option("--sop", type=click.Choice(["off", "on", "both"]), default="off", show_default=True,
              help="on: the model arms follow the bundled SOP each goal retrieves, as `edgepilot run` does "
                   "(reported as ARM+sop); both: with and without.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes for the episodes, each with its own phone and model (1: in this process). "
                   "Episodes whose worker dies are retried.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run the episodes as Ray tasks: local, auto (this node's cluster) or ray://HEAD:10001; "
                   "results and trajectories come back here (docs/distill.md, Scaling out).")
@_JSON
def eval_cmd(run_dir: Path, model: str | None, lora: Path | None, arms: tuple[str, ...], vote: int,
             splits: tuple[str, ...], per_template: int, templates: tuple[str, ...], max_steps: int | None,
             save: bool, sop: str, workers: int, ray_address: str | None, as_json: bool) -> None:
    """Task success and seconds per step on held-out splits: base model vs student (vs the teacher)."""
    from edgepilot.distill.evaluate import evaluate, format_table

    def progress(arm: str, split: str, result: Any, done: int, total: int) -> None:
        if not as_json:
            click.echo(f"[{arm} {split} {done}/{total}] {for_terminal(result.instance, newlines=False)}: "
                       f"{'ok' if result.success else result.status} ({len(result.steps)} steps, "
                       f"{result.seconds:.0f} s)", err=True)

    start = time.perf_counter()
    try:
        summary = evaluate(lora=lora or run_dir / "student-lora.gguf", arms=arms or ("base", "student"),
                           splits=splits or ("test-instances", "test"), per_template=per_template,
                           templates=templates, model=model, max_steps=max_steps, out=run_dir / "eval",
                           save_trajectories=save, progress=progress, vote=vote, sop=sop, workers=workers,
                           ray=ray_address)
    except EdgepilotError as exc:
        _fail(exc)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    _echo(summary["table"] if as_json else summary, as_json,
          format_table(summary) + f"\n→ {run_dir / 'eval' / 'eval.json'} ({summary['seconds']:.0f} s)")


@distill.command("eval-steps")
@_RUN
@click.option("--model", default=None, help="Base model (default: the configured one).")
@click.option("--lora", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The GGUF adapter (default: RUN/student-lora.gguf).")
@click.option("--arm", "arms", multiple=True, type=click.Choice(["base", "student"]),
              help="What to evaluate (repeatable; default: both).")
@click.option("--split", "splits", multiple=True, type=click.Choice(["test-instances", "test", "train"]),
              help="Held-out splits (repeatable; default: test and test-instances); train: the run's own "
                   "training steps (RUN/dataset.jsonl), to tell a student that cannot fit its data from "
                   "one that does not carry it over.")
@click.option("--limit", type=int, default=24, show_default=True,
              help="Steps per split, spread evenly over its templates (planner and decider calls).")
@click.option("--sop", is_flag=True,
              help="Prompts carry the SOP each goal retrieves (held-out steps collected again with it; "
                   "reported as ARM+sop).")
@_JSON
def eval_steps_cmd(run_dir: Path, model: str | None, lora: Path | None, arms: tuple[str, ...],
                   splits: tuple[str, ...], limit: int, sop: bool, as_json: bool) -> None:
    """Teacher-forced step accuracy on held-out splits: the oracle plays each held-out task, and each model
    answers the runtime's planner and decider prompts of those steps (one call per step, far cheaper than
    episodes). Writes RUN/eval/steps.json (steps+sop.json with --sop).
    """
    from edgepilot.distill.collect import collect
    from edgepilot.distill.evaluate import step_accuracy

    results: dict[str, Any] = {}
    try:
        if sop and "train" in splits:
            raise ConfigError("--sop does not apply to --split train: the training steps carry the SOPs "
                              "collection gave them")
        for split in splits or ("test", "test-instances"):
            data = run_dir if split == "train" else run_dir / "heldout" / (f"{split}+sop" if sop else split)
            if split == "train" and not (data / "dataset.jsonl").is_file():
                raise ConfigError(f"{data / 'dataset.jsonl'} does not exist: run `edgepilot distill collect "
                                  f"--run {run_dir}` first")
            if not (data / "dataset.jsonl").is_file():
                collect(data, per_template=1, split=split, sop_share=1.0 if sop else 0.0, workers=1)
            for arm in arms or ("base", "student"):
                adapter = (lora or run_dir / "student-lora.gguf") if arm == "student" else None
                r = step_accuracy(data / "dataset.jsonl", lora=adapter, model=model, limit=limit)
                name = f"{arm}+sop" if sop else arm
                results[f"{name}/{split}"] = r
                if not as_json:
                    click.echo(f"{name:12} {split:15} decider {r['accuracy']['decider']:.0%} of "
                               f"{r['steps']['decider']}, planner subgoal {r['accuracy']['planner']:.0%} of "
                               f"{r['steps']['planner']}, "
                               f"median {r['median_ms']:.0f} ms per call")
    except EdgepilotError as exc:
        _fail(exc)
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    out = run_dir / "eval" / ("steps+sop.json" if sop else "steps.json")
    try:  # an earlier call's arms and splits stay unless measured again
        kept = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    except ValueError:
        kept = {}
    out.write_text(json.dumps({**(kept if isinstance(kept, dict) else {}), **results}, indent=2) + "\n",
                   encoding="utf-8")
    if as_json:
        click.echo(json.dumps(results, indent=2))
