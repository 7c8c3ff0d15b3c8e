"""Each extension's settings are declared once, next to it (issue 26): a loss's options (config key,
default, comment, value rule) on its ``@register_loss``, read without torch by the config and the grid
scripts; what a trainer's runs are (loss-free, seed-free, epoch-free) and how it looks in figures on its
class, read from the source by the reports. A plugin's behave as the built-in ones'."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from conftest import REPO

FOCAL_PLUGIN = '''
"""A loss with a declared option: key, comment and value rule next to the loss."""
import torch.nn.functional as F

from ptnl.losses import LossOption, register_loss
from ptnl.rules import at_least


@register_loss("focal", options={"gamma": LossOption("FOCAL_GAMMA", "focusing exponent", at_least(0))})
def focal(logits, labels, gamma=2.0, reduction="mean", **_):
    logp = F.log_softmax(logits.float(), dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    per = -((1 - logp.exp()) ** gamma) * logp
    return per.mean() if reduction == "mean" else per
'''

FIXED_HEAD_PLUGIN = '''
"""A trainer whose runs train nothing, by no loss, and draw nothing: its class says so."""
from ptnl.trainers import register_trainer
from ptnl.trainers.classifiers import ClassifierC


@register_trainer
class FixedHead(ClassifierC):
    TRAINS = False
    USES_LOSS = False  # no loss: tables show none
    USES_SEED = False  # nothing drawn: one seed is the whole story
'''


def _python(code, env=None):
    """Run ``code`` in a fresh interpreter at the repository root; its stdout's last line as JSON."""
    import os
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, **(env or {})),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- loss options
def test_config_names_no_loss_option_and_reads_them_without_torch():
    """ptnl/config.py lists no loss option: extend_cfg adds them from the loss registry, with the
    defaults the losses declare, in a process that never imports torch."""
    got = _python("import json, sys\n"
                  "from ptnl.config import VALUE_RULES, added_defaults\n"
                  "from ptnl.losses import declared_options\n"
                  "d = added_defaults()\n"
                  "opts = declared_options()\n"
                  "print(json.dumps({'torch': 'torch' in sys.modules, 'options': sorted(opts),\n"
                  "                  'defaults': {k: d[k] for k in d if k.split('.')[-1] in opts},\n"
                  "                  'ruled': sorted(k for k in VALUE_RULES if k.split('.')[-1] in opts)}))")
    assert got["torch"] is False
    assert got["options"] == ["GCE_Q", "NCE_ALPHA", "NCE_BETA", "RCE_A", "SCE_ALPHA", "SCE_BETA"]
    assert got["defaults"] == {"TRAINER.PTNL.GCE_Q": 0.7, "TRAINER.PTNL.SCE_ALPHA": 0.1, "TRAINER.PTNL.SCE_BETA": 1.0,
                               "TRAINER.PTNL.NCE_ALPHA": 1.0, "TRAINER.PTNL.NCE_BETA": 1.0, "TRAINER.PTNL.RCE_A": -4.0}
    assert got["ruled"] == ["TRAINER.PTNL." + k for k in got["options"]]
    source = open(osp.join(REPO, "ptnl", "config.py")).read()
    assert [k for k in got["options"] if k in source] == []


def test_a_plugin_losss_option_is_a_config_key_with_its_default_and_rule(tmp_path):
    """FOCAL_GAMMA, declared on the plugin's decorator, is added by extend_cfg with its default, checked
    by the config's value rules (one line naming it) and when the loss is built, recorded and logged."""
    plugin = tmp_path / "focal.py"
    plugin.write_text(FOCAL_PLUGIN)
    got = _python("import json\n"
                  "from ptnl import compat\n"
                  "from ptnl.config import VALUE_RULES, added_defaults, check_values, extend_cfg\n"
                  "from ptnl.errors import ConfigError\n"
                  "from ptnl.io.plugins import import_plugins\n"
                  "from ptnl.losses import build_loss, loss_line, loss_options\n"
                  "import_plugins()\n"
                  "cfg = extend_cfg(compat.get_cfg_default())\n"
                  "key = 'TRAINER.PTNL.FOCAL_GAMMA'\n"
                  "out = {'default': cfg.TRAINER.PTNL.FOCAL_GAMMA, 'known': added_defaults()[key],\n"
                  "       'ruled': key in VALUE_RULES}\n"
                  "cfg.TRAINER.PTNL.LOSS = 'focal'\n"
                  "cfg.TRAINER.PTNL.FOCAL_GAMMA = 3.0\n"
                  "out['line'], out['record'] = loss_line(cfg), loss_options(cfg)\n"
                  "cfg.TRAINER.PTNL.FOCAL_GAMMA = -1.0\n"
                  "for what, call in (('config', lambda: check_values(cfg)),\n"
                  "                   ('build', lambda: build_loss('focal', focal_gamma=-1.0))):\n"
                  "    try:\n"
                  "        call()\n"
                  "    except ConfigError as e:\n"
                  "        out[what] = str(e)\n"
                  "print(json.dumps(out))", env={"PTNL_PLUGINS": str(plugin)})
    assert got["default"] == 2.0 and got["known"] == 2.0 and got["ruled"] is True
    assert got["line"] == "focal (FOCAL_GAMMA=3.0)"
    assert got["record"] == {"FOCAL_GAMMA": {"value": 3.0, "default": 2.0}}
    for what in ("config", "build"):
        assert got.get(what) == "TRAINER.PTNL.FOCAL_GAMMA must be a number >= 0, got -1.0", (what, got)


