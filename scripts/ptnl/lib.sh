# Shared by the scripts in scripts/: usage, paths, the output folder of one run, the run count and ETA.
#
# ptnl_run_dir TRAINER LOSS RATE SHOT SEED, reading OUT DATASET BACKBONE CLIP_WEIGHTS NOISE_TYPE
# NOISE_MODE VARIANT NCTX CSC CTP (main.sh's defaults when unset):
#   <OUT>/<DATASET>/<TRAINER>/<backbone>/<type>-<mode>-<rate>/<LOSS>/[<VARIANT>/]<setting>/seed<SEED>
# <backbone>: the CLIP_WEIGHTS name when set (a weights file: its name without extension; open_clip names
# as arch@pretrained), else
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
# open_clip names are arch@pretrained (open_clip:ViT-B-32/laion2b_s34b_b79k -> ViT-B-32@laion2b_s34b_b79k; a
# weights file: arch@<file name without extension>; open_clip:pocket -> open_clip@pocket).
ptnl_backbone_dir() {
  local w=${CLIP_WEIGHTS:-} arch pre
  if [ -z "$w" ]; then echo "${BACKBONE}"; return; fi
  if [[ "$w" == open_clip:* ]]; then
    w=${w#open_clip:}
    if [[ "$w" != */* ]]; then echo "open_clip@${w}"; return; fi
    arch=${w%%/*}; pre=${w#*/}
    case "$pre" in */*|*.pt|*.pth|*.bin|*.safetensors) pre=$(basename "$pre"); pre=${pre%.*} ;; esac
    echo "${arch}@${pre}"; return
  fi
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

# A grid is one plan (python -m ptnl.sweep; README "Running on a cluster"), built here and run by
# ENGINE (local: one run after another, the default; gpus: GPUS="0 1", SLOTS_PER_GPU=N|auto runs at once
# on each; slurm: SBATCH_ARGS, MAX_PARALLEL):
#   ptnl_plan_init TAG [KEY VALUE ...]             the grid's tag and its trailing train.py options
#   ptnl_plan_add TRAINER LOSS RATE SHOT SEED NCTX one run (main.sh's settings from the environment)
#   ptnl_plan_main DATASET BACKBONE RATE LOSS [KEY VALUE ...]  main.sh's runs (SEEDS x SHOTS) as they are
#   ptnl_plan_summary "what the grid is"; ptnl_plan_report ARGV...  a closing command ({dirs}: the
#   grid's run folders that exist, or $OUT/$DATASET with ALL_RUNS=1); ptnl_plan_run  hands it over.
# main.sh writes each run's train.py command line and folder (PTNL_PLAN_APPEND); the engine prints
# "[TAG] N runs (D done already)", a "[TAG] run i/N [###...] d/N done, elapsed, ETA" line before each
# unfinished run, main.sh's Running/Resuming/Retrying/Done already lines, then the table.
# DRY_RUN=1 prints the plan in a few lines (VERBOSE=1: every run, each one's resolved config), a
# GPU-hours estimate from the finished runs' wall_time_s and what train.py's checks say. With
# ENGINE=local, runs that share a data stream (same dataset, shots, seed, noise, ...; other losses or
# prompt trainers) train in lockstep, and the plan's groups and lone runs one after another, in one
# process (train.py --group, docs/cluster.md "Grouped runs"); PACK=0: a process a group; GROUP=0: one a run.
# Within a group the runs of one prompt shape are stacked (one text pass, one backward per batch;
# docs/speed.md "Stacked runs"); STACK=0: not stacked (TRAINER.PTNL.STACK False for each).

# python -m ptnl.sweep with a plain Python (it needs no torch; PYTHON may be a fake or another env).
ptnl_sweep() {
  "${PTNL_SWEEP_PYTHON:-python3}" -m ptnl.sweep "$@"
}

# A JSON string; the arguments as a JSON array of strings.
ptnl_json_str() {
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\t'/\\t}; s=${s//$'\n'/\\n}; s=${s//$'\r'/\\r}
  printf '"%s"' "$s"
}

ptnl_json_array() {
  local a out="" sep=""
  for a in "$@"; do out+="${sep}$(ptnl_json_str "$a")"; sep=,; done
  printf '[%s]' "$out"
}

ptnl_plan_init() {
  PLAN_TAG=$1; shift; PLAN_ARGS=("$@"); PLAN_DESC=""; PLAN_NCTX=${PLAN_NCTX:-0}
  PLAN_BUILD=$(mktemp "${TMPDIR:-/tmp}/ptnl-plan.XXXXXX")
  trap 'rm -f "${PLAN_BUILD}"' EXIT  # also after a Ctrl-C or a refused command
}

ptnl_plan_main() {  # DATASET BACKBONE RATE LOSS [KEY VALUE ...], settings from the environment
  PTNL_PLAN_APPEND=${PLAN_BUILD} SUMMARY=0 bash scripts/ptnl/main.sh "$@"
}

ptnl_plan_add() {  # TRAINER LOSS RATE SHOT SEED NCTX
  TRAINER=$1 NCTX=$6 SHOTS=$4 SEEDS=$5 ptnl_plan_main "${DATASET}" "${BACKBONE}" "$3" "$2" "${PLAN_ARGS[@]}"
}

ptnl_plan_summary() {
  PLAN_DESC=$1
}

# True when the reports can draw figures (matplotlib importable by PYTHON).
ptnl_can_plot() {
  "${PYTHON:-python}" -c "import matplotlib" >/dev/null 2>&1
}

ptnl_plan_report() {  # ARGV... ({dirs}: the grid's run folders, or $OUT/$DATASET with ALL_RUNS=1)
  local a args=()
  for a in "$@"; do
    if [ "$a" = "{dirs}" ] && [ "${ALL_RUNS:-0}" = 1 ]; then a="${OUT}/${DATASET}"; fi
    args+=("$a")
  done
  printf '{"report": %s}\n' "$(ptnl_json_array "${args[@]}")" >> "${PLAN_BUILD}"
}

ptnl_plan_run() {
  local rc=0 nctx=()
  if [ "${PLAN_NCTX:-0}" = 1 ]; then nctx=(--nctx-label); fi
  ptnl_sweep run "${PLAN_BUILD}" --out "${OUT:-output}" --name "${PLAN_TAG}-${DATASET}-${BACKBONE}" \
    --tag "${PLAN_TAG}" --title "${DATASET} ${BACKBONE}" --desc "${PLAN_DESC}" "${nctx[@]}" || rc=$?
  rm -f "${PLAN_BUILD}"
  return "$rc"
}
