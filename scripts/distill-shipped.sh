#!/usr/bin/env bash
# The whole distillation pipeline with the oracle teacher, each stage timed: the run measured in
# docs/distill.md, and the way a model for runtime/models/adapters/ (smollm2-135m-agent) is made.
#
#   scripts/distill-shipped.sh [RUN_FOLDER] [EDGEPILOT]     (defaults: runs/shipped, .venv/bin/edgepilot)
#
# The settings are those of that run (each stage's recipe.json records them). INSTALL=1 copies the
# adapter into runtime/models/adapters/ (then `edgepilot distill eval` it, and add its ADAPTERS entry
# in runtime/models/builtin.py only if it beats the base).
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
stage synth   "$EP" distill synth   --run "$RUN"
stage collect "$EP" distill collect --run "$RUN" --per-template 2 --tasks "$RUN/synth" --reflection-share 0.3 --workers 1
# one epoch over the dataset in two runs (the shipped model was trained this way, a session at a time):
# the first 600 examples of the seeded order, then the rest on top of that adapter
stage train   "$EP" distill train   --run "$RUN" --max-examples 600 --lr 5e-4 --max-minutes 45 --threads 2
stage train2  "$EP" distill train   --run "$RUN" --init "$RUN/student/adapter" --skip-examples 600 --lr 3e-4 \
                                    --max-minutes 32 --threads 2 --out "$RUN/student2"
stage export  "$EP" distill export  --run "$RUN" --adapter "$RUN/student2/adapter"
awk 'NR > 1 { s += $2 } END { printf "pipeline: %d s (%.1f min)\n", s, s / 60 }' "$log" >&2
if [ "${INSTALL:-0}" = 1 ]; then
    dest=runtime/models/adapters
    cp "$RUN/student-lora.gguf" "$dest/smollm2-135m-agent.lora.gguf"
    cp "$RUN/student/recipe.json" "$dest/smollm2-135m-agent.recipe-1.json"
    cp "$RUN/student2/recipe.json" "$dest/smollm2-135m-agent.recipe-2.json"
    echo "installed into $dest" >&2
fi
