"""What ``python -m ptnl.report`` states beside the numbers, from runs written on disk as train.py
leaves them: collapsed seeds marked in every table format (issue 25.4), the settings every row
shares stated above each table and in each figure's caption, the pocket world named as such,
every non-default loss option, no loss for trainers it does not steer (issue 29.5, 29.12, 29.14),
``--format json``, "(%)" in LaTeX accuracy headers, diverged runs listed and never averaged."""
import csv
import io
import json
import math
import os
import os.path as osp
import re

import pytest

from ptnl.report.aggregate import aggregate
from ptnl.report.cli import main
from ptnl.report.figures import MissingRuns, build_figure, missing_message
from ptnl.report.style import LOSS_STYLES
from ptnl.report.tables import format_pivot, format_table
from ptnl.runs.read import find_runs, load_run

CLASSES = ["banded", "blotchy", "braided", "bubbly"]  # chance 25%: collapsed below 1.5 x 25 = 37.5%
POCKET_ROOT = "/home/u/.cache/ptnl/pocket/v2-0123456789/data"  # the pocket world's data folder (ptnl.pocket)


def write_run(out, seed, acc, *, trainer="PTNL", loss="ce", rate=0.5, mode="swap", n_ctx=16, epochs=3,
              root="/data", loss_options=None, engine="builtin", precision="fp32", digest=None, backbone="RN50"):
    """A finished run folder in main.sh's layout with results.json as the trainer base writes it
    (engine, precision, randomness, classnames, loss options, the flat config)."""
    setting = "shots16_nctx{}_cscFalse_ctpend".format(n_ctx) if n_ctx else "shots16"
    d = osp.join(str(out), "dtd", trainer, backbone.lower(), "sym-{}-{}".format(mode, rate), loss, setting,
                 "seed{}".format(seed))
    os.makedirs(d, exist_ok=True)
    epochs_free = trainer in ("LinearProbe", "ZeroshotCLIP")
    record = {"accuracy": acc, "trainer": trainer, "dataset": "DescribableTextures", "backbone": backbone,
              "seed": seed, "num_shots": 16, "loss": loss, "noise": {"type": "sym", "mode": mode, "rate": rate},
              "prompt": {"n_ctx": n_ctx, "csc": False, "class_token_position": "end", "ctx_init": ""} if n_ctx
              else None, "gce_q": 0.7 if loss == "gce" else None, "classnames": CLASSES,
              "epochs": [] if epochs_free else [{"epoch": e, "loss": 1.0 / e} for e in range(1, epochs + 1)],
              "engine": {"name": engine, "version": "0.6.3"}, "precision": precision, "randomness": "per_sample",
              "loss_options": loss_options if loss_options is not None else
              ({"GCE_Q": {"value": 0.7, "default": 0.7}} if loss == "gce" else {}),
              "config": {"OPTIM.MAX_EPOCH": epochs, "DATASET.ROOT": root, "DATALOADER.RANDOMNESS": "per_sample"},
              "settings_digest": digest or "d{}".format(epochs)}
    with open(osp.join(d, "results.json"), "w") as f:
        json.dump(record, f)
    return d


def runs_of(out):
    records = [load_run(d) for d in find_runs([str(out)])[0]]
    return records, aggregate(records)


def cli(args, capsys):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def collapse_world(out):
    """PTNL ce at 0.5 with one broken seed (20%: below 1.5 x chance and 25 points under zero-shot's
    60%), PTNL gce fine, zero-shot CLIP at 60%."""
    dirs = {}
    for seed, acc in ((1, 55.0), (2, 57.0), (3, 20.0)):
        dirs[seed] = write_run(out, seed, acc)
        write_run(out, seed, 58.0 + seed, loss="gce")
    write_run(out, 1, 60.0, trainer="ZeroshotCLIP", n_ctx=None)
    return dirs[3]


# ----------------------------------------------------------------------------- collapsed seeds (issue 25.4)
MARK = "‡"


