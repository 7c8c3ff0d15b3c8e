# Shared by the scripts in scripts/: the output folder of one run.
# ptnl_run_dir TRAINER LOSS RATE SHOT SEED, reading OUT DATASET BACKBONE NOISE_TYPE NOISE_MODE
# VARIANT NCTX CSC CTP (main.sh's defaults when unset).
ptnl_run_dir() {
  echo "${OUT:-output}/${DATASET}/$1/${BACKBONE}/${NOISE_TYPE:-sym}-${NOISE_MODE:-swap}-$3/$2/${VARIANT:+${VARIANT}/}shots$4_nctx${NCTX:-16}_csc${CSC:-False}_ctp${CTP:-end}/seed$5"
}
