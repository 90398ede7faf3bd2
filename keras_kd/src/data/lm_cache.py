"""Cached teacher outputs for language models: per-token top-k logits on disk.

A causal LM teacher outputs `(batch, sequence, vocabulary)` logits; at a
vocabulary of 32k-256k, storing them in full costs 64-512 kB per token in
float16. `cache_lm_teacher_outputs` runs the teacher once over a dataset of
token batches (what keras-hub's `CausalLMPreprocessor` yields) and streams,
for every *real* token, the `k` largest logits, their vocabulary indices and
one *tail logit* to a single file, with the token batches themselves;
`load_lm_cache` replays those batches with the cached outputs as
`({"inputs": x, "teacher_logits": top_k}, y, sample_weight)`, on which a
`Distiller(student, teacher=None)` trains without calling the teacher.

The tail logit is the classifier cache's (`keras_kd.cache`): for the top-k
set `K` of a token's logits `z` over `V` entries,
`u = logsumexp(z[j] for j not in K) - log(V - k)`, so the rebuilt logits
(`z[i]` on `K`, `u` elsewhere; `rebuild_top_k_logits`) give every top-k
token its exact probability at `T = 1` and spread the rest of the mass
uniformly. `benchmarks/results/lm_cache_storage.md` measures what that
approximation costs in KL and what it saves on disk.

Which tokens are stored: those any loss can count. A position is stored
when its `padding_mask` is true or its `sample_weight` is non-zero (all
positions when the dataset has neither). Other positions get a placeholder
in the loader (values and tail 0, so uniform logits); the distiller's
`sample_weight` / `padding_mask` give them no weight.

File format (one file, little-endian):

    bytes 0-7          magic b"KDLMCAC1"
    bytes 8-15         header length H (uint64)
    16 .. 16+H         JSON header, padded with spaces (vocabulary size,
                       top-k, dtype, sequence length, sequence and token
                       counts, which inputs are stored, teacher name and
                       fingerprint, token-data fingerprint, checksums)
    records_offset     `token_count` token records (`lm_cache_storage_bytes`
                       counts them), sequence after sequence
    sequences_offset   `sequence_count` sequence records: `token_ids` and,
                       when the dataset had them, `padding_mask`, labels
                       and `sample_weight`, each `(sequence_length,)`

Token records are written batch by batch (never more than one batch of
outputs in memory); the sequence records go to a second temporary file and
are appended at the end, and the whole is written under a unique temporary
name and renamed over `path` when complete, like `cache_teacher_outputs`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, NamedTuple, Optional, Union

import keras
import numpy as np
import tensorflow as tf

from keras_kd.src.data import cache_format
from keras_kd.src.utils.arguments import integer as _check_int
from keras_kd.src.utils.io_utils import check_verbose as _check_verbose
from keras_kd.src.utils.io_utils import unique_sibling as _unique_sibling
from keras_kd.src.utils.keys import INPUTS_KEY, TEACHER_LOGITS_KEY

MAGIC = b"KDLMCAC1"
FORMAT_VERSION = 1
TOKEN_IDS = "token_ids"
PADDING_MASK = "padding_mask"
#: The sequence fields a cache can hold, in file order, and their dtypes.
_SEQUENCE_FIELDS = {
    TOKEN_IDS: "<i4",
    PADDING_MASK: "u1",
    "labels": "<i4",
    "sample_weight": "<f4",
}
_GROWING = ("sequence_count", "token_count", "records_bytes", "sequences_offset", "sequences_bytes")

PathLike = Union[str, os.PathLike]


# ---------------------------------------------------------------- layout


def _token_layout(vocabulary_size: int, top_k: Optional[int], dtype: str) -> np.dtype:
    return cache_format.record_layout(vocabulary_size, top_k, dtype, ())


def _sequence_layout(sequence_length: int, fields) -> np.dtype:
    return np.dtype([(name, _SEQUENCE_FIELDS[name], (sequence_length,)) for name in fields])


def lm_cache_storage_bytes(
    tokens: int,
    vocabulary_size: int,
    top_k: Optional[int] = None,
    dtype: str = "float16",
) -> int:
    """Bytes of teacher outputs an LM cache stores for `tokens` real tokens.

    Computed from the file's own token record: `vocabulary_size` logits with
    `top_k=None`; else `top_k` logits, `top_k` indices (uint16 up to a
    vocabulary of 65,536, int32 above) and one tail logit. The replayed
    token batches add 13 bytes or less per position (int32 ids and labels,
    a one-byte mask, a float32 weight), and the header a few kB.

    Args:
        tokens: Number of stored (real) tokens.
        vocabulary_size: The teacher's vocabulary size `V`.
        top_k: `None` for full logits, else an integer in `[1, V)`.
        dtype: Storage dtype of the logits, `"float16"` or `"float32"`.

    Example:

    >>> lm_cache_storage_bytes(10**9, 256_000) / 1e12  # full float16 logits, TB
    512.0
    >>> lm_cache_storage_bytes(10**9, 256_000, top_k=32) / 1e9  # GB
    194.0
    """
    tokens = _check_int(tokens, "tokens", 0)
    vocabulary_size = _check_int(vocabulary_size, "vocabulary_size", 2)
    _check_dtype(dtype)
    top_k = _check_top_k(top_k, vocabulary_size)
    return tokens * _token_layout(vocabulary_size, top_k, dtype).itemsize


def _check_dtype(dtype) -> None:
    if dtype not in cache_format.STORAGE_DTYPES:
        raise ValueError(f"`dtype` must be one of {cache_format.STORAGE_DTYPES}. Received: dtype={dtype!r}.")


def _check_top_k(top_k, vocabulary_size: int) -> Optional[int]:
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not 1 <= top_k < vocabulary_size:
        raise ValueError(
            f"`top_k` must be None or an integer in [1, {vocabulary_size}) for a "
            f"vocabulary of {vocabulary_size} (use top_k=None to store every "
            f"logit). Received: top_k={top_k!r}."
        )
    return int(top_k)


# ---------------------------------------------------------------- inputs


def _dataset_structure(dataset, argument: str = "dataset") -> dict:
    """Checks the element spec of a dataset of token batches and returns
    `{"dict_inputs", "fields", "sequence_length"}`."""
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"`{argument}` must be a `tf.data.Dataset` of token batches `(x, y, "
            "sample_weight)`, `(x, y)` or `x` (what keras-hub's "
            "`CausalLMPreprocessor` yields), with `x` a dict holding "
            "'token_ids' (and optionally 'padding_mask') or an int tensor, each "
            f"`(batch, sequence)`. Received: {argument} of type {type(dataset).__name__}."
        )
    spec = dataset.element_spec
    parts = spec if isinstance(spec, tuple) else (spec,)
    expected = (
        f"Expected `{argument}` to yield `(x, y, sample_weight)`, `(x, y)` or `x`, "
        "with `x` a dict {'token_ids': int, 'padding_mask': bool} or an int "
        "tensor, every tensor `(batch, sequence)` (batch the dataset first)."
    )
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"{expected} Received: element_spec={spec!r}.")
    x_spec = parts[0]
    if isinstance(x_spec, dict):
        unknown = sorted(set(x_spec) - {TOKEN_IDS, PADDING_MASK})
        if TOKEN_IDS not in x_spec or unknown:
            raise ValueError(
                f"{expected} Received an `x` dict with keys {sorted(x_spec)}"
                + (f" (unknown: {unknown})" if unknown else " (no 'token_ids')")
                + "."
            )
        named = {TOKEN_IDS: x_spec[TOKEN_IDS]}
        if PADDING_MASK in x_spec:
            named[PADDING_MASK] = x_spec[PADDING_MASK]
    elif isinstance(x_spec, tf.TensorSpec):
        named = {TOKEN_IDS: x_spec}
    else:
        raise ValueError(f"{expected} Received: element_spec={spec!r}.")
    if len(parts) >= 2:
        named["labels"] = parts[1]
    if len(parts) == 3:
        named["sample_weight"] = parts[2]
    lengths = set()
    for name, part in named.items():
        if not isinstance(part, tf.TensorSpec) or part.shape.rank != 2:
            raise ValueError(
                f"{expected} Received {name} with spec {part!r}"
                + (" (one sequence per element: call `.batch()`)." if getattr(part, "shape", None) is not None and part.shape.rank == 1 else ".")
            )
        if name in (TOKEN_IDS, "labels") and not part.dtype.is_integer:
            raise ValueError(f"{expected} Received {name} of dtype {part.dtype.name}, expected an integer dtype.")
        if part.shape[1] is not None:
            lengths.add(int(part.shape[1]))
    if len(lengths) > 1:
        raise ValueError(
            f"Every tensor of `{argument}` must have the same sequence length. "
            f"Received lengths {sorted(lengths)} in element_spec={spec!r}."
        )
    return {
        "dict_inputs": isinstance(x_spec, dict),
        "fields": [name for name in _SEQUENCE_FIELDS if name in named],
        "sequence_length": lengths.pop() if lengths else None,
    }


def _split(element, structure: dict):
    """A dataset element -> (x, {field: numpy array}) for the stored fields."""
    parts = element if isinstance(element, tuple) else (element,)
    x = parts[0]
    arrays = {TOKEN_IDS: (x[TOKEN_IDS] if structure["dict_inputs"] else x)}
    if structure["dict_inputs"] and PADDING_MASK in x:
        arrays[PADDING_MASK] = x[PADDING_MASK]
    if len(parts) >= 2:
        arrays["labels"] = parts[1]
    if len(parts) == 3:
        arrays["sample_weight"] = parts[2]
    return x, {name: np.asarray(value) for name, value in arrays.items()}


def _stored_mask(rows: np.ndarray) -> np.ndarray:
    """`(batch, sequence)` bool for structured sequence records: the positions
    whose teacher outputs are stored (padding_mask true or sample_weight
    non-zero; every position when the records have neither)."""
    names = rows.dtype.names
    mask = rows[PADDING_MASK].astype(bool) if PADDING_MASK in names else None
    if "sample_weight" in names:
        weighted = rows["sample_weight"] != 0
        mask = weighted if mask is None else mask | weighted
    return np.ones(rows[TOKEN_IDS].shape, bool) if mask is None else mask


def _sequence_rows(arrays: dict, layout: np.dtype) -> np.ndarray:
    """Structured sequence records from one batch's `{field: array}`."""
    rows = np.empty(len(arrays[TOKEN_IDS]), dtype=layout)
    for name in layout.names:
        rows[name] = arrays[name]
    return rows


