"""The run's data as Dassl's ``DataManager`` holds it (dataset, loaders, class count and names,
the dataset summary), with the training loader built once, over the training set the trainer reads
(``ptnl.noise.TrainingSet``), with DATALOADER.RANDOMNESS (``ptnl.data.randomness``)."""
from typing import Callable, Optional

from ptnl import compat
from ptnl.clip.preprocess import test_transform
from ptnl.data.randomness import build_train_loader


class RunData(compat.DataManager):
    """Dassl's ``DataManager`` (the engine's class, so its properties and ``show_dataset_summary``
    are Dassl's), built in two steps: the dataset, transforms and evaluation loaders here, exactly
    as Dassl builds them; then ``build_train_loader(items)`` once the trainer knows its training set
    (Dassl would build a loader over ``dataset.train_x`` that a trainer with another training set,
    or other randomness, would have to replace)."""

    def __init__(self, cfg):  # not the engine's __init__, which would build the training loader now
        self.cfg = cfg
        self.dataset = dataset = compat.build_dataset(cfg)
        self.tfm_train = compat.build_transform(cfg, is_train=True)
        self.tfm_test = test_transform(cfg)
        t = cfg.DATALOADER.TEST
        self.train_loader_x = None
        self.train_loader_u = None
        if dataset.train_u:
            u = cfg.DATALOADER.TRAIN_X if cfg.DATALOADER.TRAIN_U.SAME_AS_X else cfg.DATALOADER.TRAIN_U
            self.train_loader_u = compat.build_data_loader(
                cfg, sampler_type=u.SAMPLER, data_source=dataset.train_u, batch_size=u.BATCH_SIZE,
                n_domain=u.N_DOMAIN, n_ins=u.N_INS, tfm=self.tfm_train, is_train=True)
        self.val_loader = None
        if dataset.val:
            self.val_loader = compat.build_data_loader(
                cfg, sampler_type=t.SAMPLER, data_source=dataset.val, batch_size=t.BATCH_SIZE,
                tfm=self.tfm_test, is_train=False)
        self.test_loader = compat.build_data_loader(
            cfg, sampler_type=t.SAMPLER, data_source=dataset.test, batch_size=t.BATCH_SIZE,
            tfm=self.tfm_test, is_train=False)
        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    def build_train_loader(self, items, dataset_wrapper: Optional[Callable] = None):
        """The training loader over ``items`` (Dassl's for DATALOADER.RANDOMNESS coop: its sampler,
        batch size and drop_last)."""
        self.train_loader_x = build_train_loader(self.cfg, items, self.tfm_train, dataset_wrapper=dataset_wrapper)
        return self.train_loader_x