def test_a_loss_option_without_a_keyword_default_is_refused_where_it_is_declared():
    from ptnl.losses import register_loss
    with pytest.raises(TypeError, match="HALF_T"):
        @register_loss("half_declared", options={"t": "HALF_T"})
        def half_declared(logits, labels, t, reduction="mean", **_):
            return logits


def test_a_plugin_losss_option_given_per_member_groups(tmp_path):
    """The grid scripts propose runs that differ only in a plugin loss's option (and in the loss) as one
    group, as they do for GCE_Q: the members' own options come from the loss registry, into which
    python -m ptnl.sweep loads PTNL_PLUGINS."""
    plugin = tmp_path / "focal.py"
    plugin.write_text(FOCAL_PLUGIN)
    code = ("import json\n"
            "from ptnl.io.plugins import import_plugins\n"
            "from ptnl.sweep import group\n"
            "import_plugins()\n"
            "def run(i, *opts):\n"
            "    return {'argv': ['python', 'train.py', '--trainer', 'PTNL', '--root', '/data', '--seed', '1',\n"
            "                     '--output-dir', 'out/%d' % i, 'DATASET.NUM_SHOTS', '16'] + list(opts)}\n"
            "runs = [run(0, 'TRAINER.PTNL.LOSS', 'focal', 'TRAINER.PTNL.FOCAL_GAMMA', '1.0'),\n"
            "        run(1, 'TRAINER.PTNL.LOSS', 'focal', 'TRAINER.PTNL.FOCAL_GAMMA', '3.0'),\n"
            "        run(2, 'TRAINER.PTNL.LOSS', 'gce', 'TRAINER.PTNL.GCE_Q', '0.5'),\n"
            "        run(3, 'TRAINER.PTNL.LOSS', 'focal', 'OPTIM.LR', '0.1')]\n"
            "print(json.dumps(group.propose(runs, [0, 1, 2, 3])))")
    assert _python(code, env={"PTNL_PLUGINS": str(plugin)}) == [[0, 1, 2], [3]]


# ----------------------------------------------------------------------------- trainer declarations
def test_a_plugin_trainer_that_is_loss_free_and_seed_free(tmp_path, monkeypatch):
    """A plugin trainer's class says USES_LOSS / USES_SEED / TRAINS False: its runs read as the built-in
    ZeroshotCLIP's do (no loss in tables, no missing seeds, no epochs), and it gets a colour no other
    trainer has; without its file it is an ordinary trainer (a CoOp fork's name)."""
    from ptnl.report.aggregate import aggregate
    from ptnl.report.style import colour, line_style
    from ptnl.report.tables import loss_label
    from ptnl.io.trainer_classes import declared
    from ptnl.runs.read import epoch_free, loss_free, seed_free
    plugin = tmp_path / "fixed_head.py"
    plugin.write_text(FIXED_HEAD_PLUGIN)

    def record(trainer, seed):
        return {"trainer": trainer, "dataset": "DescribableTextures", "backbone": "RN50", "noise_type": "sym",
                "noise_mode": "swap", "noise_rate": 0.5, "loss": "ce", "num_shots": 16, "seed": seed,
                "accuracy": 50.0 + seed, "run_dir": str(tmp_path / trainer / str(seed))}
    records = [record("PTNL", 1), record("PTNL", 2), record("FixedHead", 1)]

    assert not (loss_free("FixedHead") or seed_free("FixedHead") or epoch_free("FixedHead"))
    without = {r["trainer"]: r["missing"] for r in aggregate(records)}
    assert without == {"PTNL": [], "FixedHead": [2]}
    monkeypatch.setenv("PTNL_PLUGINS", str(plugin))
    assert loss_free("FixedHead") and seed_free("FixedHead") and epoch_free("FixedHead")
    assert {r["trainer"]: r["missing"] for r in aggregate(records)} == {"PTNL": [], "FixedHead": []}
    assert loss_label({"trainer": "FixedHead", "loss": "ce"}) == "—" and loss_label({"trainer": "PTNL",
                                                                                       "loss": "ce"}) == "ce"
    # the built-in ones, as the old hand lists said
    assert {t for t in declared("USES_LOSS", True) if loss_free(t)} == {"LinearProbe", "ZeroshotCLIP", "JoAPR",
                                                                         "NLPrompt", "FixedHead"}
    assert {t for t in declared("USES_SEED", True) if seed_free(t)} == {"ZeroshotCLIP", "FixedHead"}
    assert {t for t in declared("TRAINS", True) if epoch_free(t)} == {"LinearProbe", "ZeroshotCLIP", "FixedHead"}
    # a colour of its own: no other trainer's (built-in or its parent ClassifierC's), the same every time
    others = {colour(t) for t in declared("COLOUR", None) if t != "FixedHead"}
    assert colour("FixedHead") not in others and colour("FixedHead") == colour("FixedHead")
    assert line_style("FixedHead", "ce")["color"] == colour("FixedHead")
    assert colour("CoOp") not in others | {colour("FixedHead")}  # a name no class declares: a spare colour too
