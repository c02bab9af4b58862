#!/usr/bin/env bash
# The `mini` run in the order of its priorities, each tier one Snakemake call over the tier's result
# files or targets. Run it from a git worktree at a fixed commit (editing a working copy then
# retriggers nothing, and every result records the commit it ran); run it again after a kill:
# finished jobs are kept, a killed training resumes from its last checkpoint, a killed AutoAttack
# from its last chunk.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SMK=(snakemake --config scale=mini --cores 2)

rows() {   # the train.json and every evaluation of the named Table 1 rows
    python3 - "$@" <<'PY'
import sys
from freeadv.config import load_yaml
from freeadv.experiments import layout, scales
plan = scales.build_plan(**scales.plan_inputs(load_yaml("config/config.yaml"), "mini"))
rows, where = {r["key"]: r for r in plan["targets"]["table1"]["rows"]}, layout.ScaleLayout("mini")
for key in sys.argv[1:]:
    print(where.result(layout.train_path(rows[key]["model"])))
    print(*(where.result(e["file"]) for e in scales.row_evaluations(rows[key])), sep="\n")
PY
}

# mini trains in bf16 autocast: on a CPU without bf16 instructions (AVX512-BF16 or AMX) oneDNN
# emulates it, 13x slower than fp32 there (measured on a 2-core AVX2 EPYC: a natural step of 128
# took 5.86 s in bf16, 0.45 s in fp32; 0.175 s in bf16 on CPUs that have them). Resume on one that has.
if ! grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then
    echo "[mini] this CPU has no bf16 instructions (avx512_bf16, amx_bf16): not running; resume on a CPU that has" >&2
    exit 3
fi
snakemake --unlock --config scale=mini > /dev/null 2>&1 || true   # a killed Snakemake leaves its lock
"${SMK[@]}" $(rows natural free_m2 free_m4 free_m8 free_m8_s1 free_m8_s2 free_m10 free_m10_s1 free_m10_s2 pgd7)
"${SMK[@]}" figure3 figure3_surfaces      # C6: natural, Free m=8 and 7-PGD surfaces
"${SMK[@]}" fast                          # FGSM-RS at 6,400 iterations and Wong et al.'s recipe
"${SMK[@]}" table1 trials                 # the trials' seeds 3-4 and 7-PGD seed 1
"${SMK[@]}" all                           # the YOPO row, Figure 1's replay models, the cost table, claims
echo "[mini] all tiers done"
