#!/usr/bin/env bash
# Creates (once) the Python reference venv outside the clone and prints its python path.
# Reused across runs: re-installs only when scripts/python-requirements.txt changes.
set -euo pipefail
source "$(dirname "$0")/env.sh"
req="$ROSETTA_ROOT/scripts/python-requirements.txt"
stamp="$ROSETTA_VENV/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$ROSETTA_VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$ROSETTA_VENV/bin/python"; exit 0
fi
echo "setup-python: building reference venv in $ROSETTA_VENV (first time: ~7 min, 5.6 GB)" >&2
python3 -m venv "$ROSETTA_VENV"
"$ROSETTA_VENV/bin/python" -m pip install -q --upgrade pip >&2
"$ROSETTA_VENV/bin/python" -m pip install -q -r "$req" >&2
echo "$want" > "$stamp"
echo "$ROSETTA_VENV/bin/python"
