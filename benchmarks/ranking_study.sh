#!/usr/bin/env bash
# Which sampler ranks better, and is the reference long enough? (benchmarks/README.md)
#
#   bash benchmarks/ranking_study.sh [OUT]      after `snakemake --cores all` (the default run)
#
# Reads the default run's data, supernets and reference; trains, with the default config otherwise:
#   - the per-budget supernets with `sampling: depth` (2M, 4M),
#   - the supernet shared by both budgets with layer-wise sampling (`per_budget: false`: how the
#     pipeline trained before issue 8),
#   - the reference again at 600 steps per stand-alone run instead of 200,
# then ranks every supernet against both references (Kendall tau, Spearman rho, bootstrap
# intervals, the seed-to-seed ceiling). Two jobs at a time; every job is a `vitnas` stage.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/ranking_study}
RUN=results/default
DATA=$RUN/data
CFG=config/config.yaml
mkdir -p "$OUT"

train() {  # name, JSON override, extra flags
  local name=$1 over=$2; shift 2
  vitnas train-supernet --config $CFG "$over" --data $DATA "$@" --weights "$OUT/$name/supernet.safetensors" \
    --train-log "$OUT/$name/train_log.csv" --health "$OUT/$name/health.json" \
    --checkpoints "$OUT/checkpoints" > "$OUT/$name.log" 2>&1
}
reference() {  # training seed
  vitnas reference --train-seed "$1" --config $CFG '{"reference": {"steps": 600}}' --data $DATA \
    --out "$OUT/reference600/standalone_seed$1.csv" --checkpoints "$OUT/checkpoints" > "$OUT/reference600_seed$1.log" 2>&1
}
export -f train reference
export OUT DATA CFG
{
  echo "train depth-2M '{\"supernet\": {\"sampling\": \"depth\"}}' --budget 2M"
  echo "train depth-4M '{\"supernet\": {\"sampling\": \"depth\"}}' --budget 4M"
  echo "train shared '{\"supernet\": {\"per_budget\": false}}'"
  echo "reference 0"
  echo "reference 1"
} | xargs -d "\n" -P 2 -I{} bash -c "{}"
vitnas reference --merge "$OUT"/reference600/standalone_seed{0,1}.csv --config $CFG --out "$OUT/reference600/standalone.csv"

rank() {  # supernet folder, JSON override, budget flag, reference name
  local folder=$1 over=$2 budget=$3 ref=$4
  local csv=$RUN/reference/standalone.csv
  [ "$ref" = 600 ] && csv=$OUT/reference600/standalone.csv
  vitnas ranking --config $CFG "$over" --data $DATA --supernet "$folder/supernet.safetensors" \
    --reference "$csv" $budget --out "$OUT/rankings/$(basename "$folder")-ref$ref.json"
}
export -f rank
export RUN
mkdir -p "$OUT/rankings" "$OUT/layerwise-2M" "$OUT/layerwise-4M"
cp $RUN/seed0/supernet/2M/supernet.safetensors "$OUT/layerwise-2M/"
cp $RUN/seed0/supernet/4M/supernet.safetensors "$OUT/layerwise-4M/"
for ref in 200 600; do
  echo "rank $OUT/layerwise-2M '{}' '--budget 2M' $ref"
  echo "rank $OUT/layerwise-4M '{}' '--budget 4M' $ref"
  echo "rank $OUT/depth-2M '{\"supernet\": {\"sampling\": \"depth\"}}' '--budget 2M' $ref"
  echo "rank $OUT/depth-4M '{\"supernet\": {\"sampling\": \"depth\"}}' '--budget 4M' $ref"
  echo "rank $OUT/shared '{\"supernet\": {\"per_budget\": false}}' '' $ref"
done | xargs -d "\n" -P 2 -I{} bash -c "{}" > "$OUT/rankings.log" 2>&1
cat "$OUT/rankings.log"