def _fingerprint(chunks) -> str:
    """The token-data fingerprint of an iterable of sequence-record chunks
    (the same in any chunking, see `keras_kd.src.data.cache_format.InputFingerprint`)."""
    fingerprint = cache_format.InputFingerprint()
    for rows in chunks:
        fingerprint.update({name: rows[name] for name in rows.dtype.names})
    return fingerprint.hexdigest()


def _check_teacher(teacher) -> None:
    if not isinstance(teacher, keras.Model):
        raise TypeError(
            "`teacher` must be a `keras.Model` (e.g. a keras-hub `CausalLM`) "
            f"mapping token inputs to `(batch, sequence, vocabulary)` logits. "
            f"Received: teacher={teacher!r} of type {type(teacher).__name__}."
        )
    try:
        import keras_hub
    except ImportError:  # keras-hub is optional
        return
    if isinstance(teacher, keras_hub.models.Backbone):
        raise TypeError(
            f"`teacher` is a keras-hub Backbone ({type(teacher).__name__}), which "
            "outputs hidden states, not logits. Pass the task model instead, e.g. "
            "`keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)`."
        )


# ---------------------------------------------------------------- writing


def cache_lm_teacher_outputs(
    teacher: keras.Model,
    dataset: tf.data.Dataset,
    path: PathLike,
    top_k: Optional[int] = 32,
    dtype: str = "float16",
    verbose: Union[str, int] = "auto",
) -> dict:
    """Runs an LM teacher once over token batches and streams its per-token
    top-k logits (and the batches) to `path`.

    Args:
        teacher: A `keras.Model` mapping the dataset's `x` to
            `(batch, sequence, vocabulary)` logits, e.g. a keras-hub
            `CausalLM` built with `preprocessor=None`.
        dataset: A finite `tf.data.Dataset` of batches `(x, y,
            sample_weight)`, `(x, y)` or `x`, as keras-hub's
            `CausalLMPreprocessor` yields them: `x` a dict with
            `"token_ids"` and optionally `"padding_mask"`, or an int tensor;
            every tensor `(batch, sequence)` with one sequence length
            throughout. The batches are stored and replayed by
            `load_lm_cache`, so the dataset is not needed again.
        path: File to write. Its directory must exist. An earlier LM cache
            (or an empty file) there is replaced; any other file is refused.
            The file is written under a unique temporary name and renamed
            over `path` when complete.
        top_k: `None` stores every logit; an integer `k` in `[1, V)` the `k`
            largest, their indices and one tail logit per token. Defaults
            to 32.
        dtype: Storage dtype of the logits, `"float16"` (default) or
            `"float32"`.
        verbose: `"auto"` (default, means 1), 0 (silent), 1 (a progress bar
            over the batches) or 2 (one line when done).

    Raises:
        ValueError: Before the teacher pass, for a bad argument or dataset
            structure. During it, when the teacher returns NaN or inf for a
            stored token, or a logit does not fit `dtype` (the error names
            the sequences and positions); no file is left behind.

    Returns:
        The file's header (a dict): `vocabulary_size`, `top_k`,
        `sequence_count`, `token_count` (stored tokens), `token_fingerprint`,
        ...

    Example:

    >>> import numpy as np, tempfile, os, tensorflow as tf
    >>> teacher = keras.Sequential([keras.Input((8,), dtype="int32"),
    ...     keras.layers.Embedding(50, 8), keras.layers.Dense(50)])
    >>> tokens = np.random.randint(1, 50, size=(6, 9)).astype("int32")
    >>> weights = np.ones((6, 8), "float32")
    >>> weights[0, 5:] = 0  # padding: not stored
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (tokens[:, :-1], tokens[:, 1:], weights)).batch(4)
    >>> path = os.path.join(tempfile.mkdtemp(), "lm.kdcache")
    >>> header = cache_lm_teacher_outputs(teacher, data, path, top_k=4, verbose=0)
    >>> header["sequence_count"], header["token_count"], header["vocabulary_size"]
    (6, 45, 50)
    """
    # Arguments, dataset structure and path first: a bad one fails before
    # the teacher pass.
    _check_teacher(teacher)
    _check_dtype(dtype)
    verbose = _check_verbose(verbose)
    structure = _dataset_structure(dataset)
    cache_format.check_finite_dataset(dataset, "dataset")
    _check_top_k_floor(top_k)
    path = cache_format.check_cache_path(path, magic=MAGIC)

    # The record layouts depend on the vocabulary size and sequence length,
    # which only a teacher call on the first batch tells.
    vocabulary_size, sequence_length = _teacher_output_size(teacher, dataset, structure)
    top_k = _check_top_k(top_k, vocabulary_size)
    token_layout = _token_layout(vocabulary_size, top_k, dtype)
    sequence_layout = _sequence_layout(sequence_length, structure["fields"])
    summarize = _token_summarizer(teacher, dataset.element_spec, vocabulary_size, top_k)
    header = _planned_lm_header(teacher, vocabulary_size, top_k, dtype, structure,
                                token_layout, sequence_layout)

    records_offset = header["records_offset"]
    cardinality = int(dataset.cardinality())
    progbar = keras.utils.Progbar(cardinality if cardinality >= 0 else None,
                                  verbose=verbose, unit_name="step")
    # The sequence records wait in a side file, to follow the token records
    # whose total size is only known at the end.
    with (
        cache_format.partial_cache_file(path, MAGIC, records_offset) as file,
        _scratch_file(path, "sequences") as side_file,
    ):
        written = _write_token_records(file, side_file, dataset, structure, summarize,
                                       token_layout, sequence_layout, teacher.name, dtype,
                                       progbar)
        records_bytes = written.tokens * token_layout.itemsize
        sequences_offset = _append_sequences(file, side_file, records_offset + records_bytes)
        header.update(
            sequence_count=written.sequences,
            token_count=written.tokens,
            records_bytes=records_bytes,
            sequences_offset=sequences_offset,
            sequences_bytes=written.sequences * sequence_layout.itemsize,
            records_checksum=written.records_checksum,
            sequences_checksum=written.sequences_checksum,
            token_fingerprint=written.token_fingerprint,
        )
        cache_format.write_header(file, header, records_offset, MAGIC)
    cache_format.finish_progbar(progbar, written.steps)
    return header


