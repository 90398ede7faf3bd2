"""`keras.distillation` losses inside a keras_kd `Distiller`.

`keras_kd.Distiller` takes code written for `keras.distillation.Distiller`
unchanged: `Distiller(teacher=..., student=..., distillation_losses=...)`.
Each `keras.distillation.DistillationLoss` is wrapped in a keras_kd
`DistillationTerm` (`KerasDistillationLoss` and its two subclasses), so it is
averaged over the *global* batch like every keras_kd term, honours
`sample_weight` and the unlabeled-example masks, and mixes with keras_kd's own
terms (`HintLoss`, `AttentionTransfer`, ...).

Where the math differs from keras.distillation (Keras 3.15):

* `LogitsDistillation` with a KL loss (its default `"kl_divergence"`, the
  function `keras.losses.kl_divergence` or a `keras.losses.KLDivergence()`)
  becomes keras_kd's soft-target loss `T**2 * KL(softmax(t/T) ||
  softmax(s/T))`, computed from `log_softmax` in float32. Keras applies
  `keras.losses.kl_divergence`, which clips both arguments to `[1e-7, 1]`:
  with the default string it is applied to the tempered *logits* themselves
  (no softmax, no `T**2`), with a `KLDivergence()` instance to clipped
  softmax probabilities (times `T**2`). Other losses (e.g.
  `"categorical_crossentropy"`) are applied, as in Keras, to the tempered
  logits `t/T, s/T`, without `T**2`.
* `FeatureDistillation` is the same per-example loss as in Keras; with
  `"mse"` it is exactly `keras_kd.HintLoss(..., adapter=None)`.
* A user subclass of `DistillationLoss` returns one scalar per batch
  (replica); it is broadcast to the batch's examples, so `sample_weight`
  only rescales it by the batch's weights, and it is averaged over replicas
  weighted by their share of the batch. Returning a `(batch,)` vector from
  `compute_loss` makes it a true per-example term.

Example:

>>> import numpy as np, keras, keras_kd
>>> from keras.distillation import LogitsDistillation
>>> make = lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
>>> distiller = keras_kd.Distiller(
...     teacher=make(), student=make(),
...     distillation_losses=LogitsDistillation(temperature=3.0),
...     student_loss_weight=0.5)
>>> distiller.compile(optimizer="adam",
...                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
...                   metrics=["accuracy"])
>>> x, y = np.random.rand(16, 4).astype("float32"), np.random.randint(0, 3, 16)
>>> sorted(distiller.fit(x, y, epochs=1, verbose=0).history)
['accuracy', 'distillation_loss', 'loss', 'student_loss']
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
from keras import ops

from keras_kd.src import keras_compat
from keras_kd.src.terms import divergences, losses
from keras_kd.src.terms import terms as terms_lib

try:  # keras >= 3.12
    from keras.distillation import DistillationLoss, FeatureDistillation, LogitsDistillation
except ImportError:  # pragma: no cover - an older Keras has none to adapt
    DistillationLoss = FeatureDistillation = LogitsDistillation = None

def _require_keras_distillation() -> None:
    # Keras < 3.12 has no keras.distillation: say so, rather than that the
    # argument is not a DistillationLoss.
    if DistillationLoss is None:
        raise ImportError(keras_compat.KERAS_DISTILLATION_MISSING)


_KL_NAMES = ("kl_divergence", "kld", "kullback_leibler_divergence", "KLDivergence")


def is_distillation_loss(value) -> bool:
    """True for a `keras.distillation.DistillationLoss` instance."""
    return DistillationLoss is not None and isinstance(value, DistillationLoss)


def looks_like_distillation_losses(value) -> bool:
    """True for one `DistillationLoss` or a non-empty list of them."""
    if is_distillation_loss(value):
        return True
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(is_distillation_loss(v) for v in value)
    )


def _single_loss(structure, where: str):
    """The one non-`None` loss of a `DistillationLoss.loss` structure."""
    flat = [l for l in keras.tree.flatten(structure) if l is not None]
    if len(keras.tree.flatten(structure)) != 1 or len(flat) != 1:
        raise ValueError(
            f"{where}: keras_kd distils single-output models, so the loss must "
            "be one loss, not a structure for several outputs. Received: "
            f"loss={structure!r}."
        )
    return flat[0]


def _is_kl(loss) -> bool:
    """True for Keras's KL divergence in any of its forms."""
    if loss is keras.losses.kl_divergence or isinstance(loss, keras.losses.KLDivergence):
        return True
    wrapped = getattr(loss, "fn", None)  # a LossFunctionWrapper (from deserialization)
    if wrapped is keras.losses.kl_divergence:
        return True
    return getattr(loss, "__name__", None) in _KL_NAMES


