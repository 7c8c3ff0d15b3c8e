#!/usr/bin/env bash
# Unsupervised prompt tuning: pseudo-label the training split with zero-shot CLIP, keep K per
# pseudo-class (SHOTS, default 16), prompt-tune on them for every seed; then per-seed and
# seed-ensemble test accuracy, and zero-shot CLIP's for reference.
#
#   bash scripts/upl/main.sh DATASET BACKBONE SELECTION LOSS [KEY VALUE ...]
#   e.g. DATA=/data bash scripts/upl/main.sh dtd rn50 random gce     (the paper's variant)
#        DATA=/data bash scripts/upl/main.sh dtd rn50 topk ce        (UPL)
#
# SELECTION: topk | random. Environment as main.sh (DATA, SEEDS default "1 2 3 4", SHOTS, NCTX,
# OUT, CLIP_WEIGHTS, PYTHON), plus TEMPLATES (dataset | ensemble) and PSEUDO_BACKBONES (CLIP names
# or files whose probabilities are averaged, e.g. "RN50 ViT-B/32"; default: the trained one).
# RELEASE=1: the release's GCE q 0.5 (VARIANT gets "-release"); the seeds 1-4 ensemble is the default.
set -euo pipefail
source "$(dirname "$0")/../ptnl/lib.sh"
if [ $# -lt 4 ]; then ptnl_usage "$0"; exit 2; fi
export SEEDS=${SEEDS:-"1 2 3 4"} OUT=${OUT:-output}
ptnl_abs_paths OUT DATA CLIP_WEIGHTS
cd "$(dirname "$0")/../.."
DATASET=$1; BACKBONE=$2; SELECTION=$3; LOSS=$4; shift 4
PYTHON=${PYTHON:-python}
TEMPLATES=${TEMPLATES:-dataset}
BACKBONES=()
for B in ${PSEUDO_BACKBONES:-}; do BACKBONES+=("$B"); done
BB_OPT=()
if [ ${#BACKBONES[@]} -gt 0 ]; then
  BB_OPT=(TRAINER.UPL.BACKBONES "[$(printf '"%s",' "${BACKBONES[@]}" | sed 's/,$//')]")
fi
VARIANT="${SELECTION}-${TEMPLATES}${PSEUDO_BACKBONES:+-$(echo "${PSEUDO_BACKBONES}" | tr ' /' '+-')}"
UPL_RELEASE=()
if [ "${RELEASE:-0}" = 1 ]; then UPL_RELEASE=(TRAINER.PTNL.GCE_Q 0.5); VARIANT="${VARIANT}-release"; fi
# One plan (lib.sh; ENGINE as in main.sh): the UPL seeds and zero-shot CLIP, then the tables.
ptnl_plan_init upl
RELEASE=0 TRAINER=UPL VARIANT=${VARIANT} ptnl_plan_main "${DATASET}" "${BACKBONE}" 0.0 "${LOSS}" \
  TRAINER.UPL.SELECTION "${SELECTION}" TRAINER.UPL.TEMPLATES "${TEMPLATES}" "${BB_OPT[@]}" "${UPL_RELEASE[@]}" "$@"
RELEASE=0 SEEDS=1 TRAINER=ZeroshotCLIP ptnl_plan_main "${DATASET}" "${BACKBONE}" 0.0 ce "$@"
ptnl_plan_summary "UPL ${SELECTION} ${LOSS} (${VARIANT}), seeds ${SEEDS}; zero-shot CLIP"
BB_DIR=$(ptnl_backbone_dir)
ptnl_plan_report "$PYTHON" -m ptnl.report.ensemble "${OUT}/${DATASET}/UPL/${BB_DIR}/sym-swap-0.0/${LOSS}/${VARIANT}"
ptnl_plan_report echo
ptnl_plan_report echo "Zero-shot CLIP (reference):"
ptnl_plan_report "$PYTHON" -m ptnl.report "${OUT}/${DATASET}/ZeroshotCLIP/${BB_DIR}/sym-swap-0.0/ce"
if ptnl_can_plot; then  # zero-shot CLIP against UPL, with the pseudo-labels' accuracy
  ptnl_plan_report "$PYTHON" -m ptnl.report "${OUT}/${DATASET}/UPL/${BB_DIR}/sym-swap-0.0" \
    "${OUT}/${DATASET}/ZeroshotCLIP/${BB_DIR}/sym-swap-0.0/ce" --figure upl --out "${OUT}/${DATASET}_upl.png"
fi
ptnl_plan_run
