"""Train or evaluate one run, CoOp style: same flags as CoOp's train.py (``ptnl.cli``).

    python train.py --root DATA --trainer PTNL --dataset-config-file configs/datasets/dtd.yaml \\
        --config-file configs/trainers/PTNL/rn50.yaml --seed 1 --output-dir out \\
        DATASET.NUM_SHOTS 16 DATASET.NOISE.RATE 0.5 TRAINER.PTNL.LOSS gce

PTNL_PLUGINS (comma-separated modules or .py files) are imported first: a loss, noise type or
trainer registered there is available by name. Importing this module registers the datasets and
trainers (``ptnl.cli.setup.load_registries``), as CoOp's train.py does.
"""
if __name__ == "__main__":
    from ptnl.cli import run
    run()
else:
    from ptnl.cli.setup import load_registries
    load_registries()  # importers (tests, scripts/ptnl/check_settings.py) see the registries a run sees
