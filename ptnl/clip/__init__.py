"""CLIP: loading by name or file (``weights``: a registry of local weights), the text side
(``text``), templates and class prompts (``templates``), feature extraction and its cache
(``features``), prompt learners (``prompts``), classifier heads (``heads``), small CLIPs for tests
(``small``), open_clip backbones (``open_clip_backbone``; importing it registers ``open_clip:``). Imports ``ptnl.io``, ``ptnl.registry`` and ``ptnl.compat`` only."""
from ptnl.clip.features import cached_image_features, image_features, text_classifier, zeroshot_logits  # noqa: F401
from ptnl.clip import open_clip_backbone  # noqa: F401  (registers the open_clip: backbone family)
from ptnl.clip.templates import (CUSTOM_TEMPLATES, class_prompts, class_text, dataset_template,  # noqa: F401
                                 register_template, template_set)
from ptnl.clip.text import TextEncoder, normalize, tokenize  # noqa: F401
from ptnl.clip.weights import (LOCAL_WEIGHTS, PRETRAINED, BackboneError, WeightsNotFoundError,  # noqa: F401
                               available_models, clip_cache_dir, downloads_off, effective_precision,
                               file_digest, load_clip, read_state_dict, register_weights, resolve_weights,
                               weights_digest)
