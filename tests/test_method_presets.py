"""JoAPR's per-dataset presets (configs/methods/joapr.yaml, ptnl.selection.presets) and NLPrompt's
settings implied by RELEASE_BUGS: each dataset gets its row of the release's table for each noise type
and rate (the nearest tabulated rate for others), a key the user sets wins, and every entry point
(train.py's config setup, a run, --dry-run, compare.sh's command) applies them."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from conftest import REPO, SMALL_OPTS, run_py, train_args
from ptnl.selection import presets

RATES = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75)

# The JoAPR release's README table ("The settings of Warmup epochs, α₁, and α₂", github.com/yunncheng/JoAPR
# README.md at 4a6d926a), transcribed independently of configs/methods/joapr.yaml: per dataset (DATASET.NAME)
# and noise type, (warm-up epochs, alpha1, alpha2) at 12.5%, 25%, ..., 75%.
ONES, HALVES = (1,) * 6, (0.5,) * 6
TABLE = {
    "ImageNet": {"sym": (ONES, HALVES, (1.0,) * 6), "pair": (ONES, HALVES, (1.0,) * 6)},
    "SUN397": {"sym": (ONES, HALVES, (1.0,) * 6), "pair": (ONES, HALVES, (1.0,) * 6)},
    "Caltech101": {"sym": (ONES, HALVES, HALVES), "pair": (ONES, HALVES, HALVES)},
    "OxfordFlowers": {"sym": ((20, 20, 20, 20, 20, 1), HALVES, (1.0,) * 6),
                      "pair": ((20, 20, 20, 1, 1, 1), HALVES, (1.0,) * 6)},
    "StanfordCars": {"sym": (ONES, HALVES, (1.0,) * 6), "pair": (ONES, HALVES, (1.0,) * 6)},
    "FGVCAircraft": {"sym": ((150,) * 6, (0.1,) * 5 + (0.5,), (1.0,) * 6),
                     "pair": ((150,) * 6, (0.1,) * 5 + (0.5,), (1.0,) * 6)},
    "OxfordPets": {"sym": (ONES, (0.2,) * 6, (1.0,) * 6), "pair": (ONES, (0.2,) * 6, (1.0,) * 6)},
    "UCF101": {"sym": ((20, 20, 20, 20, 20, 1), HALVES, (1.0,) * 6),
               "pair": ((20, 20, 1, 1, 1, 1), HALVES, (1.0,) * 6)},
    "EuroSAT": {"sym": ((10, 10, 10, 1, 1, 1), (0.2,) * 5 + (0.1,), (1.0,) * 6),
                "pair": ((10, 10, 10, 10, 1, 1), (0.2,) * 5 + (0.1,), (1.0,) * 6)},
    "DescribableTextures": {"sym": (ONES, (0.2,) * 6, (1.0,) * 6), "pair": (ONES, (0.2,) * 5 + (0.1,), (1.0,) * 6)},
}
RELEASE_RN50 = (1, 0.5, 0.5)  # the release's configs/trainers/JoAPR/rn50.yaml: datasets the table lacks
DATASET_FILES = {  # configs/datasets/<file>.yaml -> DATASET.NAME
    "imagenet": "ImageNet", "sun397": "SUN397", "caltech101": "Caltech101", "oxford_flowers": "OxfordFlowers",
    "stanford_cars": "StanfordCars", "fgvc_aircraft": "FGVCAircraft", "oxford_pets": "OxfordPets",
    "ucf101": "UCF101", "eurosat": "EuroSAT", "dtd": "DescribableTextures", "food101": "Food101",
    "food101n": "Food101N"}


def expected(dataset, noise_type, rate):
    """The release's (warm-up, alpha1, alpha2) for a run, by hand: nearest tabulated rate (lower on a
    tie), pairflip for the pair types (pair, pair_next, pair_prev), symflip for the others, the rn50 config
    for datasets not in the table."""
    if dataset not in TABLE:
        return RELEASE_RN50
    i = min(range(6), key=lambda k: (abs(RATES[k] - rate), k))
    row = TABLE[dataset]["pair" if noise_type in ("pair", "pair_next", "pair_prev") else "sym"]
    return tuple(col[i] for col in row)


def resolved(args):
    """train.py's config for ``args`` (its own setup_cfg, nothing built; a dry run, so no weights are needed)."""
    sys.path.insert(0, REPO)
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        import train  # noqa: F401  (registers the datasets and trainers)
        from ptnl.cli.parser import build_parser
        from ptnl.cli.setup import setup_cfg
        return setup_cfg(build_parser().parse_args(["--dry-run"] + list(args)))
    finally:
        os.chdir(cwd)


