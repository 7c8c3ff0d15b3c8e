"""Extending PTNL one file each: a new loss, a new noise type and a new trainer, each in its own
module registered at run time (PTNL_PLUGINS), run end to end through train.py."""
import json
import os.path as osp

from conftest import REPO, run_py, train_args

PROBE = osp.join(REPO, "tests", "fixtures", "parity", "probe.py")

LOSS_PLUGIN = '''
"""A loss with an option (TRAINER.PTNL.SCALED_CE_SCALE), registered where it is defined."""
import torch.nn.functional as F

from ptnl.losses import register_loss


@register_loss("scaled_ce", options={"scale": "SCALED_CE_SCALE"})
def scaled_ce(logits, labels, scale=1.0, reduction="mean", **_):
    per = scale * F.cross_entropy(logits.float(), labels, reduction="none")
    return per.mean() if reduction == "mean" else per
'''

NOISE_PLUGIN = '''
"""A noise type: flip makes y into y + 2; swap fills class c with images of class c - 2."""
from ptnl.noise import NoiseType, register_noise_type


@register_noise_type("shift2")
class ShiftTwo(NoiseType):
    def flip_labels(self, labels, offsets, num_classes, scores):
        return (labels + 2) % num_classes

    def swap_take(self, c, state):
        return state.next_unused(state.queues[(c - 2) % state.num_classes]), False
'''

TRAINER_PLUGIN = '''
"""A trainer that weights each sample's loss (here by its true label: an analysis-only oracle),
with its config key next to it."""
import torch
from yacs.config import CfgNode as CN

from ptnl.config import register_config_keys
from ptnl.trainers import register_trainer
from ptnl.trainers.prompt_tuning import PTNL


@register_config_keys
def _keys(cfg):
    cfg.TRAINER.WEIGHTED = CN()
    cfg.TRAINER.WEIGHTED.NOISY_WEIGHT = 1.0


@register_trainer
class WeightedPTNL(PTNL):
    def compute_loss(self, batch):
        logits = self.model(batch["img"])
        per_sample = self.loss_fn.per_sample(logits, batch["label"])
        noisy = torch.as_tensor(self.true_labels_of(batch), device=per_sample.device) != batch["label"]
        w = torch.where(noisy, self.cfg.TRAINER.WEIGHTED.NOISY_WEIGHT, 1.0)
        self.weighted = getattr(self, "weighted", 0) + int(noisy.sum())
        return (w * per_sample).sum() / w.sum(), logits

    def results_record(self):
        record = super().results_record()
        record["noisy_samples_weighted"] = self.weighted
        return record
'''


def _args(world, out, trainer, extra, epochs=2, loss="scaled_ce"):
    args = train_args(world["data"], world["clip"], out, shots=4, rate=0.5, loss=loss, epochs=epochs,
                      extra=extra)
    args[args.index("--trainer") + 1] = trainer
    return args


