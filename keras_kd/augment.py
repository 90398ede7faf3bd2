"""Input mixers for consistent teaching: `MixUp` and `CutMix`.

The public namespace `keras_kd.augment`; the implementation is in
`keras_kd.src.augment.augment`.
"""

from keras_kd.src.augment.augment import (
    CutMix,
    InputMixer,
    MixUp,
    apply_augmentation,
    sample_beta,
    sample_gamma,
    validate_augmentation,
)

__all__ = [
    "apply_augmentation",
    "CutMix",
    "InputMixer",
    "MixUp",
    "sample_beta",
    "sample_gamma",
    "validate_augmentation",
]
