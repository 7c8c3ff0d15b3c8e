"""Label noise: protocols as pure functions over label arrays (``protocols``), a registry of noise
types (``types``), and the one function that labels a training set (``label``, with confusion
scoring from ``confusion``). Imports ``ptnl.clip`` (confusion scores) and the layers below it."""
import warnings

from ptnl.noise.label import label_training_set, noisy_items  # noqa: F401
from ptnl.noise.protocols import (COUNT_RULE, NOISE_MODES, check_protocol, flip_noise,  # noqa: F401
                                  noise_rng, noisy_count, swap_noise, transition_matrix)
from ptnl.noise.types import (NOISE_TYPES, NoiseError, NoiseType, SwapState, available_noise_types,  # noqa: F401
                              noise_type, register_noise_type, top_wrong_class)


def _apply_noise(items, pool, rate, noise_type, mode, seed, num_classes, key, make_item,
                 classnames=None, score_fn=None, num_shots=None):
    """Deprecated: ``noisy_items`` (options keyword-only) or ``label_training_set``."""
    return noisy_items(items, pool, rate=rate, noise_type=noise_type, mode=mode, seed=seed,
                       num_classes=num_classes, key=key, make_item=make_item, classnames=classnames,
                       score_fn=score_fn, num_shots=num_shots)


def __getattr__(name):
    if name == "apply_noise":
        warnings.warn("ptnl.noise.apply_noise is deprecated and will be removed in the next release; use "
                      "ptnl.noise.noisy_items (options keyword-only) or ptnl.noise.label_training_set",
                      DeprecationWarning, stacklevel=2)
        return _apply_noise
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
