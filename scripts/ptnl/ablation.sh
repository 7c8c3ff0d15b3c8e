#!/usr/bin/env bash
# The paper's ablation: the six model configurations x noise rates x losses x seeds, then one table.
#
#   bash scripts/ptnl/ablation.sh DATASET BACKBONE [KEY VALUE ...]
#
# Environment (besides main.sh's DATA, SEEDS, SHOTS, NOISE_TYPE, NOISE_MODE, OUT, CLIP_WEIGHTS, ...):
# CONFIGS ("ClassifierR ClassifierC TEncFT PTNL FullPromptTuning CLSTuning"),
# RATES ("0.0 0.125 0.25 0.5 0.75"), LOSSES ("ce gce"), GROUP (1: the prompt trainers' runs of one
# rate and seed train in one process, train.py --group; 0: one a run). Finished runs are skipped; an
# "[ablation] run i/N" line with the ETA starts each run. The table holds this grid's runs only
# (ALL_RUNS=1: every run under $OUT/<DATASET>).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ptnl_release || exit $?
if [ $# -lt 2 ]; then ptnl_usage "$0"; exit 2; fi
export OUT=${OUT:-output}
ptnl_abs_paths OUT DATA CLIP_WEIGHTS
cd "$(dirname "$0")/../.."
DATASET=$1; BACKBONE=$2; shift 2
CONFIGS=${CONFIGS:-"ClassifierR ClassifierC TEncFT PTNL FullPromptTuning CLSTuning"}
RATES=${RATES:-"0.0 0.125 0.25 0.5 0.75"}
LOSSES=${LOSSES:-"ce gce"}
SEEDS=${SEEDS:-"1 2 3"} SHOTS=${SHOTS:-16}

ptnl_plan_init ablation "$@"
for CONFIG in ${CONFIGS}; do
  for LOSS in ${LOSSES}; do
    for RATE in ${RATES}; do
      for SHOT in ${SHOTS}; do
        for SEED in ${SEEDS}; do ptnl_plan_add "${CONFIG}" "${LOSS}" "${RATE}" "${SHOT}" "${SEED}" "${NCTX:-16}"; done
      done
    done
  done
done
ptnl_plan_summary "configs ${CONFIGS}; losses ${LOSSES}; rates ${RATES}; shots ${SHOTS}; seeds ${SEEDS}"
FIG=()  # every table and figure these runs allow (gradients and confusion with TRAINER.PTNL.ANALYSIS True)
if ptnl_can_plot; then FIG=(--report "${OUT}/${DATASET}_ablation_report"); fi
ptnl_plan_report "${PYTHON:-python}" -m ptnl.report "${FIG[@]}" --pivot "{dirs}"
ptnl_plan_run
