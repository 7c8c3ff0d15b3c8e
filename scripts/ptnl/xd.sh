#!/usr/bin/env bash
# Cross-dataset transfer and domain generalisation (CoCoOp's protocols) under label noise: train on
# SOURCE (default imagenet, all classes) for every seed, as main.sh does, then evaluate each trained
# prompt (--eval-only, all classes and test images of the target) on every target dataset, then
# print one row per trained setting and one column per target.
#
#   bash scripts/ptnl/xd.sh BACKBONE NOISE_RATE LOSS [TRAINER] [KEY VALUE ...]
#   e.g. DATA=/data bash scripts/ptnl/xd.sh vit_b16 0.5 gce CoCoOp
#
# TRAINER: CoCoOp (default), KgCoOp, PTNL or any prompt trainer. SOURCE: a dataset config name
# (imagenet). TARGETS: dataset config names, default the ten other CoOp datasets and the four
# ImageNet variants (imagenetv2 imagenet_sketch imagenet_a imagenet_r). Environment otherwise as
# main.sh (DATA, OUT, SEEDS, SHOTS, NOISE_TYPE, NOISE_MODE, CLIP_WEIGHTS, PYTHON, ENGINE, DRY_RUN);
# NCTX defaults to 4 for CoCoOp and KgCoOp, else 16. The evaluations go to
# <the trained setting's folder>/../xd-<target>/ (evaluation.json beside the run's folders); a target
# evaluated already is not evaluated again (unless the run was trained again after that evaluation),
# a target whose data is missing is named and skipped
# (exit status 1 at the end). The table: python -m ptnl.report.protocols xd OUT/SOURCE/TRAINER.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ $# -lt 3 ]; then ptnl_usage "$0"; exit 2; fi
DATA=${DATA:-./data} OUT=${OUT:-output}
ptnl_abs_paths OUT DATA CLIP_WEIGHTS
cd "$(dirname "$0")/../.."
BACKBONE=$1; RATE=$2; LOSS=$3; shift 3
TRAINER=${TRAINER:-CoCoOp}
if [ $# -gt 0 ] && [[ "$1" != *.* ]]; then TRAINER=$1; shift; fi
case "$TRAINER" in CoCoOp|KgCoOp) NCTX=${NCTX:-4} ;; *) NCTX=${NCTX:-16} ;; esac
SOURCE=${SOURCE:-imagenet}
XD_TARGETS="caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
TARGETS=${TARGETS:-"${XD_TARGETS} imagenetv2 imagenet_sketch imagenet_a imagenet_r"}
SEEDS=${SEEDS:-"1 2 3"} SHOTS=${SHOTS:-16} PYTHON=${PYTHON:-python}
for T in ${TARGETS}; do
  if [ ! -f "configs/datasets/${T}.yaml" ]; then
    echo "Unknown target '${T}': no configs/datasets/${T}.yaml" >&2; exit 2
  fi
done
export TRAINER NCTX SEEDS SHOTS OUT DATA
SUMMARY=0 bash scripts/ptnl/main.sh "$SOURCE" "$BACKBONE" "$RATE" "$LOSS" "$@"
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi

DATASET=$SOURCE
EXTRA=()
if [ -n "${CLIP_WEIGHTS:-}" ]; then EXTRA+=(MODEL.BACKBONE.NAME "$CLIP_WEIGHTS"); fi
FAILED=0
for SHOT in ${SHOTS}; do
  for SEED in ${SEEDS}; do
    DIR=$(ptnl_run_dir "${TRAINER}" "${LOSS}" "${RATE}" "${SHOT}" "${SEED}")
    if [ ! -f "${DIR}/results.json" ]; then
      echo "Not trained yet: ${DIR} (run this script again when it is, to evaluate it)"
      continue
    fi
    EPOCH=$(ls "${DIR}"/*/model.pth.tar-* | sed 's/.*model\.pth\.tar-//' | sort -n | tail -1)
    for T in ${TARGETS}; do
      EVAL=$(VARIANT="xd-${T}" ptnl_run_dir "${TRAINER}" "${LOSS}" "${RATE}" "${SHOT}" "${SEED}")
      if [ -f "${EVAL}/evaluation.json" ]; then
        # an evaluation older than the run it evaluated is of an earlier model (the run was trained again)
        if [ "${EVAL}/evaluation.json" -nt "${DIR}/results.json" ]; then echo "Evaluated already: ${EVAL}"; continue; fi
        echo "Evaluating again (the run was trained after its evaluation): ${EVAL}"
      fi
      echo "Target ${T}: ${EVAL}"
      "$PYTHON" train.py --root "${DATA}" --seed "${SEED}" --trainer "${TRAINER}" \
        --dataset-config-file "configs/datasets/${T}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${BACKBONE}.yaml" \
        --output-dir "${EVAL}" --eval-only --model-dir "${DIR}" --load-epoch "${EPOCH}" "${EXTRA[@]}" "$@" \
        > /dev/null || { echo "Target ${T} failed for ${DIR} (its error is above)" >&2; FAILED=1; }
    done
  done
done
"$PYTHON" -m ptnl.report.protocols xd "${OUT}/${SOURCE}/${TRAINER}/$(ptnl_backbone_dir)"
exit "$FAILED"
