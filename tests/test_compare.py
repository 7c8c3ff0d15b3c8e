"""scripts/methods/compare.sh end to end on a reduced grid: every method on the same noisy sets, one
table with the selection methods' partition precision / recall, and the plot."""
import os
import os.path as osp
import re
import subprocess
import sys

from conftest import REPO, SMALL_OPTS


def test_compare_sh_end_to_end(world, tmp_path):
    out = str(tmp_path / "out")
    env = dict(os.environ, DATA=world["data"], CLIP_WEIGHTS=world["clip"], SEEDS="1", SHOTS="4", OUT=out,
               PYTHON=sys.executable, METHODS="PTNL:ce JoAPR:ce NLPrompt:ce", RATES="0.0 0.5", EPOCHS="2")  # the figure needs two rates
    proc = subprocess.run(["bash", "scripts/methods/compare.sh", "dtd", "rn50"] + SMALL_OPTS, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "noisy-set precision / recall" in text
    rows = {t: ln for ln in text.splitlines() for t in ("PTNL ", "JoAPR", "NLPrompt")
            if ln.startswith("DescribableTextures") and re.search(r"\b{}\b".format(t.strip()), ln) and "(n=1)" in ln}
    assert set(rows) == {"PTNL ", "JoAPR", "NLPrompt"}, text[-3000:]
    for method in ("JoAPR", "NLPrompt"):
        assert re.search(r"\d+\.\d / \d+\.\d", rows[method]), rows[method]
    assert "—" in rows["PTNL "]
    png = osp.join(out, "dtd_compare.png")
    # the figure the table describes: one line per method, one panel, a real image with something drawn
    described = r"figure: {} \(accuracy against noise rate, (\d+) line\(s\).*?(\d+) panel\(s\)"
    m = re.search(described.format(re.escape(png)), proc.stdout + proc.stderr)
    assert m and (m.group(1), m.group(2)) == ("3", "1"), (proc.stdout + proc.stderr)[-2000:]
    import matplotlib.image
    pixels = matplotlib.image.imread(png)
    colours = {tuple(p) for p in pixels.reshape(-1, pixels.shape[2])[::97]}
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and len(colours) > 5, (pixels.shape, len(colours))
    # what the figure plots: each method's line goes through its runs' accuracies, rate by rate. One
    # epoch on random weights gives every method the same accuracy at both rates, so each run is
    # given its own accuracy first and the figure is drawn again from the run folders
    import json
    from ptnl.report.aggregate import aggregate
    from ptnl.report.ensemble import add_ensembles
    from ptnl.report.figures import build_figure
    from ptnl.runs.read import find_runs, load_run
    accs = {}
    for n, d in enumerate(sorted(d for d, _, f in os.walk(out) if "results.json" in f)):
        path = osp.join(d, "results.json")
        res = dict(json.load(open(path)), accuracy=10.0 * (n + 1) + 0.25)  # one seed: one run a method and rate
        accs.setdefault(res["trainer"], {})[res["noise"]["rate"]] = res["accuracy"]
        json.dump(res, open(path, "w"))
    assert len({a for m in accs.values() for a in m.values()}) == 6, accs
    done, _ = find_runs([out])
    records = [load_run(d) for d in done]
    fig, described = build_figure("noise", records, add_ensembles(aggregate(records, [], ddof=0)))
    drawn = {ln.get_label(): (tuple(float(x) for x in ln.get_xdata()), tuple(round(float(y), 4) for y in ln.get_ydata()))
             for ax in fig.axes for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    assert len(drawn) == 3, drawn
    for label, (xs, ys) in drawn.items():
        trainer = next(t for t in accs if label.startswith(t))
        assert xs == (0.0, 0.5) and ys == (accs[trainer][0.0], accs[trainer][0.5]), (label, drawn, accs)
    # the same noisy few-shot set for every method
    noise = {}
    for d, _, f in os.walk(out):
        if "noise.json" in f:
            noise.setdefault(re.search(r"sym-swap-([\d.]+)", d).group(1), []).append(open(osp.join(d, "noise.json")).read())
    assert "0.5" in noise, sorted(noise)
    for rate, files in noise.items():  # at each rate, the three methods' noise.json are one file's bytes
        assert len(files) == 3 and len(set(files)) == 1, rate
