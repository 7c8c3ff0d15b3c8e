#!/usr/bin/env bash
# The line of work on identical noisy sets: CoOp (PTNL with CE), PTNL with GCE, JoAPR and NLPrompt,
# over the noise rates of one protocol and the seeds, then one table (mean ± std, and the partition
# precision and recall of the two sample-selection methods) and a plot.
#
#   bash scripts/methods/compare.sh DATASET BACKBONE [KEY VALUE ...]
#   e.g. DATA=/data bash scripts/methods/compare.sh dtd rn50
#        NOISE_MODE=flip DATA=/data bash scripts/methods/compare.sh oxford_flowers rn50   (NLPrompt's protocol)
#
# Environment (besides main.sh's DATA, SEEDS, SHOTS, OUT, CLIP_WEIGHTS, ENGINE, ...): METHODS
# ("PTNL:ce PTNL:gce JoAPR:ce NLPrompt:ce", TRAINER:LOSS), NOISE_MODE (swap, JoAPR's protocol;
# flip, NLPrompt's), NOISE_TYPE (sym), RATES ("0.0 0.25 0.5 0.75"), EPOCHS (200: CoOp's and the
# papers' for 16 shots; trailing KEY VALUE pairs come after it and win). Every method sees the same
# noisy few-shot set for a seed and rate. The table and plot hold this grid's runs only.
set -euo pipefail
source "$(dirname "$0")/../ptnl/lib.sh"
if [ $# -lt 2 ]; then ptnl_usage "$0"; exit 2; fi
export OUT=${OUT:-output}
ptnl_abs_paths OUT DATA CLIP_WEIGHTS
cd "$(dirname "$0")/../.."
DATASET=$1; BACKBONE=$2; shift 2
METHODS=${METHODS:-"PTNL:ce PTNL:gce JoAPR:ce NLPrompt:ce"}
RATES=${RATES:-"0.0 0.25 0.5 0.75"}
SEEDS=${SEEDS:-"1 2 3"} SHOTS=${SHOTS:-16}
export NOISE_MODE=${NOISE_MODE:-swap} NOISE_TYPE=${NOISE_TYPE:-sym}

ptnl_plan_init compare OPTIM.MAX_EPOCH "${EPOCHS:-200}" "$@"
for SPEC in ${METHODS}; do
  for RATE in ${RATES}; do
    for SHOT in ${SHOTS}; do
      for SEED in ${SEEDS}; do ptnl_plan_add "${SPEC%%:*}" "${SPEC##*:}" "${RATE}" "${SHOT}" "${SEED}" "${NCTX:-16}"; done
    done
  done
done
ptnl_plan_summary "methods ${METHODS}; ${NOISE_TYPE}-${NOISE_MODE} rates ${RATES}; shots ${SHOTS}; seeds ${SEEDS}"
FIG=()
# the accuracy-against-noise-rate figure needs two rates or more (ptnl.report refuses one)
if ptnl_can_plot && [ "$(wc -w <<< "${RATES}")" -gt 1 ]; then FIG=(--figure noise --out "${OUT}/${DATASET}_compare.png"); fi
ptnl_plan_report "${PYTHON:-python}" -m ptnl.report --pivot "{dirs}" "${FIG[@]}"
ptnl_plan_report "${PYTHON:-python}" -m ptnl.report "{dirs}"
ptnl_plan_run
