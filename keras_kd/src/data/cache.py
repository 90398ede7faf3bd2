"""Cached teacher outputs: run the teachers once, distil many times.

On CPU a live teacher often costs several times the student's own training
step. `cache_teacher_outputs` runs the teacher(s) once over a dataset and
streams their logits to a single file; `load_teacher_cache` returns a
`tf.data.Dataset` of `({"inputs": x, "teacher_logits": logits}, y)` batches,
on which a `Distiller` trains without calling any teacher.

File format (one file, little-endian):

    bytes 0-7    magic b"KDCACHE1"
    bytes 8-15   header length H (uint64)
    16 .. 16+H   JSON header, padded with spaces (teacher names, class count,
                 example count, dtype, top-k, views, fingerprints, checksum)
    data_offset  `example_count` fixed-size records, one per example, read
                 with `numpy.memmap`

A record holds, for each of `views` augmented views and each teacher, either
the full logits (`top_k=None`) or the `k` largest logits, their class indices
and one *tail logit* (below). Records are written batch by batch, so writing
never holds more than one batch of outputs in memory; the file is written
under a temporary name and renamed when complete, so an interrupted run never
leaves a file that looks finished.

Top-k outputs (FKD-style). For logits `z` with top-k set `K` over `C` classes,
the tail logit is `u = logsumexp(z[j] for j not in K) - log(C - k)`. The
rebuilt logits are `z[i]` for `i` in `K` and `u` everywhere else, so at `T = 1`
the rebuilt distribution gives every top-k class its exact probability and
spreads the remaining mass uniformly over the other `C - k` classes.
Temperature is applied to the rebuilt logits (`softmax(rebuilt / T)`): the
top-k classes keep their exact relative odds at any `T`, but the tail, being
one repeated logit, holds slightly less tempered mass for `T > 1` than the
true, uneven tail would (Jensen's inequality). Storing more classes shrinks
that gap; `top_k=None` stores everything.

Augmented views (Beyer et al. 2022, "consistent teaching"): a cached output is
only right for the exact input it was computed on. With
`augment=fn, views=K`, view `v` of example `i` is `fn(x_i, seed)` with a
stateless seed derived from `(seed, i, v)`; the loader replays the same
function with the same seed, so student and teacher see the same view. The
trade-off: the student sees only `K` distinct views per example instead of a
fresh one every epoch (Beyer et al. found fresh views, i.e. a live teacher,
best for long schedules), and the file grows linearly in `K`; in exchange the
teacher runs once instead of every epoch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO, Callable, NamedTuple, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd.src.data import cache_format
from keras_kd.src.terms import divergences
from keras_kd.src.utils import arguments, keys
from keras_kd.src.utils.io_utils import check_verbose as _check_verbose
from keras_kd.src.utils.keys import INPUTS_KEY, TEACHER_LOGITS_KEY

MAGIC = b"KDCACHE1"
#: 2: the dataset fingerprint covers every example (version 1 hashed only
#: the first 256, so it missed reordered or replaced later examples).
FORMAT_VERSION = 2
TEACHER_OUTPUTS = keys.OUTPUT_KINDS
#: Batch size at which `load_teacher_cache` streams a `tf.data.Dataset` `x`
#: through the fingerprint.
_FINGERPRINT_BATCH = 1024

PathLike = Union[str, os.PathLike]


# ---------------------------------------------------------------- inputs


_teacher_list = arguments.model_list


def _example_dataset(data, argument: str, labels=None):
    """Returns `(examples, count, has_labels, arrays)` from arrays or a
    `tf.data.Dataset` of single examples `x`, `(x,)`, `(x, y)`, `(x, y, w)`.

    `examples` is a dataset of single `(x, y)` examples (`y` is 0 without
    labels), `count` their number (None when unknown) and `arrays` the
    `(x, y)` arrays (None for a `tf.data.Dataset`).
    """
    if isinstance(data, tf.data.Dataset):
        if labels is not None:
            raise ValueError(
                f"When `{argument}` is a `tf.data.Dataset`, labels come from "
                f"the dataset; do not pass `y`. Received: y of type "
                f"{type(labels).__name__}."
            )
        spec = data.element_spec
        has_labels = isinstance(spec, tuple) and len(spec) >= 2
        if isinstance(spec, tuple):
            dataset = data.map(lambda *e: (e[0], e[1]) if len(e) >= 2 else (e[0], 0))
        else:
            dataset = data.map(lambda e: (e, 0))
        cardinality = int(data.cardinality())
        count = cardinality if cardinality >= 0 else None
        return dataset, count, has_labels, None
    if isinstance(data, tuple) and labels is None and 1 <= len(data) <= 3:
        data, labels = data[0], (data[1] if len(data) >= 2 else None)
    flat = tf.nest.flatten(data)
    if not flat or not all(isinstance(a, (np.ndarray, tf.Tensor)) or hasattr(a, "__array__") for a in flat):
        raise TypeError(
            f"`{argument}` must be a numpy array (or a dict/tuple of arrays) or "
            "a `tf.data.Dataset` of single examples. Received: "
            f"{argument} of type {type(data).__name__}."
        )
    count = len(flat[0])
    if labels is not None and len(labels) != count:
        raise ValueError(
            f"`{argument}` and `y` must have the same number of examples. "
            f"Received: {count} inputs and {len(labels)} labels."
        )
    arrays = (data, labels if labels is not None else np.zeros(count, "int32"))
    return tf.data.Dataset.from_tensor_slices(arrays), count, labels is not None, arrays


def _input_fingerprint(examples, arrays=None) -> cache_format.InputFingerprint:
    """The fingerprint of every input: from the arrays directly when there
    are arrays, else streamed from the dataset of `(x, y)` examples."""
    fingerprint = cache_format.InputFingerprint()
    if arrays is not None:
        fingerprint.update(tf.nest.map_structure(np.asarray, arrays[0]))
        return fingerprint
    inputs = examples.map(lambda x, y: x)
    fixed = all(spec.shape.is_fully_defined() for spec in tf.nest.flatten(inputs.element_spec))
    if fixed:
        for batch in inputs.batch(_FINGERPRINT_BATCH).as_numpy_iterator():
            fingerprint.update(batch)
    else:  # examples of varying shapes cannot be batched
        for example in inputs.as_numpy_iterator():
            fingerprint.update(tf.nest.map_structure(lambda a: np.asarray(a)[None], example))
    return fingerprint


def _augment_name(augment) -> Optional[str]:
    if augment is None:
        return None
    return f"{getattr(augment, '__module__', '')}.{getattr(augment, '__qualname__', type(augment).__name__)}"


def _view_seed(seed, index, view, views: int):
    """The stateless seed of view `view` of example `index`."""
    return tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64) * views + tf.cast(view, tf.int64)])


def _apply_augment(augment, x, seed, index, view, views: int):
    return augment(x, seed=_view_seed(seed, index, view, views))


_check_int = arguments.integer


# ---------------------------------------------------------------- layout


def record_dtype(
    num_classes: int,
    top_k: Optional[int] = None,
    dtype: str = "float32",
    views: int = 1,
    num_teachers: int = 1,
) -> np.dtype:
    """The numpy structured dtype of one example's record in a cache file."""
    return cache_format.record_layout(num_classes, top_k, dtype, (views, num_teachers))


