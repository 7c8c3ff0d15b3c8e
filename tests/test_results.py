"""Reading runs back: aggregation over seeds, incomplete and missing runs, CoOp-style logs of both
Dassl versions, table formats, the plot, and scripts/ptnl/sweep.sh end to end."""
import csv
import io
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SMALL_OPTS
from ptnl.report.aggregate import aggregate
from ptnl.report.cli import main as report_main
from ptnl.report.tables import format_table
from ptnl.runs.read import IDENTITY_KEYS, find_runs, incomplete_run, load_run

LAYOUT = "{dataset}/{trainer}/{backbone}/{type}-{mode}-{rate}/{loss}/shots{shots}_nctx16_cscFalse_ctpend/seed{seed}"


def run_path(out, seed, trainer="PTNL", rate=0.5, loss="gce", dataset="dtd", backbone="rn50", shots=16):
    return osp.join(str(out), LAYOUT.format(dataset=dataset, trainer=trainer, backbone=backbone, type="sym",
                                            mode="swap", rate=rate, loss=loss, shots=shots, seed=seed))


def write_results(out, seed, acc, trainer="PTNL", rate=0.5, loss="gce", **kw):
    """A finished run folder as train.py leaves it: log.txt and results.json."""
    d = run_path(out, seed, trainer=trainer, rate=rate, loss=loss, **kw)
    os.makedirs(d, exist_ok=True)
    prompt = {"n_ctx": 16, "csc": False, "class_token_position": "end", "ctx_init": ""} if trainer == "PTNL" else None
    record = {"accuracy": acc, "macro_f1": acc - 1, "per_class_accuracy": {"0": acc}, "trainer": trainer,
              "dataset": "DescribableTextures", "backbone": "RN50", "seed": seed, "num_shots": kw.get("shots", 16),
              "noise": {"type": "sym", "mode": "swap", "rate": rate, "realised_rate": rate},
              "loss": loss, "prompt": prompt, "gce_q": 0.7 if loss == "gce" else None, "epochs": [],
              "engine": {"name": "builtin", "version": "0.6.3"}, "config_digest": "0" * 64, "wall_time_s": 1.0}
    with open(osp.join(d, "results.json"), "w") as f:
        json.dump(record, f)
    with open(osp.join(d, "log.txt"), "w") as f:
        f.write("Finish training\n=> result\n* accuracy: {:.1f}%\n".format(acc))
    return d


CONFIG_DUMP = """************
** Config **
************
DATASET:
  CIFAR_C_TYPE: 
  NAME: DescribableTextures
  NOISE:
    MODE: swap
    RATE: {rate}
    TYPE: sym
  NUM_SHOTS: 16
MODEL:
  BACKBONE:
    NAME: RN50
SEED: {seed}
TRAINER:
  NAME: {trainer}
  COOP:
    CLASS_TOKEN_POSITION: end
    CSC: False
    CTX_INIT: 
    N_CTX: 16
Loading trainer: {trainer}
"""


def coop_log(end_line="Finish training", acc="71.2", seed=1, trainer="CoOp", rate=0.0, config=True, test=True):
    """A CoOp/Dassl log: config dump, a validation result during training (not the final one),
    epochs, the end-of-training line and the final test block."""
    lines = [CONFIG_DUMP.format(rate=rate, seed=seed, trainer=trainer)] if config else []
    progress = "epoch [{}/2] batch [1/1] time 0.1 (0.1) data 0.0 (0.0) loss 1.0 (1.0) acc 50.0 (50.0) lr {} eta 0:00:01"
    lines += [progress.format(1, "1e-05"), "=> result", "* accuracy: 12.3%", progress.format(2, "2e-03")]
    if end_line:
        lines.append(end_line)
        if test:
            lines += ["Evaluate on the *test* set", "=> result", "* total: 1,692", "* accuracy: {}%".format(acc),
                      "* error: {:.1f}%".format(100 - float(acc)), "Elapsed: 0:01:02"]
    return "\n".join(lines) + "\n"


def write_log(d, text, name="log.txt"):
    os.makedirs(d, exist_ok=True)
    with open(osp.join(d, name), "w") as f:
        f.write(text)
    return d


def cli(args, capsys):
    rc = report_main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ----------------------------------------------------------------------------- aggregation math
