"""keras-hub causal language models: pair checks, on-policy and sequence-level data.

- `check_causal_lm_pair(student, teacher)`: what a teacher and a student
  keras-hub `CausalLM` must share (the vocabulary) and be (task models, not
  backbones), checked before any training.
- `generate_tokens(model, token_ids, padding_mask)`: a `CausalLM`'s own
  compiled, KV-cached generation on token ids, with its preprocessor (if any)
  left out and a sampler of your choice.
- `OnPolicyBatches`: GKD's on-policy data (Agarwal et al. 2024). A fraction
  `lmbda` of the batches are the *student's* continuations of prompts taken
  from the data; the Distiller's live teacher scores them in its step.
- `sequence_level_dataset`: sequence-level KD (Kim & Rush 2016): the
  teacher's continuations of prompts, generated once, as a dataset of hard
  targets.

Batches have the structure keras-hub's `CausalLMPreprocessor` yields:
`({"token_ids", "padding_mask"}, labels, sample_weight)`, all
`(batch, sequence)`. keras_hub is imported only when these are used: it is an
optional dependency (`pip install keras-kd[lm]`).

Generation runs outside the compiled train step, one token at a time, so it
costs far more per token than a training step (see
`benchmarks/results/lm_distillation.md`).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

import keras
import numpy as np

from keras_kd.src.utils import optional
from keras_kd.src.utils.keys import UNLABELED

_CROSS_TOKENIZER = (
    "Teacher and student must use the same tokenizer (the same vocabulary, "
    "token for token): build the student with the teacher's tokenizer, e.g. "
    "`keras_hub.models.GPT2Backbone(vocabulary_size=teacher.backbone."
    "vocabulary_size, ...)` and the teacher's preprocessor. Distillation "
    "between different tokenizers (aligning their vocabularies) is out of "
    "scope for keras_kd."
)


def _keras_hub():
    """The keras_hub module, imported on first use (an optional dependency)."""
    return optional.require("keras_hub")


def _loaded_keras_hub():
    """keras_hub if something already imported it, else None: a model cannot
    be a keras-hub model unless keras_hub was imported."""
    return sys.modules.get("keras_hub")


def _tokenizer(model):
    preprocessor = getattr(model, "preprocessor", None)
    return getattr(preprocessor, "tokenizer", None)


def _tokenizer_size(tokenizer) -> Optional[int]:
    size = getattr(tokenizer, "vocabulary_size", None)
    if not callable(size):
        return None
    try:
        return int(size())
    except Exception:  # a tokenizer without a vocabulary yet
        return None


def _vocabulary(tokenizer):
    get = getattr(tokenizer, "get_vocabulary", None)
    if not callable(get):
        return None
    try:
        return list(get())
    except Exception:
        return None


def _check_not_backbone(model, role: str, keras_hub) -> None:
    if isinstance(model, keras_hub.models.Backbone):
        task = type(model).__name__.replace("Backbone", "CausalLM")
        raise TypeError(
            f"`{role}` is a keras-hub backbone ({type(model).__name__} "
            f"{model.name!r}), which outputs hidden states, not logits over the "
            "vocabulary. Pass the task model, e.g. "
            f"`keras_hub.models.{task}(backbone=..., preprocessor=None)` (or "
            f"`{task}.from_preset(...)`)."
        )


def check_causal_lm_pair(student, teacher) -> None:
    """Refuses a keras-hub student/teacher pair that cannot be distilled.

    Does nothing for models that are not keras-hub models (and does not
    import keras_hub for them). For keras-hub models:

    - a `keras_hub.models.Backbone` (hidden states, no logits) is refused: pass
      the task model, e.g. `GPT2CausalLM(backbone, preprocessor=None)`;
    - teacher and student must share the vocabulary: the backbones'
      `vocabulary_size` (the logits' last dimension) must match, and so must
      the tokenizers' `vocabulary_size()` and vocabularies where both models
      have a preprocessor. Cross-tokenizer distillation is out of scope.

    A `CausalLM` with its preprocessor attached is fine, but the Distiller
    calls the models themselves, which take token ids: the preprocessor is not
    applied for you. Map it over the raw text first,
    `dataset.map(student.preprocessor)`, which yields the
    `({"token_ids", "padding_mask"}, labels, sample_weight)` batches the
    Distiller trains on. Teacher and student then see the same token ids.

    Args:
        student: The student model.
        teacher: The teacher model, a list of them, or `None` (cached logits).

    Raises:
        TypeError: A backbone was given where a `CausalLM` is needed.
        ValueError: The vocabularies differ.

    Example:

    >>> import keras_hub
    >>> def lm(vocabulary_size):
    ...     backbone = keras_hub.models.GPT2Backbone(
    ...         vocabulary_size=vocabulary_size, num_layers=1, num_heads=1,
    ...         hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    ...     return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    >>> check_causal_lm_pair(lm(64), lm(64))  # fine
    >>> check_causal_lm_pair(lm(64), lm(80))
    Traceback (most recent call last):
    ...
    ValueError: Teacher and student vocabularies differ: ...
    """
    keras_hub = _loaded_keras_hub()
    if keras_hub is None:
        return
    teachers = [] if teacher is None else (
        list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
    )
    _check_not_backbone(student, "student", keras_hub)
    for index, model in enumerate(teachers):
        _check_not_backbone(model, "teacher" if len(teachers) == 1 else f"teacher[{index}]",
                            keras_hub)
    student_backbone = getattr(student, "backbone", None)
    student_size = getattr(student_backbone, "vocabulary_size", None)
    for index, model in enumerate(teachers):
        role = "teacher" if len(teachers) == 1 else f"teacher[{index}]"
        size = getattr(getattr(model, "backbone", None), "vocabulary_size", None)
        if None not in (size, student_size) and size != student_size:
            raise ValueError(
                f"Teacher and student vocabularies differ: the {role}'s backbone "
                f"({model.name!r}) has vocabulary_size={size}, the student's "
                f"({student.name!r}) vocabulary_size={student_size}, so their "
                f"logits cannot be compared token by token. {_CROSS_TOKENIZER}"
            )
        _check_tokenizers(student, model, role)


def _check_tokenizers(student, teacher, role: str) -> None:
    student_tokenizer, teacher_tokenizer = _tokenizer(student), _tokenizer(teacher)
    if student_tokenizer is None or teacher_tokenizer is None:
        return
    sizes = _tokenizer_size(student_tokenizer), _tokenizer_size(teacher_tokenizer)
    if None not in sizes and sizes[0] != sizes[1]:
        raise ValueError(
            f"Teacher and student vocabularies differ: the {role}'s tokenizer "
            f"({type(teacher_tokenizer).__name__}) has vocabulary_size()={sizes[1]}, "
            f"the student's ({type(student_tokenizer).__name__}) {sizes[0]}. "
            f"{_CROSS_TOKENIZER}"
        )
    vocabularies = _vocabulary(student_tokenizer), _vocabulary(teacher_tokenizer)
    if None not in vocabularies and vocabularies[0] != vocabularies[1]:
        first = next(
            i for i, (a, b) in enumerate(zip(*vocabularies)) if a != b
        ) if len(vocabularies[0]) == len(vocabularies[1]) else min(map(len, vocabularies))
        raise ValueError(
            "Teacher and student vocabularies differ: their tokenizers have "
            f"the same size but map token id {first} to different tokens "
            f"(the {role}'s {vocabularies[1][first:first + 1]!r}, the "
            f"student's {vocabularies[0][first:first + 1]!r}). {_CROSS_TOKENIZER}"
        )


# ------------------------------------------------------------------ generation


def _sampler(sampler, seed: Optional[int]):
    keras_hub = _keras_hub()
    if isinstance(sampler, str):
        classes = {
            "random": keras_hub.samplers.RandomSampler,
            "top_k": keras_hub.samplers.TopKSampler,
            "top_p": keras_hub.samplers.TopPSampler,
            "greedy": keras_hub.samplers.GreedySampler,
        }
        if sampler not in classes:
            raise ValueError(
                f"Unknown sampler {sampler!r}. Expected one of {sorted(classes)} "
                "or a `keras_hub.samplers.Sampler` instance."
            )
        return classes[sampler]() if sampler == "greedy" else classes[sampler](seed=seed)
    if not isinstance(sampler, keras_hub.samplers.Sampler):
        raise TypeError(
            "`sampler` must be a name or a `keras_hub.samplers.Sampler`. "
            f"Received: sampler={sampler!r} of type {type(sampler).__name__}."
        )
    return sampler


def _check_causal_lm(model, argument: str):
    keras_hub = _keras_hub()
    _check_not_backbone(model, argument, keras_hub)
    if not isinstance(model, keras_hub.models.CausalLM):
        raise TypeError(
            f"`{argument}` must be a `keras_hub.models.CausalLM` (it generates with "
            f"its own `generate_step`). Received: {argument}={model!r} of type "
            f"{type(model).__name__}."
        )


def _max_sequence_length(model) -> Optional[int]:
    return getattr(getattr(model, "backbone", None), "max_sequence_length", None)


def _generate(model, sampler, inputs, functions: Optional[dict] = None):
    """Runs `model`'s compiled generate function with `sampler`.

    keras-hub's `CausalLM` keeps one `generate_function`, traced with its
    compiled sampler; ours is swapped in for the call and the model's own is
    restored after, so its `generate()` is left as it was. `functions` (owned
    by the caller, e.g. an `OnPolicyBatches`, so that it lives as long as the
    model and the sampler) keeps the traced function across calls.
    """
    functions = {} if functions is None else functions
    own_sampler, own_function = model.sampler, model.generate_function
    try:
        model.sampler = sampler
        model.generate_function = functions.get(id(sampler))
        function = model.make_generate_function()
        functions[id(sampler)] = function
        return function(inputs, stop_token_ids=None)
    finally:
        model.sampler, model.generate_function = own_sampler, own_function


def generate_tokens(model, token_ids, padding_mask, sampler: Any = "random",
                    seed: Optional[int] = None) -> np.ndarray:
    """Fills the positions where `padding_mask` is False with `model`'s tokens.

    Runs the `CausalLM`'s own compiled, KV-cached `generate_step` on token ids
    (its preprocessor, if attached, is bypassed, and no stop token ends a row
    early), so the row length is the total length: prompt plus continuation.
    The model's compiled sampler and `generate()` are left as they were.

    Args:
        model: A `keras_hub.models.CausalLM`.
        token_ids: `(batch, length)` integer token ids; the prompt of each row
            is where `padding_mask` is True (a left-aligned prefix).
        padding_mask: `(batch, length)` booleans.
        sampler: `"random"` (default: the model's distribution at temperature
            1, as on-policy distillation needs), `"top_k"`, `"top_p"`,
            `"greedy"`, or a `keras_hub.samplers.Sampler`.
        seed: Seed of a sampler given by name.

    Returns:
        `(batch, length)` int32 token ids: the prompts and their continuations.

    Example:

    >>> import numpy as np, keras_hub
    >>> backbone = keras_hub.models.GPT2Backbone(
    ...     vocabulary_size=32, num_layers=1, num_heads=1, hidden_dim=8,
    ...     intermediate_dim=16, max_sequence_length=16)
    >>> lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    >>> ids = np.array([[5, 6, 0, 0, 0]]); mask = ids > 0
    >>> out = generate_tokens(lm, ids, mask, seed=1)
    >>> out.shape, out[0, :2].tolist()
    ((1, 5), [5, 6])
    """
    return _generate_tokens(model, token_ids, padding_mask, _sampler(sampler, seed))


def _generate_tokens(model, token_ids, padding_mask, sampler, functions=None) -> np.ndarray:
    """`generate_tokens` with a sampler instance and the caller's cache of
    traced functions (see `_generate`)."""
    _check_causal_lm(model, "model")
    token_ids = np.asarray(token_ids, dtype="int32")
    padding_mask = np.asarray(padding_mask, dtype=bool)
    if token_ids.ndim != 2 or padding_mask.shape != token_ids.shape:
        raise ValueError(
            "`token_ids` and `padding_mask` must both be (batch, length). Received: "
            f"token_ids of shape {token_ids.shape}, padding_mask of shape "
            f"{padding_mask.shape}."
        )
    limit = _max_sequence_length(model)
    if limit is not None and token_ids.shape[1] > limit:
        raise ValueError(
            f"Rows of {token_ids.shape[1]} tokens are longer than {model.name!r}'s "
            f"max_sequence_length={limit}. Shorten the prompt or the continuation."
        )
    outputs = _generate(
        model, sampler, {"token_ids": token_ids, "padding_mask": padding_mask}, functions,
    )
    return np.asarray(keras.ops.convert_to_numpy(outputs["token_ids"]), dtype="int32")


def _prompts(x, prompt_length: int, total: int):
    """`(token_ids, padding_mask, prompt_lengths)` of `total` columns holding
    the first `prompt_length` real tokens of each row of the batch `x`."""
    token_ids = np.asarray(x["token_ids"], dtype="int32")
    mask = np.asarray(x["padding_mask"], dtype=bool) if "padding_mask" in x else (
        np.ones(token_ids.shape, bool))
    lengths = np.minimum(mask.sum(axis=1), prompt_length).astype("int32")
    lengths = np.maximum(lengths, 1)  # an empty row still needs one token to start from
    ids = np.zeros((len(token_ids), total), "int32")
    ids[:, :prompt_length] = token_ids[:, :prompt_length]
    prompt_mask = np.arange(total)[None, :] < lengths[:, None]
    return np.where(prompt_mask, ids, 0), prompt_mask, lengths


def continuation_batch(tokens, prompt_lengths, max_new_tokens: int, sequence_length: int,
                       labels: str = "none"):
    """`(x, y, sample_weight)` for prompts followed by generated continuations.

    Position `t` of `x` predicts token `t + 1` (as `CausalLMPreprocessor`
    shifts). The positions that predict a generated token get weight 1; those
    that predict a prompt token, and the padding, weight 0. With
    `labels="none"` every label is `-1` (unlabeled: only the teacher is a
    target, as in on-policy distillation); with `labels="generated"` the
    generated tokens are the labels (sequence-level KD) and the rest `-1`.

    Args:
        tokens: `(batch, prompt + max_new_tokens)` prompts and continuations.
        prompt_lengths: `(batch,)` prompt length of each row.
        max_new_tokens: Tokens generated per row.
        sequence_length: Length of the batch to return (the training batches'
            length; the rest is padding).
        labels: `"none"` or `"generated"`.

    Returns:
        `({"token_ids", "padding_mask"}, labels, sample_weight)` of shape
        `(batch, sequence_length)`: int32, bool, int32, float32.

    Example:

    >>> x, y, w = continuation_batch(np.array([[7, 8, 9, 4]]), np.array([2]), 2, 5)
    >>> x["token_ids"].tolist(), x["padding_mask"].astype(int).tolist()
    ([[7, 8, 9, 4, 0]], [[1, 1, 1, 1, 0]])
    >>> y.tolist(), w.tolist()
    ([[-1, -1, -1, -1, -1]], [[0.0, 1.0, 1.0, 0.0, 0.0]])
    """
    if labels not in ("none", "generated"):
        raise ValueError(f"`labels` must be 'none' or 'generated'. Received: labels={labels!r}.")
    tokens = np.asarray(tokens, dtype="int32")
    lengths = np.asarray(prompt_lengths, dtype="int32")[:, None]
    batch, width = tokens.shape
    if width > sequence_length:
        raise ValueError(
            f"Prompts plus continuations are {width} tokens, longer than the "
            f"batches' sequence length {sequence_length}."
        )
    ids = np.zeros((batch, sequence_length), "int32")
    ids[:, :width] = tokens
    position = np.arange(sequence_length)[None, :]
    real = position < lengths + max_new_tokens
    ids = np.where(real, ids, 0)
    # Position t predicts token t + 1: a generated one for t in [p - 1, p + n - 1).
    predicts_generated = (position >= lengths - 1) & (position < lengths + max_new_tokens - 1)
    weight = predicts_generated.astype("float32")
    if labels == "generated":
        following = np.concatenate([ids[:, 1:], np.zeros((batch, 1), "int32")], axis=1)
        y = np.where(predicts_generated, following, UNLABELED).astype("int32")
    else:
        y = np.full((batch, sequence_length), UNLABELED, "int32")
    return {"token_ids": ids, "padding_mask": real}, y, weight


def _batches(data):
    """Iterates `(x, y, sample_weight)` numpy batches of a tf.data dataset, a
    PyDataset or a list of batches."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        return data.as_numpy_iterator()
    if isinstance(data, keras.utils.PyDataset):
        return (data[index] for index in range(len(data)))
    return iter(data)


def _unpack(batch):
    if not isinstance(batch, (tuple, list)) or not isinstance(batch[0], dict):
        raise ValueError(
            "Batches must be `({'token_ids': ..., 'padding_mask': ...}, labels"
            "[, sample_weight])`, as keras-hub's CausalLMPreprocessor yields. "
            f"Received a batch of type {type(batch).__name__}."
        )
    x, y = batch[0], batch[1] if len(batch) > 1 else None
    weight = batch[2] if len(batch) > 2 else None
    if "token_ids" not in x:
        raise ValueError(
            f"The inputs of a batch must have 'token_ids'. Received keys: {sorted(x)}."
        )
    return x, y, weight


def _check_lengths(model, argument, prompt_length, max_new_tokens, sequence_length=None):
    for name, value in (("prompt_length", prompt_length), ("max_new_tokens", max_new_tokens)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}.")
    total = prompt_length + max_new_tokens
    limit = _max_sequence_length(model)
    if limit is not None and total > limit:
        raise ValueError(
            f"prompt_length + max_new_tokens = {prompt_length} + {max_new_tokens} = "
            f"{total} tokens is longer than the {argument}'s max_sequence_length "
            f"({limit}). Shorten the prompt or the continuation."
        )
    if sequence_length is not None and total > sequence_length:
        raise ValueError(
            f"prompt_length + max_new_tokens = {total} tokens does not fit the "
            f"batches' sequence length ({sequence_length}): generated batches must "
            "have the shape of the others. Use prompt_length + max_new_tokens <= "
            f"{sequence_length}."
        )


def _continue(model, role, x, prompt_length, max_new_tokens, width, sampler, functions, labels):
    """`((x, y, sample_weight), seconds)`: the batch `x`'s prompts continued by
    `model`, as `continuation_batch` lays them out in `width` columns, and the
    seconds generation took."""
    _check_lengths(model, role, prompt_length, max_new_tokens, width)
    ids, mask, lengths = _prompts(x, prompt_length, prompt_length + max_new_tokens)
    start = time.perf_counter()
    tokens = _generate_tokens(model, ids, mask, sampler, functions)
    seconds = time.perf_counter() - start
    return continuation_batch(tokens, lengths, max_new_tokens, width, labels=labels), seconds


class OnPolicyBatches(keras.utils.PyDataset):
    """GKD's mixture of data and the student's own continuations (on-policy KD).

    Generalized Knowledge Distillation (Agarwal et al. 2024) trains the student
    on sequences it generates itself, scored token by token by the teacher,
    so it learns from its own mistakes instead of only from the data
    (exposure bias). With probability `lmbda` (per batch, fixed by `seed`,
    `epoch` and the batch's index) a batch of the data is replaced by:
    the first `prompt_length` real tokens of each row, followed by
    `max_new_tokens` tokens the *current* student samples
    (`generate_tokens`); the Distiller's live teacher computes its logits on
    that batch in the step. Other batches pass through unchanged.

    A generated batch keeps the shape of the data's batches (padding after
    the continuation) and the `({"token_ids", "padding_mask"}, labels,
    sample_weight)` structure: every label is `-1` (the student's samples are
    no ground truth, so only the distillation terms see them), and
    `sample_weight` is 1 at the positions that predict a generated token, 0
    at those that predict a prompt token and at the padding. So a Distiller
    trains on the divergence over the student's continuation, as GKD does.

    Cost: generation runs outside the compiled step, one token at a time
    (KV-cached), at a fraction of the training throughput;
    `stats` counts the generated tokens and the seconds spent.

    Args:
        data: Batches of `(x, y, sample_weight)`: a `tf.data.Dataset` (of
            known, finite cardinality, or give `steps`), a
            `keras.utils.PyDataset` or a list.
        student: The student `keras_hub.models.CausalLM` (the one being
            distilled: it generates with its current weights).
        lmbda: Fraction of the batches that are generated, in [0, 1].
        prompt_length: Prompt tokens taken from each row.
        max_new_tokens: Tokens the student generates per row.
        sampler: How the student samples (see `generate_tokens`); defaults to
            `"random"`, its distribution at temperature 1, as in GKD.
        seed: Seed of the per-batch choice and of a sampler given by name.
        steps: Number of batches of `data`, when it cannot tell.
        **kwargs: `keras.utils.PyDataset`'s (`workers`, ...). Keep
            `workers=1`: generation is sequential and uses the student.

    Example:

    >>> import numpy as np, keras_hub
    >>> backbone = keras_hub.models.GPT2Backbone(
    ...     vocabulary_size=32, num_layers=1, num_heads=1, hidden_dim=8,
    ...     intermediate_dim=16, max_sequence_length=16)
    >>> student = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    >>> ids = np.arange(1, 25).reshape(2, 12) % 32
    >>> data = [({"token_ids": ids, "padding_mask": ids >= 0}, ids, np.ones((2, 12)))]
    >>> batches = OnPolicyBatches(data, student, lmbda=1.0, prompt_length=4,
    ...                           max_new_tokens=6, seed=0)
    >>> x, y, weight = batches[0]
    >>> x["token_ids"].shape, int(weight.sum()), int(y.max())
    ((2, 12), 12, -1)
    """

    def __init__(self, data, student, lmbda: float = 0.5, prompt_length: int = 32,
                 max_new_tokens: int = 32, sampler: Any = "random", seed: int = 0,
                 steps: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        _check_causal_lm(student, "student")
        if isinstance(lmbda, bool) or not isinstance(lmbda, (int, float)) or not 0.0 <= lmbda <= 1.0:
            raise ValueError(f"`lmbda` must be a number in [0, 1]. Received: lmbda={lmbda!r}.")
        _check_lengths(student, "student", prompt_length, max_new_tokens)
        self.data, self.student = data, student
        self.lmbda, self.prompt_length, self.max_new_tokens = float(lmbda), prompt_length, max_new_tokens
        self.seed = int(seed)
        self.sampler = _sampler(sampler, seed)
        self._functions = {}  # the student's traced generate function, kept across batches
        self._steps = self._count_steps(data, steps)
        self._epoch, self._iterator, self._next_index = 0, None, 0
        #: Generated batches and tokens, and the seconds spent generating.
        self.stats = {"generated_batches": 0, "generated_tokens": 0, "generation_seconds": 0.0}

    @staticmethod
    def _count_steps(data, steps):
        import tensorflow as tf

        if steps is not None:
            return int(steps)
        if isinstance(data, tf.data.Dataset):
            count = int(data.cardinality())
            if count < 0:
                raise ValueError(
                    "`data` is a tf.data.Dataset of unknown or infinite cardinality; "
                    "pass `steps=` (batches per epoch)."
                )
            return count
        return len(data)

    @property
    def num_batches(self) -> int:
        return self._steps

    def __len__(self) -> int:
        return self._steps

    def is_generated(self, index: int, epoch: Optional[int] = None) -> bool:
        """Whether batch `index` of `epoch` (default: the current one) is generated."""
        epoch = self._epoch if epoch is None else epoch
        return bool(np.random.default_rng([self.seed, epoch, index]).random() < self.lmbda)

    def _source(self, index: int):
        if isinstance(self.data, (list, tuple, keras.utils.PyDataset)):
            return self.data[index]
        # A stream: read in order (Keras asks for the indices in order).
        if self._iterator is None or index != self._next_index:
            self._iterator = _batches(self.data)
            for _ in range(index):
                next(self._iterator)
        self._next_index = index + 1
        return next(self._iterator)

    def __getitem__(self, index: int):
        x, y, weight = _unpack(self._source(index))
        if not self.is_generated(index):
            return self._as_batch(x, y, weight)
        batch, seconds = _continue(self.student, "student", x, self.prompt_length,
                                   self.max_new_tokens, np.shape(x["token_ids"])[1],
                                   self.sampler, self._functions, labels="none")
        self.stats["generation_seconds"] += seconds
        self.stats["generated_batches"] += 1
        self.stats["generated_tokens"] += int(len(batch[1]) * self.max_new_tokens)
        return batch

    @staticmethod
    def _as_batch(x, y, weight):
        """A data batch in the dtypes of a generated one (one trace of the step)."""
        token_ids = np.asarray(x["token_ids"], dtype="int32")
        mask = np.asarray(x.get("padding_mask", np.ones(token_ids.shape, bool)), dtype=bool)
        y = np.asarray(y, dtype="int32") if y is not None else np.full(token_ids.shape, UNLABELED, "int32")
        weight = mask.astype("float32") if weight is None else np.asarray(weight, dtype="float32")
        return {"token_ids": token_ids, "padding_mask": mask}, y, weight

    def on_epoch_end(self) -> None:
        self._epoch += 1
        self._iterator, self._next_index = None, 0


def sequence_level_dataset(teacher, data, prompt_length: int, max_new_tokens: int,
                           sampler: Any = "greedy", seed: int = 0,
                           batch_size: Optional[int] = None, verbose: int = 0):
    """Sequence-level KD data (Kim & Rush 2016): the teacher's continuations.

    For each batch of `data`, the first `prompt_length` real tokens of every
    row are continued by `max_new_tokens` tokens of the *teacher*
    (`generate_tokens`, greedy by default: an approximation of the teacher's
    mode, where Kim & Rush used beam search). The result is a dataset of
    `({"token_ids", "padding_mask"}, labels, sample_weight)` with the
    generated tokens as labels (weight 1) and the prompts unlabeled (weight
    0), to train the student on with its own loss (`student.fit`) or with a
    Distiller. Generation happens once, here, before training: the teacher
    is then out of the training loop, at the cost of one teacher generation
    per training sequence up front.

    Args:
        teacher: The teacher `keras_hub.models.CausalLM`.
        data: Batches of `(x, y, sample_weight)` (see `OnPolicyBatches`).
        prompt_length: Prompt tokens taken from each row.
        max_new_tokens: Tokens the teacher generates per row.
        sampler: See `generate_tokens`. Defaults to `"greedy"`.
        seed: Seed of a sampler given by name.
        batch_size: Batch size of the returned dataset; defaults to that of
            the first batch of `data`.
        verbose: 1 prints the generated tokens and tokens per second.

    Returns:
        A `tf.data.Dataset` of `(x, y, sample_weight)` batches, each of the
        first batch's sequence length.

    Example:

    >>> import numpy as np, keras_hub
    >>> backbone = keras_hub.models.GPT2Backbone(
    ...     vocabulary_size=32, num_layers=1, num_heads=1, hidden_dim=8,
    ...     intermediate_dim=16, max_sequence_length=16)
    >>> teacher = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    >>> ids = np.arange(1, 25).reshape(2, 12) % 32
    >>> data = [({"token_ids": ids, "padding_mask": ids >= 0}, ids, np.ones((2, 12)))]
    >>> ds = sequence_level_dataset(teacher, data, prompt_length=4, max_new_tokens=6)
    >>> x, y, weight = next(iter(ds))
    >>> tuple(y.shape), int(weight.numpy().sum()), int((y.numpy() >= 0).sum())
    ((2, 12), 12, 12)
    """
    import tensorflow as tf

    _check_causal_lm(teacher, "teacher")
    _check_lengths(teacher, "teacher", prompt_length, max_new_tokens)
    sampler = _sampler(sampler, seed)
    parts, generated, seconds, width, functions = [], 0, 0.0, None, {}
    for batch in _batches(data):
        x, _, _ = _unpack(batch)
        width = np.shape(x["token_ids"])[1] if width is None else width
        part, spent = _continue(teacher, "teacher", x, prompt_length, max_new_tokens, width,
                                sampler, functions, labels="generated")
        seconds += spent
        generated += len(part[1]) * max_new_tokens
        parts.append(part)
        batch_size = batch_size or len(part[1])
    if not parts:
        raise ValueError("`data` holds no batches.")
    if verbose:
        print(f"sequence_level_dataset: {generated:,} teacher tokens in {seconds:.1f} s "
              f"({generated / max(seconds, 1e-9):,.0f} tokens/s)")
    x = {key: np.concatenate([p[0][key] for p in parts]) for key in parts[0][0]}
    y = np.concatenate([p[1] for p in parts])
    weight = np.concatenate([p[2] for p in parts])
    return tf.data.Dataset.from_tensor_slices((x, y, weight)).batch(batch_size)