def _to_per_example(values, reference):
    return terms_lib._to_per_example(values, reference)


@keras.saving.register_keras_serializable(package="keras_kd")
class KerasDistillationLoss(terms_lib.DistillationTerm):
    """A `keras.distillation.DistillationLoss` as a keras_kd term.

    The wrapped loss's `compute_loss(teacher_outputs, student_outputs)` is
    called in the step on the teacher's and the student's final outputs, or on
    the outputs of the layers named by its `teacher_layer_name` /
    `student_layer_name` attributes (as keras.distillation does). Its
    `validate_model_compatibility` and `validate_outputs` run when the
    `Distiller` is created, on the models and their symbolic outputs, so a
    rejection is raised before any training. A scalar result is broadcast to
    the batch's examples; a `(batch,)` result is used per example.

    Args:
        distillation_loss: A `keras.distillation.DistillationLoss` instance.
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"distillation_loss"`.

    Example:

    >>> import numpy as np
    >>> from keras.distillation import DistillationLoss
    >>> class L1(DistillationLoss):
    ...     def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
    ...         return ops.mean(ops.abs(teacher_outputs - student_outputs))
    >>> term = KerasDistillationLoss(L1(), name="l1")
    >>> [float(v) for v in term(np.zeros((2, 3)), [np.ones((2, 3))])]
    [1.0, 1.0]
    """

    def __init__(
        self,
        distillation_loss,
        loss_weight: float = 1.0,
        name: str = "distillation_loss",
        **kwargs,
    ):
        super().__init__(loss_weight=loss_weight, name=name, **kwargs)
        _require_keras_distillation()
        if not is_distillation_loss(distillation_loss):
            raise TypeError(
                f"{type(self).__name__} wraps a `keras.distillation."
                "DistillationLoss` (e.g. `LogitsDistillation`, "
                "`FeatureDistillation` or a subclass). Received: "
                f"distillation_loss={distillation_loss!r} of type "
                f"{type(distillation_loss).__name__}."
            )
        self.distillation_loss = distillation_loss
        self.teacher_layer_name = getattr(distillation_loss, "teacher_layer_name", None)
        self.student_layer_name = getattr(distillation_loss, "student_layer_name", None)

    @property
    def student_feature_names(self) -> Sequence[str]:
        # keras.distillation reads the student's layer only when the teacher's
        # is named too; otherwise both final outputs.
        if self.teacher_layer_name is not None and self.student_layer_name is not None:
            return (self.student_layer_name,)
        return ()

    @property
    def teacher_feature_names(self) -> Sequence[str]:
        return () if self.teacher_layer_name is None else (self.teacher_layer_name,)

    @property
    def needs_single_teacher(self) -> bool:
        """True when the term reads one teacher's outputs (not a mix)."""
        return True

    def select_outputs(self, student_logits, teacher_logits, student_features, teacher_features):
        """`(teacher_outputs, student_outputs)` this loss compares."""
        if self.teacher_layer_name is None:
            teacher = teacher_logits[0] if isinstance(teacher_logits, (list, tuple)) else teacher_logits
            return teacher, student_logits
        if teacher_features is None or self.teacher_layer_name not in teacher_features:
            raise ValueError(
                f"{type(self).__name__} ({self.name!r}) needs the teacher's "
                f"{self.teacher_layer_name!r} features; use it in a `Distiller`, "
                "which extracts them, or pass `teacher_features`."
            )
        teacher = teacher_features[self.teacher_layer_name]
        if self.student_layer_name is None:
            return teacher, student_logits
        return teacher, student_features[self.student_layer_name]

    def per_example(self, teacher_outputs, student_outputs):
        """One loss value per example; see the class docstring."""
        value = self.distillation_loss.compute_loss(teacher_outputs, student_outputs)
        return _to_per_example(value, student_outputs)

    def call(
        self,
        student_logits,
        teacher_logits,
        labels=None,
        student_features=None,
        teacher_features=None,
    ):
        teacher, student = self.select_outputs(
            student_logits, teacher_logits, student_features, teacher_features
        )
        teacher = ops.stop_gradient(ops.cast(teacher, "float32"))
        student = ops.cast(student, "float32")
        self.distillation_loss.validate_outputs(teacher, student)
        return self.per_example(teacher, student)

    def get_config(self) -> dict:
        config = super().get_config()
        config["distillation_loss"] = keras.saving.serialize_keras_object(
            self.distillation_loss
        )
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["distillation_loss"] = keras.saving.deserialize_keras_object(
            config["distillation_loss"]
        )
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_kd")
class KerasLogitsDistillation(terms_lib._TemperatureMixin, KerasDistillationLoss):
    """`keras.distillation.LogitsDistillation` with keras_kd's math.

    With a KL loss (the default) the term is keras_kd's
    `T**2 * KL(softmax(t/T) || softmax(s/T))` from `log_softmax` in float32
    (`keras_kd.distillation_divergence`, forward KL, as `HintonKD`); Keras
    clips probabilities instead (see the module docstring). Other losses are
    applied per example to `t/T, s/T`, as in Keras. The temperature is held in
    a variable, so `keras_kd.src.callbacks.callbacks.TemperatureScheduler` can change it.

    Args:
        distillation_loss: A `keras.distillation.LogitsDistillation`.
        teacher_weights: For several teachers (KL only): one weight each.
        teacher_reduction: `"mean_probabilities"` (default) or `"mean_kl"`.
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"distillation_loss"`.

    Example:

    >>> import numpy as np
    >>> from keras.distillation import LogitsDistillation
    >>> term = KerasLogitsDistillation(LogitsDistillation(temperature=2.0))
    >>> t = np.array([[3.0, 1.0, 0.0]], dtype="float32")
    >>> float(term(t, [t])[0])
    0.0
    """

    def __init__(
        self,
        distillation_loss,
        teacher_weights: Optional[Sequence[float]] = None,
        teacher_reduction: str = "mean_probabilities",
        loss_weight: float = 1.0,
        name: str = "distillation_loss",
        **kwargs,
    ):
        super().__init__(distillation_loss, loss_weight=loss_weight, name=name, **kwargs)
        if not isinstance(distillation_loss, LogitsDistillation):
            raise TypeError(
                "KerasLogitsDistillation wraps a `keras.distillation."
                f"LogitsDistillation`. Received: {distillation_loss!r}."
            )
        self.loss_fn = _single_loss(distillation_loss.loss, "LogitsDistillation")
        self.kl = _is_kl(self.loss_fn)
        self._per_example_loss_fn = None if self.kl else losses.with_no_reduction(self.loss_fn)
        if teacher_reduction not in losses.TEACHER_REDUCTIONS:
            raise ValueError(
                f"`teacher_reduction` must be one of {losses.TEACHER_REDUCTIONS}. "
                f"Received: teacher_reduction={teacher_reduction!r}."
            )
        self.teacher_weights = (
            None if teacher_weights is None else [float(w) for w in teacher_weights]
        )
        self.teacher_reduction = teacher_reduction
        self._add_temperature(distillation_loss.temperature, "LogitsDistillation(temperature)")

    @property
    def needs_single_teacher(self) -> bool:
        return not self.kl

    def call(
        self,
        student_logits,
        teacher_logits,
        labels=None,
        student_features=None,
        teacher_features=None,
    ):
        temperature = self._temperature.value
        teachers = teacher_logits if isinstance(teacher_logits, (list, tuple)) else [teacher_logits]
        if self.kl:
            # The same function as `HintonKD`: forward KL, chunked for large
            # vocabularies, and top-k cached teacher logits rebuilt per chunk.
            return divergences.distillation_divergence(
                teachers,
                student_logits,
                temperature,
                teacher_weights=self.teacher_weights,
                teacher_reduction=self.teacher_reduction,
                chunk_size="auto",
            )
        teacher = ops.cast(teachers[0], "float32") / temperature
        student = ops.cast(student_logits, "float32") / temperature
        return _to_per_example(self._per_example_loss_fn(teacher, student), student)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            teacher_weights=self.teacher_weights, teacher_reduction=self.teacher_reduction
        )
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class KerasFeatureDistillation(KerasDistillationLoss):
    """`keras.distillation.FeatureDistillation` as a per-example term.

    `loss(teacher_features, student_features)`, averaged over every
    non-batch axis of each example (Keras averages over the whole batch: the
    same mean). With `"mse"` this is `keras_kd.HintLoss(..., adapter=None)`;
    use `HintLoss` (with its trainable adapter) in
    `compile(distillation_terms=...)` when the widths differ.

    Args:
        distillation_loss: A `keras.distillation.FeatureDistillation`.
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"distillation_loss"`.

    Example:

    >>> import numpy as np
    >>> from keras.distillation import FeatureDistillation
    >>> term = KerasFeatureDistillation(FeatureDistillation(
    ...     loss="mse", teacher_layer_name="h", student_layer_name="h"))
    >>> s = {"h": np.zeros((2, 4), "float32")}
    >>> t = {"h": np.ones((2, 4), "float32")}
    >>> [float(v) for v in term(np.zeros((2, 3)), [], student_features=s,
    ...                         teacher_features=t)]
    [1.0, 1.0]
    """

    def __init__(self, distillation_loss, loss_weight: float = 1.0,
                 name: str = "distillation_loss", **kwargs):
        super().__init__(distillation_loss, loss_weight=loss_weight, name=name, **kwargs)
        if not isinstance(distillation_loss, FeatureDistillation):
            raise TypeError(
                "KerasFeatureDistillation wraps a `keras.distillation."
                f"FeatureDistillation`. Received: {distillation_loss!r}."
            )
        self.loss_fn = _single_loss(distillation_loss.loss, "FeatureDistillation")
        self.mse = self.loss_fn is keras.losses.mean_squared_error or getattr(
            self.loss_fn, "__name__", None
        ) in ("mean_squared_error", "mse")
        self._per_example_loss_fn = losses.with_no_reduction(self.loss_fn)

    def per_example(self, teacher_outputs, student_outputs):
        if self.mse:
            return losses.feature_mean_squared_error(teacher_outputs, student_outputs)
        return _to_per_example(
            self._per_example_loss_fn(teacher_outputs, student_outputs), student_outputs
        )


