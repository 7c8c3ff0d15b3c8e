"""The figures, the LaTeX tables and the report folder of ``python -m ptnl.report``, from runs
written on disk as train.py leaves them (results.json with its epochs, confusion_matrix.json, UPL's
record)."""
import json
import os
import os.path as osp
import re

import numpy as np
import pytest

from ptnl.report.aggregate import aggregate
from ptnl.report.cli import main
from ptnl.report.figures import MissingRuns, build_figure, figure_kinds, missing_message, write_figure
from ptnl.report.tables import format_pivot, format_table
from ptnl.runs.read import find_runs, load_run

CLASSES = ["banded", "blotchy", "braided", "bubbly"]


def write_run(out, seed, acc, *, trainer="PTNL", loss="ce", rate=0.5, dataset="dtd", backbone="RN50", ntype="sym",
              n_ctx=16, epochs=3, analysis=False, upl=None, variant=None):
    """A finished run folder in main.sh's layout, with results.json (and its per-epoch records) and,
    with ``analysis``, gradient norms and confusion_matrix.json."""
    bb = backbone.lower().replace("/", "-")
    setting = "shots16_nctx{}_cscFalse_ctpend".format(n_ctx) if n_ctx is not None else "shots16"
    parts = [str(out), dataset, trainer, bb, "{}-swap-{}".format(ntype, rate), loss] + ([variant] if variant else [])
    d = osp.join(*(parts + [setting, "seed{}".format(seed)]))
    os.makedirs(d, exist_ok=True)
    eps = []
    for e in range(1, epochs + 1):
        rec = {"epoch": e, "lr": 0.002, "loss": 2.0 / e, "train_acc_given": 40.0 + 10 * e,
               "clean_acc": 50.0 + 10 * e + seed, "noisy_memorised": 5.0 * e if rate else None,
               "noisy_true": 30.0 - e if rate else None, "num_clean": 32, "num_noisy": 32 if rate else 0}
        if analysis:
            rec.update(grad_norm_clean=0.5 / e + 0.01 * seed, grad_norm_noisy=2.0 / e if rate else None)
        eps.append(rec)
    prompt = {"n_ctx": n_ctx, "csc": False, "class_token_position": "end", "ctx_init": ""} if n_ctx else None
    record = {"accuracy": acc, "macro_f1": acc - 1, "trainer": trainer, "dataset": "DescribableTextures",
              "backbone": backbone, "seed": seed, "num_shots": 16, "loss": loss, "prompt": prompt,
              "noise": {"type": ntype, "mode": "swap", "rate": rate}, "gce_q": 0.7 if loss == "gce" else None,
              "classnames": CLASSES, "epochs": eps if trainer != "ZeroshotCLIP" else []}
    if upl:
        record["upl"] = upl
    with open(osp.join(d, "results.json"), "w") as f:
        json.dump(record, f)
    if analysis:  # asymmetric: true class i > j mistaken for j 3 * i times more (a transposed heatmap shows)
        cm = np.eye(4, dtype=int) * 8 + seed + np.tril(np.arange(4)[:, None] * 3 * np.ones((4, 4), dtype=int), -1)
        with open(osp.join(d, "confusion_matrix.json"), "w") as f:
            json.dump({"classnames": CLASSES, "rows_true_cols_pred": cm.tolist()}, f)
    return d


def sweep(out, rates=(0.0, 0.25, 0.5), seeds=(1, 2), **kw):
    for seed in seeds:
        for rate in rates:
            for trainer, loss in (("PTNL", "ce"), ("PTNL", "gce"), ("LinearProbe", "ce")):
                write_run(out, seed, 70 - 40 * rate + seed + (3 if loss == "gce" else 0), trainer=trainer, loss=loss,
                          rate=rate, n_ctx=16 if trainer == "PTNL" else None, **kw)