def test_a_loss_a_noise_type_and_a_trainer_each_from_one_file(world, tmp_path):
    files = []
    for name, text in (("my_loss", LOSS_PLUGIN), ("my_noise", NOISE_PLUGIN), ("my_trainer", TRAINER_PLUGIN)):
        (tmp_path / (name + ".py")).write_text(text)
        files.append(str(tmp_path / (name + ".py")))
    env = {"PTNL_PLUGINS": ",".join(files)}
    # the parity probe records every iteration's loss (tests/fixtures/parity/probe.py)
    probed = dict(env, PTNL_PLUGINS=",".join(files + [PROBE]), PTNL_PARITY_PROBE=str(tmp_path / "flip.json"))
    out = str(tmp_path / "flip")
    proc = run_py(_args(world, out, "WeightedPTNL",
                        ["DATASET.NOISE.TYPE", "shift2", "DATASET.NOISE.MODE", "flip",
                         "TRAINER.PTNL.SCALED_CE_SCALE", "2.0", "TRAINER.WEIGHTED.NOISY_WEIGHT", "0.1"]), env=probed)
    res = json.load(open(osp.join(out, "results.json")))
    assert res["trainer"] == "WeightedPTNL" and res["loss"] == "scaled_ce"
    assert res["noise"]["type"] == "shift2" and res["noise"]["mode"] == "flip"
    assert res["noisy_samples_weighted"] > 0 and len(res["epochs"]) == 2
    noise = json.load(open(osp.join(out, "noise.json")))
    noisy = [s for s in noise["samples"] if s["label"] != s["true_label"]]
    assert len(noisy) == 12 and all(s["label"] == (s["true_label"] + 2) % 6 for s in noisy)
    log = open(osp.join(out, "log.txt")).read()
    assert "Loss: scaled_ce" in log and "SCALED_CE_SCALE: 2.0" in log and "NOISY_WEIGHT: 0.1" in log
    assert "* accuracy:" in proc.stdout
    assert res["config"]["TRAINER.PTNL.SCALED_CE_SCALE"] == 2.0
    assert res["config"]["TRAINER.WEIGHTED.NOISY_WEIGHT"] == 0.1
    # the options act: the same first batch with SCALED_CE_SCALE 1 gives exactly half the loss, and
    # with NOISY_WEIGHT 1 (noisy samples weighted like clean ones) another loss
    first = {}
    for name, scale, weight in (("scale1", "1.0", "0.1"), ("weight1", "1.0", "1.0")):
        run_py(_args(world, str(tmp_path / name), "WeightedPTNL",
                     ["DATASET.NOISE.TYPE", "shift2", "DATASET.NOISE.MODE", "flip", "TRAINER.PTNL.SCALED_CE_SCALE",
                      scale, "TRAINER.WEIGHTED.NOISY_WEIGHT", weight], epochs=1),
               env=dict(probed, PTNL_PARITY_PROBE=str(tmp_path / (name + ".json"))))
    for name in ("flip", "scale1", "weight1"):
        first[name] = json.load(open(tmp_path / (name + ".json")))["losses"][0]
        assert first[name][:2] == [1, 1], first[name]
    assert first["flip"][2] == 2 * first["scale1"][2]
    assert abs(first["weight1"][2] - first["scale1"][2]) > 1e-4 * first["scale1"][2], first

    # the swap protocol with the new type: class c holds images of class c - 2
    out = str(tmp_path / "swap")
    run_py(_args(world, out, "PTNL", ["DATASET.NOISE.TYPE", "shift2"], epochs=1, loss="ce"), env=env)
    noise = json.load(open(osp.join(out, "noise.json")))
    noisy = [s for s in noise["samples"] if s["label"] != s["true_label"]]
    assert len(noisy) == 12 and all(s["true_label"] == (s["label"] - 2) % 6 for s in noisy)

    # unknown names are errors that list the registered ones, the plugin's included
    bad = run_py(_args(world, str(tmp_path / "bad"), "PTNL", [], loss="nope"), env=env, check=False)
    assert bad.returncode == 2
    assert "Unknown loss 'nope' (TRAINER.PTNL.LOSS): expected one of ce, gce, mae, nce_rce, scaled_ce, sce" \
        in bad.stderr


def test_old_import_paths_are_gone():
    """0.2.0 removed the deprecated re-exports: no module under ptnl/ only re-exports another."""
    code = ("import importlib\n"
            "for m in ['ptnl.results', 'ptnl.clip_backbone', 'ptnl.dataset_base', 'ptnl.zeroshot', 'ptnl.cache',\n"
            "          'ptnl.prompts', 'ptnl.models', 'ptnl.templates', 'ptnl.fastdata', 'ptnl.synthetic',\n"
            "          'ptnl.ensemble', 'ptnl.trainer_base', 'ptnl.trainers.clip_heads', 'ptnl._deprecated']:\n"
            "    try:\n"
            "        importlib.import_module(m)\n"
            "        print('still there', m)\n"
            "    except ModuleNotFoundError:\n"
            "        pass\n"
            "import ptnl.trainers, ptnl.noise\n"
            "print(hasattr(ptnl.trainers, 'TRAINERS'), hasattr(ptnl.noise, 'apply_noise'))\n"
            "from ptnl.clip import available_models\n"
            "import trainers.ptnl\n"
            "assert 'UPL' in ptnl.trainers.available_trainers()\n"
            "print('ok')\n")
    proc = run_py(["-c", code])
    assert proc.stdout.splitlines() == ["False False", "ok"], proc.stdout

