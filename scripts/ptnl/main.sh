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
# VARIANT (an extra folder level after the loss, for settings passed as trailing KEY VALUE pairs),
# RELEASE (1: the released code's protocol: NOISE_MODE release, GCE q 0.5, SEEDS "1 2 3 4", test
# logits saved for the seed ensemble; README "Label noise").
# Relative OUT, DATA and CLIP_WEIGHTS paths are read from the folder you call it from.
# Trailing KEY VALUE pairs go to train.py as config overrides. A finished run (results.json
# present) is skipped when it ran the same settings ("Done already, skipping"); when its settings
# differ, main.sh stops and names the keys (keep both with another OUT or VARIANT). An interrupted
# run resumes from its last checkpoint ("Resuming: DIR (from epoch E)"), a failed one without any
# checkpoint starts again ("Retrying: DIR").
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

RUN_DIRS=()
for SHOT in ${SHOTS}; do
  for SEED in ${SEEDS}; do
    DIR=$(ptnl_run_dir "${TRAINER}" "${LOSS}" "${RATE}" "${SHOT}" "${SEED}")
    RUN_DIRS+=("$DIR")
    DRY=()
    if [ "${DRY_RUN:-0}" = 1 ]; then DRY=(--dry-run); echo "Config of ${DIR}:"
    elif [ -f "${DIR}/results.json" ]; then :  # train.py compares the settings: skips, or stops naming the keys
    elif [ -d "${DIR}" ]; then
      CKPT=$(ls -1 "${DIR}"/*/model.pth.tar-* 2>/dev/null | sed 's/.*model\.pth\.tar-//' | sort -n | tail -1 || true)
      if [ -n "${CKPT}" ]; then echo "Resuming: ${DIR} (from epoch ${CKPT})"; else echo "Retrying: ${DIR}"; fi
    else echo "Running: ${DIR}"
    fi
    CMD=("$PYTHON" train.py "${DRY[@]}"
      --root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}" \
      --dataset-config-file "${DCFG}" --config-file "${TCFG}" --output-dir "${DIR}" \
      DATASET.NUM_SHOTS "${SHOT}" \
      DATASET.NOISE.RATE "${RATE}" DATASET.NOISE.TYPE "${NOISE_TYPE}" DATASET.NOISE.MODE "${NOISE_MODE}" \
      TRAINER.PTNL.LOSS "${LOSS}" TRAINER.PTNL.N_CTX "${NCTX}" TRAINER.PTNL.CSC "${CSC}" \
      TRAINER.PTNL.CLASS_TOKEN_POSITION "${CTP}" "${EXTRA[@]}" "${RELEASE_OPTS[@]}" "$@")
    if [ "${DRY_RUN:-0}" != 1 ] && [ -f "${DIR}/results.json" ]; then
      RC=0; MSG=$("${CMD[@]}" 2>&1) || RC=$?
      if [ "$RC" = 0 ] && [[ "$MSG" == "Done already"* ]]; then echo "Done already, skipping: ${DIR}"; continue; fi
      echo "$MSG" >&2
      if [ "$RC" != 0 ]; then echo "main.sh: stopped at ${DIR} (train.py exit ${RC})" >&2; exit "$RC"; fi
      continue
    fi
    "${CMD[@]}"
  done
done
if [ "${SUMMARY:-1}" != 0 ] && [ "${DRY_RUN:-0}" != 1 ]; then
  echo
  "$PYTHON" -m ptnl.report "${RUN_DIRS[@]}"
fi
