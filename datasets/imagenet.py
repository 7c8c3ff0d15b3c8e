import os
import os.path as osp

from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import DatasetError, PTNLDatasetBase


@DATASET_REGISTRY.register()
class ImageNet(PTNLDatasetBase):
    """ImageNet (ILSVRC-2012): ``imagenet/images/{train,val}/<wnid>/`` and ``classnames.txt``.
    Labels index the sorted wnid folders; train is train/, test is val/ and val is the test list.
    The walk is cached in ``preprocessed.pkl`` (CoOp's pickle; the built-in engine writes
    ``preprocessed.ptnl.json``), and the few-shot cache holds train only."""

    dataset_dir = "imagenet"
    image_dir = "images"
    split_file = ""  # none: preprocessed.pkl caches the folder walk
    fewshot_val = False

    def expected_contents(self):
        return '"classnames.txt" and the wnid folders "images/train/<wnid>/" and "images/val/<wnid>/" ' \
               '(or a cached "preprocessed.pkl")'

    def build_splits(self):
        data = self.load_datum_cache("preprocessed")
        if data is None:
            classnames = self.read_classnames(osp.join(self.dataset_dir, "classnames.txt"))
            train = self.read_folder(classnames, "train")
            test = self.read_folder(classnames, "val")  # standard practice: evaluate on val
            data = {"train": train, "test": test}
            self.save_datum_cache("preprocessed", data)
        return data["train"], data["test"], data["test"]

    def read_classnames(self, path):
        """``<wnid> <class name, may hold spaces>`` per line -> {wnid: name}."""
        names = {}
        for line in self.read_lines(path):
            wnid, _, name = line.partition(" ")
            names[wnid] = name
        return names

    def read_folder(self, classnames, split):
        split_dir = osp.join(self.image_dir, split)
        if not osp.isdir(split_dir):
            raise DatasetError('image folder "{}" not found'.format(split_dir))
        folders = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
        unknown = [f for f in folders if f not in classnames]
        if unknown:
            raise DatasetError('{} folders of "{}" are not in "{}", e.g. "{}"'.format(
                len(unknown), split_dir, osp.join(self.dataset_dir, "classnames.txt"), unknown[0]))
        if split != "train":  # both folders label themselves by their own sorted wnid list
            train_dir = osp.join(self.image_dir, "train")
            train_folders = sorted(e.name for e in os.scandir(train_dir)
                                   if e.is_dir() and not e.name.startswith("."))
            if folders != train_folders:
                raise DatasetError('"{}" and "{}" must hold the same wnid folders (labels index the sorted '
                                   "folders); they differ in {} folders, e.g. \"{}\"".format(
                                       train_dir, split_dir, len(set(folders) ^ set(train_folders)),
                                       sorted(set(folders) ^ set(train_folders))[0]))
        records = []
        for label, folder in enumerate(folders):
            name = classnames[folder]
            records += [(path, label, name) for path in self.class_images(osp.join(split_dir, folder), label, name)]
        return self.make_items(records, split_dir)

    @staticmethod
    def class_images(folder_dir, label, name):
        """The images of the class folder of ``label`` in the raw listing order, as CoOp (only the wnid
        folders are sorted). An empty folder is an error: its label, in no item, would drop out of the
        class names taken from the items and every later class would be scored under its neighbour's name."""
        images = [osp.join(folder_dir, f) for f in os.listdir(folder_dir) if not f.startswith(".")]
        if not images:
            raise DatasetError('class folder "{}" (label {}, {}) holds no images; restore them (the '
                               "labels index the class folders)".format(folder_dir, label, name))
        return images
