"""Callbacks that change the distillation terms' temperatures and weights.

Terms keep their temperature and `loss_weight` in variables, so these
callbacks only assign new values between epochs: the compiled training step
reads the variables and is never retraced. Each callback writes the values in
force during the epoch into the epoch's `logs` (so `History` and
`CSVLogger` record them) under `"<term name>_<attribute>"`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd.src.callbacks import schedules as schedules_lib

ATTRIBUTES = ("loss_weight", "temperature")
"""The term attributes a `TermScheduler` can schedule."""


def _find_term(model, name: str):
    terms = getattr(model, "terms", None)
    if not terms:
        raise ValueError(
            "Distillation callbacks work on a compiled `keras_kd.Distiller`. "
            f"Received a model of type {type(model).__name__} with no terms."
        )
    for term in terms:
        if term.name == name:
            return term
    raise ValueError(
        f"The distiller has no term named {name!r}. Its terms: "
        f"{[term.name for term in terms]}."
    )


def _value(variable) -> float:
    return float(ops.convert_to_numpy(variable))


@keras.saving.register_keras_serializable(package="keras_kd")
class TermScheduler(keras.callbacks.Callback):
    """Sets a term's `loss_weight` or `temperature` from a schedule, per epoch.

    Args:
        term: Name of the term, e.g. `"distillation_loss"` (the Hinton term
            that `compile` builds), `"student_loss"`, `"dkd"`, `"hint_loss"`.
        schedule: A `keras_kd.src.callbacks.schedules.Schedule` (`Constant`, `Step`,
            `Linear`, `Cosine`, `WarmUp`) or a number.
        attribute: `"loss_weight"` (default) or `"temperature"`.
        verbose: Print the new value at the start of each epoch.

    Example:

    >>> from keras_kd import schedules
    >>> callback = TermScheduler(
    ...     "distillation_loss", schedules.Linear(8.0, 2.0, epochs=10),
    ...     attribute="temperature")
    >>> callback.get_config()["attribute"]
    'temperature'
    """

    #: Set by subclasses that always schedule the same attribute.
    _FIXED_ATTRIBUTE = None

    def __init__(
        self,
        term: str,
        schedule,
        attribute: str = "loss_weight",
        verbose: int = 0,
    ):
        super().__init__()
        attribute = self._FIXED_ATTRIBUTE or attribute
        if attribute not in ATTRIBUTES:
            raise ValueError(
                f"`attribute` must be one of {ATTRIBUTES}. Received: attribute={attribute!r}."
            )
        if not isinstance(term, str) or not term:
            raise TypeError(f"`term` must be a term's name. Received: term={term!r}.")
        self.term = term
        self.schedule = schedules_lib.get(schedule)
        self.attribute = attribute
        self.verbose = verbose
        self.log_key = f"{term}_{attribute}"

    def _target(self):
        term = _find_term(self.model, self.term)
        if not hasattr(term, self.attribute):
            raise ValueError(
                f"The term {self.term!r} ({type(term).__name__}) has no "
                f"`{self.attribute}` to schedule."
            )
        return term

    def on_train_begin(self, logs=None):
        self._target()  # Fail before the first epoch, not after it.

    def on_epoch_begin(self, epoch, logs=None):
        value = self.schedule(epoch)
        # The term's setter validates (e.g. a negative weight raises).
        setattr(self._target(), self.attribute, value)
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: {self.log_key} = {value:.6g}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs[self.log_key] = _value(getattr(self._target(), self.attribute))

    def get_config(self) -> dict:
        """The constructor arguments, for `keras.saving`."""
        config = {
            "term": self.term,
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "verbose": self.verbose,
        }
        if self._FIXED_ATTRIBUTE is None:
            config["attribute"] = self.attribute
        return config

    @classmethod
    def from_config(cls, config: dict):
        """A callback from the dictionary `get_config` returned."""
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_kd")
class TemperatureScheduler(TermScheduler):
    """Schedules a term's softmax temperature (default: the Hinton term).

    Example:

    >>> from keras_kd import schedules
    >>> callback = TemperatureScheduler(schedules.Cosine(8.0, 2.0, epochs=20))
    >>> callback.log_key
    'distillation_loss_temperature'
    """

    _FIXED_ATTRIBUTE = "temperature"

    def __init__(self, schedule, term: str = "distillation_loss", verbose: int = 0):
        super().__init__(term, schedule, verbose=verbose)


@keras.saving.register_keras_serializable(package="keras_kd")
class LossWeightScheduler(TermScheduler):
    """Schedules a term's `loss_weight`, e.g. DKD's warm-up.

    Example:

    >>> from keras_kd import schedules
    >>> callback = LossWeightScheduler("dkd", schedules.WarmUp(epochs=20))
    >>> callback.log_key
    'dkd_loss_weight'
    """

    _FIXED_ATTRIBUTE = "loss_weight"

    def __init__(self, term: str, schedule, verbose: int = 0):
        super().__init__(term, schedule, verbose=verbose)


@keras.saving.register_keras_serializable(package="keras_kd")
class GradientNormBalancer(keras.callbacks.Callback):
    """Sets the terms' weights so that their gradients have balanced norms.

    A closed-form variant of GradNorm (Chen, Badrinarayanan, Lee and
    Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
    Balancing in Deep Multitask Networks", ICML 2018). GradNorm asks each
    weighted term's gradient norm `w_i * G_i` (with respect to shared
    weights, here all of the student's trainable weights) to equal the
    common target `mean_j(w_j * G_j) * r_i ** alpha`, where `r_i` is the
    term's relative inverse training rate `(L_i / L_i(0)) / mean_j(L_j /
    L_j(0))`, and moves the weights towards it by gradient descent. Here the
    weights are set to the solution directly, `w_i ∝ r_i ** alpha / G_i`,
    rescaled so that their sum stays what it was at the start of training
    (GradNorm also keeps the sum of the weights fixed). With `alpha = 0`
    (the default) every balanced term pulls on the student equally hard.

    The gradients are measured at the start of every `frequency`-th epoch on
    a fixed probe batch, with `Distiller.term_losses` (the same computation
    as the training step, in inference mode). `smoothing` blends the new
    weights with the previous ones: `w = smoothing * w_old + (1 -
    smoothing) * w_new`.

    Args:
        data: The probe batch `(x, y)` (or `x` alone, then only terms that
            need no labels are balanced); keep it small, 64 to 512
            examples.
        terms: Names of the terms to balance. `None` (default): every term
            with a non-zero weight when training starts.
        alpha: GradNorm's asymmetry `alpha >= 0`. Defaults to `0.0`.
        frequency: Re-balance every this many epochs. Defaults to `1`.
        smoothing: In `[0, 1)`. Defaults to `0.0`.
        verbose: Print the new weights.

    Example:

    >>> import numpy as np
    >>> x = np.zeros((8, 28, 28, 1), "float32"); y = np.zeros(8, "int32")
    >>> balancer = GradientNormBalancer((x, y), terms=["student_loss", "hint_loss"])
    >>> balancer.get_config()["terms"]
    ['student_loss', 'hint_loss']
    """

    def __init__(
        self,
        data,
        terms: Optional[Sequence[str]] = None,
        alpha: float = 0.0,
        frequency: int = 1,
        smoothing: float = 0.0,
        verbose: int = 0,
    ):
        super().__init__()
        if isinstance(data, (list, tuple)):
            if len(data) != 2:
                raise ValueError(
                    "`data` must be a probe batch `(x, y)` or `x`. Received a "
                    f"sequence of length {len(data)}."
                )
            x, y = data
        else:
            x, y = data, None
        self.x = x
        self.y = None if y is None else np.asarray(y)
        self.terms = None if terms is None else [str(t) for t in terms]
        if self.terms is not None and len(self.terms) < 2:
            raise ValueError(
                f"`terms` must name at least two terms to balance. Received: terms={terms!r}."
            )
        alpha = float(alpha)
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"`alpha` must be a finite number >= 0. Received: alpha={alpha!r}.")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"`frequency` must be an integer >= 1. Received: frequency={frequency!r}.")
        smoothing = float(smoothing)
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"`smoothing` must be in [0, 1). Received: smoothing={smoothing!r}.")
        self.alpha, self.frequency, self.smoothing = alpha, frequency, smoothing
        self.verbose = verbose
        self._initial_losses = None
        self.gradient_norms = {}

    def _balanced_terms(self) -> list:
        return [_find_term(self.model, name) for name in self._names]

    def on_train_begin(self, logs=None):
        if self.terms is None:
            self._names = [
                term.name
                for term in self.model.terms
                if _value(term.loss_weight) > 0 and (self.y is not None or not term.requires_labels)
            ]
        else:
            self._names = list(self.terms)
        terms = self._balanced_terms()
        if self.y is None:
            needing = [t.name for t in terms if t.requires_labels]
            if needing:
                raise ValueError(
                    f"The terms {needing} need labels, but the probe `data` has "
                    "none. Pass `data=(x, y)`."
                )
        self._total_weight = sum(_value(term.loss_weight) for term in terms)
        if len(terms) < 2 or self._total_weight <= 0:
            raise ValueError(
                "GradientNormBalancer needs at least two terms with a positive "
                f"total weight. Received terms: {self._names} with weights "
                f"{[_value(t.loss_weight) for t in terms]}."
            )

    def _measure(self):
        """Per-term losses and gradient norms on the probe batch."""
        student = self.model.student
        variables = student.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            values = self.model.term_losses(self.x, self.y)
        norms = {}
        for name in self._names:
            gradients = tape.gradient(values[name], variables)
            gradients = [g for g in gradients if g is not None]
            norms[name] = float(tf.linalg.global_norm(gradients)) if gradients else 0.0
        del tape
        return {name: float(values[name]) for name in self._names}, norms

    def on_epoch_begin(self, epoch, logs=None):
        if epoch % self.frequency:
            return
        values, norms = self._measure()
        self.gradient_norms = norms
        if self._initial_losses is None:
            self._initial_losses = values
        names = [n for n in self._names if norms[n] > 0 and math.isfinite(norms[n])]
        if len(names) < 2:
            return  # Nothing to balance against: keep the weights.
        ratios = {
            n: values[n] / self._initial_losses[n] if self._initial_losses[n] > 0 else 1.0
            for n in names
        }
        mean_ratio = sum(ratios.values()) / len(names)
        raw = {
            n: (ratios[n] / mean_ratio if mean_ratio > 0 else 1.0) ** self.alpha / norms[n]
            for n in names
        }
        terms = {t.name: t for t in self._balanced_terms()}
        # Terms left out (zero gradient) keep their weight; the others share the rest.
        budget = self._total_weight - sum(
            _value(terms[n].loss_weight) for n in self._names if n not in names
        )
        scale = max(budget, 0.0) / sum(raw.values())
        for n in names:
            new = self.smoothing * _value(terms[n].loss_weight) + (1 - self.smoothing) * raw[n] * scale
            terms[n].loss_weight = new
        if self.verbose:
            weights = ", ".join(f"{n}={_value(terms[n].loss_weight):.4g}" for n in self._names)
            print(f"\nEpoch {epoch + 1}: balanced weights {weights}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for term in self._balanced_terms():
            logs[f"{term.name}_loss_weight"] = _value(term.loss_weight)

    def get_config(self) -> dict:
        """The constructor arguments, for `keras.saving`."""
        data = self.x if self.y is None else (self.x, self.y)
        return {
            "data": data,
            "terms": self.terms,
            "alpha": self.alpha,
            "frequency": self.frequency,
            "smoothing": self.smoothing,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config: dict):
        """A callback from the dictionary `get_config` returned."""
        return cls(**config)
