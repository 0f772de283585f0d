"""Training: the progressive recipe's stages (section 2.4) and the frame autoencoder."""

from mardini.training.config import StageConfig, load_stage_config
from mardini.training.masking import MaskSchedule
from mardini.training.trainer import TrainingError, train

__all__ = ["MaskSchedule", "StageConfig", "TrainingError", "load_stage_config", "train"]
