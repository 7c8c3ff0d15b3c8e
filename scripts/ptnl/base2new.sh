#!/usr/bin/env bash
# Base-to-new generalisation (CoCoOp's protocol) under label noise: train on the base classes (the
# first half of the sorted labels, DATASET.SUBSAMPLE_CLASSES base; the noise stays among them) for
# every seed, test on the base classes, evaluate the trained prompt on the new classes
# (--eval-only, DATASET.SUBSAMPLE_CLASSES new), then print base, new and their harmonic mean H.
#
#   bash scripts/ptnl/base2new.sh DATASET BACKBONE NOISE_RATE LOSS [TRAINER] [KEY VALUE ...]
#   e.g. DATA=/data bash scripts/ptnl/base2new.sh dtd vit_b16 0.5 gce CoCoOp
#
# TRAINER: CoCoOp (default), KgCoOp, PTNL or any prompt trainer (configs/trainers/<TRAINER>/<BACKBONE>.yaml).
# Environment as main.sh (DATA, OUT, SEEDS, SHOTS, NOISE_TYPE, NOISE_MODE, CLIP_WEIGHTS, PYTHON,
# ENGINE, DRY_RUN); NCTX defaults to 4 for CoCoOp and KgCoOp (their configs' "a photo of a"), else 16.
# Folders: the training runs under <loss>/base2new/, their new-class evaluations under
# <loss>/base2new-new/ (evaluation.json). A seed not trained yet (ENGINE slurm: still queued) is
# evaluated when the script runs again; an evaluated one is not evaluated twice, unless its run was
# trained again after the evaluation (then it is evaluated again). The table:
# python -m ptnl.report.protocols base2new OUT/DATASET/TRAINER (also averages over datasets).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ $# -lt 4 ]; then ptnl_usage "$0"; exit 2; fi
DATA=${DATA:-./data} OUT=${OUT:-output}
ptnl_abs_paths OUT DATA CLIP_WEIGHTS
cd "$(dirname "$0")/../.."
DATASET=$1; BACKBONE=$2; RATE=$3; LOSS=$4; shift 4
TRAINER=${TRAINER:-CoCoOp}
if [ $# -gt 0 ] && [[ "$1" != *.* ]]; then TRAINER=$1; shift; fi
case "$TRAINER" in CoCoOp|KgCoOp) NCTX=${NCTX:-4} ;; *) NCTX=${NCTX:-16} ;; esac
SEEDS=${SEEDS:-"1 2 3"} SHOTS=${SHOTS:-16} PYTHON=${PYTHON:-python}
export TRAINER NCTX SEEDS SHOTS OUT DATA
VARIANT=base2new SUMMARY=0 bash scripts/ptnl/main.sh "$DATASET" "$BACKBONE" "$RATE" "$LOSS" \
  DATASET.SUBSAMPLE_CLASSES base "$@"
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi

EXTRA=()
if [ -n "${CLIP_WEIGHTS:-}" ]; then EXTRA+=(MODEL.BACKBONE.NAME "$CLIP_WEIGHTS"); fi
for SHOT in ${SHOTS}; do
  for SEED in ${SEEDS}; do
    DIR=$(VARIANT=base2new ptnl_run_dir "${TRAINER}" "${LOSS}" "${RATE}" "${SHOT}" "${SEED}")
    NEW=$(VARIANT=base2new-new ptnl_run_dir "${TRAINER}" "${LOSS}" "${RATE}" "${SHOT}" "${SEED}")
    if [ ! -f "${DIR}/results.json" ]; then
      echo "Not trained yet: ${DIR} (run this script again when it is, to evaluate it on the new classes)"
      continue
    fi
    if [ -f "${NEW}/evaluation.json" ]; then
      # an evaluation older than the run it evaluated is of an earlier model (the run was trained again)
      if [ "${NEW}/evaluation.json" -nt "${DIR}/results.json" ]; then echo "Evaluated already: ${NEW}"; continue; fi
      echo "Evaluating again (the run was trained after its evaluation): ${NEW}"
    fi
    EPOCH=$(ls "${DIR}"/*/model.pth.tar-* | sed 's/.*model\.pth\.tar-//' | sort -n | tail -1)
    echo "New classes: ${NEW}"
    "$PYTHON" train.py --root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}" \
      --dataset-config-file "configs/datasets/${DATASET}.yaml" \
      --config-file "configs/trainers/${TRAINER}/${BACKBONE}.yaml" \
      --output-dir "${NEW}" --eval-only --model-dir "${DIR}" --load-epoch "${EPOCH}" \
      DATASET.NUM_SHOTS "${SHOT}" DATASET.SUBSAMPLE_CLASSES new "${EXTRA[@]}" "$@" > /dev/null
  done
done
"$PYTHON" -m ptnl.report.protocols base2new "${OUT}/${DATASET}/${TRAINER}/$(ptnl_backbone_dir)"
