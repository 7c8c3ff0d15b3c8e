"""Extending PTNL one file each: a new loss, a new noise type, a new trainer, a figure kind and a sweep
engine, each in its own module registered at run time (PTNL_PLUGINS), run end to end; a plugin's config
key leaves earlier runs' identity as it was."""
import json
import os
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
    """CoOp registers ZeroshotCLIP (trainers/zsclip.py) and CoCoOp, UPL's release UPLTrainer: a fork that
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
        "The fork already registers trainer(s) ZeroshotCLIP, CoCoOp: those names keep the fork's trainers, and "
        "PTNL's are PTNL_ZeroshotCLIP, PTNL_CoCoOp"]
    for name, cls in fork.items():
        assert registry.get(name) is cls
    assert registry.get("PTNL_ZeroshotCLIP") is TRAINER_CLASSES["ZeroshotCLIP"]
    assert registry.get("PTNL") is TRAINER_CLASSES["PTNL"] and registry.get("UPL") is TRAINER_CLASSES["UPL"]
    assert registry.get("PTNL_CoCoOp") is TRAINER_CLASSES["CoCoOp"]
    assert "PTNL_ZeroshotCLIP" in names and "ZeroshotCLIP" not in names and "CoCoOp" not in names
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


def _full_cfg(**opts):
    """The default config train.py starts from (Dassl's keys and PTNL's), with ``opts`` (KEY=value)."""
    from ptnl import compat
    from ptnl.config import extend_cfg
    cfg = compat.get_cfg_default()
    extend_cfg(cfg)
    cfg.TRAINER.NAME, cfg.OUTPUT_DIR = "PTNL", ""
    for key, value in opts.items():
        node = cfg
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


def test_a_plugin_key_leaves_earlier_runs_identity(tmp_path):
    """Registering a config key (ptnl.config.register_config_keys) changes no earlier run's identity:
    the digest of its stored config, train.py's 'Done already' on it; a new run that leaves the key at
    its default averages with it, one that sets it does not. A key of a section the run's trainer does
    not read (TRAINER.JOAPR.* in a PTNL run) splits nothing, whatever its value."""
    import ptnl.trainers  # noqa: F401  (registers PTNL's trainers)
    from ptnl import config
    from ptnl.runs.identity import finished_run, flat_config, settings_digest
    from ptnl.trainers.registry import TRAINER_CLASSES, config_sections

    def record(cfg):
        return flat_config(cfg), config_sections(TRAINER_CLASSES[cfg.TRAINER.NAME], cfg)

    earlier = _full_cfg(OPTIM__MAX_EPOCH=7, TRAINER__PTNL__LOSS="gce")
    flat, sections = record(earlier)
    digest = settings_digest(flat, sections)
    run_dir = tmp_path / "earlier"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps({"accuracy": 50.0, "config": flat, "config_sections": sections,
                                                      "settings_digest": digest}))
    for default, other in ((0.25, 0.5), ("soft", "hard"), (True, False), (3, 4), ((1, 2), (2, 1))):
        def hook(cfg, default=default):
            cfg.TRAINER.PTNL.PLUGIN_OPT = default  # a shared section: every trainer's runs have it
            cfg.DATASET.NOISE.PLUGIN_MODE = default
        config.register_config_keys(hook)
        try:
            assert settings_digest(flat, sections) == digest  # the stored config: unchanged
            now = _full_cfg(OPTIM__MAX_EPOCH=7, TRAINER__PTNL__LOSS="gce", OUTPUT_DIR=str(run_dir), SEED=2)
            assert finished_run(now) == (0, "Done already: {}".format(run_dir))
            assert settings_digest(*record(now)) == digest  # at its default: the same experiment
            for key in ("TRAINER__PTNL__PLUGIN_OPT", "DATASET__NOISE__PLUGIN_MODE"):
                changed = _full_cfg(OPTIM__MAX_EPOCH=7, TRAINER__PTNL__LOSS="gce", OUTPUT_DIR=str(run_dir),
                                    **{key: other})
                assert settings_digest(*record(changed)) != digest
                code, message = finished_run(changed)
                assert code == 3 and key.replace("__", ".") + ": stored {}".format(json.dumps(default)) in message
        finally:
            config._HOOKS.remove(hook)
    # JoAPR's keys at other values in a PTNL run: PTNL does not read them
    joapr_keys = _full_cfg(OPTIM__MAX_EPOCH=7, TRAINER__PTNL__LOSS="gce", TRAINER__JOAPR__ALPHA1=0.1,
                           TRAINER__JOAPR__WARMUP_EPOCH=3)
    assert settings_digest(*record(joapr_keys)) == digest
    # ... but they are a JoAPR run's settings
    joapr = [record(_full_cfg(TRAINER__NAME="JoAPR", TRAINER__JOAPR__ALPHA1=a)) for a in (0.5, 0.1)]
    assert settings_digest(*joapr[0]) != settings_digest(*joapr[1])


EXECUTOR_PLUGIN = '''
"""A sweep engine: writes the plan's run folders to $MARK (where a real one would submit them)."""
import json
import os
import sys