def test_mean_std_counts_against_numpy(tmp_path, capsys):
    accs = {("PTNL", 0.0, "ce"): [70.0, 72.5, 74.25], ("PTNL", 0.5, "gce"): [61.0, 65.5, 63.0],
            ("ClassifierR", 0.5, "ce"): [40.0, 44.0, 41.5]}
    for (trainer, rate, loss), values in accs.items():
        for seed, acc in enumerate(values, 1):
            write_results(tmp_path, seed, acc, trainer=trainer, rate=rate, loss=loss)
    done, incomplete = find_runs([str(tmp_path)])
    assert len(done) == 9 and incomplete == []
    records = [load_run(d) for d in done]
    assert {r["source"] for r in records} == {"results.json"}
    for ddof in (0, 1):
        rows = aggregate(records, ddof=ddof)
        assert len(rows) == 3
        for row in rows:
            values = accs[(row["trainer"], row["noise_rate"], row["loss"])]
            assert row["mean"] == pytest.approx(np.mean(values))
            assert row["std"] == pytest.approx(np.std(values, ddof=ddof))
            assert row["n"] == 3 and row["seeds"] == [1, 2, 3] and row["missing"] == [] and row["ddof"] == ddof
    pop = np.std([61.0, 65.5, 63.0])
    assert pop != pytest.approx(np.std([61.0, 65.5, 63.0], ddof=1))  # the two stds differ on this data
    rc, out, _ = cli([tmp_path], capsys)
    assert rc == 0
    row = next(ln for ln in out.splitlines() if "PTNL" in ln and "gce" in ln)
    assert "{:.2f} ± {:.2f}".format(np.mean([61.0, 65.5, 63.0]), pop) in row and "3 (1 2 3)" in row
    assert "population std (ddof=0, numpy's default, as CoOp's parse_test_res.py)" in out
    rc, out, _ = cli([tmp_path, "--std", "sample"], capsys)
    assert "{:.2f}".format(np.std([61.0, 65.5, 63.0], ddof=1)) in out and "sample std (ddof=1)" in out
    # the same folder passed twice is read once
    assert len(find_runs([str(tmp_path), str(tmp_path / "dtd")])[0]) == 9


def test_groups_split_by_remaining_settings(tmp_path):
    write_results(tmp_path, 1, 50.0, shots=16)
    write_results(tmp_path, 1, 40.0, shots=4)
    d = write_results(tmp_path, 2, 60.0, shots=16)
    rec = json.load(open(osp.join(d, "results.json")))
    rec["prompt"]["csc"] = True  # another prompt shape, same folder name: its own group
    json.dump(rec, open(osp.join(d, "results.json"), "w"))
    rows = aggregate([load_run(x) for x in find_runs([str(tmp_path)])[0]])
    assert sorted((r["num_shots"], r["csc"], r["n"]) for r in rows) == [(4, False, 1), (16, False, 1), (16, True, 1)]
    table = format_table(rows)
    assert "settings" in table and "csc=True" in table


# ----------------------------------------------------------------------------- incomplete and missing
def test_missing_seed_and_crashed_run_are_reported(tmp_path, capsys):
    for seed, acc in ((1, 60.0), (2, 62.0), (3, 64.0)):
        write_results(tmp_path, seed, acc, rate=0.0)
    write_results(tmp_path, 1, 50.0, rate=0.5)
    write_results(tmp_path, 2, 52.0, rate=0.5)
    crashed = write_log(run_path(tmp_path, 3, rate=0.5), coop_log(end_line=None, trainer="PTNL", seed=3, rate=0.5))
    write_results(tmp_path, 1, 30.0, rate=0.75)  # seeds 2 and 3 never started

    done, incomplete = find_runs([str(tmp_path)])
    assert incomplete == [crashed] and len(done) == 6
    inc = [incomplete_run(d) for d in incomplete]
    assert inc[0]["seed"] == 3 and "last epoch logged 2/2" in inc[0]["reason"]
    rows = {r["noise_rate"]: r for r in aggregate([load_run(d) for d in done], inc)}
    assert rows[0.0]["missing"] == [] and rows[0.0]["n"] == 3
    assert rows[0.5]["missing"] == [3] and rows[0.5]["n"] == 2 and rows[0.5]["mean"] == 51.0  # not averaged in
    assert [i["run_dir"] for i in rows[0.5]["incomplete"]] == [crashed]
    assert rows[0.75]["missing"] == [2, 3] and rows[0.75]["n"] == 1

    rc, out, _ = cli([tmp_path], capsys)
    assert rc == 0
    assert "2 (1 2; missing 3)" in out and "1 (1; missing 2 3)" in out
    assert "seed 3 (incomplete)" in out and "seed 2 (no run found), seed 3 (no run found)" in out
    assert "incomplete runs, not averaged in (1):" in out and crashed in out
    assert "no end-of-training line" in out
    rc, out, _ = cli([tmp_path, "--pivot"], capsys)
    assert "51.00 ± 1.00 (2 of 3)" in out and "30.00 (n=1 of 3)" in out and "62.00 ± 1.63 (3)" in out


