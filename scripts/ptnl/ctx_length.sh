#!/usr/bin/env bash
# Context length: PTNL with N_CTX 0 1 2 4 8 16 32 at noise rates 0 and 0.5, then one table.
#
#   bash scripts/ptnl/ctx_length.sh DATASET BACKBONE [KEY VALUE ...]
#
# Environment (besides main.sh's): NCTXS ("0 1 2 4 8 16 32"), RATES ("0.0 0.5"), LOSSES ("ce").
# Finished runs are skipped; a "[ctx_length] run i/N" line with the ETA starts each run. The table
# holds this grid's runs only (ALL_RUNS=1: every run under $OUT/<DATASET>).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ptnl_release || exit $?
if [ $# -lt 2 ]; then ptnl_usage "$0"; exit 2; fi
export OUT=${OUT:-output}
ptnl_abs_paths OUT DATA CLIP_WEIGHTS
cd "$(dirname "$0")/../.."
DATASET=$1; BACKBONE=$2; shift 2
NCTXS=${NCTXS:-"0 1 2 4 8 16 32"}
RATES=${RATES:-"0.0 0.5"}
LOSSES=${LOSSES:-"ce"}
SEEDS=${SEEDS:-"1 2 3"} SHOTS=${SHOTS:-16}

ptnl_plan_init ctx_length "$@"
PLAN_NCTX=1
for NCTX in ${NCTXS}; do
  for LOSS in ${LOSSES}; do
    for RATE in ${RATES}; do
      for SHOT in ${SHOTS}; do
        for SEED in ${SEEDS}; do ptnl_plan_add PTNL "${LOSS}" "${RATE}" "${SHOT}" "${SEED}" "${NCTX}"; done
      done
    done
  done
done
ptnl_plan_summary "n_ctx ${NCTXS}; losses ${LOSSES}; rates ${RATES}; shots ${SHOTS}; seeds ${SEEDS}"
FIG=()  # the tables and the accuracy-against-context-length figure (and whatever else the runs allow)
if ptnl_can_plot; then FIG=(--report "${OUT}/${DATASET}_ctx_length_report"); fi
ptnl_plan_report "${PYTHON:-python}" -m ptnl.report "${FIG[@]}" --pivot "{dirs}"
ptnl_plan_run
