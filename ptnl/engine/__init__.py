"""PTNL's built-in engine: the subset of Dassl 0.6.3 that CoOp-style trainers use, with Dassl's
behaviour (config tree, few-shot picks, learning rates, checkpoints, log lines). Used when
Dassl is not installed; see ``ptnl.compat``."""
from .config import get_cfg_default
from .data import (DATASET_REGISTRY, DataManager, DatasetBase, DatasetWrapper, Datum,
                   build_data_loader, build_dataset, build_transform)
from .evaluation import EVALUATOR_REGISTRY, Classification, build_evaluator
from .optim import build_lr_scheduler, build_optimizer
from .trainer import TRAINER_REGISTRY, SimpleTrainer, TrainerBase, TrainerX, build_trainer
from .utils import (AverageMeter, MetricMeter, Registry, check_isfile, collect_env_info,
                    compute_accuracy, count_num_param, listdir_nohidden, load_checkpoint,
                    load_pretrained_weights, mkdir_if_missing, read_image, read_json,
                    set_random_seed, setup_logger, write_json)

__version__ = "0.6.3"  # the Dassl version whose behaviour this engine reproduces
