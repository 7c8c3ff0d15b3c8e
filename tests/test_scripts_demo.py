"""The README's demo table is the demo's output (issue 29, item 7): run ``scripts/ptnl/demo.sh`` as
the README says (pocket world, nothing downloaded) and require the README's table, line for line,
in what it prints. Regenerate the README block from this run's output when the demo changes.

About 6 minutes on 2 CPU cores from an empty cache, so it runs only with ``PTNL_TEST_DEMO=1``
(``PTNL_TEST_DEMO=1 python -m pytest -q tests/test_scripts_demo.py``); run it whenever the demo or
a trainer it runs changes. With ``PTNL_TEST_POCKET_CACHE=<folder>`` the
pocket world and the demo's runs are kept there, so a second call only prints the table."""
import os
import os.path as osp
import re
import subprocess

import pytest

from conftest import REPO

CELL = re.compile(r"^(\d+\.\d+) ± (\d+\.\d+) \((\d+)\)$")  # "mean ± std (seeds)"
LINEAR_PROBE_TOL = 1.5  # points (360 test images: one image is 0.28)


def readme_demo_table():
    """The lines of the README's demo table: the first ```text block of its "## Demo" section, from its
    first line (what every row shares, when stated above the table) to the end of the table (the first
    blank line after the ``dataset ...`` header)."""
    text = open(osp.join(REPO, "README.md")).read()
    section = text.split("\n## Demo", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```text\n(.*?)```", section, re.S)
    assert m, "README.md's Demo section has no ```text block with the demo's table"
    lines = m.group(1).splitlines()
    head = next((i for i, ln in enumerate(lines) if ln.startswith("dataset ")), None)
    assert head is not None, "README.md's demo block has no table header (a line starting 'dataset '):\n" + m.group(1)
    end = next((i for i in range(head, len(lines)) if not lines[i].strip()), len(lines))
    assert end - head >= 4, lines
    return lines[:end]


def assert_same_table(table, got):
    """The demo's printed lines ``got`` are the README's ``table``: every line exact, but LinearProbe's
    cells within LINEAR_PROBE_TOL points."""
    why = "README.md's demo table differs from the demo's output; replace it with:\n" + "\n".join(got)
    assert len(got) == len(table), why
    for want, have in zip(table, got):
        if want.rstrip() == have:
            continue
        # LinearProbe's cells move with the machine (its C search on the val split can pick another C
        # when the features differ in the last bits): at rate 0 the README has 55.83 for both seeds,
        # issue 29's machine 55.83 and 56.94, and a loaded 2-core machine 55.56 for seed 1. Its means and
        # stds get LINEAR_PROBE_TOL points; every other cell is exact.
        assert " LinearProbe " in want and " LinearProbe " in have, why
        cells_w, cells_h = re.split(r"\s{2,}", want.strip()), re.split(r"\s{2,}", have.strip())
        assert len(cells_w) == len(cells_h), why
        for a, b in zip(cells_w, cells_h):
            ma, mb = CELL.match(a), CELL.match(b)
            if not (ma and mb):
                assert a == b, why
                continue
            assert ma.group(3) == mb.group(3), why  # the seed count
            assert abs(float(ma.group(1)) - float(mb.group(1))) <= LINEAR_PROBE_TOL, why
            assert abs(float(ma.group(2)) - float(mb.group(2))) <= LINEAR_PROBE_TOL, why


@pytest.mark.skipif(not os.environ.get("PTNL_TEST_DEMO"),
                    reason="the whole demo (about 6 minutes on 2 cores) runs with PTNL_TEST_DEMO=1, outside CI's budget")
def test_readme_demo_table_is_the_demos_output(tmp_path):
    keep = os.environ.get("PTNL_TEST_POCKET_CACHE")
    cache = keep or str(tmp_path / "cache")
    out = osp.join(keep, "demo-out") if keep else str(tmp_path / "out")
    env = dict(os.environ, PTNL_CACHE_DIR=cache, OUT=out, FIGURES=str(tmp_path / "figures"))
    for key in ("SEEDS", "SHOTS", "EPOCHS", "RATES", "GROUP", "ENGINE", "DRY_RUN", "CLIP_WEIGHTS", "DATA"):
        env.pop(key, None)  # the README's command, with the demo's defaults
    proc = subprocess.run(["bash", "scripts/ptnl/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = readme_demo_table()
    printed = [ln.rstrip() for ln in proc.stdout.splitlines()]
    start = [i for i, ln in enumerate(printed) if ln == table[0].rstrip()]
    assert start, "the demo printed no line {!r}; its table:\n{}".format(table[0], "\n".join(printed[-20:]))
    for i in start[:-1]:  # the first of the printed blocks that matches (a later report may repeat its first line)
        try:
            return assert_same_table(table, printed[i:i + len(table)])
        except AssertionError:
            pass
    assert_same_table(table, printed[start[-1]:start[-1] + len(table)])


def test_the_comparison_catches_a_changed_cell():
    """The check above, on the README's own table: a PTNL cell 0.28 points off (one test image) fails,
    a LinearProbe cell 0.56 off passes, 2 points off fails, and so does a missing row."""
    table = readme_demo_table()
    assert_same_table(table, [ln.rstrip() for ln in table])

    def changed(trainer, delta):
        rows = []
        for ln in table:
            if " {} ".format(trainer) in ln and not rows_changed:
                m = re.search(r"(\d+\.\d+) ± ", ln)
                ln = ln[:m.start(1)] + "{:.2f}".format(float(m.group(1)) + delta) + ln[m.end(1):]
                rows_changed.append(ln)
            rows.append(ln.rstrip())
        return rows
    for trainer, delta, ok in (("PTNL", 0.28, False), ("LinearProbe", 0.56, True), ("LinearProbe", 2.0, False)):
        rows_changed = []
        rows = changed(trainer, delta)
        if ok:
            assert_same_table(table, rows)
        else:
            with pytest.raises(AssertionError):
                assert_same_table(table, rows)
    with pytest.raises(AssertionError):
        assert_same_table(table, [ln.rstrip() for ln in table[:-1]])
