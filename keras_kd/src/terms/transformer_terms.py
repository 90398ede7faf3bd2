"""Intermediate-layer terms for Transformer encoders (TinyBERT, MiniLM).

For keras-hub encoders (`BertBackbone` and the tasks built on it, e.g.
`BertTextClassifier`), whose layers are `keras_hub.layers.TransformerEncoder`
named `transformer_layer_0`, `transformer_layer_1`, ...:

- `HiddenStateDistillation`: mean squared error between the teacher's and
  the student's hidden states `(batch, sequence, hidden)`, through a learned
  projection of the student's (TinyBERT, Jiao et al. 2020), for the layers
  paired by a *layer map*: `"uniform"` (student layer `i` of `S` to teacher
  layer `(i + 1) * T // S - 1`), `"last_k"`, or explicit pairs.
- `EmbeddingDistillation`: the same on the embedding layer's output.
- `AttentionDistillation`: KL divergence between the self-attention
  distributions (MiniLM, Wang et al. 2020; TinyBERT's attention term uses
  the scores, MiniLM the probabilities, as here).

Every term averages over the *real* tokens: the inputs' `padding_mask`
(which the `Distiller` hands to terms whose `uses_padding_mask` is true)
weighs each position; padded queries never count, and padded keys carry no
attention. Projections are weights of the term, trained with the student but
not part of it, so an exported student carries none.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import keras
from keras import ops

from keras_kd.src.terms import features as features_lib
from keras_kd.src.terms.terms import DistillationTerm, _feature_pairs_from_arguments, _unique

LAYER_MAPS = ("uniform", "last_k")
PROJECTIONS = ("auto", None)


# ----------------------------------------------------------- pure functions

def _mask_or_ones(padding_mask, reference):
    if padding_mask is None:
        return ops.ones(ops.shape(reference)[:2], "float32")
    return ops.cast(padding_mask, "float32")


def masked_mean_squared_error(teacher_hidden, student_hidden, padding_mask=None):
    """Per-example mean squared error over the real tokens.

    `sum_t m_t * mean_h (s_th - t_th)**2 / sum_t m_t` for hidden states
    `(batch, sequence, hidden)` and a padding mask `m` `(batch, sequence)`
    (1 for real tokens; `None`: all real). An example without real tokens
    gives 0.

    Example:

    >>> import numpy as np
    >>> t = np.zeros((1, 3, 2), "float32")
    >>> s = np.array([[[1.0, 1.0], [2.0, 2.0], [9.0, 9.0]]], "float32")
    >>> masked_mean_squared_error(t, s, np.array([[1, 1, 0]])).numpy().tolist()
    [2.5]
    """
    teacher_hidden = ops.cast(ops.convert_to_tensor(teacher_hidden), "float32")
    student_hidden = ops.cast(ops.convert_to_tensor(student_hidden), "float32")
    if len(teacher_hidden.shape) != 3 or len(student_hidden.shape) != 3:
        raise ValueError(
            "Hidden states must be shaped (batch, sequence, hidden). Received: "
            f"teacher {tuple(teacher_hidden.shape)}, student {tuple(student_hidden.shape)}."
        )
    mask = _mask_or_ones(padding_mask, teacher_hidden)
    per_token = ops.mean(ops.square(student_hidden - teacher_hidden), axis=-1)
    return ops.divide_no_nan(ops.sum(per_token * mask, axis=1), ops.sum(mask, axis=1))


def attention_kl_divergence(teacher_attention, student_attention, padding_mask=None,
                            epsilon: float = 1e-9):
    """Per-example KL(teacher || student) of self-attention distributions.

    Inputs are attention probabilities `(batch, heads, queries, keys)` (each
    row sums to 1 over the real keys). The KL divergence of each query's row,
    `sum_k p_k * (log p_k - log(q_k + epsilon))`, is averaged over the heads
    and the real queries. Padded keys are zeroed in both distributions
    (which keras-hub's encoders already do). With different head counts the
    head-averaged distributions are compared (MiniLM needs equal counts; the
    mean of distributions is still a distribution).

    Example:

    >>> import numpy as np
    >>> p = np.array([[[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1/3, 1/3, 1/3]]]], "float32")
    >>> q = np.array([[[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]]], "float32")
    >>> float(attention_kl_divergence(p, q, np.array([[1, 1, 0]]))[0])
    0.0
    """
    p = ops.cast(ops.convert_to_tensor(teacher_attention), "float32")
    q = ops.cast(ops.convert_to_tensor(student_attention), "float32")
    if len(p.shape) != 4 or len(q.shape) != 4:
        raise ValueError(
            "Attention probabilities must be shaped (batch, heads, queries, keys). "
            f"Received: teacher {tuple(p.shape)}, student {tuple(q.shape)}."
        )
    if p.shape[1] is not None and q.shape[1] is not None and p.shape[1] != q.shape[1]:
        p = ops.mean(p, axis=1, keepdims=True)
        q = ops.mean(q, axis=1, keepdims=True)
    mask = _mask_or_ones(padding_mask, p[:, 0, :, 0:1][..., 0])
    keys = mask[:, None, None, :]
    p = p * keys
    q = q * keys
    # p * log p is 0 where p is 0 (padded keys, or keys the teacher ignores).
    log_p = ops.log(ops.where(p > 0, p, 1.0))
    per_query = ops.sum(p * (log_p - ops.log(q + epsilon)), axis=-1)  # (batch, heads, queries)
    per_query = ops.mean(per_query, axis=1)
    return ops.divide_no_nan(ops.sum(per_query * mask, axis=1), ops.sum(mask, axis=1))


def layer_map(num_student_layers: int, num_teacher_layers: int, strategy: str = "uniform",
              k: Optional[int] = None) -> List[Tuple[int, int]]:
    """Pairs `(student_layer, teacher_layer)` of 0-based layer indices.

    - `"uniform"` (TinyBERT): student layer `i` learns from teacher layer
      `(i + 1) * T // S - 1`, so the student's last layer meets the
      teacher's last.
    - `"last_k"`: the student's last `k` layers, one to one, from the
      teacher's last `k` (MiniLM's attention term uses `k=1`).

    Example:

    >>> layer_map(2, 4)
    [(0, 1), (1, 3)]
    >>> layer_map(2, 4, "last_k", k=1)
    [(1, 3)]
    """
    for value, argument in ((num_student_layers, "num_student_layers"),
                            (num_teacher_layers, "num_teacher_layers")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{argument}` must be a positive integer. Received: {argument}={value!r}.")
    if strategy == "uniform":
        if num_student_layers > num_teacher_layers:
            raise ValueError(
                "A uniform layer map needs a student with no more layers than the "
                f"teacher. Received: {num_student_layers} student layers, "
                f"{num_teacher_layers} teacher layers; use 'last_k' or explicit pairs."
            )
        return [(i, (i + 1) * num_teacher_layers // num_student_layers - 1)
                for i in range(num_student_layers)]
    if strategy == "last_k":
        limit = min(num_student_layers, num_teacher_layers)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit:
            raise ValueError(
                f"`k` must be an integer in [1, {limit}] (the smaller layer count) for "
                f"layer_map='last_k'. Received: k={k!r}."
            )
        return [(num_student_layers - k + i, num_teacher_layers - k + i) for i in range(k)]
    raise ValueError(f"`strategy` must be one of {LAYER_MAPS}. Received: strategy={strategy!r}.")


def transformer_layer_names(model: keras.Model) -> List[str]:
    """Names of the keras-hub `TransformerEncoder` layers of `model` (its own
    or those of a model nested in it, such as a task's backbone), in order.

    Example:

    >>> from keras_kd import models
    >>> transformer_layer_names(models.cnn_student())
    []
    """
    layers = list(model.layers)
    for nested in features_lib._nested_models(model):
        layers.extend(nested.layers)
    return [layer.name for layer in layers if features_lib._is_transformer_encoder(layer)]


def _vocabulary_size(model) -> Optional[int]:
    """The `vocabulary_size` of a keras-hub backbone or task, else None."""
    backbone = getattr(model, "backbone", model)
    size = getattr(backbone, "vocabulary_size", None)
    return size if isinstance(size, int) else None


def check_vocabulary(tokenizer, *models) -> int:
    """Raises unless the tokenizer and every keras-hub model agree on the
    vocabulary size (token ids beyond a model's embedding table fail or,
    on some devices, silently read zeros). Returns the size.

    Example:

    >>> import keras_hub
    >>> tokenizer = keras_hub.tokenizers.BertTokenizer(
    ...     vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=6, num_layers=1,
    ...     num_heads=1, hidden_dim=4, intermediate_dim=4, max_sequence_length=4)
    >>> check_vocabulary(tokenizer, backbone)
    6
    """
    expected = tokenizer.vocabulary_size()
    for model in models:
        size = _vocabulary_size(model)
        if size is not None and size != expected:
            raise ValueError(
                f"The tokenizer has {expected} tokens but the model {model.name!r} "
                f"has an embedding table of {size}. Build the model with "
                f"`vocabulary_size=tokenizer.vocabulary_size()` ({expected}), or use "
                "the tokenizer it was trained with."
            )
    return expected


# -------------------------------------------------------------------- terms

class _EncoderTerm(DistillationTerm):
    """Pairs encoder layers by a layer map; gets the inputs' padding mask."""

    uses_padding_mask = True
    #: Appended to each paired layer name to form the feature name.
    _suffix = ""

    def __init__(self, layer_map="uniform", k: Optional[int] = None, loss_weight: float = 1.0,
                 name: Optional[str] = None, **kwargs):
        super().__init__(loss_weight=loss_weight, name=name, **kwargs)
        if isinstance(layer_map, str):
            if layer_map not in LAYER_MAPS:
                raise ValueError(
                    f"`layer_map` must be one of {LAYER_MAPS}, or pairs "
                    "`{student_layer: teacher_layer}`. Received: "
                    f"layer_map={layer_map!r}."
                )
            if layer_map == "last_k" and k is None:
                k = 1
            self.layer_pairs = None
        else:
            self.layer_pairs = _feature_pairs_from_arguments(
                None, None, layer_map, type(self).__name__
            )
        self.layer_map = layer_map if isinstance(layer_map, str) else [list(p) for p in self.layer_pairs]
        self.k = k

    def resolve_layers(self, student, teacher) -> None:
        """Turns a `"uniform"` / `"last_k"` map into layer names, from the
        models' keras-hub `TransformerEncoder` layers; checks explicit names
        and that both models read the same token ids."""
        if teacher is None:
            raise ValueError(
                f"{type(self).__name__} ({self.name!r}) compares the teacher's "
                "intermediate layers, so it needs one live teacher model."
            )
        student_size, teacher_size = _vocabulary_size(student), _vocabulary_size(teacher)
        if None not in (student_size, teacher_size) and student_size != teacher_size:
            raise ValueError(
                f"The teacher ({teacher_size} tokens) and the student ({student_size} "
                "tokens) have different vocabularies, but they read the same token ids. "
                "Build the student with the teacher's tokenizer and vocabulary_size."
            )
        if self.layer_pairs is not None and not isinstance(self.layer_map, str):
            for model, names, role in ((student, [s for s, _ in self.layer_pairs], "student"),
                                       (teacher, [t for _, t in self.layer_pairs], "teacher")):
                available = features_lib.available_feature_names(model)
                missing = [n for n in names if n not in available]
                if missing:
                    encoders = transformer_layer_names(model)
                    raise ValueError(
                        f"{type(self).__name__} ({self.name!r}): the layer map names "
                        f"{missing}, which the {role} ({model.name!r}) does not have. "
                        f"Its encoder layers: {encoders}; all its layers: "
                        f"{[n for n in available if not n.endswith(features_lib.ATTENTION_SUFFIX)]}."
                    )
            return
        students, teachers = transformer_layer_names(student), transformer_layer_names(teacher)
        for names, model, role in ((students, student, "student"), (teachers, teacher, "teacher")):
            if not names:
                raise ValueError(
                    f"{type(self).__name__} ({self.name!r}) with layer_map="
                    f"{self.layer_map!r} pairs keras-hub TransformerEncoder layers "
                    f"(keras_hub.layers.TransformerEncoder), and the {role} "
                    f"({model.name!r}) has none. Its layers: "
                    f"{[layer.name for layer in model.layers]}. Pass explicit pairs "
                    "`layer_map={student_layer: teacher_layer}`."
                )
        self.layer_pairs = [
            (students[s], teachers[t])
            for s, t in layer_map(len(students), len(teachers), self.layer_map, self.k)
        ]

    def _pairs(self):
        if self.layer_pairs is None:
            raise ValueError(
                f"{type(self).__name__} ({self.name!r}) has layer_map="
                f"{self.layer_map!r}, which needs the models' layer counts: use it "
                "in a `Distiller` (which calls `resolve_layers(student, teacher)` in "
                "`compile`), or pass explicit pairs."
            )
        return self.layer_pairs

    @property
    def student_feature_names(self) -> Sequence[str]:
        return _unique(s + self._suffix for s, _ in self._pairs())

    @property
    def teacher_feature_names(self) -> Sequence[str]:
        return _unique(t + self._suffix for _, t in self._pairs())

    def _feature_pairs(self, student_features, teacher_features):
        if student_features is None or teacher_features is None:
            raise ValueError(
                f"{type(self).__name__} ({self.name!r}) needs the student's features "
                f"{list(self.student_feature_names)} and the teacher's "
                f"{list(self.teacher_feature_names)}; use it in a `Distiller`, or pass "
                "`student_features` and `teacher_features` as `{name: tensor}` dicts."
            )
        for s, t in self._pairs():
            yield (ops.cast(student_features[s + self._suffix], "float32"),
                   ops.stop_gradient(ops.cast(teacher_features[t + self._suffix], "float32")))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(layer_map=self.layer_map, k=self.k)
        return config


class _ProjectedHiddenTerm(_EncoderTerm):
    """Masked hidden-state MSE through a learned projection per pair."""

    def __init__(self, layer_map="uniform", k=None, projection: Optional[str] = "auto",
                 loss_weight: float = 1.0, name=None, **kwargs):
        super().__init__(layer_map=layer_map, k=k, loss_weight=loss_weight, name=name, **kwargs)
        if projection not in PROJECTIONS:
            raise ValueError(
                f"`projection` must be one of {PROJECTIONS}. Received: projection={projection!r}."
            )
        self.projection = projection
        self.projections = []
        self._projection_shapes = None

    def build_features(self, student_feature_shapes: dict, teacher_feature_shapes: dict) -> None:
        shapes = [(tuple(student_feature_shapes[s]), tuple(teacher_feature_shapes[t]))
                  for s, t in self._pairs()]
        if shapes == self._projection_shapes:
            return
        projections = []
        for (s, t), (student_shape, teacher_shape) in zip(self._pairs(), shapes):
            if len(student_shape) != 3 or len(teacher_shape) != 3:
                raise ValueError(
                    f"{type(self).__name__} ({self.name!r}) compares hidden states "
                    f"(batch, sequence, hidden). Received: the student's {s!r} of shape "
                    f"{student_shape}, the teacher's {t!r} of shape {teacher_shape}."
                )
            if self.projection is None and student_shape[-1] != teacher_shape[-1]:
                raise ValueError(
                    f"{type(self).__name__} ({self.name!r}): the teacher's {t!r} has hidden "
                    f"size {teacher_shape[-1]} and the student's {s!r} {student_shape[-1]}, "
                    "and projection=None. Use projection='auto' (a learned projection of "
                    "the student's states, not part of the student)."
                )
            if self.projection is None:
                continue
            layer = keras.layers.Dense(teacher_shape[-1], dtype="float32",
                                       name=f"{self.name}_projection_{len(projections)}")
            layer.build(student_shape)
            projections.append(layer)
        self.projections = projections
        self._projection_shapes = shapes

    def call(self, student_logits, teacher_logits, labels=None, student_features=None,
             teacher_features=None, padding_mask=None):
        pairs = list(self._feature_pairs(student_features, teacher_features))
        if self.projection is not None and self._projection_shapes is None:
            # Used on its own, outside a Distiller: build from the tensors.
            self.build_features(
                {s + self._suffix: student_features[s + self._suffix].shape for s, _ in self._pairs()},
                {t + self._suffix: teacher_features[t + self._suffix].shape for _, t in self._pairs()},
            )
        total = None
        for index, (student, teacher) in enumerate(pairs):
            if self.projection is not None:
                student = self.projections[index](student)
            value = masked_mean_squared_error(teacher, student, padding_mask)
            total = value if total is None else total + value
        return total

    def get_config(self) -> dict:
        config = super().get_config()
        config["projection"] = self.projection
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class HiddenStateDistillation(_ProjectedHiddenTerm):
    """TinyBERT's hidden-state term: the teacher's encoder outputs, matched
    by a learned projection of the student's, over the real tokens.

    `sum over pairs of masked_mean_squared_error(h_t, W h_s + b, mask)`. The
    projection `W` (one per pair, `student hidden -> teacher hidden`) is a
    weight of this term, trained with the student and not part of it.

    Args:
        layer_map: `"uniform"` (default), `"last_k"`, or explicit pairs
            `{student_layer: teacher_layer}` / `[(student_layer,
            teacher_layer)]` of layer names (any layer with a
            `(batch, sequence, hidden)` output, nested ones included). With
            `"uniform"` / `"last_k"` the pairs are the models' keras-hub
            `TransformerEncoder` layers (see `layer_map()`), resolved when
            the `Distiller` is compiled.
        k: For `"last_k"`, how many layers (default 1).
        projection: `"auto"` (default) learns a projection; `None` compares
            directly (hidden sizes must match).
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"hidden_state_loss"`.

    Example:

    >>> import numpy as np
    >>> term = HiddenStateDistillation(
    ...     layer_map={"transformer_layer_0": "transformer_layer_1"}, projection=None)
    >>> s = {"transformer_layer_0": np.zeros((1, 3, 2), "float32")}
    >>> t = {"transformer_layer_1": np.ones((1, 3, 2), "float32")}
    >>> term(np.zeros((1, 4)), [], student_features=s, teacher_features=t,
    ...      padding_mask=np.array([[1, 1, 0]])).numpy().tolist()
    [1.0]
    """

    def __init__(self, layer_map="uniform", k=None, projection="auto", loss_weight=1.0,
                 name="hidden_state_loss", **kwargs):
        super().__init__(layer_map=layer_map, k=k, projection=projection,
                         loss_weight=loss_weight, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="keras_kd")
class EmbeddingDistillation(_ProjectedHiddenTerm):
    """TinyBERT's embedding-layer term: the masked MSE between the teacher's
    and the (projected) student's embedding outputs.

    Args:
        student_layer: The student's embedding output layer. Defaults to
            keras-hub BERT's `"embeddings_layer_norm"`.
        teacher_layer: The teacher's. Defaults to the same.
        projection: `"auto"` (default) or `None`, as `HiddenStateDistillation`.
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"embedding_loss"`.

    Example:

    >>> term = EmbeddingDistillation()
    >>> term.student_feature_names
    ('embeddings_layer_norm',)
    """

    def __init__(self, student_layer: str = "embeddings_layer_norm",
                 teacher_layer: str = "embeddings_layer_norm", projection="auto",
                 loss_weight=1.0, name="embedding_loss", **kwargs):
        kwargs.pop("layer_map", None)
        kwargs.pop("k", None)
        super().__init__(layer_map={student_layer: teacher_layer}, projection=projection,
                         loss_weight=loss_weight, name=name, **kwargs)
        self.student_layer, self.teacher_layer = student_layer, teacher_layer

    def get_config(self) -> dict:
        config = super().get_config()
        del config["layer_map"], config["k"]
        config.update(student_layer=self.student_layer, teacher_layer=self.teacher_layer)
        return config


@keras.saving.register_keras_serializable(package="keras_kd")
class AttentionDistillation(_EncoderTerm):
    """MiniLM's self-attention distribution term: KL(teacher || student) of
    the attention probabilities of paired encoder layers, averaged over the
    heads and the real queries (`attention_kl_divergence`), summed over the
    pairs. No parameters are learned.

    Attention probabilities are read from keras-hub `TransformerEncoder`
    layers only (their call takes `return_attention_scores=True`; the
    feature extractor calls the layer once more on the same inputs for them).
    Other layer types raise a `ValueError` naming the supported one. Heads
    may differ in number (then head-averaged distributions are compared);
    sequence lengths must match.

    Args:
        layer_map: `"last_k"` (default, with `k=1`: MiniLM's last layer),
            `"uniform"`, or explicit pairs of encoder layer names.
        k: For `"last_k"`, how many layers (default 1).
        loss_weight: The term's weight. Defaults to `1.0`.
        name: Logged name. Defaults to `"attention_loss"`.

    Example:

    >>> import numpy as np
    >>> term = AttentionDistillation(layer_map={"transformer_layer_1": "transformer_layer_3"})
    >>> term.teacher_feature_names
    ('transformer_layer_3:attention_scores',)
    >>> p = {"transformer_layer_3:attention_scores": np.full((1, 2, 3, 3), 1 / 3, "float32")}
    >>> q = {"transformer_layer_1:attention_scores": np.full((1, 2, 3, 3), 1 / 3, "float32")}
    >>> round(float(term(np.zeros((1, 4)), [], student_features=q, teacher_features=p)[0]), 6)
    0.0
    """

    _suffix = features_lib.ATTENTION_SUFFIX

    def __init__(self, layer_map="last_k", k=None, loss_weight=1.0, name="attention_loss",
                 **kwargs):
        super().__init__(layer_map=layer_map, k=k, loss_weight=loss_weight, name=name, **kwargs)

    def call(self, student_logits, teacher_logits, labels=None, student_features=None,
             teacher_features=None, padding_mask=None):
        total = None
        for student, teacher in self._feature_pairs(student_features, teacher_features):
            value = attention_kl_divergence(teacher, student, padding_mask)
            total = value if total is None else total + value
        return total
