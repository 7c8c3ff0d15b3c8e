#!/usr/bin/env bash
# Context length: PTNL with N_CTX 0 1 2 4 8 16 32 at noise rates 0 and 0.5, then one table.
#
#   bash scripts/ptnl/ctx_length.sh DATASET BACKBONE [KEY VALUE ...]
#
# Environment (besides main.sh's): NCTXS ("0 1 2 4 8 16 32"), RATES ("0.0 0.5"), LOSSES ("ce").
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 2 ]; then sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 2; fi
DATASET=$1; BACKBONE=$2; shift 2
NCTXS=${NCTXS:-"0 1 2 4 8 16 32"}
RATES=${RATES:-"0.0 0.5"}
LOSSES=${LOSSES:-"ce"}
export OUT=${OUT:-output}
for NCTX in ${NCTXS}; do
  for LOSS in ${LOSSES}; do
    for RATE in ${RATES}; do
      NCTX=${NCTX} TRAINER=PTNL SUMMARY=0 bash scripts/ptnl/main.sh "${DATASET}" "${BACKBONE}" "${RATE}" "${LOSS}" "$@"
    done
  done
done
echo
"${PYTHON:-python}" -m ptnl.report --pivot "${OUT}/${DATASET}/PTNL/${BACKBONE}"
