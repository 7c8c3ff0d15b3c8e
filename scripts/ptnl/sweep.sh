#!/usr/bin/env bash
# The paper's Figure 1: test accuracy against noise rate for prompt tuning (CE and GCE), the linear
# probe and a randomly initialised linear classifier, every seed; then one table and one plot.
#
#   bash scripts/ptnl/sweep.sh DATASET BACKBONE [KEY VALUE ...]
#   e.g. DATA=/data bash scripts/ptnl/sweep.sh dtd rn50
#
# Environment (besides main.sh's DATA, SEEDS, SHOTS, NOISE_TYPE, NOISE_MODE, NCTX, OUT, CLIP_WEIGHTS, ...):
# RATES ("0.0 0.125 0.25 0.375 0.5 0.625 0.75"), TRAINERS ("PTNL LinearProbe ClassifierR"),
# LOSSES ("ce gce"), LOSS_TRAINERS ("PTNL": the trainers that run every loss; the others run ce).
# Finished runs are skipped; a "[sweep] run i/N" line with the ETA of the whole sweep starts each
# run. Ends with the table and the plot $OUT/<DATASET>_sweep.png (needs matplotlib).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/ptnl/lib.sh
if [ $# -lt 2 ]; then sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; fi
DATASET=$1; BACKBONE=$2; shift 2
RATES=${RATES:-"0.0 0.125 0.25 0.375 0.5 0.625 0.75"}
TRAINERS=${TRAINERS:-"PTNL LinearProbe ClassifierR"}
LOSSES=${LOSSES:-"ce gce"}
LOSS_TRAINERS=${LOSS_TRAINERS:-PTNL}
export OUT=${OUT:-output}
SEEDS=${SEEDS:-"1 2 3"} SHOTS=${SHOTS:-16}
hms() { printf "%d:%02d:%02d" $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }

PLAN=()   # "TRAINER LOSS RATE SHOT SEED", in the order they run
for TRAINER in ${TRAINERS}; do
  TRAINER_LOSSES=ce
  if [[ " ${LOSS_TRAINERS} " == *" ${TRAINER} "* ]]; then TRAINER_LOSSES=${LOSSES}; fi
  for LOSS in ${TRAINER_LOSSES}; do
    for RATE in ${RATES}; do
      for SHOT in ${SHOTS}; do
        for SEED in ${SEEDS}; do PLAN+=("${TRAINER} ${LOSS} ${RATE} ${SHOT} ${SEED}"); done
      done
    done
  done
done
TOTAL=${#PLAN[@]}
DONE=0
FINISHED=()   # 1: results.json present
for P in "${PLAN[@]}"; do
  read -r TRAINER LOSS RATE SHOT SEED <<< "$P"
  if [ -f "$(ptnl_run_dir "$TRAINER" "$LOSS" "$RATE" "$SHOT" "$SEED")/results.json" ]; then
    DONE=$((DONE + 1)); FINISHED+=(1)
  else FINISHED+=(0); fi
done
echo "[sweep] ${DATASET} ${BACKBONE}: ${TOTAL} runs (${DONE} done already): trainers ${TRAINERS}; losses ${LOSSES}" \
     "(${LOSS_TRAINERS}; ce for the others); rates ${RATES}; shots ${SHOTS}; seeds ${SEEDS}"

declare -A SPENT COUNT   # seconds and runs per trainer, this session: the ETA of the runs left
START=${SECONDS}
progress() {  # I
  local width=24 filled eta=0 known=0 t j avg total_spent=0 total_count=0
  filled=$((DONE * width / (TOTAL > 0 ? TOTAL : 1)))
  for t in "${!SPENT[@]}"; do total_spent=$((total_spent + SPENT[$t])); total_count=$((total_count + COUNT[$t])); done
  for ((j = $1 - 1; j < TOTAL; j++)); do
    if [ "${FINISHED[$j]}" = 1 ]; then continue; fi
    t=${PLAN[$j]%% *}
    if [ "${COUNT[$t]:-0}" -gt 0 ]; then avg=$((SPENT[$t] / COUNT[$t]))
    elif [ "$total_count" -gt 0 ]; then avg=$((total_spent / total_count))
    else avg=-1; fi
    if [ "$avg" -ge 0 ]; then eta=$((eta + avg)); known=$((known + 1)); fi
  done
  local bar
  bar=$(printf "%${filled}s" "" | tr ' ' '#')$(printf "%$((width - filled))s" "" | tr ' ' '.')
  if [ "$known" -gt 0 ]; then eta="ETA $(hms "$eta")"; else eta="ETA after the first run"; fi
  echo "[sweep] run $1/${TOTAL} [${bar}] ${DONE}/${TOTAL} done, elapsed $(hms $((SECONDS - START))), ${eta}: $2"
}

I=0
for P in "${PLAN[@]}"; do
  I=$((I + 1))
  read -r TRAINER LOSS RATE SHOT SEED <<< "$P"
  DIR=$(ptnl_run_dir "$TRAINER" "$LOSS" "$RATE" "$SHOT" "$SEED")
  if [ -f "${DIR}/results.json" ]; then continue; fi
  progress "$I" "${TRAINER} ${LOSS} rate ${RATE} shots ${SHOT} seed ${SEED}"
  T0=${SECONDS}
  if ! TRAINER=${TRAINER} SEEDS=${SEED} SHOTS=${SHOT} SUMMARY=0 \
       bash scripts/ptnl/main.sh "${DATASET}" "${BACKBONE}" "${RATE}" "${LOSS}" "$@"; then
    echo "[sweep] run ${I}/${TOTAL} failed: ${DIR} (${DONE}/${TOTAL} done; the same command resumes)" >&2
    exit 1
  fi
  SPENT[$TRAINER]=$(( ${SPENT[$TRAINER]:-0} + SECONDS - T0 )); COUNT[$TRAINER]=$(( ${COUNT[$TRAINER]:-0} + 1 ))
  if [ "${DRY_RUN:-0}" != 1 ]; then DONE=$((DONE + 1)); FINISHED[$((I - 1))]=1; fi
done
echo "[sweep] ${DONE}/${TOTAL} runs done, this session $(hms $((SECONDS - START)))"
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
echo
DIRS=(); declare -A SEEN
for P in "${PLAN[@]}"; do   # the sweep's <loss>[/<variant>] folders, so other sweeps in OUT stay out
  read -r TRAINER LOSS RATE SHOT SEED <<< "$P"
  D=$(dirname "$(dirname "$(ptnl_run_dir "$TRAINER" "$LOSS" "$RATE" "$SHOT" "$SEED")")")
  if [ -d "$D" ] && [ -z "${SEEN[$D]:-}" ]; then SEEN[$D]=1; DIRS+=("$D"); fi
done
if [ ${#DIRS[@]} -eq 0 ]; then echo "[sweep] no runs to summarise" >&2; exit 1; fi
"${PYTHON:-python}" -m ptnl.report --pivot --plot "${OUT}/${DATASET}_sweep.png" "${DIRS[@]}"
