import os.path as osp

from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import DatasetError, PTNLDatasetBase


@DATASET_REGISTRY.register()
class SUN397(PTNLDatasetBase):
    """SUN397: 397 scene classes, ``sun397/SUN397/<letter>/<category>[/<sub>]/``. Without the split
    file: partition 01 (``Training_01.txt`` carved 80/20 into train / val, ``Testing_01.txt``
    as test), labels in ``ClassName.txt`` order."""

    dataset_dir = "sun397"
    image_dir = "SUN397"
    split_file = "split_zhou_SUN397.json"

    def build_splits(self):
        classnames = [c[1:] if c.startswith("/") else c
                      for c in self.read_lines(osp.join(self.dataset_dir, "ClassName.txt"))]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        trainval = self.read_partition(cname2lab, "Training_01.txt")
        test = self.read_partition(cname2lab, "Testing_01.txt")
        train, val = self.split_trainval(trainval)
        return train, val, test

    @staticmethod
    def clean_name(category):
        """"a/apartment_building/outdoor" -> "outdoor apartment_building": drop the letter,
        reverse the rest."""
        return " ".join(category.split("/")[1:][::-1])

    def read_partition(self, cname2lab, filename):
        path = osp.join(self.dataset_dir, filename)
        records = []
        for line in self.read_lines(path):
            imname = line[1:] if line.startswith("/") else line
            category = osp.dirname(imname)
            if category not in cname2lab:
                raise DatasetError('"{}" lists "{}", whose category is not in "{}"'.format(
                    path, line, osp.join(self.dataset_dir, "ClassName.txt")))
            records.append((osp.join(self.image_dir, imname), cname2lab[category], self.clean_name(category)))
        return self.make_items(records, path)