def runs_of(*dirs):
    records = [load_run(d) for d in find_runs([str(d) for d in dirs])[0]]
    return records, aggregate(records)


def data_lines(ax):
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def check_written(path):
    """The file exists, nothing temporary is left beside it, and the picture is not blank."""
    from matplotlib.image import imread
    assert [n for n in os.listdir(osp.dirname(path)) if n.startswith(".tmp")] == []
    img = imread(str(path))
    assert img.ndim == 3 and img[..., :3].std() > 0.05  # not one flat colour
    return img


@pytest.fixture(autouse=True)
def _mpl():
    pytest.importorskip("matplotlib")


# ----------------------------------------------------------------------------- each figure
def test_noise_figure_lines_panels_and_file(tmp_path):
    sweep(tmp_path / "out")
    records, rows = runs_of(tmp_path / "out")
    fig, desc = build_figure("noise", records, rows)
    assert len(fig.axes) == 1 and len(data_lines(fig.axes[0])) == 3
    assert fig.axes[0].get_xlabel().startswith("noise rate") and fig.axes[0].get_ylabel() == "test accuracy (%)"
    assert "3 line(s)" in desc
    # the plotted points are the table's means, rate by rate: 70 - 40 rate + mean seed (1.5), + 3 for GCE
    rates = [0.0, 0.25, 0.5]
    for ln in data_lines(fig.axes[0]):
        trainer, loss = ln.get_label().split()[0], "gce" if ln.get_label().endswith("gce") else "ce"
        assert list(ln.get_xdata()) == rates
        expected = [70 - 40 * rate + 1.5 + (3 if loss == "gce" else 0) for rate in rates]
        assert list(ln.get_ydata()) == pytest.approx(expected)
        table = [float(m) for m in re.findall(r"^DescribableTextures +{} +\S+ +\S+ +\S+ +{} .*? (\d+\.\d\d) ± ".format(
            trainer, "—" if trainer == "LinearProbe" else loss), format_table(rows), re.M)]
        assert table == pytest.approx(list(ln.get_ydata()), abs=0.005)
    png = tmp_path / "figs" / "noise.png"
    assert write_figure("noise", records, rows, str(png)).startswith("accuracy against noise rate")
    check_written(png)
    assert os.listdir(png.parent) == ["noise.png"]


def test_styles_are_stable_per_trainer_and_loss_across_figures(tmp_path):
    sweep(tmp_path / "out", analysis=True)
    records, rows = runs_of(tmp_path / "out")
    noise, _ = build_figure("noise", records, rows)
    grads, _ = build_figure("gradients", records, rows)
    look = {ln.get_label(): (ln.get_color(), ln.get_marker()) for ln in data_lines(noise.axes[0])}
    assert look["PTNL ce"] != look["PTNL gce"] and look["PTNL ce"][0] == look["PTNL gce"][0]  # colour: trainer
    ptnl = [ax for ax in grads.axes if ax.get_title().startswith("PTNL")][0]
    g = {ln.get_label(): (ln.get_color(), ln.get_marker()) for ln in data_lines(ptnl)}
    assert g["PTNL ce clean samples"] == look["PTNL ce"] and g["PTNL gce clean samples"] == look["PTNL gce"]


def test_gradients_a_panel_per_model_configuration(tmp_path):
    for trainer in ("PTNL", "FullPromptTuning", "CLSTuning"):
        for seed in (1, 2):
            write_run(tmp_path / "out", seed, 60.0, trainer=trainer, analysis=True)
    write_run(tmp_path / "out", 1, 60.0, trainer="PTNL", loss="gce", analysis=True)
    records, rows = runs_of(tmp_path / "out")
    fig, desc = build_figure("gradients", records, rows)
    assert len(fig.axes) == 3
    assert sorted(len(data_lines(ax)) for ax in fig.axes) == [2, 2, 4]  # clean + noisy per loss
    assert all(ax.get_yscale() == "log" and "gradient norm" in ax.get_ylabel() for ax in fig.axes)  # 0.17 to 2
    assert "3 panel(s)" in desc
    svg = tmp_path / "g.svg"
    write_figure("gradients", records, rows, str(svg))
    assert svg.read_text().lstrip().startswith("<?xml")