def _check_top_k_floor(top_k) -> None:
    """Refuses a `top_k` below 1 before the teacher pass; its upper bound is
    checked once the teacher's vocabulary is known (`_check_top_k`)."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(
            f"`top_k` must be None or an integer >= 1 (and below the teacher's "
            f"vocabulary size). Received: top_k={top_k!r}."
        )


def _teacher_output_size(teacher: keras.Model, dataset: tf.data.Dataset,
                         structure: dict) -> tuple[int, int]:
    """`(vocabulary_size, sequence_length)` from one teacher call on the
    first batch (raises for an empty dataset or a non-LM output shape)."""
    first = next(iter(dataset.take(1)), None)
    if first is None:
        raise ValueError("`dataset` is empty: there is nothing to cache.")
    first_x, first_fields = _split(first, structure)
    ids_shape = first_fields[TOKEN_IDS].shape
    output_shape = tuple(teacher(first_x, training=False).shape)
    if len(output_shape) != 3 or output_shape[:2] != ids_shape:
        raise ValueError(
            "`teacher` must output `(batch, sequence, vocabulary)` logits for "
            f"token_ids of shape {ids_shape}. Received output shape {output_shape} "
            f"from teacher {teacher.name!r}."
        )
    return int(output_shape[-1]), int(ids_shape[1])


def _token_summarizer(teacher: keras.Model, element_spec, vocabulary_size: int,
                      top_k: Optional[int]) -> Callable:
    """A `tf.function` from `(x, stored mask)` of one batch to `(token record
    fields, finite)`, one row per stored token."""
    x_spec = element_spec if not isinstance(element_spec, tuple) else element_spec[0]
    # Any batch size and sequence length: one trace for the whole dataset.
    relaxed = tf.nest.map_structure(lambda s: tf.TensorSpec([None, None], s.dtype), x_spec)

    @tf.function(input_signature=[relaxed, tf.TensorSpec([None, None], tf.bool)])
    def summarize(x, mask):
        logits = tf.cast(teacher(x, training=False), tf.float32)
        rows = tf.cond(  # (stored tokens, V); no copy when every token is stored
            tf.reduce_all(mask),
            lambda: tf.reshape(logits, [-1, vocabulary_size]),
            lambda: tf.boolean_mask(logits, mask),
        )
        finite = tf.reduce_all(tf.math.is_finite(rows), axis=-1)
        return cache_format.summarize_outputs(rows, top_k, vocabulary_size), finite

    return summarize


def _planned_lm_header(teacher: keras.Model, vocabulary_size: int, top_k: Optional[int],
                       dtype: str, structure: dict, token_layout: np.dtype,
                       sequence_layout: np.dtype) -> dict:
    """The header before the teacher pass: counts, checksums, fingerprint
    and the sequences' offset are placeholders, `records_offset` is final."""
    header = {
        "format_version": FORMAT_VERSION,
        "teacher_name": teacher.name,
        "teacher_fingerprint": cache_format.teacher_fingerprint([teacher]),
        "vocabulary_size": vocabulary_size,
        "top_k": top_k,
        "dtype": dtype,
        "sequence_length": int(sequence_layout[TOKEN_IDS].shape[0]),
        "dict_inputs": structure["dict_inputs"],
        "sequence_fields": structure["fields"],
        "sequence_count": 0,
        "token_count": 0,
        "token_fingerprint": "0" * 32,
        "token_record_bytes": token_layout.itemsize,
        "sequence_record_bytes": sequence_layout.itemsize,
        "records_offset": 0,
        "records_bytes": 0,
        "sequences_offset": 0,
        "sequences_bytes": 0,
        "records_checksum": "0" * 32,
        "sequences_checksum": "0" * 32,
    }
    header["records_offset"] = cache_format.header_room(header, _GROWING)
    return header