from ptnl.sweep.engines import register_executor


@register_executor("listing", unavailable=lambda: None if os.environ.get("MARK") else "listing needs MARK")
def listing(plan, plan_path):
    with open(os.environ["MARK"], "w") as f:
        json.dump({"runs": [r["dir"] for r in plan["runs"]], "torch": "torch" in sys.modules}, f)
    return 0
'''


def test_a_sweep_engine_from_one_file(tmp_path):
    """ENGINE=<name> of an executor registered in a PTNL_PLUGINS file: python -m ptnl.sweep (which the
    grid scripts call) loads the file, without torch, and hands the engine the plan."""
    import subprocess
    import sys
    plugin = tmp_path / "my_engine.py"
    plugin.write_text(EXECUTOR_PLUGIN)
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "out"), DATA="/data", SEEDS="1 2", SHOTS="16",
               CONFIGS="ClassifierR", RATES="0.5", LOSSES="ce", GROUP="0", SUMMARY="0", ENGINE="listing",
               PTNL_PLUGINS=str(plugin), MARK=str(tmp_path / "mark.json"))
    proc = subprocess.run(["bash", "scripts/ptnl/ablation.sh", "dtd", "rn50"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    mark = json.load(open(tmp_path / "mark.json"))
    assert mark["torch"] is False and len(mark["runs"]) == 2
    assert all("ClassifierR" in d and osp.basename(d) in ("seed1", "seed2") for d in mark["runs"])
    proc = subprocess.run(["bash", "scripts/ptnl/ablation.sh", "dtd", "rn50"], cwd=REPO,
                          env=dict(env, PTNL_PLUGINS=""), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Unknown sweep engine 'listing' (ENGINE): expected one of" in proc.stderr


SOLO_PLUGIN = '''

@register_trainer
class SoloPTNL(WeightedPTNL):
    GROUPABLE = False  # (say) a stream of its own
'''


def test_a_plugin_trainer_groups_as_its_class_says(world, tmp_path, monkeypatch):
    """GROUPABLE on the class (here inherited from PTNL) is all a trainer from a plugin file needs for
    the grid scripts to propose its runs as one group (ptnl.sweep.group reads the class, without torch)
    and for train.py --group to train them on one data stream; a subclass saying False stays alone."""
    from ptnl.sweep import group as sweep_group
    plugin = tmp_path / "my_trainer.py"
    plugin.write_text(TRAINER_PLUGIN + SOLO_PLUGIN)
    assert {"WeightedPTNL", "PTNL"} <= sweep_group.groupable_trainers([str(plugin)])
    assert "SoloPTNL" not in sweep_group.groupable_trainers([str(plugin)])
    monkeypatch.setenv("PTNL_PLUGINS", str(plugin))
    runs = [{"argv": ["python"] + _args(world, str(tmp_path / trainer / loss), trainer, [], epochs=1, loss=loss)}
            for trainer in ("WeightedPTNL", "SoloPTNL") for loss in ("ce", "gce")]
    assert sweep_group.propose(runs, [0, 1, 2, 3]) == [[0, 1], [2], [3]]
    argv = sweep_group.group_argv(runs, [0, 1], str(tmp_path / "group.json"))
    run_py(argv[1:], env={"PTNL_PLUGINS": str(plugin)})
    for loss in ("ce", "gce"):
        out = tmp_path / "WeightedPTNL" / loss
        assert json.load(open(out / "results.json"))["trainer"] == "WeightedPTNL"
        assert "Grouped with 1 other run(s) on one data stream" in (out / "log.txt").read_text()


SELECTION_PLUGIN = '''
"""A sample-selection method: each epoch, train on the KEEP fraction of the training set with the
smallest loss (the rest is called noisy); its keys next to it."""
import numpy as np
from yacs.config import CfgNode as CN

from ptnl.config import register_config_keys
from ptnl.data.randomness import set_loader_epoch
from ptnl.trainers import register_trainer
from ptnl.trainers.selection import SampleSelectionTrainer


@register_config_keys
def _keys(cfg):
    cfg.TRAINER.SMALL_LOSS = CN()
    cfg.TRAINER.SMALL_LOSS.KEEP = 0.5  # fraction of the training set trained on each epoch
    cfg.TRAINER.SMALL_LOSS.PASS_TRANSFORM = "test"  # the per-epoch pass (the framework's key)
    cfg.TRAINER.SMALL_LOSS.RELEASE_BUGS = False  # (the framework's key)