def test_memorisation_three_curves_per_panel(tmp_path):
    sweep(tmp_path / "out", rates=(0.0, 0.5))
    records, rows = runs_of(tmp_path / "out")
    fig, desc = build_figure("memorisation", records, rows)
    assert len(fig.axes) == 3  # PTNL ce, PTNL gce, LinearProbe ce at 0.5 (rate 0 has no noisy samples)
    for ax in fig.axes:
        lines = data_lines(ax)
        assert len(lines) == 3 and ax.get_ylabel() == "training accuracy (%)"
        assert list(lines[0].get_xdata()) == [1, 2, 3]
    assert {ln.get_label() for ln in data_lines(fig.axes[0])} == {
        "noisy samples → given (wrong) label", "noisy samples → true label", "clean samples → their label"}
    write_figure("memorisation", records, rows, str(tmp_path / "m.png"))
    check_written(tmp_path / "m.png")


def test_context_a_panel_per_rate(tmp_path):
    for n_ctx in (1, 4, 16):
        for rate in (0.0, 0.5):
            for seed in (1, 2):
                write_run(tmp_path / "out", seed, 50 + n_ctx - 20 * rate, n_ctx=n_ctx, rate=rate)
    write_run(tmp_path / "out", 1, 50.0, trainer="CLSTuning", n_ctx=8, rate=0.5)  # one length: no line
    records, rows = runs_of(tmp_path / "out")
    fig, _ = build_figure("context", records, rows)
    assert len(fig.axes) == 2 and all(len(data_lines(ax)) == 1 for ax in fig.axes)
    assert list(data_lines(fig.axes[0])[0].get_xdata()) == [1, 4, 16]
    for ax, rate in zip(fig.axes, (0.0, 0.5)):  # the means: 50 + n_ctx - 20 rate
        assert list(data_lines(ax)[0].get_ydata()) == pytest.approx([50 + n - 20 * rate for n in (1, 4, 16)])
    assert "context length" in fig.axes[0].get_xlabel()


def test_backbones_a_panel_per_backbone(tmp_path):
    sweep(tmp_path / "out")
    sweep(tmp_path / "out", backbone="ViT-B/16")
    records, rows = runs_of(tmp_path / "out")
    fig, desc = build_figure("backbones", records, rows)
    assert len(fig.axes) == 2 and [len(data_lines(ax)) for ax in fig.axes] == [3, 3]
    assert "RN50" in desc and "ViT-B/16" in desc


def test_noise_types_a_line_per_type(tmp_path):
    for ntype in ("sym", "pair", "confusion"):
        sweep(tmp_path / "out", rates=(0.25, 0.5), ntype=ntype)
    records, rows = runs_of(tmp_path / "out")
    fig, _ = build_figure("noise-types", records, rows)
    assert len(fig.axes) == 3  # PTNL ce, PTNL gce, LinearProbe ce
    assert all({ln.get_label() for ln in data_lines(ax)} == {"sym-swap", "pair-swap", "confusion-swap"}
               for ax in fig.axes)


