"""A method's settings as its release tabulates them per dataset, noise type and noise rate
(``configs/methods/<method>.yaml``, e.g. JoAPR's warm-up epochs, alpha1 and alpha2), looked up as pure
functions, and the config keys a user set explicitly (which a preset never overrides)."""
import os.path as osp
from typing import Dict, Iterable, Optional, Sequence, Set, Tuple

import yaml

from ptnl.errors import ConfigError

# configs/methods/ of the repository this package sits in (train.py, configs/ and ptnl/ share one root)
PRESETS_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), "configs", "methods")


def presets_file(method: str, folder: Optional[str] = None) -> str:
    """``<folder>/<method lower-case>.yaml`` (default folder: the repository's configs/methods/)."""
    return osp.join(folder or PRESETS_DIR, method.lower() + ".yaml")


def load_presets(path: str) -> Dict:
    """The preset table in ``path`` (format: configs/methods/joapr.yaml), checked: every row holds a
    value or one value per tabulated rate for each key of ``fallback``."""
    try:
        with open(path) as f:
            table = yaml.safe_load(f)
        rates, keys = [float(r) for r in table["rates"]], set(table["fallback"])
        assert rates == sorted(rates) and len(set(rates)) == len(rates), "rates must increase"
        assert table["default_type"] in set(table["types"].values()), "default_type is none of types"
        for dataset, row in table["datasets"].items():
            for column, values in row.items():
                assert set(values) == keys, "{} {} has keys {}, expected {}".format(
                    dataset, column, sorted(values), sorted(keys))
                for key, v in values.items():
                    assert not isinstance(v, list) or len(v) == len(rates), "{} {} {}: {} values for {} rates".format(
                        dataset, column, key, len(v), len(rates))
        assert isinstance(table["node"], str) and table["node"].startswith("TRAINER."), "node: TRAINER.<METHOD>"
    except (KeyError, TypeError, AttributeError, AssertionError, yaml.YAMLError) as e:
        raise ConfigError('Bad preset table "{}": expected node, rates, types, default_type, fallback and datasets '
                          "as in configs/methods/joapr.yaml ({})".format(path, e)) from None
    table["rates"] = rates
    return table


def nearest_rate(rates: Sequence[float], rate: float) -> int:
    """Index of the tabulated rate nearest ``rate`` (the lower one on a tie)."""
    return min(range(len(rates)), key=lambda i: (abs(rates[i] - rate), rates[i]))


def lookup_preset(table: Dict, dataset: str, noise_type: str, rate: float) -> Tuple[Dict, str]:
    """({key: value}, where the values come from) for one run: the table's row of ``dataset``, the
    column group of ``noise_type`` (``types``; others: ``default_type``) and the tabulated rate nearest
    ``rate``; a dataset the table lacks gets ``fallback``.

    Args:
        table: from ``load_presets``.
        dataset: DATASET.NAME as registered (DescribableTextures, OxfordFlowers, ...).
        noise_type: DATASET.NOISE.TYPE (sym, pair, ...).
        rate: DATASET.NOISE.RATE.
    """
    row = table["datasets"].get(dataset)
    if row is None:
        return dict(table["fallback"]), "the release's default config ({} is not in its table)".format(dataset)
    column = table["types"].get(noise_type, table["default_type"])
    i = nearest_rate(table["rates"], float(rate))
    values = {k: (v[i] if isinstance(v, list) else v) for k, v in row[column].items()}
    tab = table["rates"][i]
    source = "the release's table: {} {} {:g}%".format(dataset, column, 100 * tab)
    notes = []
    if noise_type not in table["types"]:
        notes.append("noise type {} read as {}".format(noise_type, column))
    if abs(tab - float(rate)) > 1e-9:
        notes.append("nearest tabulated rate to {:g}".format(float(rate)))
    return values, source + (" ({})".format("; ".join(notes)) if notes else "")


def _flat_keys(node, prefix: str = "") -> Iterable[str]:
    for key, value in (node or {}).items():
        if isinstance(value, dict):
            yield from _flat_keys(value, prefix + str(key) + ".")
        else:
            yield prefix + str(key)


def keys_set_by(files: Iterable[str] = (), opts: Optional[Sequence] = None) -> Set[str]:
    """The flat config keys (``TRAINER.JOAPR.ALPHA1``) that the yaml ``files`` and the trailing
    ``KEY VALUE`` options set: what the user chose, which presets and implied values leave alone."""
    keys = set()
    for path in files:
        if path and osp.isfile(path):
            with open(path) as f:
                keys.update(_flat_keys(yaml.safe_load(f)))
    opts = list(opts or ())
    keys.update(str(k) for k in opts[0::2])
    return keys