def cache_storage_bytes(
    num_examples: int,
    num_classes: int,
    top_k: Optional[int] = None,
    dtype: str = "float32",
    views: int = 1,
    num_teachers: int = 1,
) -> int:
    """Bytes of teacher outputs a cache stores (without its small header).

    Example:

    >>> cache_storage_bytes(1_281_167, 1000) / 1e9  # ImageNet, float32
    5.124668
    >>> cache_storage_bytes(1_281_167, 1000, top_k=5) / 1e6  # 5 values, 5 uint16, 1 tail
    43.559678
    """
    itemsize = record_dtype(num_classes, top_k, dtype, views, num_teachers).itemsize
    return int(num_examples) * itemsize


def rebuild_top_k_logits(values, indices, tail_logits, num_classes: int):
    """Full logits from top-k logits, their class indices and the tail logit.

    Class `indices[..., j]` gets `values[..., j]`; every other class gets
    `tail_logits` (see the module docstring: at `T = 1` the softmax of the
    result gives the top-k classes their exact probabilities and spreads the
    rest uniformly).

    Args:
        values: `(..., k)` top-k logits.
        indices: `(..., k)` their class indices.
        tail_logits: `(...)` one tail logit per row.
        num_classes: Number of classes `C > k`.

    Returns:
        A float32 `(..., C)` tensor.

    Example:

    >>> import numpy as np
    >>> logits = rebuild_top_k_logits(np.array([[3.0]]), np.array([[2]]),
    ...                               np.array([0.5]), num_classes=4)
    >>> keras.ops.convert_to_numpy(logits).tolist()
    [[0.5, 0.5, 3.0, 0.5]]
    """
    return divergences.rebuild_top_k(values, indices, tail_logits, num_classes)


# ---------------------------------------------------------------- writing


