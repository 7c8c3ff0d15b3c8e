"""Label noise: protocols as pure functions over label arrays (``protocols``), a registry of noise
types (``types``), and the one function that labels a training set (``label``, with confusion
scoring from ``confusion``). Imports ``ptnl.clip`` (confusion scores) and the layers below it."""
from ptnl.noise.label import TrainingSet, label_training_set, noisy_items  # noqa: F401
from ptnl.noise.protocols import (COUNT_RULE, NOISE_MODES, check_protocol, flip_noise,  # noqa: F401
                                  noise_rng, noisy_count, swap_noise, transition_matrix)
from ptnl.noise.types import (NOISE_TYPES, NoiseError, NoiseType, SwapState, available_noise_types,  # noqa: F401
                              noise_type, register_noise_type, top_wrong_class)

