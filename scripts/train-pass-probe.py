"""How long one training pass (forward and backward) of SmolLM2-135M's shape takes for 1, 4, 16 and 32 examples.

    python scripts/train-pass-probe.py [cuda|cpu]

LoRA r=16 on all 7 projections of the 30 blocks, bf16 base, fp32 adapter, 900-token examples, random weights of
the real dims (the time does not depend on their values, so no model file is needed). It is what docs/distill.md
quotes for choosing `edgepilot distill train --batch`: on a GPU a pass costs about the same for 1 example as
for 16.
"""
import sys
import time

import peft
import torch
from transformers import LlamaConfig, LlamaForCausalLM

dev = sys.argv[1] if len(sys.argv) > 1 else "cuda"
cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                  num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, tie_word_embeddings=True)
torch.manual_seed(0)
model = LlamaForCausalLM(cfg).to(torch.bfloat16).to(dev)
model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, target_modules=[
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], task_type="CAUSAL_LM"))
for p in model.parameters():
    if p.requires_grad:
        p.data = p.data.float()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def step(batch, seq, answer=40):
    ids = torch.randint(0, 49152, (batch, seq), device=dev)
    labels = torch.full_like(ids, -100)
    labels[:, -answer:] = ids[:, -answer:]
    with torch.autocast(device_type="cuda" if dev == "cuda" else "cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


for batch, seq, n in ((1, 900, 10), (4, 900, 10), (16, 900, 6), (32, 900, 4)):
    step(batch, seq)
    if dev == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        step(batch, seq)
    if dev == "cuda":
        torch.cuda.synchronize()
    s = (time.perf_counter() - t) / n
    print(f"{dev} batch {batch:2} x {seq} tokens: {s*1000:7.1f} ms a step, {s/batch*1000:6.1f} ms an example, "
          f"{batch*seq/s:8.0f} tokens/s", flush=True)
if dev == "cuda":
    print("peak GPU memory", round(torch.cuda.max_memory_allocated() / 2**30, 2), "GiB")