def as_term(
    distillation_loss,
    loss_weight: float = 1.0,
    name: str = "distillation_loss",
    teacher_weights: Optional[Sequence[float]] = None,
    teacher_reduction: str = "mean_probabilities",
) -> KerasDistillationLoss:
    """The keras_kd term for one `keras.distillation.DistillationLoss`.

    Example:

    >>> from keras.distillation import LogitsDistillation
    >>> type(as_term(LogitsDistillation())).__name__
    'KerasLogitsDistillation'
    """
    if LogitsDistillation is not None and isinstance(distillation_loss, LogitsDistillation):
        return KerasLogitsDistillation(
            distillation_loss, teacher_weights=teacher_weights,
            teacher_reduction=teacher_reduction, loss_weight=loss_weight, name=name,
        )
    if FeatureDistillation is not None and isinstance(distillation_loss, FeatureDistillation):
        return KerasFeatureDistillation(distillation_loss, loss_weight=loss_weight, name=name)
    return KerasDistillationLoss(distillation_loss, loss_weight=loss_weight, name=name)


def normalize_distillation_losses(distillation_losses, distillation_loss_weights) -> tuple:
    """`(losses, weights)` as lists, checked as keras.distillation does.

    Example:

    >>> from keras.distillation import LogitsDistillation
    >>> normalize_distillation_losses(LogitsDistillation(), None)[1]
    [1.0]
    """
    _require_keras_distillation()
    single = not isinstance(distillation_losses, (list, tuple))
    items = [distillation_losses] if single else list(distillation_losses)
    if not items:
        raise ValueError(
            "`distillation_losses` must be a `keras.distillation.DistillationLoss` "
            "or a non-empty list of them. Received: distillation_losses=[]."
        )
    for index, item in enumerate(items):
        if isinstance(item, terms_lib.DistillationTerm):
            raise TypeError(
                "`distillation_losses` takes `keras.distillation.DistillationLoss` "
                f"instances; distillation_losses[{index}]={item!r} is a keras_kd "
                "`DistillationTerm`. Pass keras_kd terms to "
                "`compile(distillation_terms=[...])`, with their own `loss_weight`."
            )
        if not is_distillation_loss(item):
            where = "distillation_losses" if single else f"distillation_losses[{index}]"
            raise TypeError(
                "`distillation_losses` must be a `keras.distillation.DistillationLoss` "
                "(e.g. `LogitsDistillation(temperature=3.0)`, `FeatureDistillation(...)`) "
                f"or a list of them. Received: {where}={item!r} of type "
                f"{type(item).__name__}."
            )
    if distillation_loss_weights is None:
        weights = [1.0] * len(items)
    else:
        if not isinstance(distillation_loss_weights, (list, tuple)):
            distillation_loss_weights = [distillation_loss_weights]
        if len(distillation_loss_weights) != len(items):
            raise ValueError(
                "`distillation_loss_weights` must have one weight per distillation "
                f"loss. Received: {len(distillation_loss_weights)} weights "
                f"({list(distillation_loss_weights)}) for {len(items)} losses."
            )
        weights = [
            terms_lib._validate_loss_weight(w, f"distillation_loss_weights[{i}]")
            for i, w in enumerate(distillation_loss_weights)
        ]
    return items, weights


