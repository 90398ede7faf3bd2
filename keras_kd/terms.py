"""Distillation terms: the pieces a `Distiller` adds up into its loss.

A term is a small Keras layer. It receives what the step knows (student
logits, teacher logits, labels, named intermediate features) and returns one
loss value per example; the `Distiller` multiplies it by the term's
`loss_weight` and averages it over the *global* batch, so the result does not
depend on how a distribution strategy splits the batch. Terms are layers so
that they can own state: a temperature or a weight that a callback schedules,
or the trainable adapter of a hint loss. They compute in float32.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import keras
from keras import ops

from keras_kd import losses


def _validate_loss_weight(value, argument: str = "loss_weight") -> float:
    try:
        if isinstance(value, (bool, str)):
            raise TypeError
        weight = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{argument}` must be a finite non-negative number. "
            f"Received: {argument}={value!r} of type {type(value).__name__}."
        ) from None
    if not math.isfinite(weight) or weight < 0.0:
        raise ValueError(
            f"`{argument}` must be a finite non-negative number. "
            f"Received: {argument}={value!r}."
        )
    return weight


@keras.saving.register_keras_serializable(package="keras_kd")
class DistillationTerm(keras.layers.Layer):
    """Base class of a distillation term.

    Subclasses implement `call(...)`, which returns a `(batch,)` tensor of
    per-example losses, and list the intermediate features they need by layer
    name in `student_feature_names` / `teacher_feature_names`.

    Args:
        loss_weight: Non-negative weight of this term in the total loss. It is
            held in a variable, so a callback can change it during training
            without retracing the step.
        name: Name under which the term's value is logged. Must be unique
            among a distiller's terms.

    Example:

    >>> class MeanSquaredLogits(DistillationTerm):
    ...     def call(self, student_logits, teacher_logits, labels=None,
    ...              student_features=None, teacher_features=None):
    ...         t = ops.cast(teacher_logits[0], "float32")
    ...         s = ops.cast(student_logits, "float32")
    ...         return ops.mean(ops.square(s - t), axis=-1)
    >>> term = MeanSquaredLogits(name="logit_mse")
    >>> float(term(ops.ones((2, 3)), [ops.zeros((2, 3))])[0])
    1.0
    """

    #: True when the term needs labels; it is skipped for unlabeled batches
    #: and averaged over the labeled examples only.
    requires_labels = False

    def __init__(self, loss_weight: float = 1.0, name: Optional[str] = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=name, **kwargs)
        initial = _validate_loss_weight(loss_weight)
        self._loss_weight = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(initial),
            trainable=False,
            dtype="float32",
            name="loss_weight",
        )
        # All state is created here; there is nothing left to build.
        self.built = True

    @property
    def loss_weight(self):
        """The term's weight in the total loss (a scalar variable)."""
        return self._loss_weight

    @loss_weight.setter
    def loss_weight(self, value: float) -> None:
        self._loss_weight.assign(_validate_loss_weight(value))

    @property
    def student_feature_names(self) -> Sequence[str]:
        """Names of the student layers whose outputs this term needs."""
        return ()

    @property
    def teacher_feature_names(self) -> Sequence[str]:
        """Names of the teacher layers whose outputs this term needs."""
        return ()

    def call(
        self,
        student_logits,
        teacher_logits,
        labels=None,
        student_features=None,
        teacher_features=None,
    ):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `call(student_logits, "
            "teacher_logits, labels, student_features, teacher_features)` "
            "and return one loss value per example."
        )

    def compute_output_spec(self, student_logits, *args, **kwargs):
        return keras.KerasTensor(student_logits.shape[:1], dtype="float32")

    def get_config(self) -> dict:
        config = super().get_config()
        config["loss_weight"] = float(ops.convert_to_numpy(self._loss_weight))
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class HintonKD(DistillationTerm):
    """Hinton et al. (2015)'s soft-target term.

    `T**2 * KL(p || softmax(student_logits / T))`, where `p` is the teacher's
    tempered softmax or, with several teachers, their weighted mean (see
    `keras_kd.losses.distillation_kl_divergence`).

    Args:
        temperature: Softmax temperature `T > 0`, held in a variable so it can
            be scheduled. Defaults to `4.0`.
        loss_fn: `None` (default) computes the KL divergence from logits in
            float32. Otherwise a loss on probabilities, called as
            `loss_fn(softmax(t / T), softmax(s / T)) * T**2` like the keras.io
            example (e.g. `keras.losses.KLDivergence()`).
        teacher_weights: One weight per teacher; `None` for equal weights.
        teacher_reduction: `"mean_probabilities"` (default) or `"mean_kl"`.
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"distillation_loss"`.

    Example:

    >>> import numpy as np
    >>> term = HintonKD(temperature=2.0)
    >>> logits = np.array([[1.0, 2.0, 3.0]], dtype="float32")
    >>> float(term(logits, [logits])[0])
    0.0
    """

    def __init__(
        self,
        temperature: float = 4.0,
        loss_fn=None,
        teacher_weights: Optional[Sequence[float]] = None,
        teacher_reduction: str = "mean_probabilities",
        loss_weight: float = 1.0,
        name: str = "distillation_loss",
        **kwargs,
    ):
        super().__init__(loss_weight=loss_weight, name=name, **kwargs)
        if teacher_reduction not in losses.TEACHER_REDUCTIONS:
            raise ValueError(
                f"`teacher_reduction` must be one of {losses.TEACHER_REDUCTIONS}. "
                f"Received: teacher_reduction={teacher_reduction!r}."
            )
        self.teacher_reduction = teacher_reduction
        self.teacher_weights = (
            None if teacher_weights is None else [float(w) for w in teacher_weights]
        )
        self.loss_fn = None if loss_fn is None else keras.losses.get(loss_fn)
        self._per_example_loss_fn = (
            None if self.loss_fn is None else losses.with_no_reduction(self.loss_fn)
        )
        self._temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(
                losses.validate_temperature(temperature)
            ),
            trainable=False,
            dtype="float32",
            name="temperature",
        )

    @property
    def temperature(self):
        """The softmax temperature (a scalar variable)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature.assign(losses.validate_temperature(value))

    def call(
        self,
        student_logits,
        teacher_logits,
        labels=None,
        student_features=None,
        teacher_features=None,
    ):
        temperature = self._temperature.value
        if self._per_example_loss_fn is None:
            return losses.distillation_kl_divergence(
                teacher_logits,
                student_logits,
                temperature,
                teacher_weights=self.teacher_weights,
                teacher_reduction=self.teacher_reduction,
            )
        target = ops.exp(
            losses.soft_targets_log_probabilities(
                teacher_logits, temperature, self.teacher_weights
            )
        )
        prediction = ops.exp(losses.tempered_log_softmax(student_logits, temperature))
        per_example = self._per_example_loss_fn(target, prediction)
        return ops.cast(per_example, "float32") * ops.square(temperature)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            temperature=float(ops.convert_to_numpy(self._temperature)),
            loss_fn=keras.saving.serialize_keras_object(self.loss_fn),
            teacher_weights=self.teacher_weights,
            teacher_reduction=self.teacher_reduction,
        )
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["loss_fn"] = keras.saving.deserialize_keras_object(config.get("loss_fn"))
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_kd")
class HardLabelLoss(DistillationTerm):
    """The ordinary supervised loss of the student against the true labels.

    Args:
        loss_fn: A Keras loss or a function `fn(y_true, y_pred)` on logits.
            `None` (default) picks sparse or one-hot categorical cross-entropy
            from logits by the shape of the labels.
        loss_weight: The term's weight (`alpha` in Hinton's formulation).
        name: Logged name. Defaults to `"student_loss"`.

    Example:

    >>> import numpy as np
    >>> term = HardLabelLoss()
    >>> logits = np.array([[0.0, 0.0]], dtype="float32")
    >>> round(float(term(logits, [], labels=np.array([1]))[0]), 4)
    0.6931
    """

    requires_labels = True

    def __init__(
        self,
        loss_fn=None,
        loss_weight: float = 1.0,
        name: str = "student_loss",
        **kwargs,
    ):
        super().__init__(loss_weight=loss_weight, name=name, **kwargs)
        self.loss_fn = None if loss_fn is None else keras.losses.get(loss_fn)
        self._per_example_loss_fn = (
            None if self.loss_fn is None else losses.with_no_reduction(self.loss_fn)
        )

    def call(
        self,
        student_logits,
        teacher_logits,
        labels=None,
        student_features=None,
        teacher_features=None,
    ):
        student_logits = ops.cast(student_logits, "float32")
        if self._per_example_loss_fn is not None:
            per_example = ops.cast(
                self._per_example_loss_fn(labels, student_logits), "float32"
            )
        elif is_one_hot(labels, student_logits):
            per_example = keras.losses.categorical_crossentropy(
                ops.cast(labels, "float32"), student_logits, from_logits=True
            )
        else:
            per_example = keras.losses.sparse_categorical_crossentropy(
                labels, student_logits, from_logits=True
            )
        return _to_per_example(per_example, student_logits)

    def get_config(self) -> dict:
        config = super().get_config()
        config["loss_fn"] = keras.saving.serialize_keras_object(self.loss_fn)
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["loss_fn"] = keras.saving.deserialize_keras_object(config.get("loss_fn"))
        return cls(**config)


def is_one_hot(labels, logits) -> bool:
    """True when `labels` are one-hot (or soft) rows shaped like `logits`."""
    return (
        len(labels.shape) == len(logits.shape)
        and labels.shape[-1] is not None
        and labels.shape[-1] == logits.shape[-1]
        and labels.shape[-1] > 1
    )


def _to_per_example(values, logits):
    """Brings a loss function's result to shape `(batch,)`.

    A scalar (a loss that reduced over the batch itself) is broadcast, which
    keeps its mean; extra axes (e.g. time steps) are averaged.
    """
    values = ops.convert_to_tensor(values, "float32")
    rank = len(values.shape)
    if rank == 0:
        return ops.broadcast_to(values, ops.shape(logits)[:1])
    if rank > 1:
        return ops.mean(values, axis=tuple(range(1, rank)))
    return values