def test_collapsed_seed_is_flagged_in_every_table_format(tmp_path, capsys):
    broken = collapse_world(tmp_path / "out")
    note = "{}: 20.00% (below 37.50% = 1.5 x chance (4 classes); below 35.00% = zero-shot CLIP's 60.00% - 25 " \
           "points)".format(broken)
    rule = "accuracy below 1.5 x chance (100% / number of classes), or more than 25 points below zero-shot CLIP"
    for fmt in ("plain", "markdown", "latex"):
        for pivot in ([], ["--pivot"]):
            rc, out, _ = cli([tmp_path / "out", "--format", fmt] + pivot, capsys)
            assert rc == 0
            mark = r"\ddag{}" if fmt == "latex" else MARK
            rows = [ln for ln in out.splitlines() if "DescribableTextures" in ln and not ln.startswith(("%", "-", " "))]
            assert len(rows) == 3  # PTNL ce, PTNL gce, ZeroshotCLIP
            rows = [ln for ln in rows if mark in ln]
            # the mark stands beside the mean of the group with the broken seed, and nowhere else
            assert len(rows) == 1 and re.search(r"\bce\b", rows[0]) and "gce" not in rows[0], (fmt, pivot, out)
            mean = "44.00 \\pm 16.99$ \\ddag{}" if fmt == "latex" else "44.00 ± 16.99"
            assert mean in rows[0], rows[0]
            assert note in out and rule in out  # the footnote names the folder, its accuracy and the threshold
    rc, out, err = cli([tmp_path / "out", "--format", "csv"], capsys)
    rows = {(r["trainer"], r["loss"]): r for r in csv.DictReader(io.StringIO(out))}
    assert rows[("PTNL", "ce")]["collapsed_seeds"] == "3" and rows[("PTNL", "gce")]["collapsed_seeds"] == ""
    assert float(rows[("PTNL", "ce")]["mean"]) == pytest.approx(44.0)  # flagged, still averaged
    assert note in err
    rc, out, err = cli([tmp_path / "out", "--format", "csv", "--pivot"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["collapsed_seeds"] for r in rows if r["trainer"] == "PTNL"] == ["3@0.5", ""]
    rc, out, _ = cli([tmp_path / "out", "--format", "json"], capsys)
    groups = json.loads(out)["groups"]
    ce = [g for g in groups if g["trainer"] == "PTNL" and g["loss"] == "ce"][0]
    assert [s["collapsed"] is not None for s in ce["seeds"]] == [False, False, True]
    assert not any(s["collapsed"] for g in groups if g is not ce for s in g["seeds"])


def test_collapse_against_chance_alone_without_zero_shot(tmp_path):
    write_run(tmp_path / "out", 1, 40.0)   # above 37.5%: kept quiet
    write_run(tmp_path / "out", 2, 36.0)   # below: flagged
    write_run(tmp_path / "out", 1, 30.0, loss="gce")
    _, rows = runs_of(tmp_path / "out")
    flagged = {(r["loss"], c["seed"]): c["why"] for r in rows for c in r["collapsed"]}
    assert flagged == {("ce", 2): "below 37.50% = 1.5 x chance (4 classes)",
                       ("gce", 1): "below 37.50% = 1.5 x chance (4 classes)"}
    assert "‡" in format_table(rows) and format_table(rows).count("‡") == 2


def test_zero_shot_reference_is_per_dataset_and_backbone(tmp_path):
    write_run(tmp_path / "out", 1, 80.0, trainer="ZeroshotCLIP", n_ctx=None)
    write_run(tmp_path / "out", 1, 50.0)                      # 30 points under RN50's zero-shot: flagged
    write_run(tmp_path / "out", 1, 50.0, backbone="ViT-B/16")  # no zero-shot run of ViT-B/16: chance alone
    _, rows = runs_of(tmp_path / "out")
    flagged = {r["backbone"]: [c["why"] for c in r["collapsed"]] for r in rows if r["trainer"] == "PTNL"}
    assert flagged == {"RN50": ["below 55.00% = zero-shot CLIP's 80.00% - 25 points"], "ViT-B/16": []}


# ----------------------------------------------------------------------------- shared settings (issue 29.5)
def test_settings_every_row_shares_are_stated_above_each_table(tmp_path, capsys):
    collapse_world(tmp_path / "out")
    line = "Every row: 3 epochs (trainers with an epoch loop); weights RN50; engine builtin 0.6.3; " \
           "randomness per_sample; precision fp32"
    rc, out, _ = cli([tmp_path / "out"], capsys)
    assert out.startswith(line + "\n\ndataset ")
    rc, out, _ = cli([tmp_path / "out", "--format", "latex", "--pivot"], capsys)
    assert out.startswith("% " + line + "\n")
    rc, out, err = cli([tmp_path / "out", "--format", "csv"], capsys)
    assert err.startswith(line) and out.startswith("dataset,")  # csv stays parseable: a column per setting
    row = next(csv.DictReader(io.StringIO(out)))
    assert (row["epochs"], row["engine"], row["precision"], row["randomness"]) == ("3", "builtin 0.6.3", "fp32",
                                                                                  "per_sample")
    rc, out, _ = cli([tmp_path / "out", "--format", "json"], capsys)
    assert json.loads(out)["shared"]["common"] == {"epochs": 3, "weights": "RN50", "engine": "builtin 0.6.3",
                                                   "randomness": "per_sample", "precision": "fp32"}


def test_settings_that_differ_are_named_not_hidden(tmp_path, capsys):
    write_run(tmp_path / "out", 1, 50.0, epochs=3)
    write_run(tmp_path / "other", 1, 52.0, epochs=200, engine="dassl")
    rc, out, _ = cli([tmp_path / "out", tmp_path / "other"], capsys)
    head = out.split("\n\n")[0].splitlines()
    assert head[0] == "Every row: weights RN50; randomness per_sample; precision fp32"
    assert head[1] == "Rows differ in: epochs (200, 3); engine (builtin 0.6.3, dassl 0.6.3)"


def test_pocket_world_is_named_in_tables_and_figures(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for rate in (0.0, 0.5):
        write_run(tmp_path / "out", 1, 50.0, rate=rate, root=POCKET_ROOT, backbone="pocket")
    rc, out, _ = cli([tmp_path / "out"], capsys)
    assert "DescribableTextures (pocket world)  PTNL" in out
    assert "weights pocket (the pocket world's)" in out
    records, rows = runs_of(tmp_path / "out")
    fig, _ = build_figure("noise", records, rows)
    assert fig.axes[0].get_title().startswith("DescribableTextures (pocket world)")
    caption = fig._suptitle.get_text()
    assert "Every row: 3 epochs;" in caption and "precision fp32" in caption.replace("\n", " ")
    # the same dataset on a real data folder is not the pocket world
    write_run(tmp_path / "real", 1, 50.0, root="/data/dtd", backbone="pocket")
    assert "(pocket world)" not in format_table(runs_of(tmp_path / "real")[1])


def test_report_folder_states_the_shared_settings(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for rate in (0.0, 0.5):
        write_run(tmp_path / "out", 1, 50.0, rate=rate)
    rep = tmp_path / "rep"
    assert main([str(tmp_path / "out"), "--report", str(rep)]) == 0
    index = (rep / "index.md").read_text()
    line = "Every row: 3 epochs; weights RN50; engine builtin 0.6.3; randomness per_sample; precision fp32"
    assert index.count(line) == 3  # once under the title, once above each table
    assert (rep / "table.tex").read_text().startswith("% " + line)
    assert (rep / "pivot.md").read_text().startswith(line)
    assert (rep / "table.csv").read_text().startswith("dataset,")


# ----------------------------------------------------------------------------- loss options (issue 29.12)
def test_every_non_default_loss_option_is_shown(tmp_path, capsys):
    focal = {"FOCAL_GAMMA": {"value": 3.0, "default": 2.0}, "FOCAL_ALPHA": {"value": 0.25, "default": 0.25}}
    write_run(tmp_path / "out", 1, 50.0, loss="focal", loss_options=focal)  # a plugin's loss, one run
    write_run(tmp_path / "out", 1, 51.0, loss="gce", loss_options={"GCE_Q": {"value": 0.5, "default": 0.7}})
    write_run(tmp_path / "out", 1, 52.0, loss="sce", loss_options={"SCE_ALPHA": {"value": 0.1, "default": 0.1}})
    rc, out, _ = cli([tmp_path / "out"], capsys)
    lines = {ln.split()[5]: ln for ln in out.splitlines() if ln.startswith("DescribableTextures")}
    assert "focal (FOCAL_GAMMA=3.0)" in lines["focal"] and "FOCAL_ALPHA" not in out  # alone, and only the changed
    assert "gce (GCE_Q=0.5)" in lines["gce"]
    assert re.search(r"\bsce +16 ", lines["sce"])  # every option at its default: the name alone
    assert "settings" not in out.splitlines()[out.splitlines().index("") + 1]  # q is the loss cell's, no column
    rc, out, _ = cli([tmp_path / "out", "--format", "csv"], capsys)
    opts = {r["loss"]: r["loss_options"] for r in csv.DictReader(io.StringIO(out))}
    assert opts == {"focal": "FOCAL_GAMMA=3.0", "gce": "GCE_Q=0.5", "sce": ""}


def test_loss_options_record_of_a_config():
    from ptnl.compat import get_cfg_default
    from ptnl.config import extend_cfg
    from ptnl.losses import loss_options
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.TRAINER.PTNL.LOSS = "sce"
    cfg.TRAINER.PTNL.SCE_BETA = 0.5
    assert loss_options(cfg) == {"SCE_ALPHA": {"value": 0.1, "default": 0.1},
                                 "SCE_BETA": {"value": 0.5, "default": 1.0},
                                 "RCE_A": {"value": -4.0, "default": -4.0}}
    cfg.TRAINER.PTNL.LOSS = "ce"
    assert loss_options(cfg) == {}


# ----------------------------------------------------------------------------- losses a trainer does not use (29.14)
def compare_world(out, mode="swap"):
    for rate in (0.25, 0.5):
        for seed in (1, 2):
            write_run(out, seed, 60 - 20 * rate + seed, rate=rate, mode=mode)
            write_run(out, seed, 62 - 10 * rate + seed, trainer="JoAPR", rate=rate, mode=mode)
            write_run(out, seed, 63 - 10 * rate + seed, trainer="NLPrompt", rate=rate, mode=mode)
            write_run(out, seed, 55 - 30 * rate + seed, trainer="LinearProbe", rate=rate, mode=mode, n_ctx=None)
        write_run(out, 1, 50.0, trainer="ZeroshotCLIP", rate=rate, mode=mode, n_ctx=None)


def test_methods_with_their_own_losses_show_none(tmp_path, capsys):
    compare_world(tmp_path / "out")
    rc, out, _ = cli([tmp_path / "out"], capsys)
    losses = {ln.split()[1]: ln.split()[5] for ln in out.splitlines() if ln.startswith("DescribableTextures")}
    assert losses == {"JoAPR": "—", "NLPrompt": "—", "LinearProbe": "—", "ZeroshotCLIP": "—", "PTNL": "ce"}
    rc, out, _ = cli([tmp_path / "out", "--format", "json"], capsys)
    assert {g["trainer"]: g["loss"] for g in json.loads(out)["groups"]} == {
        "JoAPR": None, "NLPrompt": None, "LinearProbe": None, "ZeroshotCLIP": None, "PTNL": "ce"}


def test_compare_figure_tells_every_method_apart(tmp_path):
    pytest.importorskip("matplotlib")
    compare_world(tmp_path / "out")
    records, rows = runs_of(tmp_path / "out")
    fig, _ = build_figure("noise", records, rows)
    lines = [ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")]
    looks = {ln.get_label(): (ln.get_color(), ln.get_marker(), ln.get_linestyle()) for ln in lines}
    assert set(looks) == {"PTNL ce", "JoAPR", "NLPrompt", "LinearProbe", "ZeroshotCLIP"}  # no "JoAPR ce"
    assert len(set(looks.values())) == 5
    for method in ("JoAPR", "NLPrompt"):  # never drawn as if trained with one of the losses
        assert looks[method][1] not in {m for m, _ in LOSS_STYLES.values()}
    # as docs/results.md says: PTNL blue, CE circles and solid lines
    assert looks["PTNL ce"] == ("#0072B2", "o", "-")


def test_noise_rate_axis_says_what_the_protocol_does(tmp_path):
    pytest.importorskip("matplotlib")
    compare_world(tmp_path / "swap")
    compare_world(tmp_path / "flip", mode="flip")
    swap = build_figure("noise", *runs_of(tmp_path / "swap"))[0].axes[0].get_xlabel()
    flip = build_figure("noise", *runs_of(tmp_path / "flip"))[0].axes[0].get_xlabel()
    assert "flipped" not in swap and "other classes' images" in swap
    assert "flipped" in flip


def test_noise_figure_needs_two_rates(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for seed in (1, 2):
        write_run(tmp_path / "out", seed, 50.0 + seed, rate=0.5)
        write_run(tmp_path / "out", seed, 52.0 + seed, rate=0.5, loss="gce")
    records, rows = runs_of(tmp_path / "out")
    with pytest.raises(MissingRuns):
        build_figure("noise", records, rows)
    png = tmp_path / "n.png"
    rc, out, err = cli([tmp_path / "out", "--plot", png], capsys)
    assert rc == 2 and err.strip() == missing_message("noise") and not png.exists()


def test_many_lines_are_faceted_with_a_legend_per_panel(tmp_path):
    pytest.importorskip("matplotlib")
    for rate in (0.0, 0.5):
        for loss in ("ce", "gce", "mae", "sce", "nce_rce"):
            write_run(tmp_path / "out", 1, 50.0 - 10 * rate, rate=rate, loss=loss)
        for loss in ("ce", "gce", "mae", "sce"):
            write_run(tmp_path / "out", 1, 45.0 - 10 * rate, trainer="ClassifierR", rate=rate, loss=loss, n_ctx=None)
        write_run(tmp_path / "out", 1, 48.0 - 10 * rate, trainer="LinearProbe", rate=rate, n_ctx=None)
    records, rows = runs_of(tmp_path / "out")
    fig, desc = build_figure("noise", records, rows)
    assert "10 line(s)" in desc and len(fig.axes) == 3  # a panel per trainer: 10 labels outgrow one legend
    assert fig.legends == []
    for ax in fig.axes:
        drawn = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == drawn and 1 <= len(legend) <= 8
        assert all(lab.split()[0] in ax.get_title() for lab in legend)
    # a few lines keep one legend under the panels
    fig, _ = build_figure("noise", records, [r for r in rows if r["trainer"] == "PTNL"])
    assert len(fig.axes) == 1 and len(fig.legends) == 1 and fig.axes[0].get_legend() is None


# ----------------------------------------------------------------------------- json, LaTeX headers, diverged runs
def test_json_is_one_record_per_setting_with_every_seed(tmp_path, capsys):
    broken = collapse_world(tmp_path / "out")
    rc, out, err = cli([tmp_path / "out", "--format", "json"], capsys)
    doc = json.loads(out)  # stdout is the document alone: notes go to stderr
    assert rc == 0 and err.strip() == ""
    _, rows = runs_of(tmp_path / "out")
    assert len(doc["groups"]) == len(rows)
    for g, r in zip(doc["groups"], rows):
        assert g["mean"] == pytest.approx(r["mean"]) and g["n"] == r["n"]
        assert [s["accuracy"] for s in g["seeds"]] == r["accuracies"]
        assert g["mean"] == pytest.approx(sum(s["accuracy"] for s in g["seeds"]) / len(g["seeds"]))
        # the recorded settings that can change results (the data folder's path is not one)
        assert g["settings"] == {"OPTIM.MAX_EPOCH": 3, "DATALOADER.RANDOMNESS": "per_sample"}
    ce = [g for g in doc["groups"] if g["loss"] == "ce"][0]
    assert [(s["seed"], s["run_dir"]) for s in ce["seeds"]][-1] == (3, broken)
    assert doc["std"].startswith("population std") and doc["collapse_rule"].startswith("accuracy below 1.5 x chance")
    zs = [g for g in doc["groups"] if g["trainer"] == "ZeroshotCLIP"][0]
    assert zs["n"] == 1 and zs["std"] == 0.0
    assert any(n.startswith("‡ collapsed seed(s)") for n in doc["notes"])


def test_latex_accuracy_headers_say_percent(tmp_path):
    for rate in (0.0, 0.5):
        write_run(tmp_path / "out", 1, 50.0, rate=rate)
    _, rows = runs_of(tmp_path / "out")
    assert r"accuracy (\%) (mean $\pm$ std)" in format_table(rows, "latex")
    assert r"rate 0.0 (\%) & rate 0.5 (\%)" in format_pivot(rows, "latex")


def test_diverged_run_is_listed_not_averaged(tmp_path, capsys):
    write_run(tmp_path / "out", 1, 50.0)
    d = write_run(tmp_path / "out", 2, 52.0)
    with open(osp.join(d, "results.json")) as f:
        rec = json.load(f)
    rec["epochs"][1]["loss"] = math.nan
    with open(osp.join(d, "results.json"), "w") as f:
        json.dump(rec, f)
    rc, out, _ = cli([tmp_path / "out"], capsys)
    assert "50.00 (n=1)" in out and "seed 2 (diverged)" in out
    assert "diverged runs (a loss or the test accuracy not finite), not averaged in (1):" in out
    assert "{}: diverged: loss nan at epoch 2 in results.json".format(d) in out
    rc, out, _ = cli([tmp_path / "out", "--format", "json"], capsys)
    doc = json.loads(out)  # strict JSON: no NaN anywhere
    assert [i["diverged"] for i in doc["incomplete"]] == [True] and doc["groups"][0]["n"] == 1


def test_a_table_of_runs_without_saved_logits_is_made_without_torch(tmp_path):
    """The grid scripts end with ``python -m ptnl.report --pivot``: without saved test logits (no
    seed ensemble to compute) it never imports torch (3 s of a 10-run grid's 2-core minute)."""
    import subprocess
    import sys
    for seed in (1, 2):
        write_run(tmp_path / "out", seed, 60.0 + seed)
    code = ("import sys; from ptnl.report.cli import main; rc = main([sys.argv[1], '--pivot']); "
            "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=osp.dirname(osp.dirname(osp.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr
    assert "61.50" in proc.stdout and "torch imported: False" in proc.stdout, proc.stdout
