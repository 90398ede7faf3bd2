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
from typing import Optional, Sequence, Union

import keras
from keras import ops

from keras_kd.src.terms import divergences, losses
from keras_kd.src.utils import arguments


def _validate_loss_weight(value, argument: str = "loss_weight") -> float:
    return arguments.number(value, argument, positive=False)


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

    #: True when the term's `call` takes `padding_mask=`: the `Distiller`
    #: then passes the inputs' `padding_mask` (keras-hub's inputs dict), or
    #: `None` when the inputs have none.
    uses_padding_mask = False

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

    def resolve_layers(self, student, teacher) -> None:
        """Chooses layers from the models themselves (e.g. a layer map over
        their encoder layers). The `Distiller` calls it in `compile`, before
        it reads the feature names, with its student and its one live
        teacher (`None` otherwise). The default does nothing.
        """

    def build_features(self, student_feature_shapes: dict, teacher_feature_shapes: dict) -> None:
        """Creates state that depends on the feature shapes (e.g. adapters).

        The `Distiller` calls it once, in `compile`, with dicts
        `{layer_name: shape}` (shapes include the batch axis) for the names in
        `student_feature_names` / `teacher_feature_names`. It raises a
        `ValueError` when the term cannot work with those shapes.
        """

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


class _TemperatureMixin:
    """A softmax temperature held in a variable, so that a callback
    (`keras_kd.src.callbacks.callbacks.TemperatureScheduler`) can change it without
    retracing the step. For terms; call `_add_temperature` in `__init__`."""

    def _add_temperature(self, temperature: float, argument: str = "temperature") -> None:
        self._temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(
                losses.validate_temperature(temperature, argument)
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


class _TemperedTerm(_TemperatureMixin, DistillationTerm):
    """A term with a schedulable softmax temperature."""

    def __init__(self, temperature: float = 4.0, loss_weight: float = 1.0, name=None, **kwargs):
        super().__init__(loss_weight=loss_weight, name=name, **kwargs)
        self._add_temperature(temperature)

    def get_config(self) -> dict:
        config = super().get_config()
        config["temperature"] = float(ops.convert_to_numpy(self._temperature))
        return config


class _UserLossMixin:
    """For terms computed with a user's Keras loss (or function).

    Holds the loss as given (for `get_config`) and a copy that returns one
    value per example, which the Distiller reduces over the global batch.
    """

    def _set_loss_fn(self, loss_fn) -> None:
        self.loss_fn = None if loss_fn is None else keras.losses.get(loss_fn)
        self._per_example_loss_fn = (
            None if self.loss_fn is None else losses.with_no_reduction(self.loss_fn)
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config["loss_fn"] = keras.saving.serialize_keras_object(self.loss_fn)
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config["loss_fn"] = keras.saving.deserialize_keras_object(config.get("loss_fn"))
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_kd")
class HintonKD(_UserLossMixin, _TemperedTerm):
    """Hinton et al. (2015)'s soft-target term.

    `T**2 * KL(p || softmax(student_logits / T))`, where `p` is the teacher's
    tempered softmax or, with several teachers, their weighted mean (see
    `keras_kd.src.terms.losses.distillation_kl_divergence`).

    Args:
        temperature: Softmax temperature `T > 0`, held in a variable so it can
            be scheduled. Defaults to `1.0`, as `Distiller.compile`.
        loss_fn: `None` (default) computes the KL divergence from logits in
            float32. Otherwise a loss on probabilities, called as
            `loss_fn(softmax(t / T), softmax(s / T)) * T**2` like the keras.io
            example (e.g. `keras.losses.KLDivergence()`).
        teacher_weights: One weight per teacher; `None` for equal weights.
        teacher_reduction: `"mean_probabilities"` (default) or `"mean_kl"`.
        divergence: `"forward_kl"` (default, Hinton's), `"reverse_kl"`,
            `"jsd"` or `"tvd"`; see `keras_kd.divergences`.
        jsd_beta: The teacher's weight in the JSD's mixture, in `(0, 1)`.
        chunk_size: Rows (tokens) per chunk of the loss: `"auto"` (default)
            chunks only when a batch holds more than about 4M logits (large
            vocabularies), `None` never, an integer that many rows.
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
        temperature: float = 1.0,
        loss_fn=None,
        teacher_weights: Optional[Sequence[float]] = None,
        teacher_reduction: str = "mean_probabilities",
        divergence: str = "forward_kl",
        jsd_beta: float = 0.5,
        chunk_size: Union[int, str, None] = "auto",
        loss_weight: float = 1.0,
        name: str = "distillation_loss",
        **kwargs,
    ):
        super().__init__(
            temperature=temperature, loss_weight=loss_weight, name=name, **kwargs
        )
        if teacher_reduction not in losses.TEACHER_REDUCTIONS:
            raise ValueError(
                f"`teacher_reduction` must be one of {losses.TEACHER_REDUCTIONS}. "
                f"Received: teacher_reduction={teacher_reduction!r}."
            )
        self.divergence, self.jsd_beta = divergences.check_divergence(divergence, jsd_beta)
        self.chunk_size = divergences.check_chunk_size(chunk_size)
        if loss_fn is not None and self.divergence != "forward_kl":
            raise ValueError(
                "`loss_fn` and `divergence` both define the soft-target loss; "
                f"pass one. Received: loss_fn={loss_fn!r}, divergence={divergence!r}."
            )
        self.teacher_reduction = teacher_reduction
        self.teacher_weights = (
            None if teacher_weights is None else [float(w) for w in teacher_weights]
        )
        self._set_loss_fn(loss_fn)

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
            return divergences.distillation_divergence(
                teacher_logits,
                student_logits,
                temperature,
                divergence=self.divergence,
                jsd_beta=self.jsd_beta,
                teacher_weights=self.teacher_weights,
                teacher_reduction=self.teacher_reduction,
                chunk_size=self.chunk_size,
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
            teacher_weights=self.teacher_weights,
            teacher_reduction=self.teacher_reduction,
            divergence=self.divergence,
            jsd_beta=self.jsd_beta,
            chunk_size=self.chunk_size,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class HardLabelLoss(_UserLossMixin, DistillationTerm):
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
        self._set_loss_fn(loss_fn)

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



def _feature_pairs_from_arguments(student_layer, teacher_layer, feature_pairs, term: str) -> list:
    """Normalises the two ways of naming feature pairs to `[(student, teacher)]`."""
    single = student_layer is not None or teacher_layer is not None
    if single and feature_pairs is not None:
        raise ValueError(
            f"{term}: pass either `student_layer` and `teacher_layer`, or "
            f"`feature_pairs`, not both. Received: student_layer={student_layer!r}, "
            f"teacher_layer={teacher_layer!r}, feature_pairs={feature_pairs!r}."
        )
    if single:
        if student_layer is None or teacher_layer is None:
            raise ValueError(
                f"{term}: `student_layer` and `teacher_layer` go together. "
                f"Received: student_layer={student_layer!r}, "
                f"teacher_layer={teacher_layer!r}."
            )
        feature_pairs = [(student_layer, teacher_layer)]
    if feature_pairs is None:
        raise ValueError(
            f"{term} needs the layers to match, e.g. "
            "`student_layer='block2', teacher_layer='block2'` or "
            "`feature_pairs={'student_block2': 'teacher_block3'}`. Received none."
        )
    items = feature_pairs.items() if isinstance(feature_pairs, dict) else feature_pairs
    pairs = []
    for item in items:
        if (
            not isinstance(item, (list, tuple))
            or len(item) != 2
            or not all(isinstance(n, str) and n for n in item)
        ):
            raise TypeError(
                f"{term}: `feature_pairs` must be a dict `{{student_layer: "
                "teacher_layer}` or a list of `(student_layer, teacher_layer)` "
                f"name pairs. Received: feature_pairs={feature_pairs!r}."
            )
        pairs.append((item[0], item[1]))
    if not pairs:
        raise ValueError(
            f"{term}: `feature_pairs` must name at least one pair of layers. "
            f"Received: feature_pairs={feature_pairs!r}."
        )
    return pairs


def _unique(names) -> tuple:
    return tuple(dict.fromkeys(names))


class FeatureTerm(DistillationTerm):
    """Base of the terms that compare intermediate features, layer by layer.

    The features are chosen by layer name, either one pair
    (`student_layer=..., teacher_layer=...`) or several
    (`feature_pairs={student_layer: teacher_layer, ...}` or a list of
    pairs); the term's value is the sum over the pairs of
    `pair_loss(teacher_feature, student_feature, index)`.
    """

    def __init__(
        self,
        student_layer: Optional[str] = None,
        teacher_layer: Optional[str] = None,
        feature_pairs=None,
        loss_weight: float = 1.0,
        name: Optional[str] = None,
        **kwargs,
    ):
        super().__init__(loss_weight=loss_weight, name=name, **kwargs)
        self.feature_pairs = _feature_pairs_from_arguments(
            student_layer, teacher_layer, feature_pairs, type(self).__name__
        )

    @property
    def student_feature_names(self) -> Sequence[str]:
        return _unique(student for student, _ in self.feature_pairs)

    @property
    def teacher_feature_names(self) -> Sequence[str]:
        return _unique(teacher for _, teacher in self.feature_pairs)

    def pair_loss(self, teacher_feature, student_feature, index: int):
        """The per-example loss of feature pair `index` (subclasses define it).

        `teacher_feature` and `student_feature` are the outputs of the pair's
        layers for one batch; returns one value per example.
        """
        raise NotImplementedError

    def call(
        self,
        student_logits,
        teacher_logits,
        labels=None,
        student_features=None,
        teacher_features=None,
    ):
        if student_features is None or teacher_features is None:
            raise ValueError(
                f"{type(self).__name__} ({self.name!r}) needs the student's "
                f"features {list(self.student_feature_names)} and the "
                f"teacher's {list(self.teacher_feature_names)}; use it in a "
                "`Distiller`, which extracts them, or pass `student_features` "
                "and `teacher_features` as `{layer_name: tensor}` dicts."
            )
        total = None
        for index, (student_name, teacher_name) in enumerate(self.feature_pairs):
            value = self.pair_loss(
                ops.stop_gradient(ops.cast(teacher_features[teacher_name], "float32")),
                ops.cast(student_features[student_name], "float32"),
                index,
            )
            total = value if total is None else total + value
        return total

    def get_config(self) -> dict:
        config = super().get_config()
        config["feature_pairs"] = [list(pair) for pair in self.feature_pairs]
        return config


def _shape_text(shape) -> str:
    return str(tuple(shape))


@keras.saving.register_keras_serializable(package="keras_kd")
class HintLoss(FeatureTerm):
    """FitNets hints (Romero et al., 2015): match the teacher's feature maps.

    For each pair, a trainable adapter (a 1x1 convolution for image feature
    maps, a dense layer otherwise) maps the student's features to the
    teacher's number of channels, and the term is the mean squared error to
    the teacher's features (`keras_kd.src.terms.losses.feature_mean_squared_error`).
    The adapters are built from the feature shapes when the `Distiller` is
    compiled; they are weights of this term, trained together with the
    student, and not part of the student (nor of its export).

    Args:
        student_layer: Name of the student's layer of one pair of layers
            whose outputs are matched.
        teacher_layer: Name of the teacher's layer of that pair.
        feature_pairs: Instead, several pairs: `{student_layer:
            teacher_layer}` or a list of `(student_layer, teacher_layer)`.
        adapter: `"auto"` (default) builds an adapter for every pair;
            `None` compares the features directly (their shapes must match).
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"hint_loss"`.

    The spatial sizes of each pair must match (choose layers at the same
    resolution); the channel counts may differ.

    Example:

    >>> import numpy as np
    >>> term = HintLoss(student_layer="block2", teacher_layer="block2")
    >>> term.build_features({"block2": (None, 7, 7, 16)},
    ...                     {"block2": (None, 7, 7, 64)})
    >>> s = {"block2": np.zeros((2, 7, 7, 16), "float32")}
    >>> t = {"block2": np.ones((2, 7, 7, 64), "float32")}
    >>> [float(v) for v in term(np.zeros((2, 3)), [], student_features=s,
    ...                         teacher_features=t)]
    [1.0, 1.0]
    """

    ADAPTERS = ("auto", None)

    def __init__(
        self,
        student_layer: Optional[str] = None,
        teacher_layer: Optional[str] = None,
        feature_pairs=None,
        adapter: Optional[str] = "auto",
        loss_weight: float = 1.0,
        name: str = "hint_loss",
        **kwargs,
    ):
        super().__init__(
            student_layer, teacher_layer, feature_pairs,
            loss_weight=loss_weight, name=name, **kwargs,
        )
        if adapter not in self.ADAPTERS:
            raise ValueError(
                f"`adapter` must be one of {self.ADAPTERS}. Received: adapter={adapter!r}."
            )
        self.adapter = adapter
        self.adapters = []
        self._adapter_shapes = None

    def build_features(self, student_feature_shapes: dict, teacher_feature_shapes: dict) -> None:
        shapes = [
            (tuple(student_feature_shapes[s]), tuple(teacher_feature_shapes[t]))
            for s, t in self.feature_pairs
        ]
        if shapes == self._adapter_shapes:
            return  # Already built for these shapes: keep the trained adapters.
        adapters = []
        for (student_name, teacher_name), (student_shape, teacher_shape) in zip(
            self.feature_pairs, shapes
        ):
            problem = None
            if len(student_shape) != len(teacher_shape):
                problem = "their ranks differ"
            elif student_shape[1:-1] != teacher_shape[1:-1]:
                problem = (
                    "their spatial sizes differ (an adapter maps channels, "
                    "not positions)"
                )
            elif self.adapter is None and student_shape[-1] != teacher_shape[-1]:
                problem = "their channels differ and `adapter=None`"
            if problem is None and None in (student_shape[-1], teacher_shape[-1]):
                problem = "their channel counts are unknown"
            if problem:
                raise ValueError(
                    f"HintLoss ({self.name!r}) cannot map the student's "
                    f"{student_name!r} features of shape {_shape_text(student_shape)} "
                    f"to the teacher's {teacher_name!r} features of shape "
                    f"{_shape_text(teacher_shape)}: {problem}. Pair layers "
                    "with the same rank and spatial size (channels may differ)."
                )
            if self.adapter is None:
                adapters.append(None)
                continue
            if len(student_shape) == 4:
                layer = keras.layers.Conv2D(
                    teacher_shape[-1], 1, dtype="float32",
                    name=f"{self.name}_adapter_{len(adapters)}",
                )
            else:
                # Acts on the last axis, like a 1x1 convolution.
                layer = keras.layers.Dense(
                    teacher_shape[-1], dtype="float32",
                    name=f"{self.name}_adapter_{len(adapters)}",
                )
            layer.build(student_shape)
            adapters.append(layer)
        self.adapters = [a for a in adapters if a is not None]
        # Positions into `self.adapters` (-1: none), not a second list of
        # layers, which Keras would track and save twice.
        positions = iter(range(len(self.adapters)))
        self._adapter_positions = [-1 if a is None else next(positions) for a in adapters]
        self._adapter_shapes = shapes

    def call(
        self,
        student_logits,
        teacher_logits,
        labels=None,
        student_features=None,
        teacher_features=None,
    ):
        if self._adapter_shapes is None and student_features and teacher_features:
            # Used on its own, outside a Distiller: build from the tensors.
            self.build_features(
                {s: student_features[s].shape for s in self.student_feature_names},
                {t: teacher_features[t].shape for t in self.teacher_feature_names},
            )
        return super().call(
            student_logits, teacher_logits, labels, student_features, teacher_features
        )

    def pair_loss(self, teacher_feature, student_feature, index: int):
        position = self._adapter_positions[index]
        if position >= 0:
            student_feature = self.adapters[position](student_feature)
        return losses.feature_mean_squared_error(teacher_feature, student_feature)

    def get_config(self) -> dict:
        config = super().get_config()
        config["adapter"] = self.adapter
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class AttentionTransfer(FeatureTerm):
    """Attention transfer (Zagoruyko & Komodakis, 2017).

    Matches the normalised spatial attention maps `mean_c |f_c|**p` of the
    paired feature maps (`keras_kd.src.terms.losses.attention_transfer_distance`),
    summed over the pairs. The channel counts may differ; the spatial sizes
    of each pair must match. No parameters are learned.

    The paper weighs the term by `beta / 2` with `beta = 1000` (with
    per-position means, as here), so `loss_weight=500.0` reproduces it.

    Args:
        student_layer: Name of the student's layer of one pair of layers.
        teacher_layer: Name of the teacher's layer of that pair.
        feature_pairs: Instead, several pairs: `{student_layer:
            teacher_layer}` or a list of `(student_layer, teacher_layer)`.
        p: Exponent of the attention map. Defaults to `2`.
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"attention_transfer"`.

    Example:

    >>> import numpy as np
    >>> term = AttentionTransfer(student_layer="block1", teacher_layer="block1")
    >>> f = {"block1": np.random.rand(2, 4, 4, 3).astype("float32")}
    >>> g = {"block1": np.random.rand(2, 4, 4, 8).astype("float32")}
    >>> term(np.zeros((2, 3)), [], student_features=f, teacher_features=g).shape
    TensorShape([2])
    """

    def __init__(
        self,
        student_layer: Optional[str] = None,
        teacher_layer: Optional[str] = None,
        feature_pairs=None,
        p: float = 2.0,
        loss_weight: float = 1.0,
        name: str = "attention_transfer",
        **kwargs,
    ):
        super().__init__(
            student_layer, teacher_layer, feature_pairs,
            loss_weight=loss_weight, name=name, **kwargs,
        )
        p = float(p)
        if not math.isfinite(p) or p <= 0:
            raise ValueError(f"`p` must be a positive finite number. Received: p={p!r}.")
        self.p = p

    def build_features(self, student_feature_shapes: dict, teacher_feature_shapes: dict) -> None:
        for student_name, teacher_name in self.feature_pairs:
            student_shape = tuple(student_feature_shapes[student_name])
            teacher_shape = tuple(teacher_feature_shapes[teacher_name])
            if (
                len(student_shape) < 3
                or len(student_shape) != len(teacher_shape)
                or student_shape[1:-1] != teacher_shape[1:-1]
            ):
                raise ValueError(
                    f"AttentionTransfer ({self.name!r}) needs feature maps with "
                    "the same spatial size. Received: the student's "
                    f"{student_name!r} of shape {_shape_text(student_shape)} and "
                    f"the teacher's {teacher_name!r} of shape "
                    f"{_shape_text(teacher_shape)}. Pair layers at the same "
                    "resolution, shaped `(batch, *spatial, channels)`."
                )

    def pair_loss(self, teacher_feature, student_feature, index: int):
        return losses.attention_transfer_distance(teacher_feature, student_feature, self.p)

    def get_config(self) -> dict:
        config = super().get_config()
        config["p"] = self.p
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class DecoupledKD(_TemperedTerm):
    """Decoupled knowledge distillation (Zhao et al., 2022, DKD).

    `alpha * TCKD + beta * NCKD`: Hinton's KL divergence split into a
    target-class part (the binary "true class vs. the rest" distributions)
    and a non-target part (the distributions over the other classes), with
    separate weights (see `keras_kd.src.terms.losses.decoupled_kd_components`). It needs
    the labels, so it is averaged over the labeled examples only.

    The paper trains it next to the cross-entropy on the labels (weight 1)
    with `alpha = 1`, `beta = 8`, `T = 4`, and warms the term's weight up
    linearly over the first 20 epochs; do the same with
    `keras_kd.src.callbacks.callbacks.LossWeightScheduler("dkd", keras_kd.src.callbacks.callbacks.WarmUp(20))`.

    Args:
        alpha: Weight of TCKD. Defaults to `1.0`.
        beta: Weight of NCKD. Defaults to `8.0`.
        temperature: Softmax temperature `T > 0` (a variable, so it can be
            scheduled). Defaults to `4.0`.
        teacher_weights: One weight per teacher; `None` for equal weights.
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"dkd"`.

    Example:

    >>> import numpy as np
    >>> term = DecoupledKD(alpha=1.0, beta=8.0, temperature=4.0)
    >>> t = np.array([[3.0, 1.0, 0.0]], dtype="float32")
    >>> float(term(t, [t], labels=np.array([0]))[0])
    0.0
    """

    requires_labels = True

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        teacher_weights: Optional[Sequence[float]] = None,
        loss_weight: float = 1.0,
        name: str = "dkd",
        **kwargs,
    ):
        super().__init__(
            temperature=temperature, loss_weight=loss_weight, name=name, **kwargs
        )
        self.alpha = _validate_loss_weight(alpha, "alpha")
        self.beta = _validate_loss_weight(beta, "beta")
        self.teacher_weights = (
            None if teacher_weights is None else [float(w) for w in teacher_weights]
        )

    def call(
        self,
        student_logits,
        teacher_logits,
        labels=None,
        student_features=None,
        teacher_features=None,
    ):
        if labels is None:
            raise ValueError(
                "DecoupledKD needs the true labels: its target-class part is "
                "defined by them. Received: labels=None."
            )
        return losses.decoupled_kd(
            teacher_logits,
            student_logits,
            labels,
            alpha=self.alpha,
            beta=self.beta,
            temperature=self._temperature.value,
            teacher_weights=self.teacher_weights,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(alpha=self.alpha, beta=self.beta, teacher_weights=self.teacher_weights)
        return config


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
