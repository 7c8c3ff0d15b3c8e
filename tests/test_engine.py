"""The engine in use (built-in, or real Dassl when PTNL_ENGINE=dassl) behaves as
docs/engines.md states: few-shot picks, learning rates, config, registry, checkpoints."""
import math
import os.path as osp
import random

import pytest
import torch

from ptnl import compat
from ptnl.config import extend_cfg


class Item:
    def __init__(self, i, label):
        self.id, self.label = i, label


def fewshot(sources, **kw):
    base = object.__new__(compat.DatasetBase)
    return compat.DatasetBase.generate_fewshot_dataset(base, *sources, **kw)


def pairs(items):
    return [(it.label, it.id) for it in items]


def test_fewshot_picks_match_dassl_vectors():
    items = [Item(i, [2, 0, 1][i % 3]) for i in range(30)]
    random.seed(1)
    assert pairs(fewshot([items], num_shots=4)) == [
        (2, 6), (2, 3), (2, 12), (2, 0), (0, 22), (0, 28), (0, 25), (0, 16), (1, 20), (1, 11), (1, 5), (1, 26)]
    random.seed(1)
    first, second = fewshot([items, items[:7]], num_shots=2)
    assert pairs(first) == [(2, 6), (2, 3), (0, 13), (0, 4), (1, 23), (1, 29)]
    assert pairs(second) == [(2, 3), (2, 6), (0, 1), (0, 4), (1, 5), (1, 2)]
    random.seed(1)
    assert pairs(fewshot([items[:7]], num_shots=3)) == [(2, 0), (2, 6), (2, 3), (0, 1), (0, 4), (1, 2), (1, 5)]
    random.seed(1)
    assert pairs(fewshot([items[:7]], num_shots=3, repeat=True)) == [
        (2, 0), (2, 6), (2, 3), (0, 1), (0, 4), (0, 1), (1, 2), (1, 2), (1, 2)]


def test_fewshot_no_shots_returns_input_unchanged():
    items = [Item(i, i % 2) for i in range(4)]
    assert fewshot([items], num_shots=-1) is items


def coop_optim_cfg(max_epoch=50):
    cfg = compat.get_cfg_default()
    cfg.merge_from_list(["OPTIM.NAME", "sgd", "OPTIM.LR", 0.002, "OPTIM.LR_SCHEDULER", "cosine",
                         "OPTIM.MAX_EPOCH", max_epoch, "OPTIM.WARMUP_EPOCH", 1,
                         "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", 1e-5])
    return cfg


def lr_per_epoch(cfg, epochs):
    model = torch.nn.Linear(2, 2)
    optim = compat.build_optimizer(model, cfg.OPTIM)
    sched = compat.build_lr_scheduler(optim, cfg.OPTIM)
    lrs = []
    for _ in range(epochs):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return lrs, optim, sched


@pytest.mark.filterwarnings("ignore")
def test_coop_learning_rates_per_epoch():
    cfg = coop_optim_cfg()
    lrs, optim, _ = lr_per_epoch(cfg, 50)
    assert lrs[0] == 1e-05
    assert lrs[1] == 0.002
    assert lrs[2] == 0.0019980267284282717
    assert lrs[3] == 0.001992114701314478
    assert lrs[4] == 0.001982287250728689
    assert lrs[48] == 1.7712749271311268e-05
    assert lrs[49] == 7.88529868552223e-06
    assert optim.param_groups[0]["lr"] == 1.9732715717284396e-06
    for e in range(2, 51):
        closed = 0.002 * (1 + math.cos(math.pi * (e - 2) / 50)) / 2
        assert abs(lrs[e - 1] - closed) < 1e-18


@pytest.mark.filterwarnings("ignore")
def test_linear_warmup_and_step_schedules():
    cfg = compat.get_cfg_default()
    cfg.merge_from_list(["OPTIM.NAME", "sgd", "OPTIM.LR", 0.01, "OPTIM.LR_SCHEDULER", "cosine",
                         "OPTIM.MAX_EPOCH", 10, "OPTIM.WARMUP_EPOCH", 3, "OPTIM.WARMUP_TYPE", "linear"])
    lrs, _, _ = lr_per_epoch(cfg, 10)
    expected = [1e-5, 0.00333333, 0.00666667, 0.01, 0.00975528, 0.00904508]
    assert lrs[:6] == pytest.approx(expected, abs=1e-8)
    assert lrs[-1] == pytest.approx(0.00345492, abs=1e-8)
    for name, steps in (("single_step", (2,)), ("multi_step", (2, 4))):
        cfg = compat.get_cfg_default()
        cfg.merge_from_list(["OPTIM.NAME", "sgd", "OPTIM.LR", 0.01, "OPTIM.LR_SCHEDULER", name,
                             "OPTIM.STEPSIZE", steps, "OPTIM.MAX_EPOCH", 6])
        lrs, _, _ = lr_per_epoch(cfg, 6)
        assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])


