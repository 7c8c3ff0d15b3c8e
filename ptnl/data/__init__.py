"""Datasets: PTNL's dataset base (``base``: CoOp split files via ``splits``, few-shot caches via
``fewshot``, label noise through ``ptnl.noise.label_training_set``), the run's data as Dassl's
``DataManager`` holds it with the training loader built once (``manager``), the training stream's
randomness (``randomness``), the decoded-image cache (``decoded``) and generated datasets for
tests and demos (``generated``; ``splits.write_dtd_layout`` for any generator). Imports
``ptnl.noise``, ``ptnl.clip`` and the layers below."""
