"""Input mixers for consistent teaching: `MixUp` and `CutMix`.

The public namespace `keras_kd.augment`; the implementation is in
`keras_kd.src.augment.augment`.
"""

from keras_kd.src.augment.augment import apply_augmentation
from keras_kd.src.augment.augment import CutMix
from keras_kd.src.augment.augment import InputMixer
from keras_kd.src.augment.augment import MixUp
from keras_kd.src.augment.augment import sample_beta
from keras_kd.src.augment.augment import sample_gamma
from keras_kd.src.augment.augment import validate_augmentation

__all__ = [
    "apply_augmentation",
    "CutMix",
    "InputMixer",
    "MixUp",
    "sample_beta",
    "sample_gamma",
    "validate_augmentation",
]
