"""The base of PTNL's dataset classes: CoOp's split files and few-shot caches, then label noise.

A subclass names its folder, image folder, split file and template, and says how to build the
split when the split file is absent. This base reads the split (or builds and saves it,
``ptnl.data.splits``), draws the few-shot set exactly as Dassl does and reuses CoOp's few-shot
pickles (``ptnl.data.fewshot``), and labels the training set through
``ptnl.noise.label_training_set`` right after sampling: ``training_set`` (items, given and true
labels, noise record) is what a trainer reads, and ``train_x`` its items.
"""
import os.path as osp

from ptnl import compat
from ptnl.clip.templates import dataset_template, register_template
from ptnl.data.fewshot import FewShotCache
from ptnl.data.splits import DatasetError, SplitFiles
from ptnl.data.subsample import subsample_classes
from ptnl.noise import label_training_set

__all__ = ["DatasetError", "PTNLDatasetBase"]


class PTNLDatasetBase(SplitFiles, FewShotCache, compat.DatasetBase):
    dataset_dir = ""  # folder under DATASET.ROOT
    image_dir = "images"  # split paths are relative to <dataset_dir>/<image_dir>
    split_file = ""  # CoOp's split_zhou_<Name>.json, in the dataset folder
    fewshot_val = True  # False: no few-shot val (ImageNet: val is the test list, cache holds train only)

    @classmethod
    def check_folder(cls, cfg, contents=None) -> str:
        """The dataset folder under DATASET.ROOT; ``DatasetError`` naming it (and ``contents``, what
        it should hold) when it is missing. ``train.py``'s checks call it before anything is written."""
        folder = osp.join(osp.abspath(osp.expanduser(cfg.DATASET.ROOT)), cls.dataset_dir)
        if not osp.isdir(folder):
            if contents is None:
                try:  # most datasets say it from class attributes alone
                    contents = cls.expected_contents(cls)
                except AttributeError:
                    contents = "the dataset's split file and images"
            raise DatasetError(
                'Dataset folder "{}" not found (DATASET.ROOT={!r} + "{}"); it should hold {}. Point '
                '--root / DATA at the folder that contains "{}/".'.format(
                    folder, cfg.DATASET.ROOT, cls.dataset_dir, contents, cls.dataset_dir))
        return folder

    def __init__(self, cfg):
        self.dataset_dir = type(self).check_folder(cfg, self.expected_contents())
        self.image_dir = osp.join(self.dataset_dir, type(self).image_dir)
        self.split_path = osp.join(self.dataset_dir, self.split_file)
        train, val, test = self.read_splits()
        self.full_train = train
        num_shots = cfg.DATASET.NUM_SHOTS
        if num_shots >= 1:
            train, val = self.load_or_sample_fewshot(train, val, num_shots, cfg.SEED)
        train, val, test, self.full_train = subsample_classes(  # base-to-new: noise stays among the kept classes
            cfg.DATASET.get("SUBSAMPLE_CLASSES", "all"), train, val, test, self.full_train)
        classes = sorted({(d.label, d.classname) for d in self.full_train})
        lab2cname = dict(classes)
        split_read = next((p for p in (self.split_path, self._cache_path(self.split_file))
                           if self.split_file and osp.isfile(p)), None)  # its sha256 goes into noise.json
        self.training_set = label_training_set(cfg, train, pool=self.full_train, lab2cname=lab2cname,
                                               split_file=split_read)
        super().__init__(train_x=self.training_set.items, val=val, test=test)
        # classes come from the whole training split, so noise or few-shot gaps cannot drop one
        self._num_classes = max(lab2cname) + 1
        self._lab2cname = lab2cname
        self._classnames = [lab2cname[k] for k in sorted(lab2cname)]

    @property
    def true_labels(self):
        """The true label of each ``train_x`` item (``training_set.true_labels``)."""
        return self.training_set.true_labels

    @property
    def noise_record(self):
        """``noise.json``'s content, None without noise (``training_set.record``)."""
        return self.training_set.record

    @noise_record.setter
    def noise_record(self, record):  # a dataset that knows more of its noise (Food-101N's real noise)
        self.training_set = self.training_set._replace(record=record)

    # Whether humans verified some images' given (folder) labels (Food-101N): then the dataset
    # overrides ``verification_of`` and sample selection scores its partition on the verified items.
    VERIFIED_LABELS = False

    def verification_of(self, impath):
        """An image's given-label verification: 1 right, 0 wrong, None not verified (every image
        here; see ``VERIFIED_LABELS``)."""
        return None

    def __init_subclass__(cls, **kwargs):
        """A subclass that sets ``template`` registers it under its class name (DATASET.NAME)."""
        super().__init_subclass__(**kwargs)
        if isinstance(cls.__dict__.get("template"), str):
            register_template(cls.__name__, cls.__dict__["template"])

    @property
    def template(self):
        """The zero-shot template of this dataset (CoOp's by name; a subclass's own ``template``
        string replaces this property and is registered under its name)."""
        return dataset_template(type(self).__name__)