def test_end_line_without_test_result_and_unreadable_results_are_incomplete(tmp_path, capsys):
    write_results(tmp_path, 1, 60.0)
    no_test = write_log(run_path(tmp_path, 2), coop_log(test=False, trainer="PTNL", seed=2, rate=0.5))
    broken = run_path(tmp_path, 3)
    os.makedirs(broken)
    open(osp.join(broken, "results.json"), "w").write('{"accuracy": ')
    rc, out, _ = cli([tmp_path], capsys)
    assert rc == 0 and "incomplete runs, not averaged in (2):" in out
    assert "{}: 'Finish training' in log.txt but no '* accuracy:' line after it".format(no_test) in out
    assert "{}: unreadable".format(broken) in out
    assert "1 (1; missing 2 3)" in out


def test_only_incomplete_runs_and_nothing_at_all(tmp_path, capsys):
    d = write_log(run_path(tmp_path, 1), coop_log(end_line=None))
    rc, out, _ = cli([tmp_path], capsys)
    assert rc == 0 and "No finished runs" in out and d in out
    rc, out, err = cli([tmp_path / "empty"], capsys)
    assert rc == 1 and "No runs found" in out and "not a folder" in err


# ----------------------------------------------------------------------------- CoOp-style logs
def test_log_only_runs_from_both_dassl_versions(tmp_path, capsys):
    """Dassl >= 0.6.1 ends with 'Finish training' and prints .1f; older Dassl 'Finished training'
    and .2f. Both are read; the validation result before the end line is not."""
    base = tmp_path / "coop" / "dtd" / "CoOp" / "rn50_16shots" / "nctx16_cscFalse_ctpend"
    new = write_log(str(base / "seed1"), coop_log("Finish training", "71.2", seed=1))
    old = write_log(str(base / "seed2"), coop_log("Finished training", "68.45", seed=2))
    # a resumed run: the first session's log.txt stops, the second session's log ends the run
    resumed = str(base / "seed3")
    write_log(resumed, coop_log(end_line=None, seed=3))
    write_log(resumed, coop_log("Finish training", "70.0", seed=3), name="log.txt-2024-05-01-10-00-00")
    done, incomplete = find_runs([str(tmp_path / "coop")])
    assert done == [new, old, resumed] and incomplete == []
    recs = {r["seed"]: r for r in (load_run(d) for d in done)}
    assert recs[1]["accuracy"] == 71.2 and recs[1]["end_line"] == "Finish training"
    assert recs[2]["accuracy"] == 68.45 and recs[2]["end_line"] == "Finished training"
    assert recs[3]["accuracy"] == 70.0 and recs[3]["log"].endswith("log.txt-2024-05-01-10-00-00")
    for r in recs.values():  # grouping fields come from the printed config
        assert r["source"] == "log" and r["unknown"] == ["loss"]
        assert (r["dataset"], r["trainer"], r["backbone"], r["num_shots"], r["noise_rate"], r["n_ctx"]) == \
            ("DescribableTextures", "CoOp", "RN50", 16, 0.0, 16)
    rows = aggregate(list(recs.values()))
    assert len(rows) == 1 and rows[0]["n"] == 3
    assert rows[0]["mean"] == pytest.approx(np.mean([71.2, 68.45, 70.0]))
    rc, out, _ = cli([tmp_path / "coop"], capsys)
    assert "3 (1 2 3) †" in out and "3 run(s) read from a CoOp-style log" in out
    assert "{} ('Finished training', older Dassl); unknown: loss".format(old) in out
    assert "{} ('Finish training'); unknown: loss".format(new) in out


def test_log_only_run_fields_from_the_folder_names(tmp_path, capsys):
    """No config in the log: main.sh's folder names give the fields; elsewhere they are unknown."""
    ours = write_log(run_path(tmp_path / "a", 2, trainer="PTNL", rate=0.25, loss="gce"),
                     coop_log("Finished training", "55.50", config=False))
    r = load_run(ours)
    assert (r["dataset"], r["trainer"], r["backbone"], r["noise_type"], r["noise_mode"], r["noise_rate"],
            r["loss"], r["num_shots"], r["n_ctx"], r["seed"]) == \
        ("dtd", "PTNL", "rn50", "sym", "swap", 0.25, "gce", 16, 16, 2)
    assert r["unknown"] == [] and r["accuracy"] == 55.5
    elsewhere = write_log(str(tmp_path / "b" / "my_run"), coop_log("Finish training", "40.0", config=False))
    r = load_run(elsewhere)
    assert r["accuracy"] == 40.0 and r["unknown"] == list(IDENTITY_KEYS)
    rc, out, _ = cli([tmp_path / "b"], capsys)
    assert "unknown: dataset, trainer, backbone, noise_type, noise_mode, noise_rate, loss, num_shots, seed" in out


