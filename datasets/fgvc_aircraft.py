import os.path as osp

from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import DatasetError, PTNLDatasetBase


@DATASET_REGISTRY.register()
class FGVCAircraft(PTNLDatasetBase):
    """FGVC-Aircraft 2013b (its ``data/`` folder renamed ``fgvc_aircraft/``): 100 variants. No split
    file: the official ``images_variant_{train,val,test}.txt`` are read every time; labels are the
    line order of ``variants.txt``."""

    dataset_dir = "fgvc_aircraft"
    image_dir = "images"
    split_file = ""  # none: the official lists are the split

    def expected_contents(self):
        return '"variants.txt", "images_variant_train.txt", "images_variant_val.txt", ' \
               '"images_variant_test.txt" and the images in "images/"'

    def build_splits(self):
        variants = self.read_lines(osp.join(self.dataset_dir, "variants.txt"))
        cname2lab = {c: i for i, c in enumerate(variants)}
        return tuple(self.read_variant_list(cname2lab, "images_variant_{}.txt".format(s))
                     for s in ("train", "val", "test"))

    def read_variant_list(self, cname2lab, filename):
        """Lines ``<image id> <variant name, may hold spaces and slashes>``."""
        path = osp.join(self.dataset_dir, filename)
        records = []
        for line in self.read_lines(path):
            imid, _, variant = line.partition(" ")
            if variant not in cname2lab:
                raise DatasetError('"{}" names variant {!r}, which is not in "{}"'.format(
                    path, variant, osp.join(self.dataset_dir, "variants.txt")))
            records.append((osp.join(self.image_dir, imid + ".jpg"), cname2lab[variant], variant))
        return self.make_items(records, path)
