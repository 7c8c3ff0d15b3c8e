"""Installs the core package ``ptnl`` (and its built-in Dassl-compatible engine).

``trainers/``, ``datasets/``, ``configs/`` and ``scripts/`` are used from the repository root,
as in CoOp; no top-level ``datasets`` package is installed (it would shadow Hugging Face's)."""
from setuptools import find_packages, setup

setup(
    name="ptnl",
    version="0.2.0",
    description="Noise-robust prompt tuning for CLIP: a plugin for the Dassl/CoOp toolbox",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["ptnl", "ptnl.*"]),
    # the pocket world's pretrained CLIP (fp16 state dict) and its record: one world on every machine
    package_data={"ptnl.pocket": ["pocket.pt", "pocket.json", "pocket-vit.pt", "pocket-vit.json"]},
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy",
        "pillow",
        "yacs",
        "ftfy",
        "regex",
        "tqdm",
        "tabulate",
        "scikit-learn",  # also JoAPR's GaussianMixture
        "pot",  # NLPrompt's Sinkhorn (ot.sinkhorn)
        "scipy",  # StanfordCars and OxfordFlowers read MATLAB annotation files
        "openai-clip",
        "safetensors",  # python -m ptnl.export writes tuned prompts as safetensors (no pickle)
        "setuptools<81",  # openai-clip imports pkg_resources
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "matplotlib"],  # xdist: CI runs the suite on every core; matplotlib: the tests of ``python -m ptnl.report --plot / --figure``
        "plot": ["matplotlib"],  # python -m ptnl.report --plot / --figure / --report, scripts/ptnl/sweep.sh
        "tensorboard": ["tensorboard"],
        "open_clip": ["open-clip-torch"],  # MODEL.BACKBONE.NAME open_clip:ARCH/PRETRAINED (docs/backbones.md)
    },
)
