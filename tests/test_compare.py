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
               PYTHON=sys.executable, METHODS="PTNL:ce JoAPR:ce NLPrompt:ce", RATES="0.5", EPOCHS="2")
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
    assert osp.isfile(osp.join(out, "dtd_compare.png"))
    # the same noisy few-shot set for every method
    noise = [open(osp.join(d, "noise.json")).read() for d, _, f in os.walk(out) if "noise.json" in f]
    assert len(noise) == 3 and len(set(noise)) == 1
