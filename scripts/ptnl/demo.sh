#!/usr/bin/env bash
# The whole pipeline on a laptop CPU with nothing downloaded: generates a small DTD-layout
# dataset and a small CLIP weights file (real clip.model classes, real tokenizer, random
# weights, so accuracies are not meaningful) in a cache folder, then runs main.sh with CE and GCE
# at noise 0 and 0.5 for two seeds and prints the table.
#
#   bash scripts/ptnl/demo.sh            (DEMO_DIR, default ~/.cache/ptnl/demo; OUT, default $DEMO_DIR/output)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
DEMO_DIR=${DEMO_DIR:-${PTNL_CACHE_DIR:-$HOME/.cache/ptnl}/demo}
export OUT=${OUT:-$DEMO_DIR/output}
if [ ! -f "$DEMO_DIR/clip-small.pt" ]; then
  "$PYTHON" -m ptnl.synthetic --root "$DEMO_DIR/data" --clip "$DEMO_DIR/clip-small.pt" --classes 6 --per-class 40
fi
export DATA=$DEMO_DIR/data CLIP_WEIGHTS=$DEMO_DIR/clip-small.pt SEEDS=${SEEDS:-"1 2"} SHOTS=${SHOTS:-8}
for LOSS in ce gce; do
  for RATE in 0.0 0.5; do
    bash scripts/ptnl/main.sh dtd rn50 "$RATE" "$LOSS" \
      INPUT.SIZE "(32, 32)" OPTIM.MAX_EPOCH "${EPOCHS:-10}" DATALOADER.NUM_WORKERS 0 \
      DATALOADER.TRAIN_X.BATCH_SIZE 16 > "$DEMO_DIR/main-$LOSS-$RATE.log" 2>&1 \
      || { echo "main.sh failed; see $DEMO_DIR/main-$LOSS-$RATE.log" >&2; tail -20 "$DEMO_DIR/main-$LOSS-$RATE.log" >&2; exit 1; }
    echo "finished: $LOSS at noise $RATE"
  done
done
echo
if "$PYTHON" -c "import matplotlib" 2>/dev/null; then
  "$PYTHON" -m ptnl.results "$OUT/dtd" --plot "$OUT/dtd_demo.png"
  echo "Plot: $OUT/dtd_demo.png (test accuracy against noise rate, one line per trainer × loss, band ± std over seeds)"
else
  "$PYTHON" -m ptnl.results "$OUT/dtd"
  echo "No plot: matplotlib is not installed (pip install matplotlib)"
fi
