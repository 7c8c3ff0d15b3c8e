#!/usr/bin/env bash
# Noisy-label prompt tuning for every seed, then mean ± std of test accuracy.
#
#   bash scripts/ptnl/main.sh DATASET BACKBONE NOISE_RATE LOSS [KEY VALUE ...]
#   e.g. DATA=/data bash scripts/ptnl/main.sh dtd rn50 0.5 gce
#
# DATASET: a file configs/datasets/<DATASET>.yaml; BACKBONE: configs/trainers/<TRAINER>/<BACKBONE>.yaml.
# Environment: DATA (dataset root, default ./data), SEEDS ("1 2 3"), SHOTS ("16"), NCTX (16),
# CSC (False), CTP (end), NOISE_TYPE (sym), NOISE_MODE (swap), OUT (output), TRAINER (PTNL),
# CLIP_WEIGHTS (a weights file or name to use instead of the backbone's named CLIP; open_clip:ARCH/PRETRAINED
# for an open_clip model, docs/backbones.md), PYTHON (python),
# SUMMARY (1; 0 skips the closing table), DRY_RUN (1: print the plan in a few lines, a GPU-hours
# estimate and whether train.py's checks pass for each run; run nothing), VERBOSE (1: with DRY_RUN,
# every run of the plan and each run's resolved config),
# VARIANT (an extra folder level after the loss, for settings passed as trailing KEY VALUE pairs),
# RELEASE (1: the released code's protocol: NOISE_MODE release, GCE q 0.5, SEEDS "1 2 3 4", test
# logits saved for the seed ensemble; README "Label noise").
# Relative OUT, DATA and CLIP_WEIGHTS paths are read from the folder you call it from.
# Trailing KEY VALUE pairs go to train.py as config overrides, except what the folder name encodes
# (DATASET.NOISE.RATE, DATASET.NUM_SHOTS, TRAINER.PTNL.LOSS, SEED, ...: main.sh refuses them and names
# the argument or variable that sets each). A finished run (results.json
# present) is skipped when it ran the same settings ("Done already, skipping"); when its settings
# differ, main.sh stops and names the keys (keep both with another OUT or VARIANT). An interrupted
# run resumes from its last checkpoint ("Resuming: DIR (from epoch E)"), a failed one without any
# checkpoint starts again ("Retrying: DIR"). ENGINE (local | gpus | slurm) runs the seeds as a grid
# script's runs are (README "Running on a cluster").
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ $# -lt 4 ]; then ptnl_usage "$0"; exit 2; fi
ptnl_release || exit $?
DATA=${DATA:-./data} OUT=${OUT:-output}
ptnl_abs_paths OUT DATA CLIP_WEIGHTS
cd "$(dirname "$0")/../.."
DATASET=$1; BACKBONE=$2; RATE=$3; LOSS=$4; shift 4

SEEDS=${SEEDS:-"1 2 3"}
SHOTS=${SHOTS:-16}
NCTX=${NCTX:-16}
CSC=${CSC:-False}
CTP=${CTP:-end}
NOISE_TYPE=${NOISE_TYPE:-sym}
NOISE_MODE=${NOISE_MODE:-swap}
TRAINER=${TRAINER:-PTNL}
PYTHON=${PYTHON:-python}

DCFG=configs/datasets/${DATASET}.yaml
TCFG=configs/trainers/${TRAINER}/${BACKBONE}.yaml
if [ ! -f "$DCFG" ]; then
  echo "Unknown dataset '${DATASET}': no ${DCFG}. Known: $(ls configs/datasets | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
  exit 2
fi
if [ ! -f "$TCFG" ]; then
  echo "Unknown backbone '${BACKBONE}' for ${TRAINER}: no ${TCFG}. Known: $(ls configs/trainers/${TRAINER} 2>/dev/null | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
  exit 2
fi
EXTRA=()
if [ -n "${CLIP_WEIGHTS:-}" ]; then EXTRA+=(MODEL.BACKBONE.NAME "$CLIP_WEIGHTS"); fi

# Each run is one line of a plan (its train.py command line and folder) that python -m ptnl.sweep
# runs with ENGINE (lib.sh; PTNL_PLAN_APPEND: only add the lines to that file, for a grid script).
BUILD=${PTNL_PLAN_APPEND:-}
if [ -z "$BUILD" ]; then BUILD=$(mktemp "${TMPDIR:-/tmp}/ptnl-plan.XXXXXX"); trap 'rm -f "$BUILD"' EXIT; fi
RUN_DIRS=()
for SHOT in ${SHOTS}; do
  for SEED in ${SEEDS}; do
    DIR=$(ptnl_run_dir "${TRAINER}" "${LOSS}" "${RATE}" "${SHOT}" "${SEED}")
    RUN_DIRS+=("$DIR")
    CMD=("$PYTHON" train.py
      --root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}" \
      --dataset-config-file "${DCFG}" --config-file "${TCFG}" --output-dir "${DIR}" \
      DATASET.NUM_SHOTS "${SHOT}" \
      DATASET.NOISE.RATE "${RATE}" DATASET.NOISE.TYPE "${NOISE_TYPE}" DATASET.NOISE.MODE "${NOISE_MODE}" \
      TRAINER.PTNL.LOSS "${LOSS}" TRAINER.PTNL.N_CTX "${NCTX}" TRAINER.PTNL.CSC "${CSC}" \
      TRAINER.PTNL.CLASS_TOKEN_POSITION "${CTP}" "${EXTRA[@]}" "${RELEASE_OPTS[@]}" "$@")
    # opts: the trailing KEY VALUE options, which must not override what the folder name encodes
    printf '{"run": {"dir": %s, "argv": %s, "opts": %s, "trainer": "%s", "loss": "%s", "rate": "%s", "shots": "%s", "seed": "%s", "nctx": "%s"}}\n' \
      "$(ptnl_json_str "$DIR")" "$(ptnl_json_array "${CMD[@]}")" "$(ptnl_json_array "$@")" "${TRAINER}" "${LOSS}" \
      "${RATE}" "${SHOT}" "${SEED}" "${NCTX}" >> "$BUILD"
  done
done
if [ -n "${PTNL_PLAN_APPEND:-}" ]; then exit 0; fi
if [ "${SUMMARY:-1}" != 0 ]; then
  printf '{"report": %s}\n' "$(ptnl_json_array "$PYTHON" -m ptnl.report "${RUN_DIRS[@]}")" >> "$BUILD"
fi
RC=0
ptnl_sweep run "$BUILD" --out "${OUT}" --name "main-${TRAINER}-${DATASET}-${BACKBONE}" || RC=$?
rm -f "$BUILD"
exit "$RC"