def test_confusion_heatmaps_per_group_and_per_run(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path / "out", seed, 60.0, analysis=True)
    records, rows = runs_of(tmp_path / "out")
    fig, _ = build_figure("confusion", records, rows)
    heat = [ax for ax in fig.axes if ax.images]
    assert len(heat) == 1
    assert [t.get_text() for t in heat[0].get_xticklabels()] == CLASSES
    pct = heat[0].images[0].get_array()
    assert np.allclose(np.asarray(pct).sum(axis=1), 100) and pct[0, 0] == pytest.approx(100 * 19 / 28)
    # rows are true classes, columns predictions: the counts summed over seeds 1 and 2, row by row
    counts = sum(np.eye(4) * 8 + s + np.tril(np.arange(4)[:, None] * 3 * np.ones((4, 4)), -1) for s in (1, 2))
    assert np.allclose(np.asarray(pct), 100 * counts / counts.sum(axis=1, keepdims=True))
    assert pct[3, 0] == pytest.approx(100 * 21 / 82) and pct[0, 3] == pytest.approx(100 * 3 / 28)
    assert heat[0].get_ylabel() == "true class" and heat[0].get_xlabel() == "predicted class"
    assert [t.get_text() for t in heat[0].get_yticklabels()] == CLASSES
    # the numbers written in the cells stand where their values are: (x=predicted, y=true)
    written = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in heat[0].texts}
    assert written[(3, 0)] == "{:.0f}".format(100 * 21 / 82) and written[(0, 3)] == "{:.0f}".format(100 * 3 / 28)
    fig, _ = build_figure("confusion", records, rows, per_run=True)
    assert len([ax for ax in fig.axes if ax.images]) == 2


def test_upl_bars_and_pseudo_label_accuracy(tmp_path):
    for sel, acc in (("topk", 60.0), ("random", 64.0)):
        for loss in ("ce", "gce"):
            for seed in (1, 2):
                write_run(tmp_path / "out", seed, acc + seed, trainer="UPL", loss=loss, rate=0.0,
                          variant=sel + "-dataset",
                          upl={"selection": sel, "pseudo_label_accuracy": 55.0, "selection_accuracy": 70.0 + seed})
    write_run(tmp_path / "out", 1, 50.0, trainer="ZeroshotCLIP", rate=0.0, n_ctx=None)
    records, rows = runs_of(tmp_path / "out")
    fig, desc = build_figure("upl", records, rows)
    acc_ax, pl_ax = fig.axes
    assert len(acc_ax.patches) == 4 and len(pl_ax.patches) == 4  # 2 selections x 2 losses; 2 x (split, selected)
    assert [ln.get_ydata()[0] for ln in acc_ax.get_lines() if ln.get_label() == "zero-shot CLIP"] == [50.0]
    assert sorted(round(p.get_height(), 2) for p in acc_ax.patches) == [61.5, 61.5, 65.5, 65.5]
    assert "pseudo-label accuracy" in pl_ax.get_ylabel()


