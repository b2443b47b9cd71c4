"""The distillation pipeline on tiny data with the real libraries: collect, encode, train, export, load, eval."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgepilot.actions import parse_action
from edgepilot.agent.roles import Plan, decider_schema_for, render
from edgepilot.distill.collect import collect, done_rows, wants_sop
from edgepilot.distill.dataset import file_sha256, read_jsonl
from edgepilot.distill.teacher import fits_schema, progress_text

TEMPLATES = ["settings_wifi_toggle", "contacts_lookup_phone"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("distill-run")
    summary = collect(run, per_template=1, templates=TEMPLATES, workers=2, sop_share=0.5)
    assert summary["kept"] == 2 and summary["failed"] == []
    return run


def test_collect_keeps_trajectories_and_writes_examples(run_dir: Path) -> None:
    rows = done_rows(run_dir)
    assert sorted(r["template"] for r in rows.values()) == sorted(TEMPLATES)
    for row in rows.values():
        folder = Path(row["trajectory"])
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["teacher"] == "oracle" and meta["task"] == row["instance"]
        result = json.loads((folder / "result.json").read_text())
        assert result["success"] is True and result["status"] == "finished"
        assert (folder / "step-000.png").is_file()
    examples = read_jsonl(run_dir / "dataset.jsonl")
    kinds = {ex["kind"] for ex in examples}
    assert kinds == {"planner", "decider"}
    summary = json.loads((run_dir / "collect.json").read_text())
    assert summary["examples"] == len(examples)


def test_examples_are_the_runtime_prompts_with_the_oracles_answers(run_dir: Path) -> None:
    examples = read_jsonl(run_dir / "dataset.jsonl")
    by_instance: dict[str, list[dict]] = {}
    for ex in examples:
        by_instance.setdefault(ex["instance"], []).append(ex)
    for instance, exs in by_instance.items():
        row = done_rows(run_dir)[instance]
        steps = [json.loads(line) for line in (Path(row["trajectory"]) / "steps.jsonl").read_text().splitlines()]
        first = next(ex for ex in exs if ex["id"].endswith("/0/decider"))
        system, user, answer = first["messages"][:3]
        assert system == {"role": "system", "content": render("system")}
        assert user["content"].startswith(f"Task: {row['goal']}\n")
        assert f"Next subgoal: {row['goal']}" in user["content"]  # no planner before the first action
        assert parse_action(answer["content"]).model_dump() == steps[0]["action"]
        assert answer["train"] is True
        planners = [ex for ex in exs if ex["kind"] == "planner"]
        assert planners and all("You are the planner." in ex["messages"][1]["content"] for ex in planners)
        for ex in planners:
            Plan.model_validate_json(ex["messages"][-1]["content"])
        reflected = [ex for ex in exs if len(ex["messages"]) == 5]
        assert reflected, "decider examples carry the reflector's follow-up turn"
        assert json.loads(reflected[0]["messages"][-1]["content"])["outcome"] == "worked"


def test_collect_is_resumable(run_dir: Path) -> None:
    summary = collect(run_dir, per_template=1, templates=TEMPLATES, workers=1)
    assert summary["rolled_out_now"] == 0 and summary["kept"] == 2


def test_with_step_refs_the_planner_points_at_the_step_to_do_and_says_the_rest(tmp_path: Path) -> None:
    """``--step-refs``: where the procedure's current step, done as written, is the oracle's action, the
    planner's target is ``next step`` (the step marked ``<- now``) and the decider reads that step's words; at
    a step to read or finish on, the planner points too, and the decider, given the step's text, finishes
    with the answer it reads off the screen."""
    import re

    summary = collect(tmp_path, per_template=1, templates=["bank_check_balance", "contacts_call"], workers=1,
                      sop_share=1.0, step_refs=True)
    assert summary["kept"] == 2 and summary["with_sop"] == 2
    examples = read_jsonl(tmp_path / "dataset.jsonl")
    decider_subgoals = {ex["id"].rsplit("/", 1)[0]: re.search(r"^Next subgoal: (.*)$", ex["messages"][1]["content"],
                                                                 re.M)[1]
                        for ex in examples if ex["kind"] == "decider"}
    pointed, said = [], []
    for ex in (ex for ex in examples if ex["kind"] == "planner"):
        subgoal = json.loads(ex["messages"][-1]["content"])["subgoal"]
        now = re.search(r"^(\d+)\. (.*) <- now$", ex["messages"][1]["content"], re.M)
        assert now is not None  # every planner prompt carries the procedure
        if subgoal == "next step":
            words = decider_subgoals[ex["id"].rsplit("/", 1)[0]]
            assert words.split()[0] in ("tap", "type") or words == now[2], (words, now[2])
            pointed.append(now[2])
        else:
            said.append((now[2], subgoal))
    assert any(text.startswith('Tap "Call"') for text in pointed) and any("Log in" in t for t in pointed)
    read = next(ex for ex in examples if ex["kind"] == "decider" and ex["template"] == "bank_check_balance"
                and decider_subgoals[ex["id"].rsplit("/", 1)[0]].startswith("Read the balance"))
    answer = parse_action(read["messages"][2]["content"])
    assert answer.type == "finish" and answer.answer.startswith("$")
    assert not [s for _, s in said if s.startswith("finish")], said


def test_without_step_refs_the_planner_says_every_step(run_dir: Path) -> None:
    plans = [json.loads(ex["messages"][-1]["content"]) for ex in read_jsonl(run_dir / "dataset.jsonl")
             if ex["kind"] == "planner"]
    assert plans and not any(p["subgoal"] == "next step" for p in plans)


def test_sop_share_is_a_stable_draw() -> None:
    ids = [f"t#{i}" for i in range(400)]
    share = sum(wants_sop(i, 0.5) for i in ids) / len(ids)
    assert 0.4 < share < 0.6
    assert [wants_sop(i, 0.5) for i in ids] == [wants_sop(i, 0.5) for i in ids]
    assert not any(wants_sop(i, 0.0) for i in ids)


def test_progress_fits_the_planners_bound() -> None:
    done = [f'tap "Some rather long label {i}"' for i in range(8)]
    text = progress_text(done)
    assert len(text) <= 60 and text.endswith(done[-1])
    assert progress_text([]) == "nothing yet"


def test_teacher_answers_outside_the_grammar_are_flagged(served) -> None:
    phone, _, device = served
    obs = device.observe()
    schema = decider_schema_for(obs)
    interactive = schema["$defs"]["Tap"]["properties"]["target"]["enum"]
    dead = next(i for i in range(len(obs.elements)) if i not in interactive)
    assert fits_schema(parse_action({"type": "tap", "target": interactive[0]}), schema)
    assert not fits_schema(parse_action({"type": "tap", "target": dead}), schema)


def test_the_deciding_values_of_an_answer_are_marked() -> None:
    from edgepilot.distill.encode import deciding_spans

    def values(text: str) -> list[str]:
        data = text.encode("utf-8")
        return [data[a:b].decode("utf-8") for a, b in deciding_spans(text)]

    plan = '{"progress": "open Bank, type \\"0148\\" into PIN", "subgoal": "tap \\"Log in\\"", "memory": ""}'
    assert values(plan) == ['"tap \\"Log in\\""']
    assert values('{"type": "type", "text": "héllo", "target": 5, "clear": false}') == [
        '"type"', '"héllo"', "5", "false"]
    assert values('{"outcome": "worked", "note": "it opened"}') == ['"worked"']
    assert values("not json") == values('{"progress": "x"') == values("[1, 2]") == []


def test_a_files_hash_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 3000)
    assert file_sha256(path) == file_sha256(path) == hashlib.sha256(b"a" * 3000).hexdigest()
    path.write_bytes(b"b" * 3001)
    assert file_sha256(path) == hashlib.sha256(b"b" * 3001).hexdigest()


def test_encoding_is_llama_cpps_prompt_plus_answer(run_dir: Path) -> None:
    pytest.importorskip("llama_cpp")
    from edgepilot.distill.encode import IGNORE, ChatEncoder
    from edgepilot.models.builtin import builtin_path

    encoder = ChatEncoder(builtin_path())
    for example in read_jsonl(run_dir / "dataset.jsonl")[:6]:
        enc = encoder.encode(example)
        assert len(enc.input_ids) == len(enc.labels)
        messages = example["messages"]
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            prompt = encoder.prompt_ids(messages[:i])  # what llama-cpp-python evaluates at run time
            answer = encoder.tokenize(m["content"]) + [encoder.eos_id]
            assert enc.input_ids[:len(prompt)] == prompt
            assert enc.input_ids[len(prompt):len(prompt) + len(answer)] == answer
            assert enc.labels[len(prompt):len(prompt) + len(answer)] == answer
        trained = [t for t in enc.labels if t != IGNORE]
        assert trained.count(encoder.eos_id) == sum(m["role"] == "assistant" for m in messages)
        assert len(enc.deciding) == len(enc.labels) and any(enc.deciding)
        assert all(t != IGNORE for d, t in zip(enc.deciding, enc.labels, strict=True) if d)


def test_the_encoded_copy_is_read_back_without_llama_cpp_and_redone_when_the_dataset_changes(
        run_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """``distill encode`` keeps each example's ids beside the dataset; ``train`` reads that copy, so a run folder
    trains where llama-cpp-python is not (a GPU box). A copy of another dataset is not used."""
    import shutil
    import sys

    pytest.importorskip("llama_cpp")
    from click.testing import CliRunner

    from edgepilot.cli.main import main
    from edgepilot.distill.encode import ChatEncoder, encode_dataset_file, encoded_path, read_encoded
    from edgepilot.models.builtin import builtin_path

    missing = CliRunner().invoke(main, ["distill", "encode", "--run", str(tmp_path)])
    assert missing.exit_code == 1 and "run `edgepilot distill collect` first" in missing.output
    dataset = tmp_path / "dataset.jsonl"
    shutil.copy(run_dir / "dataset.jsonl", dataset)
    result = CliRunner().invoke(main, ["distill", "encode", "--run", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["examples"] == len(read_jsonl(dataset))  # llama.cpp logs to stderr
    made = encode_dataset_file(dataset, builtin_path())
    rows = read_jsonl(dataset)
    assert encoded_path(dataset).is_file() and made.rows == len(rows) == len(made.examples)
    fresh = ChatEncoder(builtin_path())
    assert [(k, e) for k, e in made.examples] == [(r["kind"], fresh.encode(r)) for r in rows]
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now fails
        again = encode_dataset_file(dataset, builtin_path())
        assert again.examples == made.examples and again.dataset_sha256 == file_sha256(dataset)
        dataset.write_text(dataset.read_text().splitlines()[0] + "\n")  # another dataset: the copy is stale
        assert read_encoded(dataset, builtin_path()) is None
        with pytest.raises(Exception, match="llama-cpp-python"):
            encode_dataset_file(dataset, builtin_path())
    assert len(encode_dataset_file(dataset, builtin_path()).examples) == 1


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> dict:
    """A few LoRA steps on tiny examples and the real GGUF export of the adapter."""
    pytest.importorskip("llama_cpp")
    for name in ("torch", "transformers", "peft", "gguf", "accelerate"):
        pytest.importorskip(name)
    from edgepilot.distill.export import export_lora
    from edgepilot.distill.train import TrainConfig, train
    from edgepilot.models.builtin import builtin_path

    tmp = tmp_path_factory.mktemp("student")
    rows = [{"id": f"tiny#0/{i}/{kind}", "kind": kind, "messages": [
        {"role": "system", "content": "You operate a phone."},
        {"role": "user", "content": f"Task: open Settings\nScreen:\n[{i}] TextView \"Settings\" (clickable)\n{kind}"},
        {"role": "assistant", "content": json.dumps({"type": "tap", "target": i}, separators=(", ", ": ")),
         "train": True}]} for i in range(2) for kind in ("planner", "decider")]
    dataset = tmp / "dataset.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = train(dataset, tmp / "student", base_gguf=builtin_path(),
                   cfg=TrainConfig(rank=4, alpha=8, grad_accum=1, max_examples=4, seed=1))
    lora = tmp / "student-lora.gguf"
    exported = export_lora(tmp / "student" / "adapter", lora)
    return {"tmp": tmp, "recipe": recipe, "lora": lora, "exported": exported, "base": builtin_path()}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_train_records_its_recipe(student: dict) -> None:
    recipe = student["recipe"]
    assert recipe["steps"] == 2 and len(recipe["loss"]["curve"]) == 2  # two steps, each one step's two examples
    assert recipe["dataset"]["trained_on"] == 4
    assert len(recipe["dataset"]["sha256"]) == 64 and len(recipe["base_model"]["sha256"]) == 64
    assert recipe["hyper_parameters"]["rank"] == 4 and recipe["seed"] == 1
    assert recipe["frozen_dtype"] in ("bfloat16", "float32")  # whichever multiplies faster here
    adapter = student["tmp"] / "student" / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "base" / "config.json").is_file()
    log = [json.loads(line) for line in (student["tmp"] / "student" / "train-log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(0 < step["decision_loss"] for step in log)  # the action's values, apart
    assert recipe["decision_loss"]["first"] == pytest.approx(log[0]["decision_loss"], abs=1e-4)
    assert recipe["hyper_parameters"]["decision_weight"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_training_goes_on_from_an_earlier_adapter_where_it_stopped(student: dict) -> None:
    from edgepilot.distill.train import TrainConfig, train
    from edgepilot.errors import ConfigError

    tmp = student["tmp"]
    dataset = tmp / "dataset.jsonl"
    with pytest.raises(ConfigError, match="leaves no examples"):
        train(dataset, tmp / "none", base_gguf=student["base"], cfg=TrainConfig(skip_examples=4, seed=1))
    with pytest.raises(ConfigError, match="neither a GGUF LoRA nor a folder"):
        train(dataset, tmp / "none", base_gguf=student["base"], cfg=TrainConfig(init_adapter=str(tmp)))
    first = student["recipe"]["loss"]["curve"]
    recipe = train(dataset, tmp / "resumed", base_gguf=student["base"],
                   cfg=TrainConfig(rank=4, alpha=8, grad_accum=1, skip_examples=2, seed=1, lr=0.0,
                                   init_adapter=str(tmp / "student" / "adapter")))
    assert recipe["dataset"]["trained_on"] == 2 and recipe["hyper_parameters"]["init_adapter"]
    # the same seeded order: the resumed run's one step is the earlier run's second, on the trained adapter
    # (lr 0: nothing moves, so its loss is that step's loss after the earlier run's updates, below the first)
    assert recipe["steps"] == 1 and recipe["loss"]["curve"][0] < first[1] + 1e-3


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_training_goes_on_from_a_gguf_lora_with_the_weights_it_was_exported_from(student: dict) -> None:
    from safetensors.torch import load_file

    from edgepilot.distill.train import TrainConfig, _libraries, load_base, lora_from_gguf, train
    from edgepilot.errors import ConfigError
    from edgepilot.models.merge import read_lora

    torch, _, peft = _libraries()
    tmp = student["tmp"]
    lora = read_lora(student["lora"])
    assert lora.architecture == "llama" and lora.alpha == 8
    with pytest.raises(ConfigError, match="for a qwen2 model"):  # its rows would be read in the wrong order
        lora_from_gguf(None, dataclasses.replace(lora, architecture="qwen2"), peft, torch)
    model = lora_from_gguf(load_base(student["base"], "cpu", torch), lora, peft, torch)
    imported = {k.replace(".default.", "."): v for k, v in model.state_dict().items() if ".lora_" in k}
    trained = load_file(str(tmp / "student" / "adapter" / "adapter_model.safetensors"))
    assert sorted(imported) == sorted(trained) and len(trained) == 2 * 7 * 30
    q_b = "base_model.model.model.layers.5.self_attn.q_proj.lora_B.weight"
    assert trained[q_b].abs().max() > 1e-5  # trained rows, so a wrong row order would show
    for key, value in trained.items():  # the GGUF holds f16: the weights as f16 rounds them, row order included
        assert torch.equal(imported[key], value.half().float()), key
    assert model.peft_config["default"].lora_alpha == 8 and model.peft_config["default"].r == 4
    # and the same model: the folder's adapter rounded to f16 computes the same logits
    folder = peft.PeftModel.from_pretrained(load_base(student["base"], "cpu", torch),
                                            str(tmp / "student" / "adapter"))
    ids = torch.tensor([[1, 9690, 198, 2683, 28, 1485, 4658, 30, 20, 27]])
    with torch.no_grad():
        for name, p in folder.named_parameters():
            if ".lora_" in name:
                p.copy_(p.half().float())
        assert torch.equal(model.eval()(input_ids=ids).logits, folder.eval()(input_ids=ids).logits)

    # `train --init LORA.gguf` (lr 0: nothing moves, so the adapter it saves is the GGUF's)
    cfg = TrainConfig(rank=4, alpha=8, grad_accum=1, skip_examples=2, seed=1, lr=0.0, init_adapter=str(student["lora"]))
    recipe = train(tmp / "dataset.jsonl", tmp / "from-gguf", base_gguf=student["base"], cfg=cfg)
    assert recipe["steps"] == 1 and len(recipe["init_adapter"]["sha256"]) == 64
    assert (recipe["init_adapter"]["rank"], recipe["init_adapter"]["alpha"]) == (4, 8)
    saved = load_file(str(tmp / "from-gguf" / "adapter" / "adapter_model.safetensors"))
    assert all(torch.equal(saved[key].float(), imported[key]) for key in trained)


def test_gradient_windows_cover_each_answer_and_the_tokens_before_it() -> None:
    from edgepilot.distill.encode import IGNORE as X
    from edgepilot.distill.train import chunks

    labels = [X] * 10 + [5, 6] + [X] * 6 + [7] + [X] * 2  # two answers: tokens 10-11 and 18
    assert chunks(labels, 2, 3) == [(2, 7, False), (7, 12, True), (12, 15, False), (15, 19, True)]
    assert chunks(labels, 2, None) == [(2, 19, True)]
    assert chunks(labels, 2, 10) == [(2, 19, True)]  # windows that reach the answer before make one span
    assert chunks(labels, 18, 3) == []  # nothing to predict after the start


def _item_rows(items: tuple[int, ...], *, reflect: bool = False) -> list[dict]:
    """A planner and a decider example a step, each step opening one item of a 12-item list (with the
    reflector's follow-up turn when ``reflect``)."""
    screen = "\n".join(f'[{i}] TextView "Item number {i}" (clickable)' for i in range(12))
    rows = []
    for item in items:
        for kind in ("planner", "decider"):
            messages = [
                {"role": "system", "content": "You operate a phone, one action at a time."},
                {"role": "user", "content": f"Task: open item {item}\nScreen:\n{screen}\nYou are the {kind}."},
                {"role": "assistant", "content": f'{{"type": "tap", "target": {item}}}', "train": True}]
            if reflect:
                messages += [
                    {"role": "user", "content": f"I did that action. The screen changed: item {item} opened. "
                                                "Did it help?"},
                    {"role": "assistant", "content": '{"outcome": "worked", "note": ""}', "train": True}]
            rows.append({"id": f"long#0/{item}/{kind}", "kind": kind, "messages": messages})
    return rows


def _training_libraries():
    """torch, or a skip when a library that training needs is missing."""
    pytest.importorskip("llama_cpp")
    for name in ("torch", "transformers", "peft", "gguf", "accelerate"):
        pytest.importorskip(name)
    import torch

    return torch


@pytest.mark.slow
def test_the_base_is_read_from_its_dequantized_copy_and_a_damaged_copy_is_replaced(monkeypatch, tmp_path,
                                                                                     capsys) -> None:
    torch = _training_libraries()
    from edgepilot.distill.base import BASE_CACHE_ENV, _keep, base_cache, load_base
    from edgepilot.models.builtin import builtin_path

    ids = torch.tensor([[1, 2, 3, 400, 5000, 12]])
    cached = base_cache(builtin_path())
    load_base(builtin_path(), "cpu", torch, dtype=torch.float32)  # the GGUF the first time in a session
    copy = load_base(builtin_path(), "cpu", torch, dtype=torch.bfloat16)  # the copy, which the next lines damage
    assert copy.config._name_or_path == str(cached) and "does not load" not in capsys.readouterr().err
    size = (cached / "model.safetensors").stat().st_size
    with open(cached / "model.safetensors", "r+b") as f:
        f.truncate(size // 2)
    read_again = load_base(builtin_path(), "cpu", torch, dtype=torch.bfloat16)  # the damaged copy: the GGUF
    assert read_again.config._name_or_path != str(cached)
    assert (cached / "model.safetensors").stat().st_size == size
    assert "does not load" in capsys.readouterr().err
    for a, b in ((copy.state_dict(), read_again.state_dict()), (dict(copy.named_buffers()),
                                                               dict(read_again.named_buffers()))):
        assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
    assert copy.model.embed_tokens.weight.dtype == torch.bfloat16
    assert {b.dtype for b in copy.buffers()} == {torch.float32}  # the rotary frequencies
    with torch.no_grad():
        assert torch.equal(copy(ids).logits, read_again(ids).logits)
    (tmp_path / "a-file").write_text("")
    _keep(copy, tmp_path / "a-file" / "copy")  # a cache that cannot be written only warns
    assert "edgepilot: could not keep a dequantized copy" in capsys.readouterr().err
    monkeypatch.setenv(BASE_CACHE_ENV, "off")
    assert base_cache(builtin_path()) is None


def test_keeping_a_copy_replaces_one_cut_short_keeps_a_whole_one_and_leaves_nothing_behind(tmp_path: Path) -> None:
    from edgepilot.distill.base import _keep

    class Saves:  # stands in for a transformers model: only its save_pretrained is used
        def __init__(self, text: str) -> None:
            self.text = text

        def save_pretrained(self, path: str, safe_serialization: bool) -> None:
            (Path(path) / "config.json").write_text(self.text)

    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "model.safetensors").write_text("half")  # a copy whose deletion was cut short
    _keep(Saves("first"), folder)
    assert (folder / "config.json").read_text() == "first" and not (folder / "model.safetensors").exists()
    _keep(Saves("second"), folder)  # another process kept one first: that one stays
    assert (folder / "config.json").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no partial folders left


def _adapted_base(top: int | None = None):
    """The real base model with a LoRA (r=4) that changes its outputs (random B), on every block or the top ones."""
    import peft
    import torch

    from edgepilot.distill.train import TARGET_MODULES, load_base
    from edgepilot.models.builtin import builtin_path

    torch.manual_seed(0)
    model = load_base(builtin_path(), "cpu", torch)
    blocks = model.config.num_hidden_layers
    model = peft.get_peft_model(model, peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=TARGET_MODULES, task_type="CAUSAL_LM",
        layers_to_transform=list(range(blocks - top, blocks)) if top else None))
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.data = p.data.float()
            if "lora_B" in name:
                p.data.normal_(0, 0.02)
    return model


