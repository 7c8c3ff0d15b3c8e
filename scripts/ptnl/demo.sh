#!/usr/bin/env bash
# The whole pipeline on a laptop CPU with nothing downloaded, on the pocket world
# (python -m ptnl.pocket): a small CLIP this project pretrained on drawn textures and their
# captions (shipped with ptnl), and a 12-class DTD-layout dataset of held-out texture photos whose
# class names it has learned (generated on first use in seconds, the same bytes on every machine).
#
# Zero-shot CLIP, a linear probe, a linear classifier on frozen features (ClassifierR, CE) and
# prompt tuning (PTNL, CE and GCE), at symmetric swap noise rates 0, 0.25, 0.5 and 0.75, two seeds,
# then the table and, when matplotlib is installed, two figures: accuracy against noise rate
# (demo_sweep.png) and what the models memorise at rate 0.5 (demo_memorisation.png). About 8
# minutes on 2 CPU cores.
#
#   bash scripts/ptnl/demo.sh
#
# Environment: OUT (default <ptnl cache>/pocket-demo), SEEDS ("1 2"), SHOTS (16), EPOCHS (50),
# RATES ("0.0 0.25 0.5 0.75"), PYTHON, PTNL_CACHE_DIR (where the pocket world is cached), FIGURES
# (the figures' folder, default OUT; FIGURES=docs regenerates the README's), GROUP (1: PTNL's CE and
# GCE runs of a rate and seed train in one process; 0: one a run).
# Finished runs are skipped, so a second call only prints the table.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
CACHE=${PTNL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ptnl}
export OUT=${OUT:-$CACHE/pocket-demo}
mkdir -p "$OUT"

"$PYTHON" -m ptnl.pocket    # generates the dataset on first use; prints the weights, --root and zero-shot accuracy
{ read -r DATA; read -r RES; } < <("$PYTHON" -m ptnl.pocket --field root resolution)
echo

export DATA CLIP_WEIGHTS=pocket SEEDS=${SEEDS:-"1 2"} SHOTS=${SHOTS:-16}
RATES=${RATES:-"0.0 0.25 0.5 0.75"}
OPTS=(INPUT.SIZE "(${RES}, ${RES})" OPTIM.MAX_EPOCH "${EPOCHS:-50}" DATALOADER.NUM_WORKERS 0)
# One plan (scripts/ptnl/lib.sh; ENGINE=gpus or slurm work here too).
DATASET=dtd BACKBONE=rn50
ptnl_plan_init demo
for SPEC in ZeroshotCLIP:ce LinearProbe:ce ClassifierR:ce PTNL:ce PTNL:gce; do
  for RATE in ${RATES}; do
    TRAINER=${SPEC%%:*} ptnl_plan_main "${DATASET}" "${BACKBONE}" "${RATE}" "${SPEC##*:}" "${OPTS[@]}"
  done
done
ptnl_plan_summary "zero-shot, linear probe, ClassifierR (ce), PTNL (ce, gce); rates ${RATES}; seeds ${SEEDS}"
FIGURES=${FIGURES:-$OUT}  # FIGURES=docs regenerates the README's two figures
if ptnl_can_plot; then
  ptnl_plan_report "$PYTHON" -m ptnl.report --pivot "$OUT/dtd" --figure noise --out "$FIGURES/demo_sweep.png"
  ptnl_plan_report "$PYTHON" -m ptnl.report "$OUT/dtd" --where noise_rate=0.5 --figure memorisation \
    --out "$FIGURES/demo_memorisation.png"
else
  ptnl_plan_report "$PYTHON" -m ptnl.report --pivot "$OUT/dtd"
fi
ptnl_plan_run
