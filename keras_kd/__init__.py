"""keras-kd: knowledge distillation for Keras 3.

The public API lives here; the modules behind it are implementation details.
"""

from keras_kd import callbacks
from keras_kd import schedules
from keras_kd.distiller import INPUTS_KEY
from keras_kd.distiller import TEACHER_LOGITS_KEY
from keras_kd.distiller import UNLABELED
from keras_kd.distiller import Distiller
from keras_kd.losses import DistillationKLDivergence
from keras_kd.losses import distillation_kl_divergence
from keras_kd.losses import soft_targets_log_probabilities
from keras_kd.terms import AttentionTransfer
from keras_kd.terms import DecoupledKD
from keras_kd.terms import DistillationTerm
from keras_kd.terms import FeatureTerm
from keras_kd.terms import HardLabelLoss
from keras_kd.terms import HintLoss
from keras_kd.terms import HintonKD

__version__ = "0.1.0"

__all__ = [
    "AttentionTransfer",
    "DecoupledKD",
    "Distiller",
    "DistillationKLDivergence",
    "DistillationTerm",
    "FeatureTerm",
    "HardLabelLoss",
    "HintLoss",
    "HintonKD",
    "INPUTS_KEY",
    "TEACHER_LOGITS_KEY",
    "UNLABELED",
    "callbacks",
    "distillation_kl_divergence",
    "schedules",
    "soft_targets_log_probabilities",
]