def joapr_args(dataset_file="dtd", opts=(), config=None, trainer="JoAPR"):
    return ["--trainer", trainer, "--root", "/nonexistent", "--output-dir", "/nonexistent/out",
            "--dataset-config-file", "configs/datasets/{}.yaml".format(dataset_file),
            "--config-file", config or "configs/trainers/{}/rn50.yaml".format(trainer)] + list(opts)


def joapr_values(cfg):
    o = cfg.TRAINER.JOAPR
    return o.WARMUP_EPOCH, o.ALPHA1, o.ALPHA2


def test_table_file_has_every_dataset_and_the_release_default():
    table = presets.load_presets(presets.presets_file("JoAPR"))
    assert table["node"] == "TRAINER.JOAPR" and table["rates"] == list(RATES)
    assert set(table["datasets"]) == set(TABLE)
    assert tuple(table["fallback"][k] for k in ("WARMUP_EPOCH", "ALPHA1", "ALPHA2")) == RELEASE_RN50


@pytest.mark.parametrize("dataset", sorted(DATASET_FILES))
@pytest.mark.parametrize("noise_type", ["sym", "pair"])
@pytest.mark.parametrize("rate", [0.125, 0.375, 0.5, 0.625, 0.75])
def test_each_dataset_gets_its_row(dataset, noise_type, rate):
    """Through train.py's config setup, from the shipped dataset config (DATASET.NAME as registered)."""
    name = DATASET_FILES[dataset]
    cfg = resolved(joapr_args(dataset, ["DATASET.NOISE.TYPE", noise_type, "DATASET.NOISE.RATE", str(rate)]))
    assert cfg.DATASET.NAME == name
    assert joapr_values(cfg) == expected(name, noise_type, rate)
    assert isinstance(cfg.TRAINER.JOAPR.ALPHA1, float) and isinstance(cfg.TRAINER.JOAPR.WARMUP_EPOCH, int)


@pytest.mark.parametrize("dataset,noise_type,rate,tabulated", [
    ("OxfordFlowers", "sym", 0.0, 0.125),  # clean runs: the lowest rate
    ("OxfordFlowers", "pair", 0.4, 0.375),
    ("UCF101", "pair", 0.3, 0.25),
    ("EuroSAT", "sym", 0.9, 0.75),  # beyond the table: the highest rate
    ("EuroSAT", "pair", 0.5625, 0.5),  # a tie between 50% and 62.5%: the lower
    ("FGVCAircraft", "sym", 0.7, 0.75),
    ("DescribableTextures", "pair", 0.7, 0.75),
    ("EuroSAT", "confusion", 0.75, 0.75),  # a type without a column: symflip
    ("UCF101", "pair_prev", 0.375, 0.375),  # pair-flip noise in either direction: the pairflip columns
    ("EuroSAT", "pair_next", 0.5, 0.5),
])
def test_nearest_tabulated_rate_and_other_types(dataset, noise_type, rate, tabulated):
    table = presets.load_presets(presets.presets_file("JoAPR"))
    values, source = presets.lookup_preset(table, dataset, noise_type, rate)
    assert (values["WARMUP_EPOCH"], values["ALPHA1"], values["ALPHA2"]) == expected(dataset, noise_type, tabulated)
    assert "{:g}%".format(100 * tabulated) in source
    assert ("nearest tabulated rate to {:g}".format(rate) in source) == (rate != tabulated)
    if noise_type == "confusion":
        assert "noise type confusion read as symflip" in source


