"""Dassl 0.6.3's data subset: ``Datum``, ``DatasetBase`` with few-shot sampling, the dataset
registry, transforms, ``DatasetWrapper``, ``build_data_loader`` and ``DataManager``."""
import os.path as osp
import random
from collections import defaultdict

import torch
import torchvision.transforms as T
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset
from torchvision.transforms import InterpolationMode

from .utils import Registry, check_availability, check_isfile, read_image

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg):
    avai_datasets = DATASET_REGISTRY.registered_names()
    check_availability(cfg.DATASET.NAME, avai_datasets)
    if cfg.VERBOSE:
        print("Loading dataset: {}".format(cfg.DATASET.NAME))
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


class Datum:
    """One labelled image. Attribute names match Dassl's so CoOp's pickled caches load into it."""

    def __init__(self, impath="", label=0, domain=0, classname=""):
        assert isinstance(impath, str)
        assert check_isfile(impath)
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self):
        return self._impath

    @property
    def label(self):
        return self._label

    @property
    def domain(self):
        return self._domain

    @property
    def classname(self):
        return self._classname


class DatasetBase:
    """Holds train_x / train_u / val / test lists and the class bookkeeping derived from train_x."""

    dataset_dir = ""
    domains = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self):
        return self._lab2cname

    @property
    def classnames(self):
        return self._classnames

    @property
    def num_classes(self):
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source):
        return max({item.label for item in data_source}) + 1

    @staticmethod
    def get_lab2cname(data_source):
        container = {(item.label, item.classname) for item in data_source}
        mapping = {label: classname for label, classname in container}
        labels = sorted(mapping.keys())
        return mapping, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains, target_domains):
        assert len(source_domains) > 0, "source_domains (list) is empty"
        assert len(target_domains) > 0, "target_domains (list) is empty"
        for domain in list(source_domains) + list(target_domains):
            if domain not in self.domains:
                raise ValueError("Input domain must belong to {}, but got [{}]".format(self.domains, domain))

    def generate_fewshot_dataset(self, *data_sources, num_shots=-1, repeat=False):
        """K items per label with Python's global ``random``, classes in order of first
        appearance; exactly Dassl's draws for the same random state."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print("Creating a {}-shot dataset".format(num_shots))
        output = []
        for data_source in data_sources:
            tracker = self.split_dataset_by_label(data_source)
            dataset = []
            for label, items in tracker.items():
                if len(items) >= num_shots:
                    sampled_items = random.sample(items, num_shots)
                elif repeat:
                    sampled_items = random.choices(items, k=num_shots)
                else:
                    sampled_items = items
                dataset.extend(sampled_items)
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    def split_dataset_by_label(self, data_source):
        output = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    def split_dataset_by_domain(self, data_source):
        output = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output


# ----------------------------------------------------------------------------- transforms
INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}

AVAI_CHOICES = [
    "random_flip", "random_resized_crop", "normalize", "instance_norm", "random_crop",
    "random_translation", "center_crop", "cutout", "imagenet_policy", "cifar10_policy",
    "svhn_policy", "randaugment", "randaugment_fixmatch", "randaugment2", "gaussian_noise",
    "colorjitter", "randomgrayscale", "gaussian_blur",
]
# Dassl's own augmentation policies; the built-in engine does not carry them.
_DASSL_ONLY = {"imagenet_policy", "cifar10_policy", "svhn_policy", "randaugment",
               "randaugment_fixmatch", "randaugment2", "random_translation", "cutout",
               "gaussian_noise"}


class InstanceNormalization:
    """Per-channel (x - mean) / (std + 1e-8) over the spatial positions."""

    def __call__(self, img):
        c = img.shape[0]
        flat = img.reshape(c, -1)
        mean = flat.mean(1).view(c, 1, 1)
        std = flat.std(1).view(c, 1, 1)
        return (img - mean) / (std + 1e-8)


def build_transform(cfg, is_train=True, choices=None):
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    for choice in choices:
        assert choice in AVAI_CHOICES
        if choice in _DASSL_ONLY:
            raise ValueError(
                'Transform "{}" is not in the built-in engine (INPUT.TRANSFORMS); install Dassl '
                "or use one of {}".format(choice, sorted(set(AVAI_CHOICES) - _DASSL_ONLY))
            )
    target_size = "{}x{}".format(cfg.INPUT.SIZE[0], cfg.INPUT.SIZE[1])
    interp_mode = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    normalize = T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    tfm = []
    if is_train:
        print("Building transform_train")
        if "random_crop" not in choices and "random_resized_crop" not in choices:
            print("+ resize to {}".format(target_size))
            tfm.append(T.Resize(cfg.INPUT.SIZE, interpolation=interp_mode))
        if "random_crop" in choices:
            print("+ random crop (padding = {})".format(cfg.INPUT.CROP_PADDING))
            tfm.append(T.RandomCrop(cfg.INPUT.SIZE, padding=cfg.INPUT.CROP_PADDING))
        if "random_resized_crop" in choices:
            s_ = cfg.INPUT.RRCROP_SCALE
            print("+ random resized crop (size={}, scale={})".format(cfg.INPUT.SIZE, s_))
            tfm.append(T.RandomResizedCrop(cfg.INPUT.SIZE, scale=s_, interpolation=interp_mode))
        if "random_flip" in choices:
            print("+ random flip")
            tfm.append(T.RandomHorizontalFlip())
        if "colorjitter" in choices:
            b_, c_, s_, h_ = (cfg.INPUT.COLORJITTER_B, cfg.INPUT.COLORJITTER_C,
                              cfg.INPUT.COLORJITTER_S, cfg.INPUT.COLORJITTER_H)
            print("+ color jitter (brightness={}, contrast={}, saturation={}, hue={})".format(b_, c_, s_, h_))
            tfm.append(T.ColorJitter(brightness=b_, contrast=c_, saturation=s_, hue=h_))
        if "randomgrayscale" in choices:
            print("+ random gray scale")
            tfm.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
        if "gaussian_blur" in choices:
            print("+ gaussian blur (kernel={})".format(cfg.INPUT.GB_K))
            tfm.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    else:
        print("Building transform_test")
        print("+ resize the smaller edge to {}".format(max(cfg.INPUT.SIZE)))
        tfm.append(T.Resize(max(cfg.INPUT.SIZE), interpolation=interp_mode))
        print("+ {} center crop".format(target_size))
        tfm.append(T.CenterCrop(cfg.INPUT.SIZE))
    print("+ to torch tensor of range [0, 1]")
    tfm.append(T.ToTensor())
    if "normalize" in choices:
        print("+ normalization (mean={}, std={})".format(cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD))
        tfm.append(normalize)
    if "instance_norm" in choices:
        print("+ instance normalization")
        tfm.append(InstanceNormalization())
    return T.Compose(tfm)


# ----------------------------------------------------------------------------- loaders
class DatasetWrapper(TorchDataset):
    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError("Cannot augment the image {} times because transform is None".format(self.k_tfm))
        interp_mode = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
        to_tensor = [T.Resize(cfg.INPUT.SIZE, interpolation=interp_mode), T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is not None:
            if isinstance(self.transform, (list, tuple)):
                for i, tfm in enumerate(self.transform):
                    keyname = "img" if i == 0 else "img{}".format(i + 1)
                    output[keyname] = self._transform_image(tfm, img0)
            else:
                output["img"] = self._transform_image(self.transform, img0)
        else:
            output["img"] = img0
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm, img0):
        img_list = [tfm(img0) for _ in range(self.k_tfm)]
        return img_list[0] if len(img_list) == 1 else img_list


def build_sampler(sampler_type, cfg=None, data_source=None, batch_size=32, n_domain=0, n_ins=16):
    if sampler_type == "RandomSampler":
        return torch.utils.data.RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return torch.utils.data.SequentialSampler(data_source)
    raise ValueError("Unknown sampler type: {}".format(sampler_type))


def build_data_loader(cfg, sampler_type="SequentialSampler", data_source=None, batch_size=64,
                      n_domain=0, n_ins=2, tfm=None, is_train=True, dataset_wrapper=None):
    sampler = build_sampler(sampler_type, cfg=cfg, data_source=data_source, batch_size=batch_size,
                            n_domain=n_domain, n_ins=n_ins)
    if dataset_wrapper is None:
        dataset_wrapper = DatasetWrapper
    data_loader = torch.utils.data.DataLoader(
        dataset_wrapper(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=(torch.cuda.is_available() and cfg.USE_CUDA),
    )
    assert len(data_loader) > 0
    return data_loader


class DataManager:
    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        dataset = build_dataset(cfg)
        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train
        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        x = cfg.DATALOADER.TRAIN_X
        train_loader_x = build_data_loader(
            cfg, sampler_type=x.SAMPLER, data_source=dataset.train_x, batch_size=x.BATCH_SIZE,
            n_domain=x.N_DOMAIN, n_ins=x.N_INS, tfm=tfm_train, is_train=True,
            dataset_wrapper=dataset_wrapper)
        train_loader_u = None
        if dataset.train_u:
            u = x if cfg.DATALOADER.TRAIN_U.SAME_AS_X else cfg.DATALOADER.TRAIN_U
            train_loader_u = build_data_loader(
                cfg, sampler_type=u.SAMPLER, data_source=dataset.train_u, batch_size=u.BATCH_SIZE,
                n_domain=u.N_DOMAIN, n_ins=u.N_INS, tfm=tfm_train, is_train=True,
                dataset_wrapper=dataset_wrapper)
        t = cfg.DATALOADER.TEST
        val_loader = None
        if dataset.val:
            val_loader = build_data_loader(
                cfg, sampler_type=t.SAMPLER, data_source=dataset.val, batch_size=t.BATCH_SIZE,
                tfm=tfm_test, is_train=False, dataset_wrapper=dataset_wrapper)
        test_loader = build_data_loader(
            cfg, sampler_type=t.SAMPLER, data_source=dataset.test, batch_size=t.BATCH_SIZE,
            tfm=tfm_test, is_train=False, dataset_wrapper=dataset_wrapper)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        self.train_loader_x = train_loader_x
        self.train_loader_u = train_loader_u
        self.val_loader = val_loader
        self.test_loader = test_loader
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_source_domains(self):
        return self._num_source_domains

    @property
    def lab2cname(self):
        return self._lab2cname

    def show_dataset_summary(self, cfg):
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))
