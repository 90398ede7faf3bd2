"""What a step does with a batch's inputs before the terms see them.

Cached teacher logits separated from the student's inputs; the augmented
view that the teachers and the student share; the teachers' logits as
float32 (dense, or left in compact top-k form), with NaN/inf rows counted
and zeroed rather than asserted (asserts vanish under XLA).
"""

from typing import Optional

import keras
import tensorflow as tf
from keras import ops

from keras_kd.src import keras_compat
from keras_kd.src.augment import augment as augment_lib
from keras_kd.src.distiller import checks
from keras_kd.src.terms import divergences
from keras_kd.src.utils.keys import INPUTS_KEY, TEACHER_LOGITS_KEY


def split_inputs(inputs):
    """Separates student inputs from precomputed teacher logits.

    Example:

    >>> import numpy as np
    >>> x, logits = np.zeros((2, 4)), np.zeros((2, 3))
    >>> inputs, cached = split_inputs({INPUTS_KEY: x, TEACHER_LOGITS_KEY: logits})
    >>> inputs.shape, cached.shape
    ((2, 4), (2, 3))
    >>> split_inputs(x)[1] is None
    True
    """
    if isinstance(inputs, dict) and TEACHER_LOGITS_KEY in inputs:
        if INPUTS_KEY not in inputs:
            raise ValueError(
                f"Inputs that carry '{TEACHER_LOGITS_KEY}' must put the "
                f"student's inputs under '{INPUTS_KEY}'. Received keys: "
                f"{sorted(inputs)}."
            )
        return inputs[INPUTS_KEY], inputs[TEACHER_LOGITS_KEY]
    return inputs, None


def teacher_logits(teachers: list, teacher_outputs: str, student_inputs, cached_logits):
    """`(logits, problems)`: the teachers' logits for this batch, as a list
    of float32 tensors, and `{"nonfinite_teacher": n, "not_probabilities":
    m}`, the examples whose outputs were NaN/inf (their logits are
    zeroed) or, for `teacher_outputs="probabilities"`, not probabilities.
    """
    if cached_logits is not None:
        outputs = cached_logits if isinstance(cached_logits, (list, tuple)) else [cached_logits]
        if any(divergences.is_top_k(o) for o in outputs):
            return top_k_teacher_logits(outputs, teacher_outputs)
    elif teachers:
        outputs = [teacher(student_inputs, training=False) for teacher in teachers]
    else:
        raise ValueError(
            "This distiller has no teacher (teacher=None), so every "
            f"training batch must bring teacher logits as "
            f"`{{'{INPUTS_KEY}': x, '{TEACHER_LOGITS_KEY}': logits}}`; "
            "see `keras_kd.cache_teacher_outputs`."
        )
    outputs = [ops.cast(ops.stop_gradient(o), "float32") for o in outputs]
    probabilities = teacher_outputs == "probabilities"
    outputs, nonfinite, not_probabilities = checks.sanitize_teacher_outputs(
        outputs, probabilities
    )
    if probabilities:
        # log-probabilities are valid logits: softmax(log p) == p.
        outputs = [ops.log(ops.maximum(o, 1e-30)) for o in outputs]
    return outputs, {"nonfinite_teacher": nonfinite, "not_probabilities": not_probabilities}


def top_k_teacher_logits(outputs: list, teacher_outputs: str):
    """Cached teacher logits in top-k form (`{"values", "indices",
    "tail"}`), left compact: the soft-target term rebuilds them chunk by
    chunk. A row with a non-finite value is counted and zeroed."""
    if teacher_outputs == "probabilities" or not all(
        divergences.is_top_k(o) for o in outputs
    ):
        raise ValueError(
            "Top-k cached teacher logits ({'values', 'indices', 'tail'}) "
            "must be logits, and every cached teacher must use that form. "
            f"Received teacher_outputs={teacher_outputs!r} and cached "
            f"outputs of types {[type(o).__name__ for o in outputs]}."
        )
    safe, bad_rows = [], None
    for output in outputs:
        values = ops.cast(ops.stop_gradient(output["values"]), "float32")
        tail = ops.cast(ops.stop_gradient(output["tail"]), "float32")
        bad = ops.logical_or(
            ops.any(ops.logical_not(ops.isfinite(values)), axis=-1),
            ops.logical_not(ops.isfinite(tail)),
        )
        bad_rows = bad if bad_rows is None else ops.logical_or(bad_rows, bad)
        safe.append({"values": values, "indices": output["indices"], "tail": tail})
    for output in safe:
        output["values"] = ops.where(bad_rows[..., None], 0.0, output["values"])
        output["tail"] = ops.where(bad_rows, 0.0, output["tail"])
    zero = ops.zeros((), "float32")
    nonfinite = ops.sum(ops.cast(bad_rows, "float32"))
    return safe, {"nonfinite_teacher": nonfinite, "not_probabilities": zero}


AUGMENTED_CACHE_MESSAGE = (
    "`augmentation` cannot be used with precomputed teacher logits: they were "
    "computed on other views of the inputs, so the teacher and the student "
    "would see different images. Received: augmentation={!r} and batches "
    "with '" + TEACHER_LOGITS_KEY + "'. Either drop `augmentation` and cache "
    "augmented views (`cache_teacher_outputs(..., views=K, augment=fn)`, "
    "replayed by `load_teacher_cache(..., augment=fn)`), or train with a live "
    "teacher."
)


def check_augmented(original, augmented) -> None:
    """Raises unless the augmented batch has the structure and shape of the original."""
    try:
        keras.tree.assert_same_structure(original, augmented)
    except (ValueError, TypeError):
        raise ValueError(
            "`augmentation` must return inputs of the same structure as it "
            f"receives. Received {original!r}, returned {augmented!r}."
        ) from None
    for before, after in zip(keras.tree.flatten(original), keras.tree.flatten(augmented)):
        dtype = keras.backend.standardize_dtype(after.dtype)
        if dtype in ("string", "bool"):
            raise ValueError(
                "`augmentation` must return numeric inputs. Received a "
                f"batch of dtype {keras.backend.standardize_dtype(before.dtype)}, "
                f"returned dtype {dtype}."
            )
        if len(before.shape) != len(after.shape) or any(
            a is not None and b is not None and a != b
            for a, b in zip(before.shape, after.shape)
        ):
            raise ValueError(
                "`augmentation` must keep the batch size and the shape of each "
                "example, since the teacher and the student take the augmented "
                f"batch as input. Received a batch of shape {tuple(before.shape)}, "
                f"returned shape {tuple(after.shape)}."
            )


def augmented_view(augmentation, student_inputs, cached_logits):
    """The training view of a batch: `(inputs, mixing or None)`."""
    if cached_logits is not None:
        raise ValueError(AUGMENTED_CACHE_MESSAGE.format(augmentation))
    augmented, mixing = augment_lib.apply_augmentation(augmentation, student_inputs)
    check_augmented(student_inputs, augmented)
    return augmented, mixing


def static_batch_size(x, batch_size) -> Optional[int]:
    """The global batch size of `fit`/`evaluate` input, when it is known."""
    if isinstance(x, tf.data.Dataset):
        spec = tf.nest.flatten(x.element_spec)[0]
        if getattr(spec, "shape", None) is not None and spec.shape.rank:
            if spec.shape[0] is not None:
                return int(spec.shape[0])
        try:
            # tf.data's own helper, used by tf.distribute to rebatch input.
            size = keras_compat.dataset_batch_size(x)
        except Exception:  # an input it cannot analyse: nothing to check
            return None
        return size if size > 0 else None
    if batch_size is not None:
        return int(batch_size)
    return None