def test_a_bad_table_is_one_clear_error(tmp_path):
    """A row that lacks a key, or lists a number of values other than the number of rates: a
    ConfigError naming the file and the row."""
    from ptnl.errors import ConfigError
    text = open(presets.presets_file("JoAPR")).read()
    short = tmp_path / "short.yaml"
    short.write_text(text.replace("ALPHA1: [0.1, 0.1, 0.1, 0.1, 0.1, 0.5]", "ALPHA1: [0.1, 0.5]", 1))
    with pytest.raises(ConfigError, match=r"short.yaml.*FGVCAircraft symflip ALPHA1: 2 values for 6 rates"):
        presets.load_presets(str(short))
    missing = tmp_path / "missing.yaml"
    missing.write_text(text.replace("symflip: {WARMUP_EPOCH: 1, ALPHA1: 0.2, ALPHA2: 1.0}",
                                    "symflip: {WARMUP_EPOCH: 1, ALPHA1: 0.2}", 1))
    with pytest.raises(ConfigError, match=r"OxfordPets symflip has keys \['ALPHA1', 'WARMUP_EPOCH'\]"):
        presets.load_presets(str(missing))


def test_explicit_user_setting_wins(tmp_path):
    """A key on the command line, or in a config file the user passed, is left as set; the others
    come from the row (EuroSAT sym 25%: warm-up 10, alpha1 0.2, alpha2 1.0)."""
    base = ["DATASET.NOISE.RATE", "0.25"]
    assert joapr_values(resolved(joapr_args("eurosat", base))) == (10, 0.2, 1.0)
    cfg = resolved(joapr_args("eurosat", base + ["TRAINER.JOAPR.ALPHA1", "0.5", "TRAINER.JOAPR.WARMUP_EPOCH", "3"]))
    assert joapr_values(cfg) == (3, 0.5, 1.0)  # 0.5 is the release default: set explicitly, still the user's
    own = tmp_path / "my_joapr.yaml"
    own.write_text(open(osp.join(REPO, "configs/trainers/JoAPR/rn50.yaml")).read().replace(
        "  JOAPR:\n", "  JOAPR:\n    ALPHA2: 0.25\n"))
    assert joapr_values(resolved(joapr_args("eurosat", base, config=str(own)))) == (10, 0.2, 0.25)
    # other trainers' configs are untouched
    ptnl = resolved(joapr_args("eurosat", base, trainer="PTNL"))
    assert joapr_values(ptnl) == RELEASE_RN50  # ptnl/config.py's defaults


def test_nlprompt_release_bugs_implies_the_train_pass_unless_set():
    def nl(*opts):
        return resolved(joapr_args("dtd", opts, trainer="NLPrompt")).TRAINER.NLPROMPT
    assert nl().PASS_TRANSFORM == "test"
    assert nl("TRAINER.NLPROMPT.RELEASE_BUGS", "True").PASS_TRANSFORM == "train"
    explicit = nl("TRAINER.NLPROMPT.RELEASE_BUGS", "True", "TRAINER.NLPROMPT.PASS_TRANSFORM", "test")
    assert explicit.PASS_TRANSFORM == "test"
    assert nl("TRAINER.NLPROMPT.PASS_TRANSFORM", "train").PASS_TRANSFORM == "train"
    # NLPrompt's release has one config for every dataset: nothing else changes by dataset
    a, b = (resolved(joapr_args(d, trainer="NLPrompt")) for d in ("dtd", "fgvc_aircraft"))
    assert dict(a.TRAINER.NLPROMPT) == dict(b.TRAINER.NLPROMPT)


