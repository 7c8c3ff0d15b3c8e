from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import PTNLDatasetBase


@DATASET_REGISTRY.register()
class Food101(PTNLDatasetBase):
    """Food-101: 101 classes, ``food-101/images/<class>/``, CoOp's 50/20/30 folder split (the
    official meta/train.txt and meta/test.txt are not used)."""

    dataset_dir = "food-101"
    image_dir = "images"
    split_file = "split_zhou_Food101.json"

    def build_splits(self):
        return self.read_and_split_data()