@pytest.mark.parametrize("kind", [k for k in figure_kinds() if k != "noise"])
def test_missing_inputs_name_what_to_run(tmp_path, capsys, kind):
    write_run(tmp_path / "out", 1, 60.0, rate=0.0)  # one plain run: only the noise figure is possible
    records, rows = runs_of(tmp_path / "out")
    with pytest.raises(MissingRuns):
        build_figure(kind, records, rows)
    out = tmp_path / "f.png"
    rc = main([str(tmp_path / "out"), "--figure", kind, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert err == [missing_message(kind)] and "bash scripts/" in err[0] and err[0].startswith(kind + " needs")
    if kind == "gradients":
        assert "TRAINER.PTNL.ANALYSIS True" in err[0]


def test_figure_cli_and_bad_extension(tmp_path, capsys):
    sweep(tmp_path / "out")
    pdf = tmp_path / "noise.pdf"
    assert main([str(tmp_path / "out"), "--pivot", "--figure", "noise", "--out", str(pdf)]) == 0
    out = capsys.readouterr().out
    assert "rate 0.5" in out and "figure: {} (accuracy against noise rate, 3 line(s)".format(pdf) in out
    assert pdf.read_bytes()[:5] == b"%PDF-"
    with pytest.raises(SystemExit):
        main([str(tmp_path / "out"), "--figure", "noise", "--out", str(tmp_path / "x.jpg")])
    assert ".png, .pdf or .svg" in capsys.readouterr().err


# ----------------------------------------------------------------------------- LaTeX
def _latex_numbers(tex):
    return re.findall(r"(\d+\.\d\d) \\pm (\d+\.\d\d)", tex)


@pytest.mark.parametrize("pivot", [False, True])
def test_latex_table_matches_the_plain_one(tmp_path, pivot):
    sweep(tmp_path / "out", seeds=(1, 2, 3))
    records, rows = runs_of(tmp_path / "out")
    fmt = format_pivot if pivot else format_table
    tex, plain = fmt(rows, "latex"), fmt(rows, "plain")
    assert tex.count("{") == tex.count("}") and all(ln.count("{") == ln.count("}") for ln in tex.splitlines())
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "\\pm" in tex
    body = tex.split("\\midrule\n")[1].split("\n\\bottomrule")[0].splitlines()
    assert len(body) == (3 if pivot else len(rows))  # one row per group (per setting in the pivot)
    assert all(ln.endswith("\\\\") and ln.count(" & ") == tex.split("\n")[3].count(" & ") for ln in body)
    assert _latex_numbers(tex) == re.findall(r"(\d+\.\d\d) ± (\d+\.\d\d)", plain)
    assert "PTNL" in tex and "LinearProbe" in tex and "sym-swap" in tex
    bold = re.findall(r"\\mathbf\{(\d+\.\d\d) \\pm", tex)
    if pivot:  # the best of each rate column: PTNL gce
        assert len(bold) == 3 and all(ln.split(" & ")[4] == "gce" for ln in body if "mathbf" in ln)
    else:
        assert bold == ["{:.2f}".format(max(r["mean"] for r in rows))]


def test_latex_escapes_and_cli(tmp_path, capsys):
    write_run(tmp_path / "out", 1, 60.0, loss="nce_rce")
    assert main([str(tmp_path / "out"), "--format", "latex"]) == 0
    out = capsys.readouterr().out
    assert "nce\\_rce" in out and "$\\mathbf{60.00}$ (n=1)" in out
    assert all(ln.startswith("% ") for ln in out.split("\\end{tabular}")[1].strip().splitlines())


# ----------------------------------------------------------------------------- the report folder
def test_report_folder_embeds_every_possible_figure(tmp_path, capsys):
    sweep(tmp_path / "out", analysis=True)
    rep = tmp_path / "report"
    assert main([str(tmp_path / "out"), "--report", str(rep)]) == 0
    out = capsys.readouterr().out
    assert "report: {}".format(rep / "index.md") in out
    index = (rep / "index.md").read_text()
    drawn = ("noise", "gradients", "memorisation", "confusion")
    for kind in drawn:
        assert "![{0}]({0}.png)".format(kind) in index
        check_written(rep / (kind + ".png"))
        assert (rep / (kind + ".pdf")).read_bytes()[:5] == b"%PDF-"
    for kind in set(figure_kinds()) - set(drawn):
        assert missing_message(kind) in index and not (rep / (kind + ".png")).exists()
    for name in ("table", "pivot"):
        for ext in ("md", "tex", "csv"):
            assert (rep / "{}.{}".format(name, ext)).stat().st_size > 0
    assert "| PTNL" in index and "[pivot.tex](pivot.tex)" in index
    assert not [n for n in os.listdir(rep) if n.startswith(".tmp")]


def test_where_selects_runs(tmp_path, capsys):
    sweep(tmp_path / "out", rates=(0.0, 0.5))
    png = tmp_path / "m.png"
    assert main([str(tmp_path / "out"), "--where", "noise_rate=0.50", "--where", "trainer=PTNL",
                 "--figure", "memorisation", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "memorisation per epoch, 6 line(s), 2 panel(s)" in out and "LinearProbe" not in out
    assert main([str(tmp_path / "out"), "--where", "trainer=CoOp"]) == 1
    assert "matching --where trainer=CoOp" in capsys.readouterr().out