def test_dry_run_prints_the_applied_values(tmp_path):
    root = tmp_path / "data"
    (root / "fgvc_aircraft" / "images").mkdir(parents=True)  # the folder check --dry-run makes: names only
    for name in ("variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt"):
        (root / "fgvc_aircraft" / name).write_text("")
    args = joapr_args("fgvc_aircraft", ["DATASET.NOISE.RATE", "0.5", "DATASET.NOISE.TYPE", "pair"])
    args[args.index("--root") + 1], args[args.index("--output-dir") + 1] = str(root), str(tmp_path / "out")
    proc = run_py(["train.py", "--dry-run"] + args)
    block = proc.stdout[proc.stdout.index("  JOAPR:"):]
    assert "ALPHA1: 0.1" in block and "ALPHA2: 1.0" in block and "WARMUP_EPOCH: 150" in block


def test_compare_sh_runs_get_their_rows(world, tmp_path):
    """scripts/methods/compare.sh (DRY_RUN=1 VERBOSE=1: each planned run's resolved config, through
    train.py's checks): DTD pairflip at 25% and 75% differ in alpha1 (0.2, 0.1); a trailing KEY VALUE
    given to the script wins over the row."""
    env = dict(os.environ, DATA=world["data"], CLIP_WEIGHTS=world["clip"], SEEDS="1", SHOTS="4",
               OUT=str(tmp_path / "out"), PYTHON=sys.executable, METHODS="JoAPR:ce", RATES="0.25 0.75",
               NOISE_TYPE="pair", EPOCHS="2", DRY_RUN="1", VERBOSE="1")
    proc = subprocess.run(["bash", "scripts/methods/compare.sh", "dtd", "rn50", "TRAINER.JOAPR.WARMUP_EPOCH", "3"]
                          + SMALL_OPTS, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    configs = proc.stdout.split("Config of ")[1:]
    assert len(configs) == 2, proc.stdout[-3000:]
    seen = {}
    for text in configs:
        rate = float(re.search(r"^\s+RATE: ([\d.]+)$", text, re.M).group(1))
        block = text[text.index("  JOAPR:"):]
        seen[rate] = tuple(re.search(r"^\s+{}: ([\d.]+)$".format(k), block, re.M).group(1)
                           for k in ("WARMUP_EPOCH", "ALPHA1", "ALPHA2"))
    assert seen == {0.25: ("3", "0.2", "1.0"), 0.75: ("3", "0.1", "1.0")}


def test_train_py_run_applies_logs_and_records_them(world, tmp_path):
    """One JoAPR run on the generated DTD (sym 0.5: the row says warm-up 1, alpha1 0.2, alpha2 1.0),
    alpha2 set on the command line."""
    out = str(tmp_path / "run")
    args = train_args(world["data"], world["clip"], out, epochs=2, extra=["TRAINER.JOAPR.ALPHA2", "0.7"])
    args[args.index("--trainer") + 1] = "JoAPR"
    args[args.index("--config-file") + 1] = "configs/trainers/JoAPR/rn50.yaml"
    run_py(args)
    rec = json.load(open(osp.join(out, "results.json")))
    assert (rec["config"]["TRAINER.JOAPR.WARMUP_EPOCH"], rec["config"]["TRAINER.JOAPR.ALPHA1"],
            rec["config"]["TRAINER.JOAPR.ALPHA2"]) == (1, 0.2, 0.7)
    assert rec["method_settings"]["ALPHA1"] == 0.2 and rec["method_settings"]["ALPHA2"] == 0.7
    p = rec["method_preset"]
    assert p["preset"] == {"WARMUP_EPOCH": 1, "ALPHA1": 0.2, "ALPHA2": 1.0} and p["overridden"] == ["ALPHA2"]
    assert "DescribableTextures symflip 50%" in p["source"]
    lines = [ln for ln in open(osp.join(out, "log.txt")) if ln.startswith("* JoAPR settings:")]
    assert len(lines) == 1, lines
    assert "ALPHA1 0.2" in lines[0] and "DescribableTextures symflip 50%" in lines[0]
    assert "ALPHA2 0.7 (preset 1.0)" in lines[0]
    # the same command again: the same settings, so the finished run is recognised (exit 0)
    again = run_py(args)
    assert "Done already" in again.stdout + again.stderr
