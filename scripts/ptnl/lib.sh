# Shared by the scripts in scripts/: usage, paths, the output folder of one run, the run count and ETA.
#
# ptnl_run_dir TRAINER LOSS RATE SHOT SEED, reading OUT DATASET BACKBONE CLIP_WEIGHTS NOISE_TYPE
# NOISE_MODE VARIANT NCTX CSC CTP (main.sh's defaults when unset):
#   <OUT>/<DATASET>/<TRAINER>/<backbone>/<type>-<mode>-<rate>/<LOSS>/[<VARIANT>/]<setting>/seed<SEED>
# <backbone>: the CLIP_WEIGHTS name when set (a weights file: its name without extension), else
# BACKBONE; <rate>: Python's repr of the float (0.5 and 0.50 are one run; an existing folder written
# as 0.50 is used); <setting>: shots<K>_nctx<N>_csc<C>_ctp<P>, or shots<K> for the trainers
# without prompt settings (PTNL_PROMPT_FREE; tests/test_scripts_ux.py checks it against the trainers).

PTNL_PROMPT_FREE="ClassifierC ClassifierR ImageNetFT LinearProbe TEncFT ZeroshotCLIP"

# RELEASE=1: the released code's protocol where it differs from ours (README "Label noise"):
# NOISE_MODE release (its few-shot and noise sampler), SEEDS "1 2 3 4" unless set, and RELEASE_OPTS
# for train.py (GCE q 0.5; test logits saved, for the seed ensemble). Call right after sourcing.
ptnl_release() {
  RELEASE_OPTS=()
  case "${RELEASE:-0}" in
    0|"") return 0 ;;
    1) ;;
    *) echo "RELEASE must be 0 or 1, got '${RELEASE}'" >&2; return 2 ;;
  esac
  if [ -n "${NOISE_MODE:-}" ] && [ "${NOISE_MODE}" != release ]; then
    echo "RELEASE=1 uses NOISE_MODE release; NOISE_MODE=${NOISE_MODE} contradicts it (unset one of them)" >&2
    return 2
  fi
  NOISE_MODE=release; SEEDS=${SEEDS:-"1 2 3 4"}
  RELEASE_OPTS=(TRAINER.PTNL.GCE_Q 0.5 TRAINER.PTNL.SAVE_TEST_LOGITS True)
}

# The comment block at the top of a script (after the #! line), without the '# ': its usage.
ptnl_usage() {
  sed -n '2,${/^#/!q;s/^# \{0,1\}//;p}' "$1"
}