def _whole_loss(model, examples) -> float:
    """The summed loss of the examples, each run whole through the model."""
    import torch

    from edgepilot.distill.encode import IGNORE

    total = 0.0
    for e in examples:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=torch.tensor([e.input_ids])).logits[0].float()
        total += torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(e.labels[1:]), ignore_index=IGNORE,
                                                   reduction="sum").item()
    return total


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_windowed_training_computes_the_loss_of_the_whole_examples() -> None:
    """Cached prefixes and windows change where the gradient flows, never the forward values."""
    torch = _training_libraries()

    from edgepilot.distill.encode import IGNORE, ChatEncoder
    from edgepilot.distill.loss import (
        _group_loss,
        _prefix_cache,
        common_prefix,
        group_by_step,
    )
    from edgepilot.models.builtin import builtin_path

    encoder = ChatEncoder(builtin_path())
    examples = [encoder.encode(r) for r in _item_rows((7,), reflect=True)]
    [group] = group_by_step(examples)
    model = _adapted_base()
    whole = _whole_loss(model, examples)
    common = common_prefix(examples)
    assert 0 < len(common) < min(len(e.input_ids) for e in examples)
    for window, prefix in ((None, None), (4, None), (4, _prefix_cache(model, common, "cpu", torch))):
        model.zero_grad()
        got = _group_loss(model, group, 1, "cpu", torch, window=window, prefix=prefix)
        assert got == pytest.approx(whole, rel=2e-2)
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads)
    plain = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    deciding = [0.0, 0]  # the deciding tokens weigh more in the gradient, not in the loss reported
    got = _group_loss(model, group, 1, "cpu", torch, window=4, prefix=_prefix_cache(model, common, "cpu", torch),
                      decision_weight=5.0, deciding=deciding)
    assert got == pytest.approx(whole, rel=2e-2)
    marked = sum(d for e in examples for d, t in zip(e.deciding, e.labels, strict=True) if t != IGNORE)
    assert deciding[1] == marked > 0 and 0 < deciding[0] < got
    weighted = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(not torch.allclose(a, b) for a, b in zip(plain, weighted, strict=True))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_padded_batch_computes_each_examples_own_loss() -> None:
    """--batch: examples of different lengths padded into one pass give the sum of their losses alone, and the
    gradient reaches the adapter; deciding tokens are counted and weighed as in the one-at-a-time path."""
    torch = _training_libraries()

    from edgepilot.distill.encode import IGNORE, ChatEncoder
    from edgepilot.distill.loss import _batch_loss
    from edgepilot.models.builtin import builtin_path

    encoder = ChatEncoder(builtin_path())
    examples = [encoder.encode(r) for r in _item_rows((7,), reflect=True) + _item_rows((3,))]
    assert len({len(e.input_ids) for e in examples}) > 1  # padding happens
    model = _adapted_base()
    whole = _whole_loss(model, examples)
    deciding = [0.0, 0]
    got = _batch_loss(model, examples, 1, "cpu", torch, decision_weight=5.0, deciding=deciding)
    assert got == pytest.approx(whole, rel=2e-2)
    marked = sum(d for e in examples for d, t in zip(e.deciding, e.labels, strict=True) if t != IGNORE)
    assert deciding[1] == marked > 0 and 0 < deciding[0] < got
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_top_blocks_fed_the_frozen_blocks_output_compute_the_whole_models_loss() -> None:
    """With the adapter on the top blocks only, the blocks below run once (frozen_blocks) and training runs the
    top ones on their output: same loss as the whole model, gradient on the adapter, the model whole again after."""
    torch = _training_libraries()

    from edgepilot.distill.encode import ChatEncoder
    from edgepilot.distill.loss import (
        _group_loss,
        _inner,
        _prefix_cache,
        common_prefix,
        frozen_blocks,
        group_by_step,
        run_blocks,
    )
    from edgepilot.models.builtin import builtin_path

    examples = [ChatEncoder(builtin_path()).encode(r) for r in _item_rows((3, 7))]
    groups = group_by_step(examples)
    model = _adapted_base(top=2)
    blocks = model.config.num_hidden_layers
    before = _whole_loss(model, examples)
    common = common_prefix(examples)
    states = frozen_blocks(model, groups, common, blocks - 2, "cpu", torch)
    assert {id(e) for e in examples} == set(states)
    assert all(states[id(e)].shape == (len(e.input_ids), model.config.hidden_size) for e in examples)
    with run_blocks(model, blocks - 2, blocks):
        assert len(_inner(model).layers) == 2 and model.config.num_hidden_layers == 2
        prefix = _prefix_cache(model, common, "cpu", torch, states[id(examples[0])])
        got = sum(_group_loss(model, g, 1, "cpu", torch, window=4, prefix=prefix, states=states) for g in groups)
    assert got == pytest.approx(before, rel=2e-2)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    assert len(_inner(model).layers) == blocks and model.config.num_hidden_layers == blocks
    assert [layer.self_attn.layer_idx for layer in _inner(model).layers] == list(range(blocks))
    assert _whole_loss(model, examples) == pytest.approx(before, rel=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_training_the_top_blocks_only_gives_an_adapter_llama_cpp_loads(student: dict) -> None:
    from edgepilot.distill.export import check_loads, export_lora
    from edgepilot.distill.train import TrainConfig, train
    from edgepilot.errors import ConfigError

    tmp = student["tmp"]
    dataset = tmp / "dataset.jsonl"
    with pytest.raises(ConfigError, match="also adapts lower blocks"):  # an all-block adapter cannot go on so
        train(dataset, tmp / "none", base_gguf=student["base"],
              cfg=TrainConfig(top_layers=4, init_adapter=str(tmp / "student" / "adapter")))
    seen = []
    recipe = train(dataset, tmp / "top", base_gguf=student["base"],
                   cfg=TrainConfig(rank=4, alpha=8, grad_accum=1, max_examples=4, seed=1, top_layers=4),
                   prepare=lambda done, total: seen.append((done, total)))
    assert recipe["hyper_parameters"]["top_layers"] == 4 and recipe["steps"] == 2
    assert seen[-1] == (2, 2) and recipe["seconds"]["frozen_blocks"] > 0  # the two steps' groups, once
    config = json.loads((tmp / "top" / "adapter" / "adapter_config.json").read_text())
    blocks = json.loads((tmp / "top" / "adapter" / "base" / "config.json").read_text())["num_hidden_layers"]
    assert config["layers_to_transform"] == list(range(blocks - 4, blocks))
    lora = tmp / "top-lora.gguf"
    export_lora(tmp / "top" / "adapter", lora)
    assert check_loads(student["base"], lora)["loaded"]
    with pytest.raises(ConfigError, match="the base model has"):
        train(dataset, tmp / "none", base_gguf=student["base"], cfg=TrainConfig(top_layers=blocks + 1))
    # --batch 2 (the GPU path): whole examples two to a pass, no frozen-block pass, the same kind of adapter
    recipe = train(dataset, tmp / "batched", base_gguf=student["base"],
                   cfg=TrainConfig(rank=4, alpha=8, grad_accum=1, max_examples=4, seed=1, top_layers=4, batch=2))
    assert recipe["steps"] == 2 and recipe["dataset"]["trained_on"] == 4 and recipe["seconds"]["frozen_blocks"] == 0
    assert recipe["loss"]["first"] > 0 and recipe["hyper_parameters"]["batch"] == 2
    export_lora(tmp / "batched" / "adapter", tmp / "batched-lora.gguf")
    assert check_loads(student["base"], tmp / "batched-lora.gguf")["loaded"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_export_gives_a_gguf_lora_that_llama_cpp_applies(student: dict) -> None:
    from edgepilot.distill.export import check_loads

    lora = student["lora"]
    assert student["exported"]["bytes"] > 100_000
    assert lora.read_bytes()[:4] == b"GGUF"
    assert check_loads(student["base"], lora)["loaded"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_merged_model_computes_what_the_base_with_the_adapter_does_and_quantizes(student: dict) -> None:
    import gguf
    import llama_cpp
    import numpy as np

    from edgepilot.distill.export import quantize
    from edgepilot.errors import ConfigError
    from edgepilot.models.merge import merge_lora

    tmp = student["tmp"]
    f16 = tmp / "merged-f16.gguf"
    with pytest.raises(ConfigError, match="cannot read .*dataset.jsonl as GGUF"):
        merge_lora(student["base"], tmp / "dataset.jsonl", f16)
    with pytest.raises(ConfigError, match="not a GGUF LoRA"):
        merge_lora(student["lora"], student["base"], f16)  # the two swapped
    merged = merge_lora(student["base"], student["lora"], f16)
    adapted = [t for t in gguf.GGUFReader(str(student["lora"])).tensors if t.name.endswith(".lora_a")]
    assert merged["tensors_merged"] == len(adapted) > 0

    def read(path: Path, lora: Path | None = None) -> tuple[list[int], np.ndarray, str]:
        llm = llama_cpp.Llama(str(path), lora_path=str(lora) if lora else None, n_ctx=256, logits_all=True,
                              verbose=False)
        tokens = llm.tokenize(b'Task: open Settings\nScreen: [3] TextView "Settings"', add_bos=True)
        llm.eval(tokens)
        return tokens, np.array(llm.scores[llm.n_tokens - 1]), llm.metadata.get("tokenizer.chat_template")

    tokens, want, template = read(student["base"], student["lora"])
    for path, least in ((f16, 0.995), (quantize(f16, tmp / "merged-q8_0.gguf", "q8_0")["gguf"], 0.99),
                        (quantize(f16, tmp / "merged-q4_k_m.gguf", "q4_k_m")["gguf"], 0.9)):
        got_tokens, got, got_template = read(Path(path))
        assert got_tokens == tokens and got_template == template  # the base's tokenizer and chat template
        assert np.corrcoef(got, want)[0, 1] > least, path
    assert (tmp / "merged-q4_k_m.gguf").stat().st_size < (tmp / "merged-q8_0.gguf").stat().st_size < f16.stat().st_size


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eval_runs_the_student_with_its_adapter(student: dict) -> None:
    from edgepilot.distill.evaluate import evaluate

    out = student["tmp"] / "eval"
    summary = evaluate(lora=student["lora"], arms=["student", "teacher"], splits=["test"],
                       templates=["settings_dark_theme"], max_steps=1, out=out)
    assert {(r["arm"], r["split"]) for r in summary["table"]} == {("student", "test"), ("teacher", "test")}
    assert all(r["episodes"] == 1 for r in summary["table"])
    saved = json.loads((out / "eval.json").read_text())
    assert saved["reports"]["student/test"]["lora"] == str(student["lora"])
    assert saved["reports"]["student/test"]["results"][0]["steps"] == 1
    # a later eval in the same folder adds its arms to the earlier ones (same adapter, same model)
    summary = evaluate(lora=student["lora"], arms=["base", "student-vote"], splits=["test"], vote=2,
                       templates=["settings_dark_theme"], max_steps=1, out=out, sop="both")
    assert {r["arm"] for r in summary["table"]} == {"student", "teacher", "base", "student-vote",
                                                    "base+sop", "student-vote+sop"}
    saved = json.loads((out / "eval.json").read_text())
    # with sop="both" the model arms run again, each following the SOP its goal retrieves
    assert saved["reports"]["base+sop/test"]["sops"] == {"settings_dark_theme#0": "settings-dark-theme"}
    assert "sops" not in saved["reports"]["base/test"]
    voted = saved["reports"]["student-vote/test"]
    assert voted["vote"] == 2 and saved["reports"]["student/test"]["vote"] == 1
    assert "decider-sample" in voted["roles"] and saved["reports"]["base/test"]["lora"] is None
    # another adapter: the earlier student reports no longer hold
    other = student["tmp"] / "other-lora.gguf"
    other.write_bytes(student["lora"].read_bytes() + b"\0")
    summary = evaluate(lora=other, arms=["teacher"], splits=["test"], templates=["settings_dark_theme"],
                       max_steps=1, out=out)
    assert {r["arm"] for r in summary["table"]} == {"teacher", "base", "base+sop"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_collect_runs_as_ray_tasks_on_a_local_cluster(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        summary = collect(tmp_path, per_template=1, templates=TEMPLATES, ray_address=context.address_info["address"])
    finally:
        ray.shutdown()
    assert summary["kept"] == 2 and summary["examples"] > 0
    assert sorted(r["template"] for r in done_rows(tmp_path).values()) == sorted(TEMPLATES)


def test_self_reflection_masks_the_wrong_step_and_trains_its_diagnosis_and_correction(tmp_path: Path) -> None:
    summary = collect(tmp_path, per_template=1, templates=["contacts_delete"], reflection_share=1.0, workers=1)
    rows = list(done_rows(tmp_path).values())
    wrong = next(r for r in rows if r["inject_at"] is not None)
    assert wrong["success"] and wrong["injected"] == 1 and summary["self_reflection"] == 1
    examples = [ex for ex in read_jsonl(tmp_path / "dataset.jsonl") if "+wrong@" in ex["instance"]]
    at = wrong["inject_at"]
    injected = next(ex for ex in examples if ex["id"].endswith(f"/{at}/decider"))
    answers = [m for m in injected["messages"] if m["role"] == "assistant"]
    assert answers[0]["train"] is False  # the wrong tap
    assert answers[1]["train"] is True and json.loads(answers[1]["content"])["outcome"] == "wrong_screen"
    corrected = next(ex for ex in examples if ex["id"].endswith(f"/{at + 1}/decider"))
    assert json.loads(corrected["messages"][2]["content"]) == {"type": "key", "key": "back"}
    assert "-> wrong_screen" in corrected["messages"][1]["content"]
    planner = next(ex for ex in examples if ex["id"].endswith(f"/{at + 1}/planner"))
    assert json.loads(planner["messages"][-1]["content"])["subgoal"].startswith("go back")


class _TeacherServer:
    """An OpenAI-compatible server whose 'model' opens the app the task names, then finishes."""

    def __init__(self) -> None:
        import re
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                first = body["messages"][1]["content"]
                if "You are the planner." in prompt:
                    answer = {"progress": "opened the app", "subgoal": "finish", "memory": ""}
                elif "You are the reflector." in prompt:
                    answer = {"outcome": "worked", "note": ""}
                elif "App: com.android.launcher3" in first:
                    app = re.search(r"(?:Open the (\w+) app|Launch (\w+)|Go to (\w+))", first)
                    answer = {"type": "open_app", "app": next(g for g in app.groups() if g)}
                else:
                    answer = {"type": "finish", "status": "success", "answer": None}
                text = json.dumps({"choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": json.dumps(answer)}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1#teacher"

    def close(self) -> None:
        self.server.shutdown()


def test_a_model_behind_a_url_can_be_the_teacher(tmp_path: Path) -> None:
    pytest.importorskip("httpx")
    server = _TeacherServer()
    try:
        summary = collect(tmp_path, per_template=1, templates=["system_open_app"], teacher_url=server.url, workers=1)
    finally:
        server.close()
    assert summary["kept"] == 1
    row = next(iter(done_rows(tmp_path).values()))
    meta = json.loads((Path(row["trajectory"]) / "meta.json").read_text())
    assert meta["teacher"].startswith("url:") and meta["model"] == server.url
    examples = read_jsonl(tmp_path / "dataset.jsonl")
    assert json.loads(examples[0]["messages"][2]["content"])["type"] == "open_app"


def test_synth_derives_tasks_that_the_oracle_confirms_and_no_test_kinds(tmp_path: Path) -> None:
    from edgepilot.distill.synth import synthesize
    from edgepilot.sim.tasks.suite import load_templates

    report = synthesize(tmp_path, walks=21, depth=6, seed=0)
    assert report["kept"] >= 3
    templates = load_templates([tmp_path / "synth"])  # valid task files, ids unique against the built-in ones
    synthesized = [t for t in templates.values() if t.id.startswith("synth_")]
    assert len(synthesized) == report["kept"]
    held_out = {c.path for t in templates.values() if t.split == "test" for c in t.check}
    assert not any(c.path in held_out for t in synthesized for c in t.check)
    summary = collect(tmp_path / "run", per_template=1, templates=[synthesized[0].id], task_dirs=[tmp_path / "synth"],
                      workers=1)
    assert summary["kept"] == 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_step_accuracy_answers_held_out_prompts_with_the_adapter(student: dict, tmp_path: Path) -> None:
    from edgepilot.distill.evaluate import step_accuracy

    collect(tmp_path, per_template=1, templates=["settings_dark_theme"], split="test", workers=1, sop_share=0.0)
    assert json.loads((tmp_path / "collect.json").read_text())["split"] == "test"
    result = step_accuracy(tmp_path / "dataset.jsonl", lora=student["lora"], limit=2)
    assert sum(result["steps"].values()) == 2 and result["lora"] == str(student["lora"])
    from edgepilot.distill.train import TrainConfig, train
    from edgepilot.errors import ConfigError

    with pytest.raises(ConfigError, match="held-out"):
        train(tmp_path / "dataset.jsonl", tmp_path / "never", base_gguf=student["base"], cfg=TrainConfig())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_eval_steps_on_the_train_split_reads_the_runs_own_dataset(run_dir: Path, student: dict) -> None:
    from click.testing import CliRunner

    from edgepilot.cli.main import main

    runner = CliRunner()
    result = runner.invoke(main, ["distill", "eval-steps", "--run", str(run_dir), "--lora", str(student["lora"]),
                                  "--arm", "student", "--split", "train", "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert list(report) == ["student/train"] and report["student/train"]["dataset"] == str(run_dir / "dataset.jsonl")
    assert sum(report["student/train"]["steps"].values()) == 2
    assert not (run_dir / "heldout" / "train").exists()
    saved = run_dir / "eval" / "steps.json"
    saved.write_text(json.dumps({"base/test": {"kept": True}, **report}))  # as if an earlier call had measured it
    again = runner.invoke(main, ["distill", "eval-steps", "--run", str(run_dir), "--lora", str(student["lora"]),
                                 "--arm", "student", "--split", "train", "--limit", "1", "--json"])
    assert again.exit_code == 0, again.output
    merged = json.loads(saved.read_text())
    assert merged["base/test"] == {"kept": True} and sum(merged["student/train"]["steps"].values()) == 1
    refused = runner.invoke(main, ["distill", "eval-steps", "--run", str(run_dir), "--split", "train", "--sop"])
    assert refused.exit_code != 0 and "--sop does not apply to --split train" in refused.output
