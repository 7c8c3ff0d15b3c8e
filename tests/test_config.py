"""Numbers as people type them: an integer for a float key (``DATASET.NOISE.RATE 0``, ``LR: 1``)
is accepted on the command line and in config files, under either engine's yacs config."""
import json

import pytest

from conftest import run_py, train_args
from ptnl import compat
from ptnl.config import extend_cfg, merge_file, merge_opts


def fresh():
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    return cfg


def test_yacs_alone_refuses_an_int_for_a_float_key():
    with pytest.raises(ValueError, match="Type mismatch"):
        fresh().merge_from_list(["DATASET.NOISE.RATE", "0"])


def test_merge_opts_accepts_ints_for_float_keys():
    cfg = fresh()
    merge_opts(cfg, ["DATASET.NOISE.RATE", "0", "OPTIM.LR", 1, "TRAINER.PTNL.GCE_Q", "0.5",
                     "OPTIM.MAX_EPOCH", "7", "TRAINER.PTNL.LOSS", "gce"])
    assert cfg.DATASET.NOISE.RATE == 0.0 and isinstance(cfg.DATASET.NOISE.RATE, float)
    assert cfg.OPTIM.LR == 1.0 and isinstance(cfg.OPTIM.LR, float)
    assert cfg.TRAINER.PTNL.GCE_Q == 0.5
    assert cfg.OPTIM.MAX_EPOCH == 7 and isinstance(cfg.OPTIM.MAX_EPOCH, int)  # int keys stay int
    with pytest.raises(ValueError, match="Type mismatch"):  # other mismatches still fail
        merge_opts(cfg, ["OPTIM.MAX_EPOCH", "0.5"])


def test_merge_file_accepts_ints_for_float_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("OPTIM:\n  LR: 1\n  MAX_EPOCH: 3\nDATASET:\n  NOISE:\n    RATE: 0\n")
    cfg = fresh()
    merge_file(cfg, str(path))
    assert cfg.OPTIM.LR == 1.0 and isinstance(cfg.OPTIM.LR, float) and cfg.OPTIM.MAX_EPOCH == 3
    assert cfg.DATASET.NOISE.RATE == 0.0


def test_train_py_takes_rate_0_and_still_checks_the_range(world, tmp_path):
    ok = run_py(train_args(world["data"], world["clip"], str(tmp_path / "a"), rate=0, epochs=1), check=False)
    assert ok.returncode == 0, ok.stderr[-2000:]
    # the run trained at rate 0: recorded as such, and no training sample carries a wrong label
    res = json.load(open(tmp_path / "a" / "results.json"))
    assert res["noise"]["rate"] == 0.0 and res["noise"]["realised_rate"] == 0.0
    assert res["config"]["DATASET.NOISE.RATE"] == 0.0
    assert (res["epochs"][0]["num_clean"], res["epochs"][0]["num_noisy"]) == (24, 0)
    bad = run_py(train_args(world["data"], world["clip"], str(tmp_path / "b"), rate=2), check=False)
    assert bad.returncode == 2 and "DATASET.NOISE.RATE" in bad.stderr
