from ptnl.compat import DATASET_REGISTRY
from ptnl.data.base import PTNLDatasetBase


@DATASET_REGISTRY.register()
class DescribableTextures(PTNLDatasetBase):
    """DTD: 47 texture classes, folder ``dtd/images/<class>/``, CoOp's 50/20/30 split."""

    dataset_dir = "dtd"
    image_dir = "images"
    split_file = "split_zhou_DescribableTextures.json"

    def build_splits(self):
        return self.read_and_split_data()
