"""Distillation losses: pure functions on logits plus thin Keras loss classes.

Every function here works on *logits* and computes in float32 whatever the
dtype of its inputs, so it is safe under mixed precision: tempered
probabilities are formed with `log_softmax`, never with `log(softmax(.))`,
so there is no `log(0)` and no overflow at any temperature.

The functions return one value per example; the Keras loss classes add the
usual reduction, `name` and `get_config`, exactly like `keras.losses`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import keras
from keras import ops

TensorLike = object
"""Anything `keras.ops.convert_to_tensor` accepts."""

TEACHER_REDUCTIONS = ("mean_probabilities", "mean_kl")


#: The largest temperature accepted. float32 rounds `log_softmax(z / T)` to
#: about 1e-7, and `T**2 * KL` multiplies that error by `T**2`: measured
#: against float64, the loss is off by at most ~0.005 at T = 100, by ~0.5 at
#: T = 1000, and turns negative from about T = 3000 (NaN at 1e30).
MAX_TEMPERATURE = 100.0


def validate_temperature(temperature: float, argument: str = "temperature") -> float:
    """Returns `temperature` as a float, or raises if it is not usable.

    A temperature must be a number in `(0, MAX_TEMPERATURE]` (100): beyond,
    float32 rounding dominates the `T**2`-scaled loss.
    """
    try:
        if isinstance(temperature, (bool, str)):
            raise TypeError
        value = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(
            f"`{argument}` must be a positive finite number. "
            f"Received: {argument}={temperature!r} "
            f"of type {type(temperature).__name__}."
        ) from None
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(
            f"`{argument}` must be a positive finite number. "
            f"Received: {argument}={temperature!r}."
        )
    if value > MAX_TEMPERATURE:
        raise ValueError(
            f"`{argument}` must be at most {MAX_TEMPERATURE:g}: above it, "
            "float32 rounding in the T**2-scaled soft-target loss dominates "
            "(the loss can even turn negative). Received: "
            f"{argument}={temperature!r}."
        )
    return value


def normalize_teacher_weights(
    teacher_weights: Optional[Sequence[float]], num_teachers: int
) -> list:
    """Returns teacher weights as floats that sum to one.

    `None` means equal weights. Raises a `ValueError` for a wrong length, a
    negative or non-finite weight, or weights that do not sum to a positive
    number.
    """
    if teacher_weights is None:
        return [1.0 / num_teachers] * num_teachers
    weights = [float(w) for w in teacher_weights]
    if len(weights) != num_teachers:
        raise ValueError(
            "`teacher_weights` must have one weight per teacher. "
            f"Received: teacher_weights={list(teacher_weights)} "
            f"({len(weights)} weights) for {num_teachers} teachers."
        )
    if any(not math.isfinite(w) or w < 0.0 for w in weights):
        raise ValueError(
            "`teacher_weights` must be finite and non-negative. "
            f"Received: teacher_weights={list(teacher_weights)}."
        )
    total = sum(weights)
    if total <= 0.0:
        raise ValueError(
            "`teacher_weights` must sum to a positive number. "
            f"Received: teacher_weights={list(teacher_weights)} "
            f"(sum {total})."
        )
    return [w / total for w in weights]


def _as_teacher_list(teacher_logits) -> list:
    if isinstance(teacher_logits, (list, tuple)):
        return list(teacher_logits)
    return [teacher_logits]


def tempered_log_softmax(logits: TensorLike, temperature: float = 1.0):
    """`log(softmax(logits / temperature))`, computed in float32."""
    logits = ops.cast(ops.convert_to_tensor(logits), "float32")
    return ops.log_softmax(logits / temperature, axis=-1)


def soft_targets_log_probabilities(
    teacher_logits: Union[TensorLike, Sequence[TensorLike]],
    temperature: float = 1.0,
    teacher_weights: Optional[Sequence[float]] = None,
):
    """Log of the (weighted mean of the) teachers' tempered probabilities.

    For one teacher this is `log_softmax(t / T)`. For several it is
    `log(sum_i w_i * softmax(t_i / T))`, computed with `logsumexp` so that it
    stays finite where one teacher is certain and another is not.

    Args:
        teacher_logits: A `(batch, classes)` tensor, or a list of them.
        temperature: The softmax temperature `T`.
        teacher_weights: One weight per teacher; `None` for equal weights.

    Returns:
        A float32 `(batch, classes)` tensor of log-probabilities.

    Example:

    >>> import numpy as np
    >>> t = np.array([[2.0, 0.0, -1.0]])
    >>> p = np.exp(soft_targets_log_probabilities([t, t], temperature=2.0))
    >>> np.allclose(p.sum(), 1.0)
    True
    """
    teachers = _as_teacher_list(teacher_logits)
    weights = normalize_teacher_weights(teacher_weights, len(teachers))
    log_probs = [tempered_log_softmax(t, temperature) for t in teachers]
    if len(log_probs) == 1:
        return log_probs[0]
    # A teacher with weight zero contributes nothing; log(0) is left out
    # rather than carried as -inf.
    weighted = [lp + math.log(w) for lp, w in zip(log_probs, weights) if w > 0]
    return ops.logsumexp(ops.stack(weighted, axis=0), axis=0)


def kl_divergence_from_log_probabilities(
    target_log_probabilities: TensorLike, predicted_log_probabilities: TensorLike
):
    """Per-example `KL(p || q) = sum p * (log p - log q)` over the last axis.

    Terms where `p == 0` contribute exactly zero, whatever `q` is.
    """
    target_log_probabilities = ops.cast(target_log_probabilities, "float32")
    predicted_log_probabilities = ops.cast(predicted_log_probabilities, "float32")
    target = ops.exp(target_log_probabilities)
    # where(p > 0, ...) keeps 0 * (-inf - x) from turning into NaN.
    pointwise = ops.where(
        target > 0.0,
        target * (target_log_probabilities - predicted_log_probabilities),
        ops.zeros_like(target),
    )
    return ops.sum(pointwise, axis=-1)


def distillation_kl_divergence(
    teacher_logits: Union[TensorLike, Sequence[TensorLike]],
    student_logits: TensorLike,
    temperature: float = 4.0,
    teacher_weights: Optional[Sequence[float]] = None,
    teacher_reduction: str = "mean_probabilities",
):
    """Hinton et al. (2015)'s soft-target loss, one value per example.

    Formula (one teacher):

    ```python
    p = softmax(teacher_logits / T)
    q = softmax(student_logits / T)
    loss = T**2 * sum(p * (log(p) - log(q)), axis=-1)
    ```

    The `T**2` factor keeps the gradient's size independent of `T`: the
    gradient with respect to the student logits is `T * (q - p)`.

    With several teachers, `teacher_reduction="mean_probabilities"` (default)
    takes `p` as the weighted mean of the teachers' tempered probabilities;
    `"mean_kl"` takes the weighted mean of one KL term per teacher.

    Args:
        teacher_logits: `(batch, classes)` logits, or a list of them.
        student_logits: `(batch, classes)` logits.
        temperature: Softmax temperature `T > 0`.
        teacher_weights: One weight per teacher; `None` for equal weights.
        teacher_reduction: `"mean_probabilities"` or `"mean_kl"`.

    Returns:
        A float32 tensor of shape `(batch,)`.

    Example:

    >>> import numpy as np
    >>> t = np.array([[3.0, 1.0, 0.0]], dtype="float32")
    >>> float(distillation_kl_divergence(t, t, temperature=4.0)[0])
    0.0
    """
    if teacher_reduction not in TEACHER_REDUCTIONS:
        raise ValueError(
            f"`teacher_reduction` must be one of {TEACHER_REDUCTIONS}. "
            f"Received: teacher_reduction={teacher_reduction!r}."
        )
    student_log_probs = tempered_log_softmax(student_logits, temperature)
    teachers = _as_teacher_list(teacher_logits)
    if teacher_reduction == "mean_probabilities" or len(teachers) == 1:
        target = soft_targets_log_probabilities(
            teachers, temperature, teacher_weights
        )
        kl = kl_divergence_from_log_probabilities(target, student_log_probs)
    else:
        weights = normalize_teacher_weights(teacher_weights, len(teachers))
        kl = sum(
            w
            * kl_divergence_from_log_probabilities(
                tempered_log_softmax(t, temperature), student_log_probs
            )
            for t, w in zip(teachers, weights)
        )
    return kl * (temperature**2)


@keras.saving.register_keras_serializable(package="keras_kd")
class DistillationKLDivergence(keras.losses.Loss):
    """Hinton's soft-target loss as a Keras loss: `y_true` are teacher logits.

    Computes `T**2 * KL(softmax(y_true / T) || softmax(y_pred / T))` from
    logits in float32. Unlike `keras.losses.KLDivergence` on probabilities, it
    never clips, so a confidently wrong student still gets a gradient.

    Args:
        temperature: Softmax temperature `T > 0`. Defaults to `4.0`.
        reduction: As in `keras.losses.Loss`.
        name: Optional name.
        dtype: As in `keras.losses.Loss`; the math itself is always float32.

    Example:

    >>> import numpy as np
    >>> loss = DistillationKLDivergence(temperature=2.0)
    >>> teacher = np.array([[2.0, 0.5, -1.0]], dtype="float32")
    >>> float(loss(teacher, teacher))
    0.0
    """

    def __init__(
        self,
        temperature: float = 4.0,
        reduction: Optional[str] = "sum_over_batch_size",
        name: str = "distillation_kl_divergence",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = validate_temperature(temperature)

    def call(self, y_true, y_pred):
        return distillation_kl_divergence(y_true, y_pred, self.temperature)

    def get_config(self) -> dict:
        config = super().get_config()
        config["temperature"] = self.temperature
        return config


def with_no_reduction(loss):
    """Returns a copy of a Keras loss that returns one value per example.

    Plain functions (e.g. `keras.losses.sparse_categorical_crossentropy`)
    already do, and are returned unchanged.
    """
    if isinstance(loss, keras.losses.Loss):
        if loss.reduction in (None, "none"):
            return loss
        config = loss.get_config()
        config["reduction"] = None
        try:
            return loss.__class__.from_config(config)
        except TypeError as error:
            raise TypeError(
                f"Cannot make a per-example copy of the loss {loss!r}: its "
                "`from_config` does not accept `reduction`. Pass a loss "
                "function that returns one value per example instead."
            ) from error
    if callable(loss):
        return loss
    raise TypeError(
        "A loss must be a `keras.losses.Loss` instance or a callable "
        f"`fn(y_true, y_pred)`. Received: {loss!r} of type "
        f"{type(loss).__name__}."
    )


# --------------------------------------------------------------------------
# Feature and decoupled distillation: pure per-example functions.

# Log-probability given to a masked-out class. Finite (unlike -inf) so that
# no `0 * inf` can reach a gradient; `exp` of it is exactly 0 in float32.
_MASKED_LOG_PROBABILITY = -1e9


def feature_mean_squared_error(teacher_features: TensorLike, student_features: TensorLike):
    """Per-example mean squared difference between two feature maps.

    The hint loss of FitNets (Romero et al., 2015), averaged over every
    non-batch axis rather than summed, so that its size does not grow with
    the feature map. `student_features` is usually an adapter's output with
    the teacher's shape.

    Args:
        teacher_features: `(batch, ...)` tensor.
        student_features: Tensor of the same shape.

    Returns:
        A float32 tensor of shape `(batch,)`.

    Example:

    >>> import numpy as np
    >>> t = np.ones((2, 4, 4, 3), dtype="float32")
    >>> float(feature_mean_squared_error(t, 0 * t)[0])
    1.0
    """
    teacher_features = ops.cast(ops.convert_to_tensor(teacher_features), "float32")
    student_features = ops.cast(ops.convert_to_tensor(student_features), "float32")
    squared = ops.square(student_features - teacher_features)
    rank = len(squared.shape)
    if rank < 2:
        raise ValueError(
            "Features must have a batch axis and at least one more axis. "
            f"Received features of shape {tuple(squared.shape)}."
        )
    return ops.mean(squared, axis=tuple(range(1, rank)))


def spatial_attention_map(features: TensorLike, p: float = 2.0):
    """The normalised spatial attention map of Zagoruyko & Komodakis (2017).

    `a = mean_c(|f_c| ** p)` over the channels of a channels-last feature map
    `f`, flattened over the spatial positions and divided by its L2 norm.

    Args:
        features: `(batch, height, width, channels)` (or any
            `(batch, *spatial, channels)`) tensor.
        p: The exponent. The paper uses `p = 2`.

    Returns:
        A float32 `(batch, positions)` tensor whose rows have unit L2 norm
        (or are zero, for an all-zero feature map).

    Example:

    >>> import numpy as np
    >>> a = spatial_attention_map(np.ones((1, 2, 2, 3), dtype="float32"))
    >>> [round(float(v), 3) for v in a[0]]
    [0.5, 0.5, 0.5, 0.5]
    """
    features = ops.cast(ops.convert_to_tensor(features), "float32")
    if len(features.shape) < 3:
        raise ValueError(
            "Attention maps need features with spatial axes, shaped "
            "`(batch, *spatial, channels)`. Received features of shape "
            f"{tuple(features.shape)}."
        )
    attention = ops.mean(ops.power(ops.abs(features), p), axis=-1)
    attention = ops.reshape(attention, (ops.shape(attention)[0], -1))
    norm = ops.sqrt(ops.sum(ops.square(attention), axis=-1, keepdims=True))
    # The epsilon matches torch's F.normalize, which the authors' code uses.
    return attention / ops.maximum(norm, 1e-12)


def attention_transfer_distance(
    teacher_features: TensorLike, student_features: TensorLike, p: float = 2.0
):
    """Per-example attention transfer loss (Zagoruyko & Komodakis, 2017).

    The mean over spatial positions of the squared difference of the two
    normalised attention maps (`spatial_attention_map`), as in the authors'
    code (`(at(x) - at(y)).pow(2).mean()`); the paper weighs it by
    `beta / 2` with `beta = 1000`. Channel counts may differ; the spatial
    sizes must match.

    Args:
        teacher_features: `(batch, *spatial, channels_t)` tensor.
        student_features: `(batch, *spatial, channels_s)` tensor.
        p: The exponent of the attention map. Defaults to `2`.

    Returns:
        A float32 tensor of shape `(batch,)`.

    Example:

    >>> import numpy as np
    >>> f = np.random.rand(2, 4, 4, 3).astype("float32")
    >>> float(attention_transfer_distance(f, 2 * f)[0]) < 1e-12
    True
    """
    teacher_map = spatial_attention_map(teacher_features, p)
    student_map = spatial_attention_map(student_features, p)
    if (
        teacher_map.shape[-1] is not None
        and student_map.shape[-1] is not None
        and teacher_map.shape[-1] != student_map.shape[-1]
    ):
        raise ValueError(
            "Attention transfer needs feature maps of the same spatial size. "
            f"Received: teacher features {tuple(ops.shape(teacher_features))}, "
            f"student features {tuple(ops.shape(student_features))}."
        )
    return ops.mean(ops.square(student_map - teacher_map), axis=-1)


def _target_mask(labels: TensorLike, num_classes: int):
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 2 and labels.shape[-1] == num_classes and num_classes > 1:
        labels = ops.argmax(labels, axis=-1)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    return ops.one_hot(labels, num_classes) > 0.5


def _binary_log_probabilities(log_probabilities, mask):
    """`(log p_target, log (1 - p_target))`, stably from log-probabilities."""
    target = ops.sum(ops.where(mask, log_probabilities, 0.0), axis=-1)
    others = ops.logsumexp(
        ops.where(mask, _MASKED_LOG_PROBABILITY, log_probabilities), axis=-1
    )
    return target, others


def decoupled_kd_components(
    teacher_logits: Union[TensorLike, Sequence[TensorLike]],
    student_logits: TensorLike,
    labels: TensorLike,
    temperature: float = 4.0,
    teacher_weights: Optional[Sequence[float]] = None,
):
    """The two parts of decoupled knowledge distillation (Zhao et al., 2022).

    With `p`, `q` the teacher's and student's tempered softmax and `t` the
    true class:

    - TCKD (target class): `KL([p_t, 1 - p_t] || [q_t, 1 - q_t])`, the KL
      divergence of the binary "target vs. the rest" distributions;
    - NCKD (non-target classes): `KL(p' || q')`, where `p'`, `q'` are the
      distributions over the non-target classes alone (`p` and `q`
      renormalised without class `t`).

    Both are multiplied by `T**2`, as in the authors' code (mdistiller), and
    `KL(p || q) == TCKD + (1 - p_t) * NCKD`. Computed from log-probabilities
    in float32, so confident teachers (`p_t -> 1`) stay finite. Several
    teachers are combined by their weighted mean probabilities.

    Args:
        teacher_logits: `(batch, classes)` logits, or a list of them.
        student_logits: `(batch, classes)` logits.
        labels: True classes, sparse `(batch,)` or one-hot `(batch, classes)`.
        temperature: Softmax temperature `T > 0`.
        teacher_weights: One weight per teacher; `None` for equal weights.

    Returns:
        `(tckd, nckd)`, two float32 tensors of shape `(batch,)`.

    Example:

    >>> import numpy as np
    >>> t = np.array([[3.0, 1.0, 0.0]], dtype="float32")
    >>> tckd, nckd = decoupled_kd_components(t, t, np.array([0]))
    >>> float(tckd[0]), float(nckd[0])
    (0.0, 0.0)
    """
    student_log_probs = tempered_log_softmax(student_logits, temperature)
    teacher_log_probs = soft_targets_log_probabilities(
        teacher_logits, temperature, teacher_weights
    )
    mask = _target_mask(labels, student_log_probs.shape[-1])
    teacher_target, teacher_others = _binary_log_probabilities(teacher_log_probs, mask)
    student_target, student_others = _binary_log_probabilities(student_log_probs, mask)
    tckd = kl_divergence_from_log_probabilities(
        ops.stack([teacher_target, teacher_others], axis=-1),
        ops.stack([student_target, student_others], axis=-1),
    )
    nckd = kl_divergence_from_log_probabilities(
        ops.where(
            mask,
            _MASKED_LOG_PROBABILITY,
            teacher_log_probs - ops.expand_dims(teacher_others, -1),
        ),
        ops.where(
            mask,
            _MASKED_LOG_PROBABILITY,
            student_log_probs - ops.expand_dims(student_others, -1),
        ),
    )
    scale = ops.square(ops.cast(temperature, "float32"))
    return tckd * scale, nckd * scale


def decoupled_kd(
    teacher_logits: Union[TensorLike, Sequence[TensorLike]],
    student_logits: TensorLike,
    labels: TensorLike,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
    teacher_weights: Optional[Sequence[float]] = None,
):
    """Decoupled KD loss `alpha * TCKD + beta * NCKD`, one value per example.

    See `decoupled_kd_components`. Zhao et al. (2022) use `alpha = 1`,
    `beta = 8`, `T = 4` on CIFAR-100 (`beta` up to 8 depending on the
    teacher), alongside the cross-entropy on the labels with weight 1.

    Example:

    >>> import numpy as np
    >>> t = np.array([[3.0, 1.0, 0.0]], dtype="float32")
    >>> s = np.array([[0.0, 1.0, 3.0]], dtype="float32")
    >>> float(decoupled_kd(t, s, np.array([0]))[0]) > 0
    True
    """
    tckd, nckd = decoupled_kd_components(
        teacher_logits, student_logits, labels, temperature, teacher_weights
    )
    return alpha * tckd + beta * nckd
