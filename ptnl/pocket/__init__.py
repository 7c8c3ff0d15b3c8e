"""The pocket world: a small CLIP pretrained by this project on procedurally drawn textures and
their captions, shipped with the package, and a downstream few-shot dataset in CoOp's DTD layout,
generated on first use, whose class names that model has learned. For demos and tests where
OpenAI's weights and the benchmark datasets cannot be downloaded, and where random weights would
make every accuracy meaningless.

    python -m ptnl.pocket             # generate the dataset (or find it); print weights, --root, zero-shot accuracy
    python -m ptnl.pocket --rebuild   # run the pretraining recipe again and compare with the shipped weights
    python -m ptnl.pocket --vit       # the same for the ViT variant (MODEL.BACKBONE.NAME pocket-vit)

One world everywhere: pretraining runs 1000 optimiser steps whose float arithmetic depends on the
CPU's vector units (oneDNN/MKL pick kernels by ISA), so two machines that pretrain get two
different models. The weights are therefore built once and shipped (``pocket.pt``, fp16, with
their sha256 in ``pocket.json``); ``--rebuild`` keeps the recipe honest by comparing the rebuilt
model's zero-shot accuracy with the shipped one's. The images are generated in float64 numpy,
whose results do not depend on the SIMD level, and their sha256 is checked against the record.

The dataset goes to ``<ptnl user cache>/pocket/<tag>/`` (``PTNL_CACHE_DIR`` honoured):
``data/dtd/...`` (pass ``data`` as ``--root``) and ``pocket.json`` (the shipped record plus what
was measured here). The tag changes with the generator or the weights.

The parts: ``records`` (the shipped record, tags, manifests and their checks), ``builder`` (generating
the world, ``rebuild``), ``evaluation`` (zero-shot accuracy on it), ``world`` (the image generator),
``pretrain`` (the recipe). This module registers the weights names ``pocket`` and ``pocket-vit``
(the same text tower with a small ViT image tower pretrained against it, for the learners that
prompt a ViT's blocks: MaPLe, PromptSRC) with ``ptnl.clip``'s loader.
"""
from ptnl.clip.weights import register_weights
from ptnl.pocket.builder import (build, build_vit, generate_dataset, make_record, rebuild, vit_clip,  # noqa: F401
                                 vit_weights_file, weights_file)
from ptnl.pocket.evaluation import image_features, read_split, test_transform, zero_shot_accuracy  # noqa: F401
from ptnl.pocket.records import (DATA, MANIFEST, PER_CLASS, REBUILD_TOLERANCE, SEED, SHIPPED_RECORD,  # noqa: F401
                                 SHIPPED_VIT_RECORD, SHIPPED_VIT_WEIGHTS, SHIPPED_WEIGHTS, TEMPLATE, VERSION,
                                 VIT_NAME, WEIGHTS, PocketWorldError, check_weights, images_digest, read_manifest,
                                 ship_world, shipped, tag, vit_dir, world_dir, world_files, world_identity,
                                 world_is_recorded)


@register_weights("pocket", resolution=lambda: shipped()["resolution"])  # known without building the world
def _pocket_weights():
    return weights_file()


@register_weights(VIT_NAME, resolution=lambda: shipped(vit=True)["resolution"])
def _pocket_vit_weights():
    return vit_weights_file()