class _WrittenTokens(NamedTuple):
    """What the teacher pass learnt about the data it wrote."""

    sequences: int
    tokens: int  # stored tokens, one record each
    steps: int  # batches
    records_checksum: str
    sequences_checksum: str
    token_fingerprint: str  # of every sequence record, in order


def _write_token_records(
    file: BinaryIO,
    side_file: BinaryIO,
    dataset: tf.data.Dataset,
    structure: dict,
    summarize: Callable,
    token_layout: np.dtype,
    sequence_layout: np.dtype,
    teacher_name: str,
    dtype: str,
    progbar: keras.utils.Progbar,
) -> _WrittenTokens:
    """The teacher pass: token records to `file`, sequence records to
    `side_file`, batch by batch, each batch checked before it is written,
    so memory holds one batch of outputs and a bad output stops the pass at
    once."""
    sequence_length = sequence_layout[TOKEN_IDS].shape[0]
    records_digest = hashlib.blake2b(digest_size=16)
    sequences_digest = hashlib.blake2b(digest_size=16)
    fingerprint = cache_format.InputFingerprint()
    sequences = tokens = step = 0
    for element in dataset:
        x, arrays = _split(element, structure)
        _check_batch_shapes(arrays, sequence_length, step)
        rows = _sequence_rows(arrays, sequence_layout)
        mask = _stored_mask(rows)
        fields, finite = summarize(x, tf.constant(mask))
        where = np.argwhere(mask) + [sequences, 0]
        _check_finite_tokens(finite.numpy(), where, teacher_name, "returned non-finite logits (NaN or inf)", "")
        records = cache_format.records_from_fields(fields, token_layout)
        _check_finite_tokens(
            _finite_records(records), where, teacher_name,
            f"returned logits beyond the range of dtype={dtype!r} "
            f"(|x| > {float(np.finfo(dtype).max):g})",
            " Use dtype='float32', which holds them." if dtype == "float16" else "",
        )
        cache_format.write_checksummed(file, records_digest, records)
        fingerprint.update({name: rows[name] for name in rows.dtype.names})
        cache_format.write_checksummed(side_file, sequences_digest, rows)
        sequences += len(rows)
        tokens += len(records)
        step += 1
        progbar.update(step, finalize=False)
    return _WrittenTokens(sequences, tokens, step, records_digest.hexdigest(),
                          sequences_digest.hexdigest(), fingerprint.hexdigest())