@register_trainer
class SmallLoss(SampleSelectionTrainer):
    CFG_NODE = "SMALL_LOSS"

    def before_epoch(self):
        super().before_epoch()
        loss = self.training_pass()["loss"].numpy()
        keep = np.sort(np.argsort(loss, kind="stable")[:max(1, round(self.opts.KEEP * len(loss)))])
        noisy = np.ones(len(loss), dtype=bool)
        noisy[keep] = False
        self.record_partition(noisy)
        self._kept = self.subset_loader(keep, drop_last=False)

    def run_epoch(self):
        set_loader_epoch(self._kept, self.epoch)
        self.run_batches(self._kept, len(self._kept))
'''


def test_a_sample_selection_method_from_one_file(world, tmp_path):
    """A SampleSelectionTrainer subclass in one file trains end to end on its per-epoch subsets, with
    the framework's partition scores; its keys are its runs' settings (and no other trainer's)."""
    plugin = tmp_path / "small_loss.py"
    plugin.write_text(SELECTION_PLUGIN)
    out = tmp_path / "sl"
    proc = run_py(_args(world, str(out), "SmallLoss", ["TRAINER.SMALL_LOSS.KEEP", "0.75"], loss="ce"),
                  env={"PTNL_PLUGINS": str(plugin)})
    assert "* accuracy:" in proc.stdout
    res = json.load(open(out / "results.json"))
    assert res["trainer"] == "SmallLoss" and len(res["epochs"]) == 2
    part = res["epochs"][-1]["partition"]
    assert part["num_samples"] == 24 and part["num_noisy"] == 6  # 4 shots x 6 classes, a quarter left out
    assert "TRAINER.SMALL_LOSS." in res["config_sections"] and res["config"]["TRAINER.SMALL_LOSS.KEEP"] == 0.75
    assert "* SmallLoss settings: KEEP 0.75" in (out / "log.txt").read_text()


DATASET_PLUGIN = '''
"""A dataset in one file: the class (its folder, zero-shot template, splits) and its own config key;
no YAML: DATASET.NAME Textures2 selects it."""
from yacs.config import CfgNode as CN

from ptnl.compat import DATASET_REGISTRY
from ptnl.config import register_config_keys
from ptnl.data.base import PTNLDatasetBase


@register_config_keys
def _keys(cfg):
    cfg.DATASET.TEXTURES2 = CN()
    cfg.DATASET.TEXTURES2.IGNORED = ()  # class folders left out


@DATASET_REGISTRY.register()
class Textures2(PTNLDatasetBase):
    dataset_dir = "dtd"  # a generated DTD-like folder, read with a template and class set of its own
    image_dir = "images"
    split_file = ""  # CoOp's 50/20/30 split of the class folders, built every time
    template = "a close-up photo of {} texture."

    def __init__(self, cfg):
        self.ignored = tuple(cfg.DATASET.TEXTURES2.IGNORED)
        super().__init__(cfg)

    def build_splits(self):
        return self.read_and_split_data(ignored=self.ignored)
'''


def test_a_dataset_from_one_file(world, tmp_path):
    """A dataset class with its template and config key in one PTNL_PLUGINS file, selected by
    DATASET.NAME alone (no dataset YAML), trains end to end with label noise added by the base; its key
    acts and counts for its runs only."""
    from ptnl.data.generated import make_dtd
    plugin = tmp_path / "textures2.py"
    plugin.write_text(DATASET_PLUGIN)
    make_dtd(str(tmp_path / "data"), write_split=False)  # a DTD-like folder of its own (its own few-shot caches)
    out = tmp_path / "t2"
    args = _args(dict(world, data=str(tmp_path / "data")), str(out), "PTNL",
                 ["DATASET.NAME", "Textures2", "DATASET.TEXTURES2.IGNORED", "('banded',)"], epochs=1, loss="ce")
    i = args.index("--dataset-config-file")
    del args[i:i + 2]
    proc = run_py(args, env={"PTNL_PLUGINS": str(plugin)})
    assert "* accuracy:" in proc.stdout
    res = json.load(open(out / "results.json"))
    assert res["dataset"] == "Textures2" and len(res["classnames"]) == 5 and "banded" not in res["classnames"]
    noise = json.load(open(out / "noise.json"))
    assert sum(s["label"] != s["true_label"] for s in noise["samples"]) == 10  # round(0.5 x 4) of each class
    from ptnl.runs.identity import settings_digest
    dtd = dict(res["config"], **{"DATASET.NAME": "DescribableTextures"})
    assert settings_digest(dtd) == settings_digest(dict(dtd, **{"DATASET.TEXTURES2.IGNORED": []}))
    assert settings_digest(res["config"]) != settings_digest(dict(res["config"],
                                                                   **{"DATASET.TEXTURES2.IGNORED": []}))
