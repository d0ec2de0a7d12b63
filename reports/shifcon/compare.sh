#!/usr/bin/env bash
# The CPU comparison of reports/shifcon/README.md §3: base, SFT-only, ShifCon with the released
# conventions and ShifCon with Rosetta's, at equal steps and data (100 steps × 4 rows × 128
# tokens, hu:0.75/en:0.25), then held-out Hungarian bits/char (parallel test sentences, each
# model with the shift it was trained under) and translation retrieval (`rosetta geometry` on
# 200 en/hu test sentences, no shift). Usage: reports/shifcon/compare.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
rosetta="${ROSETTA_BIN:-${CARGO_TARGET_DIR:-$ROSETTA_CACHE/target}/release/rosetta}"
steps="${1:-100}"
out=reports/shifcon/comparison
runs=runs/shifcon-comparison
mkdir -p "$out" "$runs"
test_split=data/corpus/parallel.test.jsonl

train() { # name config
  local start=$SECONDS
  "$rosetta" train --config "$2" --steps "$steps" --out "$runs/$1"
  echo "$1: $((SECONDS - start)) s" >>"$out/times.txt"
  cp "$runs/$1/metrics.jsonl" "$out/metrics-$1.jsonl"
}
: >"$out/times.txt"
train sft examples/train-hu-sft-baseline.toml
train shifcon-rosetta examples/train-hu-shifcon.toml
train shifcon-released examples/train-hu-shifcon-released.toml

evaluate() { # name model
  "$rosetta" score "$2" --parallel "$test_split" --langs en,hu --max-sentences 200 --json "$out/score-$1.json"
  "$rosetta" geometry "$2" --parallel "$test_split" --langs en,hu --sentences 200 --bootstrap 0 --out "$out/geometry-$1"
}
evaluate base "$ROSETTA_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
for name in sft shifcon-rosetta shifcon-released; do
  evaluate "$name" "$runs/$name/final"
done

# The committed copies keep the per-site numbers; the vectors and PCA points (1.4 MB each) stay in runs/.
for name in base sft shifcon-rosetta shifcon-released; do
  python3 - "$out/geometry-$name/geometry.json" <<'PY'
import json, sys
path = sys.argv[1]
geometry = json.load(open(path))
geometry.pop("vectors", None)
for site in geometry["sites"]:
    site.pop("pca", None)
json.dump(geometry, open(path, "w"), indent=1)
PY
  rm -f "$out/geometry-$name/pca.svg"
done