def cache_teacher_outputs(
    teacher_or_teachers: Union[keras.Model, Sequence[keras.Model]],
    dataset,
    path: PathLike,
    top_k: Optional[int] = None,
    dtype: str = "float32",
    views: int = 1,
    augment: Optional[Callable] = None,
    seed: int = 0,
    batch_size: int = 256,
    teacher_outputs: str = "logits",
    verbose: Union[str, int] = "auto",
) -> dict:
    """Runs the teacher(s) once over `dataset` and streams the logits to `path`.

    Args:
        teacher_or_teachers: A trained `keras.Model` or a list of them; each
            teacher's outputs are stored separately, so the distiller's
            `teacher_weights`, `temperature` and `teacher_reduction` still
            apply at training time.
        dataset: Inputs as a numpy array (or dict of arrays), a tuple
            `(x, y)`, or a `tf.data.Dataset` of *single examples* `x` or
            `(x, y)` (call `.unbatch()` on a batched one). Pass the same
            inputs, in the same order, to `load_teacher_cache`.
        path: File to write. Its directory must exist. An earlier cache
            (or an empty file) there is replaced; any other file is refused,
            and so is a directory. The file is written under a unique
            temporary name next to it and renamed over `path` when complete,
            so concurrent writers never mix their records.
        top_k: `None` stores all logits; an integer `k` in `[1, C)` stores
            the `k` largest logits, their indices and one tail logit.
        dtype: Storage dtype of the logits, `"float32"` or `"float16"`.
        views: Number of augmented views cached per example. Views above 1
            need `augment`.
        augment: `None`, or `fn(x, seed) -> x` applied to one example with a
            `(2,)` int64 stateless seed (use `tf.image.stateless_*` /
            `tf.random.stateless_*` ops so the view can be replayed).
        seed: Base seed of the augmented views.
        batch_size: Examples per teacher call.
        teacher_outputs: `"logits"` (default) or `"probabilities"` for
            teachers ending in a softmax; their log-probabilities are stored
            (valid logits, since `softmax(log p) == p`).
        verbose: `"auto"` (default, means 1), 0 (silent), 1 (a
            `keras.utils.Progbar` over the teacher batches) or 2 (one line
            when done), as in `keras.Model.fit`.

    Raises:
        ValueError: Before the teacher pass, for a `path` that cannot hold a
            cache. During it, when a teacher returns NaN or inf (the error
            names the teacher and the examples), or when a logit does not
            fit `dtype` (`"float16"` holds at most 65504 in magnitude); no
            file is left behind.

    The dataset fingerprint stored in the header covers every input, so
    `load_teacher_cache` refuses other data, another size and another order.

    Returns:
        The file's header (a dict), including `example_count` and
        `data_bytes`.

    Example:

    >>> import numpy as np, tempfile, os
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x = np.random.rand(10, 4).astype("float32")
    >>> path = os.path.join(tempfile.mkdtemp(), "teacher.kdcache")
    >>> header = cache_teacher_outputs(teacher, x, path, top_k=2, verbose=0)
    >>> header["example_count"], header["num_classes"], header["top_k"]
    (10, 3, 2)
    """
    # Arguments and path first: a bad one fails before the teacher pass.
    teachers = _teacher_list(teacher_or_teachers, "teacher_or_teachers")
    views, batch_size, seed = _check_writer_arguments(
        dtype, teacher_outputs, views, batch_size, seed, augment
    )
    verbose = _check_verbose(verbose)
    path = cache_format.check_cache_path(path, magic=MAGIC)
    cache_format.check_finite_dataset(dataset, "dataset")
    examples, count_hint = _example_dataset(dataset, "dataset")[:2]
    batches = _teacher_input_batches(examples, augment, views, seed, batch_size)

    # The record layout depends on the class count, which only a teacher
    # call tells.
    num_classes = _teacher_class_count(teachers, examples)
    top_k = _check_class_top_k(top_k, num_classes)
    layout = record_dtype(num_classes, top_k, dtype, views, len(teachers))
    summarize = _teacher_batch_summarizer(
        teachers, batches.element_spec, augment is not None, views, top_k, num_classes,
        teacher_outputs,
    )
    header = _planned_header(
        teachers, teacher_outputs, num_classes, dtype, top_k, views, augment, seed, layout
    )

    steps = None if count_hint is None else -(-count_hint // batch_size)
    progbar = keras.utils.Progbar(steps, verbose=verbose, unit_name="step")
    with cache_format.partial_cache_file(path, MAGIC, header["data_offset"]) as file:
        written = _write_teacher_records(
            file, batches, summarize, layout, header["teacher_names"], dtype,
            augment is not None, progbar,
        )
        header.update(
            example_count=written.count,
            data_bytes=written.count * layout.itemsize,
            data_checksum=written.checksum,
            input_fingerprint=written.input_fingerprint,
        )
        cache_format.write_header(file, header, header["data_offset"], MAGIC)
    cache_format.finish_progbar(progbar, written.steps)
    return header


def _check_writer_arguments(
    dtype: str,
    teacher_outputs: str,
    views: int,
    batch_size: int,
    seed: int,
    augment: Optional[Callable],
) -> tuple[int, int, int]:
    """The checked `(views, batch_size, seed)` of `cache_teacher_outputs`.

    Everything that needs neither the teachers nor the data is refused here,
    before the (possibly long) teacher pass starts.
    """
    if dtype not in cache_format.STORAGE_DTYPES:
        raise ValueError(
            f"`dtype` must be one of {cache_format.STORAGE_DTYPES}. Received: dtype={dtype!r}."
        )
    if teacher_outputs not in TEACHER_OUTPUTS:
        raise ValueError(
            f"`teacher_outputs` must be one of {TEACHER_OUTPUTS}. "
            f"Received: teacher_outputs={teacher_outputs!r}."
        )
    views = _check_int(views, "views", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    seed = _check_int(seed, "seed", 0)
    if augment is not None and not callable(augment):
        raise TypeError(
            f"`augment` must be a function `fn(x, seed) -> x` or None. "
            f"Received: augment={augment!r}."
        )
    if views > 1 and augment is None:
        raise ValueError(
            f"`views={views}` needs an `augment` function: without one every "
            "view would be the same input."
        )
    return views, batch_size, seed


def _teacher_input_batches(
    examples: tf.data.Dataset,
    augment: Optional[Callable],
    views: int,
    seed: int,
    batch_size: int,
) -> tf.data.Dataset:
    """Batches of what the teacher pass reads from `(x, y)` examples: `x`,
    or with `augment`, `(x, stacked views)`, the views `(batch, views, ...)`.
    """

    def with_views(index, example):
        x = example[0]
        if augment is None:
            return x
        copies = [_apply_augment(augment, x, seed, index, v, views) for v in range(views)]
        # The raw inputs travel along for the dataset fingerprint.
        return x, tf.nest.map_structure(lambda *a: tf.stack(a), *copies)

    # The example index seeds each view, so views are the same however the
    # dataset is batched (and the loader can replay them).
    return (
        tf.data.Dataset.zip((tf.data.Dataset.range(2**62), examples))
        .map(with_views, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def _teacher_class_count(teachers: list, examples: tf.data.Dataset) -> int:
    """The number of classes every teacher outputs, from one call on the
    first example (raises for an empty dataset or disagreeing teachers)."""
    first = next(iter(examples.take(1)), None)
    if first is None:
        raise ValueError("`dataset` is empty: there is nothing to cache.")
    # Ask the teachers themselves: subclassed models declare no output shape.
    first_x = tf.nest.map_structure(lambda a: a[None], first[0])
    shapes = [tuple(model(first_x, training=False).shape) for model in teachers]
    classes = {shape[-1] for shape in shapes}
    if len(classes) != 1 or any(len(shape) != 2 for shape in shapes):
        raise ValueError(
            "Every teacher must output `(batch, classes)` logits with the same "
            f"number of classes. Received output shapes: {shapes} for teachers "
            f"{[model.name for model in teachers]}."
        )
    return classes.pop()


def _check_class_top_k(top_k, num_classes: int) -> Optional[int]:
    """`top_k` as an int (or None); its bound is only known once the
    teachers have given their class count."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k < num_classes:
        raise ValueError(
            f"`top_k` must be None or an integer in [1, {num_classes}) for a "
            f"teacher with {num_classes} classes (use top_k=None to store "
            f"all of them). Received: top_k={top_k!r}."
        )
    return int(top_k)


def _teacher_batch_summarizer(
    teachers: list,
    element_spec,
    augmented: bool,
    views: int,
    top_k: Optional[int],
    num_classes: int,
    teacher_outputs: str,
) -> Callable:
    """A `tf.function` from one element of `_teacher_input_batches` to
    `(record fields, finite)`: the fields `(batch, views, teachers, ...)`,
    `finite` `(batch, teachers)`, true where every view's outputs are finite.
    """

    # One trace for every batch size, the last partial batch included.
    @tf.function(input_signature=[element_spec])
    def summarize(element):
        x = element if not augmented else element[1]
        # (batch, views, ...) -> (batch * views, ...) for the teachers.
        flat = x if not augmented else tf.nest.map_structure(
            lambda a: tf.reshape(a, tf.concat([[-1], tf.shape(a)[2:]], 0)), x
        )
        outputs, finite = [], []
        for model in teachers:
            out = tf.cast(model(flat, training=False), tf.float32)
            finite.append(tf.reduce_all(tf.math.is_finite(out), axis=-1))
            if teacher_outputs == "probabilities":
                out = tf.math.log(tf.maximum(out, 1e-30))
            outputs.append(out)
        stacked = tf.stack(outputs, axis=1)  # (batch * views, teachers, C)
        fields = cache_format.summarize_outputs(stacked, top_k, num_classes)
        fields = {
            name: tf.reshape(value, tf.concat([[-1, views], tf.shape(value)[1:]], 0))
            for name, value in fields.items()
        }
        # (batch, teachers): every view of the example is finite.
        finite = tf.reduce_all(tf.reshape(tf.stack(finite, axis=1), [-1, views, len(teachers)]), axis=1)
        return fields, finite

    return summarize


#: The header entries only known after the teacher pass: `header_room`
#: reserves room for their largest values.
_GROWING = ("example_count", "data_bytes", "data_offset")


def _planned_header(
    teachers: list,
    teacher_outputs: str,
    num_classes: int,
    dtype: str,
    top_k: Optional[int],
    views: int,
    augment: Optional[Callable],
    seed: int,
    layout: np.dtype,
) -> dict:
    """The header before the teacher pass: counts, checksum and input
    fingerprint are placeholders, `data_offset` is final (the records start
    there whatever the counts turn out to be)."""
    header = {
        "format_version": FORMAT_VERSION,
        "teacher_names": [model.name for model in teachers],
        "teacher_fingerprint": cache_format.teacher_fingerprint(teachers),
        "teacher_outputs": teacher_outputs,
        "num_teachers": len(teachers),
        "num_classes": int(num_classes),
        "example_count": 0,
        "dtype": dtype,
        "top_k": top_k,
        "views": views,
        "augment": _augment_name(augment),
        "seed": seed,
        "input_fingerprint": "0" * 32,  # filled in after the pass
        "record_bytes": layout.itemsize,
        "data_bytes": 0,
        "data_offset": 0,
        "data_checksum": "0" * 32,
    }
    header["data_offset"] = cache_format.header_room(header, _GROWING)
    return header


class _WrittenRecords(NamedTuple):
    """What the teacher pass learnt about the data it wrote."""

    count: int  # examples
    steps: int  # batches
    checksum: str  # of the record bytes
    input_fingerprint: str  # of every input, in order


def _write_teacher_records(
    file: BinaryIO,
    batches: tf.data.Dataset,
    summarize: Callable,
    layout: np.dtype,
    names: list,
    dtype: str,
    augmented: bool,
    progbar: keras.utils.Progbar,
) -> _WrittenRecords:
    """The teacher pass: runs `summarize` batch by batch and appends the
    records to `file`, checking each batch before it is written, so memory
    holds one batch of outputs and a bad output stops the pass at once."""
    digest = hashlib.blake2b(digest_size=16)
    fingerprint = cache_format.InputFingerprint()
    count = step = 0
    for element in batches:
        fingerprint.update(tf.nest.map_structure(
            lambda t: t.numpy(), element if not augmented else element[0]
        ))
        fields, finite = summarize(element)
        _check_teacher_outputs(finite.numpy(), count, names)
        records = cache_format.records_from_fields(fields, layout)
        _check_stored_outputs(records, layout, count, names, dtype)
        cache_format.write_checksummed(file, digest, records)
        count += len(records)
        step += 1
        progbar.update(step, finalize=False)
    return _WrittenRecords(count, step, digest.hexdigest(), fingerprint.hexdigest())


def _check_teacher_outputs(finite: np.ndarray, offset: int, names: list) -> None:
    """Raises when a teacher returned NaN or inf: stored, it would turn the
    student's loss and gradients into NaN at training time."""
    if finite.all():
        return
    teacher = int(np.argmin(finite.all(axis=0)))
    bad = offset + np.flatnonzero(~finite[:, teacher])
    raise ValueError(
        f"Teacher {names[teacher]!r} returned non-finite outputs (NaN or inf) for "
        f"{len(bad)} example(s) of dataset index {cache_format.index_ranges(bad)} (the batch of "
        f"examples {offset}..{offset + len(finite) - 1}). Nothing was cached: a NaN "
        "or inf teacher output makes the distillation loss and the student's "
        "gradients NaN. Check the teacher and these inputs (e.g. "
        "`np.isfinite(teacher.predict(x[i:i+1]))`)."
    )


def _check_stored_outputs(records: np.ndarray, layout: np.dtype, offset: int,
                          names: list, dtype: str) -> None:
    """Raises when a (finite) output became inf or NaN in the storage dtype."""
    bad = np.zeros((len(records), len(names)), bool)
    for name in layout.names:
        if name == "indices":
            continue
        values = records[name]  # (batch, views, teachers[, k or C])
        axes = (1,) + tuple(range(3, values.ndim))
        bad |= ~np.isfinite(values).all(axis=axes)
    if not bad.any():
        return
    teacher = int(np.argmax(bad.any(axis=0)))
    rows = offset + np.flatnonzero(bad[:, teacher])
    limit = float(np.finfo(dtype).max)
    hint = (" Use dtype='float32', which holds them." if dtype == "float16" else "")
    raise ValueError(
        f"Teacher {names[teacher]!r} returned outputs beyond the range of "
        f"dtype={dtype!r} (|x| > {limit:g}) for {len(rows)} example(s) of dataset "
        f"index {cache_format.index_ranges(rows)}; stored, they would become inf or NaN. "
        f"Nothing was cached.{hint}"
    )


# ---------------------------------------------------------------- reading


class _OldFormatError(Exception):
    """A cache of format version 1 (raised and caught inside `TeacherCache`)."""


class TeacherCache:
    """A cache file opened for reading (memory-mapped).

    Opening checks the magic bytes, the header, the file size (a truncated
    file is rejected) and, with `verify=True`, the checksum of every stored
    byte (a corrupted file is rejected).

    Args:
        path: A file written by `cache_teacher_outputs`.
        verify: Check the data checksum. Defaults to `True`.

    Example:

    >>> import numpy as np, tempfile, os
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x = np.random.rand(10, 4).astype("float32")
    >>> path = os.path.join(tempfile.mkdtemp(), "teacher.kdcache")
    >>> _ = cache_teacher_outputs(teacher, x, path, verbose=0)
    >>> cache = TeacherCache(path)
    >>> cache.teacher_logits([0, 1]).shape  # (examples, teachers, classes)
    (2, 1, 3)
    """

    def __init__(self, path: PathLike, verify: bool = True):
        self.path = Path(path)
        try:
            self.header = header = cache_format.read_header(
                self.path, MAGIC, "teacher cache", FORMAT_VERSION, self._check_header)
        except _OldFormatError:
            raise ValueError(
                f"Teacher cache {str(path)!r} was written by an earlier "
                "keras-kd (cache format version 1), whose dataset fingerprint "
                "covers only the first 256 examples, so it cannot tell whether "
                "`x` is the dataset the cache was built from, in the same "
                f"order. Expected format version {FORMAT_VERSION}: rebuild it "
                "with `cache_teacher_outputs`."
            ) from None
        size = self.path.stat().st_size
        expected = header["data_offset"] + header["data_bytes"]
        if size != expected:
            raise ValueError(
                f"Teacher cache {str(path)!r} is {size} bytes, but its header "
                f"promises {expected} ({header['example_count']} examples of "
                f"{self.layout.itemsize} bytes): the file is truncated or "
                "corrupted. Rebuild it with `cache_teacher_outputs`."
            )
        if verify:
            self._verify_checksum()
        self._records = np.memmap(
            self.path, dtype=self.layout, mode="r",
            offset=header["data_offset"], shape=(header["example_count"],),
        )

    def _check_header(self, header: dict, room: int) -> bool:
        """Whether the header's record layout, counts and offset agree (and
        sets `self.layout`); raises `_OldFormatError` for format version 1."""
        if isinstance(header, dict) and header.get("format_version") == 1:
            raise _OldFormatError(str(self.path))
        self.layout = record_dtype(
            header["num_classes"], header["top_k"], header["dtype"],
            header["views"], header["num_teachers"],
        )
        return (
            header["format_version"] == FORMAT_VERSION
            and header["record_bytes"] == self.layout.itemsize
            and header["data_bytes"] == header["example_count"] * self.layout.itemsize
            and header["data_offset"] == cache_format.PREFIX + room
        )

    def _verify_checksum(self) -> None:
        digest = cache_format.file_digest(
            self.path, self.header["data_offset"], self.header["data_bytes"])
        if digest != self.header["data_checksum"]:
            raise ValueError(
                f"Teacher cache {str(self.path)!r} is corrupted: the checksum of "
                f"its data is {digest}, the header says "
                f"{self.header['data_checksum']}. Rebuild it with "
                "`cache_teacher_outputs`."
            )

    def __len__(self) -> int:
        return self.header["example_count"]

    @property
    def num_classes(self) -> int:
        """Number of classes the teachers output."""
        return self.header["num_classes"]

    @property
    def num_teachers(self) -> int:
        """Number of teachers whose outputs are stored."""
        return self.header["num_teachers"]

    @property
    def views(self) -> int:
        """Number of augmented views stored per example (1 without augmentation)."""
        return self.header["views"]

    @property
    def top_k(self) -> Optional[int]:
        """Number of largest logits stored per example, or `None` for all."""
        return self.header["top_k"]

    def stored_fields(self, indices, views=0) -> dict:
        """The stored arrays of examples `indices` (view `views`, a scalar or
        one view per example), as float32 / int32 numpy arrays shaped
        `(examples, teachers, ...)`.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(
                f"Example index out of range for a cache of {len(self)} "
                f"examples: got indices in [{indices.min()}, {indices.max()}]. "
                "The dataset has more examples than the cache was built from."
            )
        views = np.broadcast_to(np.asarray(views, dtype=np.int64), indices.shape)
        rows = self._records[indices]
        rows_axis = np.arange(len(indices))
        fields = {}
        for name in self.layout.names:
            value = rows[name][rows_axis, views]
            fields[name] = value.astype("int32" if name == "indices" else "float32")
        return fields

    def teacher_logits(self, indices, views=0) -> np.ndarray:
        """Full float32 logits `(examples, teachers, classes)` (rebuilt from
        top-k when the cache stores top-k)."""
        fields = self.stored_fields(indices, views)
        if self.top_k is None:
            return fields["logits"]
        return ops.convert_to_numpy(
            rebuild_top_k_logits(
                fields["values"], fields["indices"], fields["tail"], self.num_classes
            )
        )


def read_teacher_cache_header(path: PathLike) -> dict:
    """The header of a cache file (checks its size, not its checksum)."""
    return TeacherCache(path, verify=False).header


def load_teacher_cache(
    path: PathLike,
    x,
    y=None,
    batch_size: int = 32,
    shuffle: bool = True,
    seed: Optional[int] = None,
    view: Union[str, int] = "random",
    augment: Optional[Callable] = None,
    teacher: Union[keras.Model, Sequence[keras.Model], None] = None,
    shuffle_buffer: Optional[int] = None,
    verify: bool = True,
    drop_remainder: bool = False,
    in_memory: Optional[bool] = None,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` that trains a `Distiller` from cached teacher logits.

    Batches are `({"inputs": x, "teacher_logits": logits}, y)` (or the dict
    alone when there are no labels); `logits` is a `(batch, classes)` float32
    tensor, or a tuple of them for several teachers. The distiller uses them
    instead of calling a teacher; build it with `teacher=None` (and, for
    several teachers, their `teacher_weights`).

    Before anything trains, the loader checks that `x` is the dataset the
    cache was built from (example count and a fingerprint of every example,
    in order: one pass over `x`, about a second per gigabyte of inputs),
    that `augment` is the function the views were made with, that
    `teacher` (if given) is the cached teacher, and the file's integrity.

    Args:
        path: A file written by `cache_teacher_outputs`.
        x: The same inputs, in the same order, as given to
            `cache_teacher_outputs` (numpy arrays, or a `tf.data.Dataset` of
            single examples `x` or `(x, y)`).
        y: Labels, when `x` is an array. Use `keras_kd.UNLABELED` (-1) for
            unlabeled examples.
        batch_size: Examples per batch.
        shuffle: Reshuffle the examples every epoch.
        seed: Seed of the shuffle and of the view sampling.
        view: With several cached views: `"random"` (a fresh random view of
            each example every epoch), `"all"` (every view, an epoch is
            `views` times longer) or a view index.
        augment: The augmentation function the cache was built with; it is
            replayed with the cached seeds.
        teacher: Optionally, the teacher(s) the cache should come from.
        shuffle_buffer: Shuffle buffer size; defaults to the whole dataset.
        verify: Check the file's checksum. Defaults to `True`.
        drop_remainder: Drop the last incomplete batch.
        in_memory: Read the whole cache into memory (fast, in-graph
            gathers) instead of reading batches from the memory-mapped file.
            `None` (default) reads it into memory when it holds at most
            `IN_MEMORY_BYTES` (512 MB).

    Arrays `x` are gathered a batch at a time, like `keras.Model.fit` does,
    so the pipeline costs about what the student's own `fit(x, y)` costs; a
    `tf.data.Dataset` `x` is streamed and shuffled with a buffer.

    Example:

    >>> import numpy as np, tempfile, os, keras_kd
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x = np.random.rand(64, 4).astype("float32")
    >>> y = np.random.randint(0, 3, size=64)
    >>> path = os.path.join(tempfile.mkdtemp(), "teacher.kdcache")
    >>> _ = cache_teacher_outputs(teacher, x, path, verbose=0)
    >>> train = load_teacher_cache(path, x, y, batch_size=16)
    >>> distiller = keras_kd.Distiller(student=student, teacher=None)
    >>> distiller.compile(optimizer="adam")
    >>> history = distiller.fit(train, epochs=1, verbose=0)
    """
    # The cheap checks first; the fingerprint pass over `x` comes last.
    cache = TeacherCache(path, verify=verify)
    batch_size = _check_int(batch_size, "batch_size", 1)
    _check_view(view, cache.views)
    _check_same_augment(augment, cache.header, path)
    if teacher is not None:
        _check_same_teachers(_teacher_list(teacher, "teacher"), cache.header, path)
    cache_format.check_finite_dataset(x, "x")
    examples, count, has_labels, arrays = _example_dataset(x, "x", y)
    _check_same_inputs(examples, count, arrays, cache, path)

    if arrays is None:
        pipeline, source = _streamed_examples, examples
    else:
        pipeline, source = _gathered_examples, arrays
    dataset = pipeline(
        source, len(cache), cache.views, view, augment, cache.header["seed"],
        batch_size, shuffle, seed, shuffle_buffer, drop_remainder,
    )
    return _attach_teacher_logits(dataset, cache, has_labels, in_memory)


def _check_view(view, views: int) -> None:
    if view not in ("random", "all"):
        if isinstance(view, bool) or not isinstance(view, (int, np.integer)) or not 0 <= view < views:
            raise ValueError(
                f"`view` must be 'random', 'all' or a view index in [0, {views}). "
                f"Received: view={view!r}."
            )


def _check_same_augment(augment: Optional[Callable], header: dict, path: PathLike) -> None:
    """Raises unless `augment` is the function the views were cached with:
    any other would give the student views the teacher never saw."""
    if _augment_name(augment) != header["augment"]:
        raise ValueError(
            f"Teacher cache {str(path)!r} was built with augment="
            f"{header['augment']!r}; its views can only be replayed with the "
            f"same function. Received: augment={_augment_name(augment)!r}."
        )


def _check_same_teachers(teachers: list, header: dict, path: PathLike) -> None:
    if cache_format.teacher_fingerprint(teachers) != header["teacher_fingerprint"]:
        raise ValueError(
            f"Teacher cache {str(path)!r} was built for teacher(s) "
            f"{header['teacher_names']} with other weights than the given "
            f"teacher(s) {[m.name for m in teachers]}. Rebuild the cache "
            "for this teacher."
        )


def _check_same_inputs(
    examples: tf.data.Dataset,
    count: Optional[int],
    arrays,
    cache: TeacherCache,
    path: PathLike,
) -> None:
    """Raises unless the examples are the cached ones: same count, then
    same fingerprint (every example, in order)."""
    if count is None:
        # A dataset of unknown size: the fingerprint pass counts it.
        fingerprint = _input_fingerprint(examples, arrays)
        count = fingerprint.count
    else:
        fingerprint = None
    # A known count is checked before the fingerprint pass: that costs
    # nothing and says more than a fingerprint mismatch would.
    if count != len(cache):
        raise ValueError(
            f"Teacher cache {str(path)!r} holds {len(cache)} examples, but `x` "
            f"has {count}. Pass the dataset the cache was built from."
        )
    if fingerprint is None:
        fingerprint = _input_fingerprint(examples, arrays)
    if fingerprint.hexdigest() != cache.header["input_fingerprint"]:
        raise ValueError(
            f"The inputs `x` differ from those teacher cache {str(path)!r} was "
            "built from (other data, another order, other preprocessing, or a "
            "dataset that reshuffles); the fingerprint covers every example. "
            "Pass the same inputs, in the same order, unshuffled; "
            "`shuffle=True` shuffles them here."
        )


#: Caches up to this size are read into memory by `load_teacher_cache`.
IN_MEMORY_BYTES = 512 * 2**20


def _view_draws(view, views: int, seed):
    """A dataset of view indices (or None when the view is fixed)."""
    if view == "random" and views > 1:
        return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).map(
            lambda r: r % views
        )
    return None


def _gathered_examples(
    arrays, count, views, view, augment, aug_seed, batch_size, shuffle, seed,
    buffer, drop_remainder,
):
    """Batches of `(indices, views, (x, y))` from in-memory arrays: shuffled
    indices, one gather per batch (no per-example work without `augment`)."""
    per_example = views if view == "all" else 1
    ids = tf.data.Dataset.range(count * per_example)
    if shuffle:
        ids = ids.shuffle(buffer or count * per_example, seed=seed, reshuffle_each_iteration=True)
    ids = ids.batch(batch_size, drop_remainder=drop_remainder)
    draws = _view_draws(view, views, seed)
    fixed = 0 if view in ("random", "all") else int(view)
    draws = draws.batch(batch_size) if draws is not None else tf.data.Dataset.from_tensors(
        tf.constant(0, tf.int64)).repeat()

    def gather(batch_ids, drawn, data):
        if view == "all":
            indices, batch_views = batch_ids // views, batch_ids % views
        elif view == "random" and views > 1:
            indices, batch_views = batch_ids, drawn[: tf.shape(batch_ids)[0]]
        else:
            indices = batch_ids
            batch_views = tf.fill(tf.shape(batch_ids), tf.constant(fixed, tf.int64))
        x, y = tf.nest.map_structure(lambda a: tf.gather(a, indices), data)
        if augment is not None:
            x = tf.map_fn(
                lambda e: _apply_augment(augment, e[0], aug_seed, e[1], e[2], views),
                (x, indices, batch_views),
                fn_output_signature=tf.nest.map_structure(
                    lambda a: tf.TensorSpec(a.shape[1:], a.dtype), x
                ),
            )
        return indices, batch_views, (x, y)

    # The arrays enter as one dataset element, not as graph constants, so
    # arrays over 2 GB work (as in Keras's own array adapter).
    data = tf.data.Dataset.from_tensors(arrays).repeat()
    return tf.data.Dataset.zip((ids, draws, data)).map(
        gather, num_parallel_calls=tf.data.AUTOTUNE
    )


def _streamed_examples(
    examples, count, views, view, augment, aug_seed, batch_size, shuffle, seed,
    buffer, drop_remainder,
):
    """Batches of `(indices, views, (x, y))` from a stream of examples."""
    dataset = tf.data.Dataset.zip((tf.data.Dataset.range(count), examples))
    draws = _view_draws(view, views, seed)
    if view == "all":
        dataset = dataset.flat_map(
            lambda i, e: tf.data.Dataset.range(views).map(lambda v: (i, v, e))
        )
    elif draws is not None:
        dataset = tf.data.Dataset.zip((dataset, draws)).map(lambda ie, v: (ie[0], v, ie[1]))
    else:
        fixed = 0 if view == "random" else int(view)
        dataset = dataset.map(lambda i, e: (i, tf.constant(fixed, tf.int64), e))
    if shuffle:
        buffer = buffer or count * (views if view == "all" else 1)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if augment is not None:
        dataset = dataset.map(
            lambda i, v, e: (i, v, (_apply_augment(augment, e[0], aug_seed, i, v, views), e[1])),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return dataset.batch(batch_size, drop_remainder=drop_remainder)


def _attach_teacher_logits(dataset, cache: TeacherCache, has_labels: bool, in_memory):
    """Maps `(indices, views, (x, y))` batches to the distiller's batches."""
    names = cache.layout.names
    teachers_count, classes, top_k = cache.num_teachers, cache.num_classes, cache.top_k
    if in_memory is None:
        in_memory = cache.header["data_bytes"] <= IN_MEMORY_BYTES

    def finish(fields, example):
        if top_k is None:
            logits = fields["logits"]
        else:
            logits = rebuild_top_k_logits(
                fields["values"], fields["indices"], fields["tail"], classes
            )
        per_teacher = tuple(logits[:, t] for t in range(teachers_count))
        inputs = {
            INPUTS_KEY: example[0],
            TEACHER_LOGITS_KEY: per_teacher[0] if teachers_count == 1 else per_teacher,
        }
        return (inputs, example[1]) if has_labels else inputs

    if in_memory:
        stored = {
            name: np.asarray(cache._records[name]).astype(
                "int32" if name == "indices" else "float32"
            )
            for name in names
        }

        def attach(batch, table):
            indices, batch_views, example = batch
            where = tf.stack([indices, batch_views], axis=-1)
            fields = {name: tf.gather_nd(table[name], where) for name in names}
            return finish(fields, example)

        tables = tf.data.Dataset.from_tensors(stored).repeat()
        dataset = tf.data.Dataset.zip((dataset, tables))
        return dataset.map(attach, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    out_types = [tf.int32 if name == "indices" else tf.float32 for name in names]

    def read(indices, batch_views):
        fields = cache.stored_fields(indices, batch_views)
        return [fields[name] for name in names]

    def attach_from_file(indices, batch_views, example):
        arrays = tf.numpy_function(read, [indices, batch_views], out_types, stateful=False)
        fields = {}
        for name, array in zip(names, arrays):
            width = {"logits": classes, "tail": None}.get(name, top_k)
            array.set_shape([None, teachers_count] + ([width] if width else []))
            fields[name] = array
        return finish(fields, example)

    return dataset.map(attach_from_file, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )
