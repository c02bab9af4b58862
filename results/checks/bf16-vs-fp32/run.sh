#!/usr/bin/env bash
# bf16 autocast against fp32 on CPU: bench of the small CNN and PreAct ResNet-18, then
# the mini Free m=8 recipe on cifar10-jpeg trained in each precision (2 seeds), evaluated with
# PGD-20 on all 10,000 test images. Resumable: finished runs and evaluations are skipped.
# Usage: bash results/checks/bf16-vs-fp32/run.sh WORKDIR   (run from the repository root)
set -euo pipefail
here=results/checks/bf16-vs-fp32
work=${1:?usage: run.sh WORKDIR}
mkdir -p "$work" "$here/bench" "$here/evals"
for arch in small_cnn preact_resnet18; do
  for amp in off bf16; do
    out=$here/bench/$arch-$amp.json
    [ -f "$out" ] && continue
    if [ $arch = small_cnn ]; then
      python -m freeadv bench --arch small_cnn --width 16 --amp $amp --reps 30 --methods natural,free,pgd7 --no-eval --out "$out"
    else
      python -m freeadv bench --arch preact_resnet18 --amp $amp --reps 5 --warmup 2 --methods natural,free --no-eval --out "$out"
    fi
  done
done
[ -f $here/bench/interleaved-small_cnn.json ] || python $here/interleaved.py small_cnn 16 30 $here/bench/interleaved-small_cnn.json
[ -f $here/bench/interleaved-preact_resnet18.json ] || python $here/interleaved.py preact_resnet18 none 4 $here/bench/interleaved-preact_resnet18.json
plan=results/mini/runs/cifar10-jpeg-small_cnn-w16-free-m8-eps8-s0/config.yaml
for seed in 0 1; do
  for amp in off bf16; do
    run=$work/free-m8-$amp-s$seed
    python -m freeadv train --config "$plan" --set amp=$amp --set seed=$seed --set n_test=null \
      --set device=cpu --out "$run" > "$work/train-$amp-s$seed.log" 2>&1
    cp "$run/train.json" "$here/evals/train-$amp-s$seed.json"
    out=$here/evals/pgd20-$amp-s$seed.json
    [ -f "$out" ] || python -m freeadv attack --run "$run" --attack pgd --steps 20 --n 10000 --no-progress --out "$out"
  done
done
