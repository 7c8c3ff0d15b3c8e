#!/usr/bin/env bash
# The paper's ablation: the six model configurations x noise rates x losses x seeds, then one table.
#
#   bash scripts/ptnl/ablation.sh DATASET BACKBONE [KEY VALUE ...]
#
# Environment (besides main.sh's DATA, SEEDS, SHOTS, NOISE_TYPE, NOISE_MODE, OUT, CLIP_WEIGHTS, ...):
# CONFIGS ("ClassifierR ClassifierC TEncFT PTNL FullPromptTuning CLSTuning"),
# RATES ("0.0 0.125 0.25 0.5 0.75"), LOSSES ("ce gce"). Finished runs are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 2 ]; then sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; fi
DATASET=$1; BACKBONE=$2; shift 2
CONFIGS=${CONFIGS:-"ClassifierR ClassifierC TEncFT PTNL FullPromptTuning CLSTuning"}
RATES=${RATES:-"0.0 0.125 0.25 0.5 0.75"}
LOSSES=${LOSSES:-"ce gce"}
export OUT=${OUT:-output}
for CONFIG in ${CONFIGS}; do
  for LOSS in ${LOSSES}; do
    for RATE in ${RATES}; do
      TRAINER=${CONFIG} SUMMARY=0 bash scripts/ptnl/main.sh "${DATASET}" "${BACKBONE}" "${RATE}" "${LOSS}" "$@"
    done
  done
done
echo
DIRS=(); for CONFIG in ${CONFIGS}; do DIRS+=("${OUT}/${DATASET}/${CONFIG}/${BACKBONE}"); done
"${PYTHON:-python}" -m ptnl.report --pivot "${DIRS[@]}"
