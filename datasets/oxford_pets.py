import os.path as osp

from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import PTNLDatasetBase


@DATASET_REGISTRY.register()
class OxfordPets(PTNLDatasetBase):
    """Oxford-IIIT Pets: 37 breeds, flat ``oxford_pets/images/``. Without the split file:
    ``annotations/trainval.txt`` (20 % per class carved out as val) and ``annotations/test.txt``."""

    dataset_dir = "oxford_pets"
    image_dir = "images"
    split_file = "split_zhou_OxfordPets.json"

    def build_splits(self):
        anno_dir = osp.join(self.dataset_dir, "annotations")
        trainval = self.read_annotations(osp.join(anno_dir, "trainval.txt"))
        test = self.read_annotations(osp.join(anno_dir, "test.txt"))
        train, val = self.split_trainval(trainval)
        return train, val, test

    def read_annotations(self, path):
        """Lines ``<stem> <class id 1-37> <species> <breed id>``; the breed is the stem without its
        last ``_`` token, lower-cased."""
        records = []
        for line in self.read_lines(path):
            if line.startswith("#"):
                continue
            stem, class_id = line.split()[:2]
            breed = "_".join(stem.split("_")[:-1]).lower()
            records.append((osp.join(self.image_dir, stem + ".jpg"), int(class_id) - 1, breed))
        return self.make_items(records, path)
