#!/usr/bin/env bash
# The whole pipeline on a laptop CPU with nothing downloaded, on the pocket world
# (python -m ptnl.pocket): a small CLIP this project pretrained on drawn textures and their
# captions (shipped with ptnl), and a 12-class DTD-layout dataset of held-out texture photos whose
# class names it has learned (generated on first use in seconds, the same bytes on every machine).
#
# Zero-shot CLIP, a linear probe, a linear classifier on frozen features (ClassifierR, CE) and
# prompt tuning (PTNL, CE and GCE), at symmetric swap noise rates 0, 0.25, 0.5 and 0.75, two seeds,
# then the table (and a plot, when matplotlib is installed). About 12 minutes on 2 CPU cores.
#
#   bash scripts/ptnl/demo.sh
#
# Environment: OUT (default <ptnl cache>/pocket-demo), SEEDS ("1 2"), SHOTS (16), EPOCHS (50),
# RATES ("0.0 0.25 0.5 0.75"), PYTHON, PTNL_CACHE_DIR (where the pocket world is cached).
# Finished runs are skipped, so a second call only prints the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
CACHE=${PTNL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ptnl}
export OUT=${OUT:-$CACHE/pocket-demo}
mkdir -p "$OUT/logs"

"$PYTHON" -m ptnl.pocket    # generates the dataset on first use; prints the weights, --root and zero-shot accuracy
{ read -r DATA; read -r RES; } < <("$PYTHON" -m ptnl.pocket --field root resolution)
echo

export DATA CLIP_WEIGHTS=pocket SEEDS=${SEEDS:-"1 2"} SHOTS=${SHOTS:-16}
RATES=${RATES:-"0.0 0.25 0.5 0.75"}
OPTS=(INPUT.SIZE "(${RES}, ${RES})" OPTIM.MAX_EPOCH "${EPOCHS:-50}" DATALOADER.NUM_WORKERS 0)
START=$(date +%s)
for SPEC in ZeroshotCLIP:ce LinearProbe:ce ClassifierR:ce PTNL:ce PTNL:gce; do
  TRAINER=${SPEC%%:*}; LOSS=${SPEC##*:}
  for RATE in ${RATES}; do
    LOG=$OUT/logs/$TRAINER-$LOSS-$RATE.log
    TRAINER=$TRAINER SUMMARY=0 bash scripts/ptnl/main.sh dtd rn50 "$RATE" "$LOSS" "${OPTS[@]}" > "$LOG" 2>&1 \
      || { echo "main.sh failed; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
    echo "finished: $TRAINER $LOSS at noise $RATE ($(( $(date +%s) - START ))s)"
  done
done
echo
if "$PYTHON" -c "import matplotlib" 2>/dev/null; then
  "$PYTHON" -m ptnl.report --pivot --plot "$OUT/demo.png" "$OUT/dtd"
else
  "$PYTHON" -m ptnl.report --pivot "$OUT/dtd"
fi
