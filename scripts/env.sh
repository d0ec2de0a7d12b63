# Shared paths for every project script. Sourced, not executed.
# Everything heavy (the Python reference venv, the default model, cargo's target dir, tool installs)
# lives in a cache directory outside the clone so CI runs on the same machine reuse it.
ROSETTA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROSETTA_CACHE="${ROSETTA_CACHE:-$HOME/.cache/rosetta}"
ROSETTA_VENV="${ROSETTA_VENV:-$ROSETTA_CACHE/venv}"
ROSETTA_MODELS="${ROSETTA_MODELS:-$ROSETTA_CACHE/models}"
export ROSETTA_ROOT ROSETTA_CACHE ROSETTA_VENV ROSETTA_MODELS
mkdir -p "$ROSETTA_CACHE" "$ROSETTA_MODELS"
