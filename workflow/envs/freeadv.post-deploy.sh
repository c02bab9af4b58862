#!/usr/bin/env bash
# Install this checkout's freeadv package into the freshly created job environment.
# Snakemake runs this from its working directory, the repository root.
set -euo pipefail
python -m pip install --no-deps -e .