@pytest.mark.filterwarnings("ignore")
def test_scheduler_resume_follows_schedule(tmp_path):
    """Dassl freezes the lr after resuming past warm-up; both engines here must not."""
    cfg = coop_optim_cfg(max_epoch=10)
    full, _, _ = lr_per_epoch(cfg, 10)
    _, optim, sched = lr_per_epoch(cfg, 4)
    path = tmp_path / "state.pt"
    torch.save({"optimizer": optim.state_dict(), "scheduler": sched.state_dict()}, path)
    model = torch.nn.Linear(2, 2)
    optim2 = compat.build_optimizer(model, cfg.OPTIM)
    sched2 = compat.build_lr_scheduler(optim2, cfg.OPTIM)
    state = compat.load_checkpoint(str(path))
    optim2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    resumed = []
    for _ in range(6):
        resumed.append(optim2.param_groups[0]["lr"])
        optim2.step()
        sched2.step()
    assert resumed == pytest.approx(full[4:], rel=1e-12)


def test_config_defaults_and_strict_types():
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    assert cfg.OPTIM.NAME == "adam" and cfg.OPTIM.SGD_DAMPNING == 0 and cfg.INPUT.SIZE == (224, 224)
    assert cfg.DATASET.NOISE.RATE == 0.0 and cfg.DATASET.NOISE.MODE == "swap"
    assert cfg.TRAINER.PTNL.GCE_Q == 0.7 and cfg.TRAINER.PTNL.N_CTX == 16
    cfg.merge_from_list(["INPUT.SIZE", "(32, 32)", "OPTIM.WARMUP_CONS_LR", "1e-5"])
    assert cfg.INPUT.SIZE == (32, 32) and cfg.OPTIM.WARMUP_CONS_LR == 1e-5
    with pytest.raises(ValueError):
        cfg.merge_from_list(["OPTIM.LR", "1"])  # int where a float is expected
    with pytest.raises(AssertionError, match="Non-existent key"):
        cfg.merge_from_list(["OPTIM.NO_SUCH_KEY", "1"])


def test_registry_suggests_closest_name():
    import datasets  # noqa: F401
    import trainers.ptnl  # noqa: F401
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.TRAINER.NAME = "PTNl"
    with pytest.raises(ValueError, match=r"but got \[PTNl\] \(do you mean \[PTNL\]\?\)"):
        compat.build_trainer(cfg)


def test_registry_rejects_duplicates():
    from ptnl.engine.utils import Registry
    reg = Registry("X")

    @reg.register()
    class A:
        pass
    with pytest.raises(KeyError, match='already registered in "X" registry'):
        reg.register(A)
    assert reg.registered_names() == ["A"]


def test_checkpoint_layout(tmp_path):
    from ptnl.engine.utils import save_checkpoint
    state = {"state_dict": {"module.ctx": torch.zeros(2)}, "epoch": 3, "optimizer": None,
             "scheduler": None, "val_result": None}
    save_checkpoint(state, str(tmp_path / "prompt_learner"))
    path = tmp_path / "prompt_learner" / "model.pth.tar-3"
    assert path.is_file()
    assert (tmp_path / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-3\n"
    loaded = compat.load_checkpoint(str(path))
    assert list(loaded.keys()) == ["state_dict", "epoch", "optimizer", "scheduler", "val_result"]
    assert list(loaded["state_dict"].keys()) == ["ctx"]
    assert not list(osp.join(tmp_path, p) for p in (tmp_path / "prompt_learner").iterdir()
                    if p.name.endswith(".tmp"))


def test_logger_keeps_old_log(tmp_path, capsys):
    import sys
    from ptnl.engine.utils import setup_logger
    (tmp_path / "log.txt").write_text("old\n")
    real = sys.stdout
    try:
        setup_logger(str(tmp_path))
        print("new line")
        sys.stdout.flush()
    finally:
        sys.stdout.close() if hasattr(sys.stdout, "file") else None
        sys.stdout = real
    assert (tmp_path / "log.txt").read_text() == "old\n"
    others = [p for p in tmp_path.iterdir() if p.name.startswith("log.txt-")]
    assert len(others) == 1 and others[0].read_text() == "new line\n"


def test_engine_banner_names_engine():
    assert compat.ENGINE in ("builtin", "dassl")
    assert compat.ENGINE in compat.engine_banner()


def test_macro_f1_is_scikit_learns():
    """The evaluators' macro-F1 (computed without importing scikit-learn, seconds of every run's
    start) equals f1_score(average="macro", labels=np.unique(y_true)) exactly, with absent and
    never-predicted classes, predictions of classes not in y_true, and a single class."""
    import numpy as np
    from sklearn.metrics import f1_score
    from ptnl.engine.evaluation import macro_f1
    rng = np.random.default_rng(0)
    cases = [([0, 0, 1], [0, 0, 0]), ([2, 2], [2, 2]), ([1, 3], [0, 5])]
    for _ in range(300):
        n, c = int(rng.integers(1, 200)), int(rng.integers(1, 50))
        y_true = rng.integers(0, c, n)
        y_pred = np.where(rng.random(n) < rng.random(), y_true, rng.integers(0, c + 3, n))
        cases.append((y_true.tolist(), y_pred.tolist()))
    for y_true, y_pred in cases:
        want = 100.0 * f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true))
        assert macro_f1(y_true, y_pred) == want
