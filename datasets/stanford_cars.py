import os.path as osp

import numpy as np

from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import PTNLDatasetBase


def _first(x):
    """The one element of a MATLAB cell / struct field as loadmat returns it."""
    return np.asarray(x).ravel()[0]


@DATASET_REGISTRY.register()
class StanfordCars(PTNLDatasetBase):
    """Stanford Cars: 196 classes. Split paths are relative to the dataset folder itself
    (``cars_train/00001.jpg``). Without the split file: the devkit's MATLAB annotations (train
    annotations carved 80/20 into train / val, labelled test annotations as test)."""

    dataset_dir = "stanford_cars"
    image_dir = ""  # paths start with cars_train/ or cars_test/
    split_file = "split_zhou_StanfordCars.json"

    def build_splits(self):
        meta = self.read_mat(osp.join(self.dataset_dir, "devkit", "cars_meta.mat"), "class_names")
        classnames = [self.year_first(str(_first(c))) for c in meta.ravel()]
        trainval = self.read_annotations(
            "cars_train", osp.join(self.dataset_dir, "devkit", "cars_train_annos.mat"), classnames)
        test = self.read_annotations(
            "cars_test", osp.join(self.dataset_dir, "cars_test_annos_withlabels.mat"), classnames)
        train, val = self.split_trainval(trainval)
        return train, val, test

    @staticmethod
    def year_first(name):
        """"AM General Hummer SUV 2000" -> "2000 AM General Hummer SUV"."""
        words = name.split(" ")
        return " ".join([words[-1]] + words[:-1])

    def read_annotations(self, folder, anno_file, classnames):
        records = []
        for anno in self.read_mat(anno_file, "annotations").ravel():
            label = int(_first(anno["class"])) - 1
            records.append((osp.join(self.dataset_dir, folder, str(_first(anno["fname"]))), label,
                            classnames[label]))
        return self.make_items(records, anno_file)
