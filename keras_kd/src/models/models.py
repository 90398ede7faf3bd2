"""Reference teacher and student architectures for image classification.

Small Functional models used by the demo, the examples and the benchmarks.
All output logits (no final softmax), as a `Distiller` expects.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import keras
from keras import layers


def cnn_teacher(
    input_shape: Tuple[int, ...] = (28, 28, 1),
    num_classes: int = 10,
    width: int = 32,
    dropout: float = 0.3,
    name: str = "cnn_teacher",
) -> keras.Model:
    """A VGG-style CNN teacher (about 0.4M parameters at `width=32`).

    Two blocks of two 3x3 convolutions with batch normalization, then a dense
    head. Layer names (`block1`, `block2`, `features`) are stable so feature
    distillation can refer to them.

    Example:

    >>> model = cnn_teacher()
    >>> model.output_shape
    (None, 10)
    """
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for block, filters in enumerate((width, 2 * width), start=1):
        for conv in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                              name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            x = layers.ReLU(name=f"block{block}_relu{conv}" if conv == 1 else f"block{block}")(x)
        x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(4 * width, activation="relu", name="features")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def cnn_student(
    input_shape: Tuple[int, ...] = (28, 28, 1),
    num_classes: int = 10,
    width: int = 8,
    name: str = "cnn_student",
) -> keras.Model:
    """A small CNN student (about 10k parameters at `width=8`).

    Example:

    >>> model = cnn_student()
    >>> model.output_shape
    (None, 10)
    """
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(width, 3, padding="same", activation="relu", name="block1")(inputs)
    x = layers.MaxPooling2D(name="block1_pool")(x)
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="block2")(x)
    x = layers.MaxPooling2D(name="block2_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(4 * width, activation="relu", name="features")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def mlp(
    hidden_units: Sequence[int] = (800, 800),
    input_shape: Tuple[int, ...] = (28, 28, 1),
    num_classes: int = 10,
    dropout: float = 0.0,
    name: str = "mlp",
) -> keras.Model:
    """A multilayer perceptron, as in Hinton et al. (2015)'s MNIST setting.

    The teacher there is `mlp((1200, 1200), dropout=0.5)` (with input
    jitter); the students `mlp((800, 800))` and smaller.

    Example:

    >>> mlp((30, 30)).count_params()
    24790
    """
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    for index, units in enumerate(hidden_units, start=1):
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout{index}")(x)
        x = layers.Dense(units, activation="relu", name=f"hidden{index}")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout_out")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
