import json
import os.path as osp

from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import DatasetError, PTNLDatasetBase


@DATASET_REGISTRY.register()
class OxfordFlowers(PTNLDatasetBase):
    """Oxford Flowers 102: flat ``oxford_flowers/jpg/``. Without the split file: ``imagelabels.mat``
    gives each image's class, ``cat_to_name.json`` its name; each class (in order of first
    appearance) is shuffled and cut 50/20/30 (the official setid.mat is not used)."""

    dataset_dir = "oxford_flowers"
    image_dir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"

    def build_splits(self):
        label_file = osp.join(self.dataset_dir, "imagelabels.mat")
        groups = {}
        for i, label in enumerate(self.read_mat(label_file, "labels").ravel()):
            groups.setdefault(int(label), []).append(osp.join(self.image_dir, "image_{:05d}.jpg".format(i + 1)))
        name_file = osp.join(self.dataset_dir, "cat_to_name.json")
        if not osp.isfile(name_file):
            raise DatasetError('class-name file "{}" not found'.format(name_file))
        with open(name_file) as f:
            lab2cname = json.load(f)
        train, val, test = [], [], []
        for label, impaths in groups.items():
            if str(label) not in lab2cname:
                raise DatasetError('"{}" has no name for class {} (used in "{}")'.format(
                    name_file, label, label_file))
            cname = lab2cname[str(label)]
            parts = self.shuffle_and_cut(impaths, 0.5, 0.2, 'Class {} ("{}") of "{}"'.format(
                label, cname, label_file))
            for out, part in zip((train, val, test), parts):
                out += self.make_items([(p, label - 1, cname) for p in part], label_file)
        return train, val, test
