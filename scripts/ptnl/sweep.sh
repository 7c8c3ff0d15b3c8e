#!/usr/bin/env bash
# The paper's Figure 1: test accuracy against noise rate for prompt tuning (CE and GCE), the linear
# probe and a randomly initialised linear classifier, every seed; then one table and one plot.
#
#   bash scripts/ptnl/sweep.sh DATASET BACKBONE [KEY VALUE ...]
#   e.g. DATA=/data bash scripts/ptnl/sweep.sh dtd rn50
#
# Environment (besides main.sh's DATA, SEEDS, SHOTS, NOISE_TYPE, NOISE_MODE, NCTX, OUT, CLIP_WEIGHTS, ...):
# RATES ("0.0 0.125 0.25 0.375 0.5 0.625 0.75"), TRAINERS ("PTNL LinearProbe ClassifierR"),
# LOSSES ("ce gce"), LOSS_TRAINERS ("PTNL": the trainers that run every loss; the others run ce),
# GROUP (1: the runs of one rate and seed that share a data stream train in lockstep, and with
# ENGINE=local the whole grid trains in one process, train.py --group; PACK=0: a process a group;
# GROUP=0: one a run).
# Finished runs are skipped (when their settings match); a "[sweep] run i/N" line with the ETA of
# the whole sweep starts each run. Ends with the table and the plot $OUT/<DATASET>_sweep.png (needs
# matplotlib) of this sweep's runs only (ALL_RUNS=1: every run under $OUT/<DATASET>).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ptnl_release || exit $?
if [ $# -lt 2 ]; then ptnl_usage "$0"; exit 2; fi
export OUT=${OUT:-output}
ptnl_abs_paths OUT DATA CLIP_WEIGHTS
cd "$(dirname "$0")/../.."
DATASET=$1; BACKBONE=$2; shift 2
RATES=${RATES:-"0.0 0.125 0.25 0.375 0.5 0.625 0.75"}
TRAINERS=${TRAINERS:-"PTNL LinearProbe ClassifierR"}
LOSSES=${LOSSES:-"ce gce"}
LOSS_TRAINERS=${LOSS_TRAINERS:-PTNL}
SEEDS=${SEEDS:-"1 2 3"} SHOTS=${SHOTS:-16}

ptnl_plan_init sweep "$@"
for TRAINER in ${TRAINERS}; do
  TRAINER_LOSSES=ce
  if [[ " ${LOSS_TRAINERS} " == *" ${TRAINER} "* ]]; then TRAINER_LOSSES=${LOSSES}; fi
  for LOSS in ${TRAINER_LOSSES}; do
    for RATE in ${RATES}; do
      for SHOT in ${SHOTS}; do
        for SEED in ${SEEDS}; do ptnl_plan_add "${TRAINER}" "${LOSS}" "${RATE}" "${SHOT}" "${SEED}" "${NCTX:-16}"; done
      done
    done
  done
done
ptnl_plan_summary "trainers ${TRAINERS}; losses ${LOSSES} (${LOSS_TRAINERS}; ce for the others); rates ${RATES};\
 shots ${SHOTS}; seeds ${SEEDS}"
PLOT=()  # the accuracy-against-noise-rate figure needs two rates or more (ptnl.report refuses one)
if [ "$(wc -w <<< "${RATES}")" -gt 1 ]; then PLOT=(--plot "${OUT}/${DATASET}_sweep.png"); fi
ptnl_plan_report "${PYTHON:-python}" -m ptnl.report --pivot "${PLOT[@]}" "{dirs}"
ptnl_plan_run
