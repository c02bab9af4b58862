#!/usr/bin/env bash
# Claim C2 at mini: is Free m=8's gap to 7-PGD the mini budget's few passes over the data?
# The mini Free m=8 recipe (the committed plan's config: wrn32_k width 1, bf16, 8,000 images, seed 0)
# trained for 2x and 4x its 1,600 iterations (6.5 and 12.9 passes over its data, at 2.1x and 4.1x a
# natural training's cost: both cheaper than 7-PGD's 6.3x), the lr milestones at the same fractions
# (0.5, 0.75); then the mini Table 1's clean pass (10,000 images) and PGD-20 (eps 8, step 2, the
# same first 1,000 test images), and AutoAttack on the 6,400-iteration model. Resumable: a killed
# training resumes from its last checkpoint; finished evaluations are skipped.
# Usage, from the root of a checkout with the mini results: bash results/checks/mini-c2-passes/run.sh WORKDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: run.sh WORKDIR}
plan=results/mini/runs/cifar10-jpeg-wrn32_k-w1-free-m8-eps8-s0/config.yaml
mkdir -p "$work" "$here/evals"
for iterations in 3200 6400; do
  run=$work/free-m8-it$iterations
  python -m freeadv train --config "$plan" --set iterations=$iterations --out "$run" --no-progress \
    > "$work/train-it$iterations.log" 2>&1
  cp "$run/train.json" "$here/evals/train-it$iterations.json"
  out=$here/evals/clean-it$iterations.json
  [ -f "$out" ] || python -m freeadv attack --run "$run" --attack none --batch-size 500 --no-progress --out "$out"
  out=$here/evals/pgd20-it$iterations.json
  [ -f "$out" ] || python -m freeadv attack --run "$run" --attack pgd --steps 20 --eps 8 --step-size 2 \
    --n 1000 --batch-size 500 --no-progress --out "$out"
done
# AutoAttack (standard) on the 6,400-iteration model, on the same 1,000 images as Table 1's.
out=$here/evals/autoattack-it6400.json
[ -f "$out" ] || python -m freeadv attack --run "$work/free-m8-it6400" --attack autoattack --steps 100 \
  --eps 8 --n 1000 --batch-size 500 --no-progress --out "$out"