def term_names(distillation_losses: Sequence) -> list:
    """Logged names: `"distillation_loss"` for one loss (Keras's key),
    `"distillation_loss_<i>"` for several.

    Example:

    >>> term_names([1, 2])
    ['distillation_loss_0', 'distillation_loss_1']
    """
    if len(distillation_losses) == 1:
        return ["distillation_loss"]
    return [f"distillation_loss_{i}" for i in range(len(distillation_losses))]


def _symbolic_output(model: keras.Model, layer_name: Optional[str], role: str):
    if layer_name is None:
        return model.outputs[0] if getattr(model, "outputs", None) else None
    return model.get_layer(layer_name).output


def validate_against_models(distillation_losses: Sequence, teachers: Sequence, student) -> None:
    """Runs each loss's own checks on the models, before any training.

    `validate_model_compatibility(teacher, student)` and, on the symbolic
    outputs the loss will compare, `validate_outputs(...)`; a rejection is
    re-raised naming the loss, with its own message.
    """
    for index, item in enumerate(distillation_losses):
        label = f"distillation_losses[{index}] ({type(item).__name__})"
        term = as_term(item)
        if len(teachers) > 1 and (term.needs_single_teacher or term.teacher_feature_names):
            raise ValueError(
                f"{label} compares one teacher's outputs, but the distiller has "
                f"{len(teachers)} teachers. Use one teacher, or "
                "`LogitsDistillation` with its KL loss, which averages several."
            )
        if not teachers:
            if term.teacher_feature_names or not isinstance(term, KerasLogitsDistillation):
                raise ValueError(
                    f"{label} needs a live teacher model, but teacher=None "
                    "(cached teacher logits carry no features). Only "
                    "`LogitsDistillation` works from cached logits."
                )
            continue
        teacher = teachers[0]
        try:
            item.validate_model_compatibility(teacher, student)
            teacher_out = _symbolic_output(teacher, term.teacher_layer_name, "teacher")
            student_name = term.student_feature_names[0] if term.student_feature_names else None
            student_out = _symbolic_output(student, student_name, "student")
            if teacher_out is not None and student_out is not None:
                item.validate_outputs(teacher_out, student_out)
        except Exception as error:  # noqa: BLE001 - re-raised with context
            raise ValueError(
                f"{label} rejects the teacher {teacher.name!r} and the student "
                f"{student.name!r}: {error}"
            ) from error
        if (
            isinstance(term, KerasFeatureDistillation)
            and teacher_out is not None
            and student_out is not None
        ):
            t_shape, s_shape = tuple(teacher_out.shape[1:]), tuple(student_out.shape[1:])
            if len(t_shape) != len(s_shape) or any(
                a is not None and b is not None and a != b for a, b in zip(t_shape, s_shape)
            ):
                raise ValueError(
                    f"{label} compares the teacher's "
                    f"{term.teacher_layer_name or 'output'!r} of shape "
                    f"{tuple(teacher_out.shape)} with the student's "
                    f"{student_name or 'output'!r} of shape {tuple(student_out.shape)}: "
                    "the shapes must match. For features of different widths use "
                    "`keras_kd.HintLoss(student_layer=..., teacher_layer=...)` in "
                    "`compile(distillation_terms=[...])`, which learns an adapter."
                )


#: keras.losses names that, on the logits a keras_kd student outputs, mean
#: cross-entropy from logits.
_FROM_LOGITS_LOSSES = {
    "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
    "categorical_crossentropy": keras.losses.CategoricalCrossentropy,
}


def student_loss_from_keras(loss):
    """The student loss for `compile(loss=...)` written for keras.distillation.

    keras_kd students output logits (the `Distiller` refuses a final softmax),
    so the strings `"sparse_categorical_crossentropy"` and
    `"categorical_crossentropy"` become the from-logits losses; keras.distillation
    would apply them to the logits as if they were probabilities.

    Example:

    >>> student_loss_from_keras("sparse_categorical_crossentropy").from_logits
    True
    """
    if loss is None:
        return None
    if isinstance(loss, (list, tuple, dict)):
        raise ValueError(
            "keras_kd distils single-output models: `loss` must be one loss. "
            f"Received: loss={loss!r}."
        )
    if isinstance(loss, str) and loss in _FROM_LOGITS_LOSSES:
        return _FROM_LOGITS_LOSSES[loss](from_logits=True)
    return loss
