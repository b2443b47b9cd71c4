#!/usr/bin/env bash
# The whole distillation pipeline with the oracle teacher, each stage timed: the run measured in
# docs/distill.md, and the way a model for src/edgepilot/models/adapters/ (smollm2-135m-agent) is made.
#
#   scripts/distill-shipped.sh [RUN_FOLDER] [EDGEPILOT]     (defaults: runs/shipped, .venv/bin/edgepilot)
#   DEVICE=cuda scripts/distill-shipped.sh [RUN_FOLDER]      (on an NVIDIA GPU: the recipe of the shipped model)
#
# Without DEVICE, the CPU recipe (runs 14 and 15 in docs/distill.md, run 15 shipped: run 11's data, 6 instances a template, 2.5
# epochs of the top 10 blocks, 49.7 min on the 2-core EPYC, 50.7 on the Xeon; 92% / 50% with the SOPs on held-out instances / kinds).
# With DEVICE=cuda, the GPU recipe (run 11: pointer data, all 30 blocks, 10 epochs, 16 examples a pass;
# 6 min of training on an H200 beside two other runs). On a GPU machine without llama-cpp-python, run the collect and `distill encode`
# stages here and train there (docs/distill.md, "Training").
# The settings are those of that run (each stage's recipe.json records them). INSTALL=1 copies the
# adapter, its recipe and its eval table (RUN/eval/eval.json, if `edgepilot distill eval` ran) into
# src/edgepilot/models/adapters/ as smollm2-135m-agent, the default model: install only a student that
# beats the one shipped there (its eval table is smollm2-135m-agent.eval.json).
set -euo pipefail
RUN=${1:-runs/shipped}
EP=${2:-.venv/bin/edgepilot}
mkdir -p "$RUN"
log="$RUN/stages.tsv"
printf 'stage\tseconds\n' > "$log"
stage() {
    local name=$1; shift
    local start=$SECONDS
    echo "== $name: $*" >&2
    "$@"
    printf '%s\t%s\n' "$name" "$((SECONDS - start))" | tee -a "$log" >&2
}
# the planner points at the procedure's step (--step-refs); instances a template: 5 (run 11, GPU), 6 (run 14, CPU)
per_template=$([ "${DEVICE:-cpu}" = cuda ] && echo 5 || echo 6)
stage collect "$EP" distill collect --run "$RUN" --per-template "$per_template" --reflection-share 0.15 --sop-share 0.8 \
    --step-refs --workers 2
# 2.5 epochs in ~50 min on 2 cores (the VM's speed varies): the LoRA on the last 10 of the 30 blocks
# (--top-layers), the 20 below run once (~5 min) and every epoch runs the top 10 on their output; the gradient
# runs through each answer and the 32 prompt tokens before it (--window), the system prompt's cache is shared
# by 8 optimizer steps
if [ "${DEVICE:-cpu}" = cuda ]; then  # whole examples 16 to a pass, the gradient through every token
    stage train "$EP" distill train --run "$RUN" --epochs 10 --lr 1e-3 --grad-accum 1 --batch 16 --device cuda
else
    stage train "$EP" distill train --run "$RUN" --epochs 2.5 --lr 1e-3 --grad-accum 2 --max-minutes 56 --threads 2 \
        --top-layers 10
fi
stage export  "$EP" distill export  --run "$RUN" --merged   # + the merged f16, Q8_0 and Q4_K_M models
awk 'NR > 1 { s += $2 } END { printf "pipeline: %d s (%.1f min)\n", s, s / 60 }' "$log" >&2
if [ "${INSTALL:-0}" = 1 ]; then
    dest=src/edgepilot/models/adapters
    cp "$RUN/student-lora.gguf" "$dest/smollm2-135m-agent.lora.gguf"
    cp "$RUN/student/recipe.json" "$dest/smollm2-135m-agent.recipe.json"
    if [ -f "$RUN/eval/eval.json" ]; then  # the table, without each episode's record
        "$(dirname "$EP")/python" -c 'import json, sys; d = json.load(open(sys.argv[1])); d.pop("reports", None)
json.dump(d, open(sys.argv[2], "w"), indent=1)' "$RUN/eval/eval.json" "$dest/smollm2-135m-agent.eval.json"
    fi
    echo "installed into $dest" >&2
fi