# Relative paths in these variables resolve against the caller's folder (call before cd).
ptnl_abs_paths() {
  local v val
  for v in "$@"; do
    val=${!v:-}
    # CLIP_WEIGHTS may be a name (pocket, ViT-B/32): only an existing file is a path
    if [ -n "$val" ] && [[ "$val" != /* ]] && { [ "$v" != CLIP_WEIGHTS ] || [ -e "$val" ]; }; then
      printf -v "$v" '%s' "$PWD/${val#./}"
      export "${v?}"
    fi
  done
}

# A noise rate as Python's repr of the float: 0.50, .5, 0.500 -> 0.5; 0 -> 0.0.
ptnl_rate() {
  local r=$1 int frac
  if [[ "$r" =~ ^([0-9]*)\.?([0-9]*)$ ]] && [ -n "$r" ] && [ "$r" != . ]; then
    int=${BASH_REMATCH[1]}; frac=${BASH_REMATCH[2]}
    int=$(echo "$int" | sed 's/^0*//'); frac=$(echo "$frac" | sed 's/0*$//')
    if [[ ${int:-0}.${frac:-0} =~ ^0\.0{4}[0-9] ]] || [ ${#int} -gt 15 ]; then  # repr's exponent form
      python3 -c 'import sys; print(repr(float(sys.argv[1])))' "$r" 2>/dev/null || echo "$r"
    else
      echo "${int:-0}.${frac:-0}"
    fi
  else  # 1e-1 and the like; anything else as given (train.py reports a bad rate)
    python3 -c 'import sys; print(repr(float(sys.argv[1])))' "$r" 2>/dev/null || echo "$r"
  fi
}

# The backbone folder level: the CLIP_WEIGHTS name when set, else the BACKBONE argument.
ptnl_backbone_dir() {
  local w=${CLIP_WEIGHTS:-}
  if [ -z "$w" ]; then echo "${BACKBONE}"; return; fi
  case "$w" in
    *.pt|*.pth|*.bin|*.ckpt|*.tar) w=$(basename "$w"); echo "${w%.*}" ;;
    *) if [ -f "$w" ]; then basename "$w"; else echo "${w//\//-}"; fi ;;
  esac
}

ptnl_run_dir() {
  local top rate noise setting d
  top="${OUT:-output}/${DATASET}/$1/$(ptnl_backbone_dir)"
  rate=$(ptnl_rate "$3")
  noise="${NOISE_TYPE:-sym}-${NOISE_MODE:-swap}"
  if [ ! -d "${top}/${noise}-${rate}" ]; then  # a folder written before rates were normalised
    for d in "${top}/${noise}-"*; do
      if [ -d "$d" ] && [ "$(ptnl_rate "${d##*-}")" = "$rate" ]; then rate=${d##*-}; break; fi
    done
  fi
  setting="shots$4_nctx${NCTX:-16}_csc${CSC:-False}_ctp${CTP:-end}"
  if [[ " ${PTNL_PROMPT_FREE} " == *" $1 "* ]]; then setting="shots$4"; fi
  echo "${top}/${noise}-${rate}/$2/${VARIANT:+${VARIANT}/}${setting}/seed$5"
}

# Run count and ETA of a grid: ptnl_plan_init TAG; ptnl_plan_add TRAINER LOSS RATE SHOT SEED NCTX
# per run, in order; ptnl_plan_summary "what the grid is"; ptnl_plan_run [KEY VALUE ...] runs
# main.sh once per run (finished ones too: train.py checks their settings and skips them) with a
# "[TAG] run i/N [###...] d/N done, elapsed, ETA" line before each unfinished one (the ETA: the
# mean time of this session's runs per trainer, times the runs left).
hms() { printf "%d:%02d:%02d" $(($1 / 3600)) $(($1 % 3600 / 60)) $(($1 % 60)); }

ptnl_plan_init() {
  PLAN_TAG=$1; PLAN=(); PLAN_DIRS=(); FINISHED=(); TOTAL=0; DONE=0; PLAN_START=${SECONDS}
  declare -gA SPENT=() COUNT=()
}

ptnl_plan_add() {  # TRAINER LOSS RATE SHOT SEED NCTX
  local dir
  dir=$(NCTX=$6 ptnl_run_dir "$1" "$2" "$3" "$4" "$5")
  PLAN+=("$*"); PLAN_DIRS+=("$dir"); TOTAL=$((TOTAL + 1))
  if [ -f "$dir/results.json" ]; then DONE=$((DONE + 1)); FINISHED+=(1); else FINISHED+=(0); fi
}

ptnl_plan_summary() {
  echo "[${PLAN_TAG}] ${DATASET} ${BACKBONE}: ${TOTAL} runs (${DONE} done already): $1"
}

ptnl_progress() {  # I LABEL
  local width=24 filled eta=0 known=0 t j avg total_spent=0 total_count=0 bar
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
  bar=$(printf "%${filled}s" "" | tr ' ' '#')$(printf "%$((width - filled))s" "" | tr ' ' '.')
  if [ "$known" -gt 0 ]; then eta="ETA $(hms "$eta")"; else eta="ETA after the first run"; fi
  echo "[${PLAN_TAG}] run $1/${TOTAL} [${bar}] ${DONE}/${TOTAL} done, elapsed $(hms $((SECONDS - PLAN_START))), ${eta}: $2"
}

ptnl_plan_run() {  # [KEY VALUE ...] for main.sh
  local i=0 p trainer loss rate shot seed nctx t0 label
  for p in "${PLAN[@]}"; do
    i=$((i + 1))
    read -r trainer loss rate shot seed nctx <<< "$p"
    if [ "${FINISHED[$((i - 1))]}" != 1 ]; then
      label="${trainer} ${loss} rate ${rate} shots ${shot} seed ${seed}"
      if [ "${PLAN_NCTX:-0}" = 1 ]; then label="${trainer} n_ctx ${nctx} ${loss} rate ${rate} shots ${shot} seed ${seed}"; fi
      ptnl_progress "$i" "$label"
    fi
    t0=${SECONDS}
    if ! TRAINER=${trainer} NCTX=${nctx} SEEDS=${seed} SHOTS=${shot} SUMMARY=0 \
         bash scripts/ptnl/main.sh "${DATASET}" "${BACKBONE}" "${rate}" "${loss}" "$@"; then
      echo "[${PLAN_TAG}] run ${i}/${TOTAL} failed: ${PLAN_DIRS[$((i - 1))]} (${DONE}/${TOTAL} done; the same command resumes)" >&2
      return 1
    fi
    if [ "${FINISHED[$((i - 1))]}" != 1 ]; then
      SPENT[$trainer]=$(( ${SPENT[$trainer]:-0} + SECONDS - t0 )); COUNT[$trainer]=$(( ${COUNT[$trainer]:-0} + 1 ))
      if [ "${DRY_RUN:-0}" != 1 ]; then DONE=$((DONE + 1)); FINISHED[$((i - 1))]=1; fi
    fi
  done
  echo "[${PLAN_TAG}] ${DONE}/${TOTAL} runs done, this session $(hms $((SECONDS - PLAN_START)))"
}

# The folders to summarise: the grid's own run folders, or everything under OUT/DATASET with
# ALL_RUNS=1 (other grids sharing OUT included).
ptnl_report_dirs() {
  REPORT_DIRS=()
  if [ "${ALL_RUNS:-0}" = 1 ]; then REPORT_DIRS=("${OUT}/${DATASET}"); return; fi
  local d
  for d in "${PLAN_DIRS[@]}"; do if [ -d "$d" ]; then REPORT_DIRS+=("$d"); fi; done
}
