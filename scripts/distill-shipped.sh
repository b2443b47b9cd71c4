#!/usr/bin/env bash
# Reproduce edgepilot's shipped agent model (runtime/models/adapters/smollm2-135m-agent.lora.gguf):
# the whole distillation pipeline with the oracle teacher, each stage timed.
#
#   scripts/distill-shipped.sh [RUN_FOLDER] [EDGEPILOT]     (defaults: runs/shipped, .venv/bin/edgepilot)
#
# The settings here are the ones recorded in the shipped recipe.json. Set INSTALL=1 to copy the
# result over the shipped adapter (then `edgepilot distill eval` it before you commit it).
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
stage train   "$EP" distill train   --run "$RUN" --max-examples 600 --lr 5e-4 --max-minutes 45
stage export  "$EP" distill export  --run "$RUN"
awk 'NR > 1 { s += $2 } END { printf "pipeline: %d s (%.1f min)\n", s, s / 60 }' "$log" >&2
if [ "${INSTALL:-0}" = 1 ]; then
    dest=runtime/models/adapters
    cp "$RUN/student-lora.gguf" "$dest/smollm2-135m-agent.lora.gguf"
    cp "$RUN/student/recipe.json" "$dest/smollm2-135m-agent.recipe.json"
    echo "installed into $dest" >&2
fi