def test_variant_folder_is_a_setting(tmp_path):
    for variant, acc in (("topk-dataset", 10.0), ("random-dataset", 20.0)):
        d = osp.join(str(tmp_path), "dtd/UPL/rn50/sym-swap-0.0/ce", variant, "shots16_nctx16_cscFalse_ctpend/seed1")
        os.makedirs(d)
        json.dump({"accuracy": acc, "trainer": "UPL", "dataset": "DescribableTextures", "backbone": "RN50",
                   "seed": 1, "num_shots": 16, "noise": {"type": "sym", "mode": "swap", "rate": 0.0}, "loss": "ce"},
                  open(osp.join(d, "results.json"), "w"))
    rows = aggregate([load_run(d) for d in find_runs([str(tmp_path)])[0]])
    assert sorted((r["variant"], r["mean"]) for r in rows) == [("random-dataset", 20.0), ("topk-dataset", 10.0)]


# ----------------------------------------------------------------------------- formats and plot
def test_markdown_and_csv(tmp_path, capsys):
    for seed, acc in ((1, 60.0), (2, 61.0)):
        write_results(tmp_path, seed, acc, rate=0.0)
        write_results(tmp_path, seed, acc - 10, rate=0.5)
    write_results(tmp_path, 1, 30.0, rate=0.0, trainer="LinearProbe", loss="ce")
    rc, out, _ = cli([tmp_path, "--format", "markdown"], capsys)
    lines = out.splitlines()
    assert lines[0].startswith("Every row: ")  # the settings every row shares, stated once above the table
    lines = lines[lines.index("") + 1:]
    assert lines[0].startswith("| dataset") and re.match(r"^\|[-|]+\|$", lines[1])
    assert sum(ln.startswith("| DescribableTextures") for ln in lines) == 3
    assert "- accuracy: test accuracy (%), mean ± population std" in out
    # no loss for LinearProbe: TRAINER.PTNL.LOSS does not steer it
    assert "    - DescribableTextures LinearProbe RN50 sym-swap-0.0 16 shots: seed 2 (no run found)" in out

    rc, out, err = cli([tmp_path, "--format", "csv"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 3 and "population std" in err  # notes go to stderr, csv stays parseable
    ptnl = next(r for r in rows if r["trainer"] == "PTNL" and r["noise_rate"] == "0.5")
    assert float(ptnl["mean"]) == pytest.approx(50.5) and float(ptnl["std_population"]) == pytest.approx(0.5)
    assert ptnl["n"] == "2" and ptnl["seeds"] == "1 2" and ptnl["missing_seeds"] == ""
    lp = next(r for r in rows if r["trainer"] == "LinearProbe")
    assert lp["missing_seeds"] == "2" and lp["n_ctx"] == ""

    rc, out, err = cli([tmp_path, "--format", "csv", "--pivot"], capsys)
    rows = list(csv.DictReader(io.StringIO(out)))
    ptnl = next(r for r in rows if r["trainer"] == "PTNL")
    assert float(ptnl["rate 0.0 mean"]) == pytest.approx(60.5) and float(ptnl["rate 0.5 std"]) == pytest.approx(0.5)
    assert ptnl["rate 0.5 n"] == "2"


def test_plot_is_a_png_written_atomically(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for ds in ("dtd", "eurosat"):
        for seed in (1, 2, 3):
            for rate in (0.0, 0.25, 0.5):
                for trainer, loss in (("PTNL", "ce"), ("PTNL", "gce"), ("LinearProbe", "ce")):
                    write_results(tmp_path / "out", seed, 70 - 40 * rate + seed, trainer=trainer, rate=rate,
                                  loss=loss, dataset=ds)
    for p in find_runs([str(tmp_path / "out")])[0]:  # a second dataset name for the eurosat folders
        if "/eurosat/" in p:
            rec = json.load(open(osp.join(p, "results.json")))
            rec["dataset"] = "EuroSAT"
            json.dump(rec, open(osp.join(p, "results.json"), "w"))
    shutil.rmtree(run_path(tmp_path / "out", 3, rate=0.25, loss="ce"))  # a missing seed
    png = tmp_path / "plots" / "sweep.png"
    os.makedirs(png.parent)
    rc, out, _ = cli([tmp_path / "out", "--pivot", "--plot", png], capsys)
    assert rc == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000
    assert os.listdir(png.parent) == ["sweep.png"]  # no temporary file left behind
    assert "plot: {} (accuracy against noise rate, 6 line(s)".format(png) in out and "2 panel(s)" in out
    from matplotlib.image import imread
    assert imread(str(png)).shape[1] > imread(str(png)).shape[0]  # two panels side by side


def test_plot_without_noise_rates_fails_clearly(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    write_log(str(tmp_path / "x"), coop_log("Finish training", "40.0", config=False))
    rc, out, err = cli([tmp_path, "--plot", tmp_path / "p.png"], capsys)
    # --plot is --figure noise: the same one line naming what to run
    from ptnl.report.figures import missing_message
    assert rc == 2 and err.strip().splitlines() == [missing_message("noise")] and not (tmp_path / "p.png").exists()


# ----------------------------------------------------------------------------- sweep.sh end to end
def test_sweep_sh_end_to_end(world, tmp_path):
    pytest.importorskip("matplotlib")
    out = str(tmp_path / "out")
    env = dict(os.environ, DATA=world["data"], CLIP_WEIGHTS=world["clip"], SEEDS="1", SHOTS="4", OUT=out,
               PYTHON=sys.executable, RATES="0.0 0.5")

    def sweep():
        cmd = ["bash", "scripts/ptnl/sweep.sh", "dtd", "rn50", "OPTIM.MAX_EPOCH", "1"] + SMALL_OPTS
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    text = sweep()
    assert "[sweep] dtd rn50: 8 runs (0 done already)" in text
    for i in range(1, 9):
        assert "[sweep] run {}/8 [".format(i) in text
    assert "ETA after the first run" in text and re.search(r"run 8/8 \[#+\.*\] 7/8 done, elapsed \S+, ETA \d", text)
    runs = [("PTNL", "ce"), ("PTNL", "gce"), ("LinearProbe", "ce"), ("ClassifierR", "ce")]
    for trainer, loss in runs:
        setting = "shots4_nctx16_cscFalse_ctpend" if trainer == "PTNL" else "shots4"  # no prompt settings
        for rate in ("0.0", "0.5"):
            assert osp.isfile(osp.join(out, "dtd", trainer, "clip-vit", "sym-swap-" + rate, loss,
                                       setting, "seed1", "results.json"))
    assert not osp.exists(osp.join(out, "dtd", "LinearProbe", "clip-vit", "sym-swap-0.0", "gce"))
    table = text[text.index("[sweep] 8/8 runs done"):]
    assert "rate 0.0" in table and "rate 0.5" in table
    for trainer, loss in runs:  # no loss shown for LinearProbe: TRAINER.PTNL.LOSS does not steer it (issue 29.14)
        shown = "—" if trainer == "LinearProbe" else loss
        assert re.search(r"{} .* {} .*\(n=1\) .*\(n=1\)".format(trainer, shown), table), table
    # every option of the run's loss is recorded with its default, so that tables can show changed ones
    gce = json.load(open(osp.join(out, "dtd", "PTNL", "clip-vit", "sym-swap-0.5", "gce", "shots4_nctx16_cscFalse_ctpend",
                                  "seed1", "results.json")))
    assert gce["loss_options"] == {"GCE_Q": {"value": 0.7, "default": 0.7}}
    assert table.startswith("[sweep] 8/8 runs done") and "\nEvery row: 1 epoch (trainers with an epoch loop); " \
        "weights clip-vit.pt; engine " in table
    png = osp.join(out, "dtd_sweep.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "plot: {} (accuracy against noise rate, 4 line(s)".format(png) in table

    # counted up front: a run that lost its results.json is the only one to run again
    os.remove(osp.join(out, "dtd", "LinearProbe", "clip-vit", "sym-swap-0.5", "ce", "shots4", "seed1",
                       "results.json"))
    again = sweep()
    assert "8 runs (7 done already)" in again and again.count("[sweep] run ") == 1
    # k counts runs in the order they start, after those finished before (ptnl.sweep.plan.Progress)
    assert "[sweep] run 8/8 [#####################...] 7/8 done" in again
    assert again.count("Running:") + again.count("Resuming:") + again.count("Retrying:") == 1