def test_register_trainers_in_a_coop_fork_keeps_the_forks_names():
    """CoOp registers ZeroshotCLIP (trainers/zsclip.py), UPL's release UPLTrainer: a fork that
    imports those first and then calls register_trainers() must not crash, keeps its own
    trainers under their names, and gets PTNL's clashing ones as PTNL_<name>."""
    import warnings
    from ptnl.engine.utils import Registry
    from ptnl.trainers import TRAINER_CLASSES, register_trainers
    registry = Registry("TRAINER")
    fork = {name: type(name, (), {}) for name in ("CoOp", "CoCoOp", "ZeroshotCLIP", "ZeroshotCLIP2", "UPLTrainer")}
    for cls in fork.values():
        registry.register(cls)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = register_trainers(registry)
    assert [str(w.message) for w in caught] == [
        "The fork already registers trainer(s) ZeroshotCLIP: those names keep the fork's trainers, and PTNL's "
        "are PTNL_ZeroshotCLIP"]
    for name, cls in fork.items():
        assert registry.get(name) is cls
    assert registry.get("PTNL_ZeroshotCLIP") is TRAINER_CLASSES["ZeroshotCLIP"]
    assert registry.get("PTNL") is TRAINER_CLASSES["PTNL"] and registry.get("UPL") is TRAINER_CLASSES["UPL"]
    assert "PTNL_ZeroshotCLIP" in names and "ZeroshotCLIP" not in names
    with warnings.catch_warnings(record=True) as again:  # a second call changes nothing
        warnings.simplefilter("always")
        assert register_trainers(registry) == names
    assert len(registry.registered_names()) == len(fork) + len(names)


FIGURE_PLUGIN = '''
from ptnl.report.figures import register_figure


@register_figure("mean-bars", needs=lambda records, rows: len(rows) >= 2,
                 missing="mean-bars needs two or more settings: run a second loss or rate")
def mean_bars(records, rows, **options):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    means = [row["mean"] for row in rows]
    ax.bar(range(len(means)), means)
    return fig, "bars at " + " ".join("{:.2f}".format(m) for m in sorted(means))
'''


def test_a_figure_kind_from_one_file(tmp_path):
    """A figure kind registered in a plugin file is a --figure choice of python -m ptnl.report: it is
    drawn from the runs' means, and refused with its own one-line message when its runs are missing."""
    import pytest
    pytest.importorskip("matplotlib")
    from test_report_flags import write_run
    plugin = tmp_path / "my_figure.py"
    plugin.write_text(FIGURE_PLUGIN)
    env = {"PTNL_PLUGINS": str(plugin)}
    for seed, acc in ((1, 40.0), (2, 42.0)):
        write_run(tmp_path / "one", seed, acc)
    proc = run_py(["-m", "ptnl.report", str(tmp_path / "one"), "--figure", "mean-bars", "--out",
                   str(tmp_path / "a.png")], env=env, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == \
        "mean-bars needs two or more settings: run a second loss or rate" and not (tmp_path / "a.png").exists()
    write_run(tmp_path / "one", 1, 60.0, loss="gce")
    proc = run_py(["-m", "ptnl.report", str(tmp_path / "one"), "--figure", "mean-bars", "--out",
                   str(tmp_path / "b.png")], env=env)
    assert "bars at 41.00 60.00" in proc.stdout + proc.stderr and (tmp_path / "b.png").stat().st_size > 0
    unknown = run_py(["-m", "ptnl.report", str(tmp_path / "one"), "--figure", "mean-bars"], check=False)
    assert unknown.returncode == 2 and "invalid choice: 'mean-bars'" in unknown.stderr  # without the plugin
