#!/usr/bin/env bash
# Noisy-label prompt tuning for every seed, then mean ± std of test accuracy.
#
#   bash scripts/ptnl/main.sh DATASET BACKBONE NOISE_RATE LOSS [KEY VALUE ...]
#   e.g. DATA=/data bash scripts/ptnl/main.sh dtd rn50 0.5 gce
#
# DATASET: a file configs/datasets/<DATASET>.yaml; BACKBONE: configs/trainers/<TRAINER>/<BACKBONE>.yaml.
# Environment: DATA (dataset root, default ./data), SEEDS ("1 2 3"), SHOTS ("16"), NCTX (16),
# CSC (False), CTP (end), NOISE_TYPE (sym), NOISE_MODE (swap), OUT (output), TRAINER (PTNL),
# CLIP_WEIGHTS (a weights file to use instead of the backbone's named CLIP), PYTHON (python),
# SUMMARY (1; 0 skips the closing table), DRY_RUN (1: print each run's resolved config, run nothing),
# VARIANT (an extra folder level after the loss, for settings passed as trailing KEY VALUE pairs).
# Trailing KEY VALUE pairs go to train.py as config overrides. Finished runs (results.json
# present) are skipped; interrupted ones resume from their last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/ptnl/lib.sh

if [ $# -lt 4 ]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
DATASET=$1; BACKBONE=$2; RATE=$3; LOSS=$4; shift 4

DATA=${DATA:-./data}
SEEDS=${SEEDS:-"1 2 3"}
SHOTS=${SHOTS:-16}
NCTX=${NCTX:-16}
CSC=${CSC:-False}
CTP=${CTP:-end}
NOISE_TYPE=${NOISE_TYPE:-sym}
NOISE_MODE=${NOISE_MODE:-swap}
OUT=${OUT:-output}
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

RUN_DIRS=()
for SHOT in ${SHOTS}; do
  for SEED in ${SEEDS}; do
    DIR=$(ptnl_run_dir "${TRAINER}" "${LOSS}" "${RATE}" "${SHOT}" "${SEED}")
    RUN_DIRS+=("$DIR")
    DRY=()
    if [ "${DRY_RUN:-0}" = 1 ]; then DRY=(--dry-run); echo "Config of ${DIR}:"
    elif [ -f "${DIR}/results.json" ]; then
      echo "Done already, skipping: ${DIR}"
      continue
    elif [ -d "${DIR}" ]; then echo "Resuming: ${DIR}"
    else echo "Running: ${DIR}"
    fi
    "$PYTHON" train.py "${DRY[@]}" \
      --root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}" \
      --dataset-config-file "${DCFG}" --config-file "${TCFG}" --output-dir "${DIR}" \
      DATASET.NUM_SHOTS "${SHOT}" \
      DATASET.NOISE.RATE "${RATE}" DATASET.NOISE.TYPE "${NOISE_TYPE}" DATASET.NOISE.MODE "${NOISE_MODE}" \
      TRAINER.PTNL.LOSS "${LOSS}" TRAINER.PTNL.N_CTX "${NCTX}" TRAINER.PTNL.CSC "${CSC}" \
      TRAINER.PTNL.CLASS_TOKEN_POSITION "${CTP}" "${EXTRA[@]}" "$@"
  done
done
if [ "${SUMMARY:-1}" != 0 ] && [ "${DRY_RUN:-0}" != 1 ]; then
  echo
  "$PYTHON" -m ptnl.report "${RUN_DIRS[@]}"
fi