def _check_batch_shapes(arrays: dict, sequence_length: int, step: int) -> None:
    """Raises unless every tensor of batch `step` is `(batch, sequence_length)`:
    the file's sequence records all have the first batch's length."""
    shapes = {name: array.shape for name, array in arrays.items()}
    if len(set(shapes.values())) != 1 or shapes[TOKEN_IDS][1] != sequence_length:
        raise ValueError(
            "Every batch of `dataset` must hold `(batch, sequence)` "
            f"tensors of one sequence length ({sequence_length}, from "
            f"the first batch). Batch {step} has shapes {shapes}."
        )


def _append_sequences(file: BinaryIO, side_file: BinaryIO, records_end: int) -> int:
    """Copies the sequence records of `side_file` into `file` after the token
    records (which end at `records_end`) and returns their offset."""
    # On an `ALIGN` boundary, like the token records: the loader
    # memory-maps each section from its offset.
    sequences_offset = -(-records_end // cache_format.ALIGN) * cache_format.ALIGN
    file.write(b"\0" * (sequences_offset - records_end))
    side_file.seek(0)
    shutil.copyfileobj(side_file, file, cache_format.CHUNK)
    return sequences_offset


@contextlib.contextmanager
def _scratch_file(path: Path, tag: str) -> Iterator[BinaryIO]:
    """A private temporary file next to `path`, opened for reading and
    writing, removed when the block ends."""
    # Next to `path`, like the partial file: on the file system that must
    # hold the cache (and so these records) anyway.
    scratch = _unique_sibling(path, tag)
    try:
        handle = os.open(scratch, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        with os.fdopen(handle, "w+b") as file:
            yield file
    finally:
        if scratch.exists():
            scratch.unlink()


def _finite_records(records: np.ndarray) -> np.ndarray:
    finite = np.ones(len(records), bool)
    for name in records.dtype.names:
        if name != "indices":
            values = records[name].reshape(len(records), -1)
            finite &= np.isfinite(values).all(axis=1)
    return finite


def _check_finite_tokens(finite: np.ndarray, where: np.ndarray, name: str, what: str, hint: str) -> None:
    """Raises when a stored token's outputs are not finite; `where` holds the
    `(sequence, position)` of each stored token."""
    if finite.all():
        return
    bad = where[~finite]
    sequences = np.unique(bad[:, 0])
    first = bad[bad[:, 0] == sequences[0], 1]
    raise ValueError(
        f"Teacher {name!r} {what} for {len(bad)} token(s) of dataset sequence(s) "
        f"{cache_format.index_ranges(sequences)} (sequence {sequences[0]}: position(s) "
        f"{cache_format.index_ranges(first)}). Nothing was cached: stored, they would make "
        f"the distillation loss and the student's gradients NaN.{hint}"
    )


# ---------------------------------------------------------------- reading


class _LMCacheFile:
    """An LM cache opened for reading: header checks, memory maps, and the
    dense batch a list of sequence indices maps to."""

    def __init__(self, path: PathLike, verify: bool = True):
        self.path = Path(path)
        self.header = header = cache_format.read_header(
            self.path, MAGIC, "LM teacher cache", FORMAT_VERSION, self._check_header,
            " Classifier caches are read with `load_teacher_cache`.")
        size = self.path.stat().st_size
        expected = header["sequences_offset"] + header["sequences_bytes"]
        if size != expected:
            raise ValueError(
                f"LM teacher cache {str(path)!r} is {size} bytes, but its header "
                f"promises {expected}: the file is truncated or corrupted. "
                "Rebuild it with `cache_lm_teacher_outputs`."
            )
        self.records = self._map(self.tokens, "records_offset", "token_count")
        self.sequences = self._map(self.sequence, "sequences_offset", "sequence_count")
        counts = [_stored_mask(rows).sum(axis=1) for rows in self.sequence_chunks()]
        self.offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts + [np.zeros(0, np.int64)]))])
        if self.offsets[-1] != header["token_count"]:
            raise ValueError(
                f"LM teacher cache {str(path)!r} is corrupted: its sequences mark "
                f"{self.offsets[-1]} tokens as stored, its header "
                f"{header['token_count']}."
            )
        if verify:
            self._verify()

    def _check_header(self, header: dict, room: int) -> bool:
        """Whether the header's record layouts, counts and offset agree (and
        sets `self.tokens` and `self.sequence`, the two record layouts)."""
        self.tokens = _token_layout(header["vocabulary_size"], header["top_k"], header["dtype"])
        self.sequence = _sequence_layout(header["sequence_length"], header["sequence_fields"])
        return (
            header["format_version"] == FORMAT_VERSION
            and header["token_record_bytes"] == self.tokens.itemsize
            and header["sequence_record_bytes"] == self.sequence.itemsize
            and header["records_bytes"] == header["token_count"] * self.tokens.itemsize
            and header["sequences_bytes"] == header["sequence_count"] * self.sequence.itemsize
            and header["records_offset"] == cache_format.PREFIX + room
        )

    def sequence_chunks(self):
        """The sequence records, about 16 MB at a time."""
        step = max(1, cache_format.CHUNK // max(1, self.sequence.itemsize))
        for start in range(0, len(self.sequences), step):
            yield self.sequences[start:start + step]

    def _map(self, layout: np.dtype, offset: str, count: str) -> np.ndarray:
        if self.header[count] == 0:  # numpy cannot map zero bytes
            return np.zeros(0, layout)
        return np.memmap(self.path, dtype=layout, mode="r",
                         offset=self.header[offset], shape=(self.header[count],))

    def _verify(self) -> None:
        for section in ("records", "sequences"):
            digest = cache_format.file_digest(
                self.path, self.header[f"{section}_offset"], self.header[f"{section}_bytes"])
            if digest != self.header[f"{section}_checksum"]:
                raise ValueError(
                    f"LM teacher cache {str(self.path)!r} is corrupted: the checksum "
                    f"of its {section} section is {digest}, the header "
                    f"says {self.header[f'{section}_checksum']}. Rebuild it with "
                    "`cache_lm_teacher_outputs`."
                )

    def read(self, indices: np.ndarray) -> dict:
        """Dense numpy arrays for the sequences `indices`: the stored
        sequence fields plus the teacher fields, `(batch, sequence, ...)`."""
        indices = np.asarray(indices, np.int64)
        rows = self.sequences[indices]
        mask = _stored_mask(rows)
        position = self.offsets[indices][:, None] + np.cumsum(mask, axis=1) - 1
        records = self.records[position[mask]]
        batch = {name: np.asarray(rows[name]) for name in rows.dtype.names}
        shape = mask.shape
        top_k = self.header["top_k"]
        if top_k is None:
            logits = np.zeros(shape + (self.header["vocabulary_size"],), np.float32)
            logits[mask] = records["logits"]
            batch["logits"] = logits
        else:
            values = np.zeros(shape + (top_k,), np.float32)
            values[mask] = records["values"]
            chosen = np.broadcast_to(np.arange(top_k, dtype=np.int32), shape + (top_k,)).copy()
            chosen[mask] = records["indices"]
            tail = np.zeros(shape, np.float32)
            tail[mask] = records["tail"]
            batch.update(values=values, indices=chosen, tail=tail)
        return batch


def load_lm_cache(
    path: PathLike,
    batch_size: int = 8,
    shuffle: bool = True,
    seed: Optional[int] = None,
    drop_remainder: bool = False,
    verify: bool = True,
    dataset: Optional[tf.data.Dataset] = None,
    teacher: Optional[keras.Model] = None,
) -> tf.data.Dataset:
    """A `tf.data.Dataset` that trains a `Distiller` from a cached LM teacher.

    Batches are `({"inputs": x, "teacher_logits": logits}, y, sample_weight)`
    (without `y` / `sample_weight` when the cached dataset had none), with
    `x` as the cached dataset yielded it (a dict of int32 `token_ids` and
    bool `padding_mask`, or the int32 token tensor) and `logits` either the
    dense float32 `(batch, sequence, vocabulary)` logits (`top_k=None`) or
    the dict `{"values": (b, s, k) float32, "indices": (b, s, k) int32,
    "tail": (b, s) float32}` that `rebuild_top_k_logits` (and the
    distiller, chunk by chunk) turns into full logits. Positions that were
    not stored get values and tail 0.

    Args:
        path: A file written by `cache_lm_teacher_outputs`.
        batch_size: Sequences per batch.
        shuffle: Reshuffle the sequences every epoch.
        seed: Seed of the shuffle.
        drop_remainder: Drop the last incomplete batch.
        verify: Check the file's checksums and the fingerprint of its token
            data (one read of the file). Defaults to `True`.
        dataset: Optionally, the dataset the cache should have been built
            from: its fingerprint must match the cache's (same tokens,
            labels and weights, same order), or a `ValueError` says so.
        teacher: Optionally, the teacher the cache should come from (its
            weights are compared).

    Example:

    >>> import numpy as np, tempfile, os, tensorflow as tf
    >>> teacher = keras.Sequential([keras.Input((8,), dtype="int32"),
    ...     keras.layers.Embedding(50, 8), keras.layers.Dense(50)])
    >>> tokens = np.random.randint(1, 50, size=(6, 9)).astype("int32")
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (tokens[:, :-1], tokens[:, 1:], np.ones((6, 8), "float32"))).batch(4)
    >>> path = os.path.join(tempfile.mkdtemp(), "lm.kdcache")
    >>> _ = cache_lm_teacher_outputs(teacher, data, path, top_k=4, verbose=0)
    >>> train = load_lm_cache(path, batch_size=3, seed=0)
    >>> inputs, y, weights = next(iter(train))
    >>> {key: tuple(value.shape) for key, value in inputs["teacher_logits"].items()}
    {'values': (3, 8, 4), 'indices': (3, 8, 4), 'tail': (3, 8)}

    A distiller without a teacher trains on it:

    >>> import keras_kd
    >>> student = keras.Sequential([keras.Input((8,), dtype="int32"),
    ...     keras.layers.Embedding(50, 4), keras.layers.Dense(50)])
    >>> distiller = keras_kd.Distiller(student, teacher=None)
    >>> distiller.compile(optimizer="adam")
    >>> history = distiller.fit(train, epochs=1, verbose=0)
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    cache = _LMCacheFile(path, verify=verify)
    if verify:
        _check_token_fingerprint(cache, path)
    if dataset is not None:
        _check_same_dataset(dataset, cache, path)
    if teacher is not None:
        _check_same_teacher(teacher, cache.header, path)
    return _cached_lm_batches(cache, batch_size, shuffle, seed, drop_remainder)


def _check_token_fingerprint(cache: _LMCacheFile, path: PathLike) -> None:
    """Raises when the stored token data does not match its fingerprint
    (the checksums cover the bytes; this covers what they decode to)."""
    if _fingerprint(cache.sequence_chunks()) != cache.header["token_fingerprint"]:
        raise ValueError(
            f"The token data in LM teacher cache {str(path)!r} does not match "
            "the fingerprint in its header: the file is corrupted. Rebuild it "
            "with `cache_lm_teacher_outputs`."
        )


def _check_same_dataset(dataset: tf.data.Dataset, cache: _LMCacheFile, path: PathLike) -> None:
    """Raises unless `dataset` is the one the cache was built from: same
    structure, then same fingerprint (every sequence, in order)."""
    header = cache.header
    structure = _dataset_structure(dataset)
    if structure["fields"] != header["sequence_fields"] or structure["dict_inputs"] != header["dict_inputs"]:
        raise ValueError(
            f"`dataset` yields {structure['fields']} "
            f"({'dict' if structure['dict_inputs'] else 'tensor'} inputs), but LM "
            f"teacher cache {str(path)!r} was built from {header['sequence_fields']} "
            f"({'dict' if header['dict_inputs'] else 'tensor'} inputs)."
        )
    chunks = (_sequence_rows(_split(element, structure)[1], cache.sequence) for element in dataset)
    if _fingerprint(chunks) != header["token_fingerprint"]:
        raise ValueError(
            f"`dataset` differs from the token data LM teacher cache "
            f"{str(path)!r} was built from (other tokens, labels or weights, "
            "another order, or a dataset that reshuffles); the fingerprint "
            "covers every sequence. Rebuild the cache for this dataset."
        )


def _check_same_teacher(teacher, header: dict, path: PathLike) -> None:
    if cache_format.teacher_fingerprint([teacher]) != header["teacher_fingerprint"]:
        raise ValueError(
            f"LM teacher cache {str(path)!r} was built for teacher "
            f"{header['teacher_name']!r} with other weights than the given teacher "
            f"{getattr(teacher, 'name', teacher)!r}. Rebuild the cache for this teacher."
        )


#: The tf dtype of each field `_LMCacheFile.read` returns.
_BATCH_DTYPES = {TOKEN_IDS: tf.int32, PADDING_MASK: tf.uint8, "labels": tf.int32,
                 "sample_weight": tf.float32, "logits": tf.float32, "values": tf.float32,
                 "indices": tf.int32, "tail": tf.float32}


def _batch_fields(header: dict) -> tuple[list, dict]:
    """The names of the arrays `_LMCacheFile.read` returns, in order, and the
    static shape of each (the sequence fields are `(batch, sequence)`)."""
    top_k = header["top_k"]
    teacher_fields = ["logits"] if top_k is None else ["values", "indices", "tail"]
    length = header["sequence_length"]
    shapes = {
        "logits": [None, length, header["vocabulary_size"]],
        "values": [None, length, top_k],
        "indices": [None, length, top_k],
        "tail": [None, length],
    }
    names = list(header["sequence_fields"]) + teacher_fields
    return names, {name: shapes.get(name, [None, length]) for name in names}


def _distiller_element(batch: dict, header: dict):
    """One dense batch -> `({"inputs": x, "teacher_logits": ...}, y,
    sample_weight)`, without the parts the cached dataset did not have."""
    if header["dict_inputs"]:
        x = {TOKEN_IDS: batch[TOKEN_IDS]}
        if PADDING_MASK in batch:
            x[PADDING_MASK] = tf.cast(batch[PADDING_MASK], tf.bool)
    else:
        x = batch[TOKEN_IDS]
    logits = batch["logits"] if header["top_k"] is None else {
        "values": batch["values"], "indices": batch["indices"], "tail": batch["tail"]
    }
    element = ({INPUTS_KEY: x, TEACHER_LOGITS_KEY: logits},)
    if "labels" in batch:
        element += (batch["labels"],)
    if "sample_weight" in batch:
        element += (batch["sample_weight"],)
    return element if len(element) > 1 else element[0]


def _cached_lm_batches(cache: _LMCacheFile, batch_size: int, shuffle: bool,
                       seed: Optional[int], drop_remainder: bool) -> tf.data.Dataset:
    """The distiller's batches: shuffled sequence indices, each batch read
    from the memory-mapped file."""
    header = cache.header
    names, shapes = _batch_fields(header)

    def read(indices):
        batch = cache.read(indices)
        return [batch[name] for name in names]

    def attach(indices):
        arrays = tf.numpy_function(read, [indices], [_BATCH_DTYPES[n] for n in names], stateful=False)
        batch = {}
        for name, array in zip(names, arrays):
            # numpy_function loses the shapes; Keras needs the static ones.
            array.set_shape(shapes[name])
            batch[name] = array
        return _distiller_element(batch, header)

    ids = tf.data.Dataset.range(header["sequence_count"])
    if shuffle:
        ids = ids.shuffle(max(1, header["sequence_count"]), seed=seed, reshuffle_each_iteration=True)
    ids = ids.batch(batch_size, drop_remainder=drop_remainder)
    return ids.map(attach, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
