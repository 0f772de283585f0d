"""Training: the progressive recipe's stages (section 2.4) and the frame autoencoder."""

from mardini.training.config import StageConfig, load_stage_config
from mardini.training.masking import MaskSchedule
from mardini.training.trainer import PREEMPTED_EXIT_CODE, TrainingError, TrainingInterrupted, train

__all__ = ["PREEMPTED_EXIT_CODE", "MaskSchedule", "StageConfig", "TrainingError", "TrainingInterrupted",
           "load_stage_config", "train"]
