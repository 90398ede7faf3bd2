"""The on-disk format both teacher caches share (`cache.py` for classifier
outputs, `lm_cache.py` for a language model's per-token outputs).

A cache file starts with 8 magic bytes, the header's length (uint64) and a
JSON header padded with spaces to an aligned data offset; fixed-size
structured records follow. This module holds what both writers and loaders
do the same way: the record layout of full or top-k logits, the header's
room and encoding, the temporary-file-and-rename that never leaves a
half-written file under the final name, checksummed writes, and the
fingerprints that tie a cache to its inputs and teachers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_kd.src.utils.io_utils import check_writable_directory, unique_sibling

#: The dtypes a cache can store teacher outputs in.
STORAGE_DTYPES = ("float32", "float16")
#: Both caches' magic bytes are 8 long (b"KDCACHE1", b"KDLMCAC1").
MAGIC_LENGTH = 8
#: Magic bytes and the uint64 header length.
PREFIX = MAGIC_LENGTH + 8
#: The data starts at a multiple of this offset.
ALIGN = 4096
#: Bytes hashed or read at a time.
CHUNK = 1 << 24
#: In every input fingerprint's digest. 2: the fingerprint covers every
#: example (version 1 hashed only the first 256, so it missed reordered or
#: replaced later examples). Both caches' fingerprints use it, so changing
#: it invalidates every existing cache's check.
FINGERPRINT_VERSION = 2

PathLike = Union[str, os.PathLike]


def dtype_label(array: np.ndarray) -> str:
    """The dtype an input fingerprint records: numpy's, or "string" for any
    kind of text (so `str` and `bytes` arrays of the same text agree)."""
    return "string" if array.dtype.kind in "OSU" else array.dtype.str


class InputFingerprint:
    """A streaming hash of every example of a dataset, in order.

    Fed batches (nested structures of arrays with a leading example axis) in
    any sizes, it gives the same digest for the same examples in the same
    order: each input component has one hash of its bytes, example after
    example, and one of its per-example shapes (run-length coded, so that
    fixed-shape data costs nothing extra), plus its dtype. `hashlib.blake2b`
    hashes about 0.8 GB per CPU second: 0.23 s for Fashion-MNIST's 60,000
    training images, under 1% of one `cnn_teacher()` pass over them
    (benchmarks/results/cache_fingerprint.md).
    """

    def __init__(self):
        self.count = 0
        self._dtypes = None
        self._data = None  # one bytes digest per input component
        self._shapes = None  # one digest of (shape, run length) pairs each
        self._runs = None  # [shape, length] of the current run of shapes

    def update(self, batch) -> None:
        flat = [np.asarray(array) for array in tf.nest.flatten(batch)]
        if self._data is None:
            self._dtypes = [dtype_label(array) for array in flat]
            self._data = [hashlib.blake2b(digest_size=16) for _ in flat]
            self._shapes = [hashlib.blake2b(digest_size=16) for _ in flat]
            self._runs = [[None, 0] for _ in flat]
        for index, array in enumerate(flat):
            shape, run = tuple(array.shape[1:]), self._runs[index]
            if shape != run[0]:
                self._flush(index)
                self._runs[index] = run = [shape, 0]
            run[1] += len(array)
            data = self._data[index]
            if array.dtype.kind in "OSU":
                # Strings: hash the text (length-prefixed), not the memory
                # layout, so numpy `str` arrays and tf.data's `bytes` agree.
                for value in array.reshape(-1):
                    value = value.encode() if isinstance(value, str) else bytes(value)
                    data.update(len(value).to_bytes(8, "little"))
                    data.update(value)
                continue
            # Chunks of about 16 MB: a non-contiguous array is copied a chunk
            # at a time, never whole.
            rows = max(1, CHUNK // max(1, array[:1].nbytes))
            for start in range(0, len(array), rows):
                data.update(np.ascontiguousarray(array[start : start + rows]).data)
        self.count += len(flat[0])

    def _flush(self, index: int) -> None:
        shape, length = self._runs[index]
        if shape is not None:
            self._shapes[index].update(f"{shape}x{length};".encode())

    def hexdigest(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"v{FINGERPRINT_VERSION}:{self.count}".encode())
        for index in range(len(self._data or [])):
            shapes = self._shapes[index].copy()
            shape, length = self._runs[index]
            shapes.update(f"{shape}x{length};".encode())
            digest.update(self._dtypes[index].encode())
            digest.update(shapes.digest())
            digest.update(self._data[index].digest())
        return digest.hexdigest()


def teacher_fingerprint(teachers: list) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for model in teachers:
        digest.update(f"{type(model).__name__}:{model.name}".encode())
        for weight in model.weights:
            array = np.ascontiguousarray(ops.convert_to_numpy(weight))
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def check_finite_dataset(data, argument: str) -> None:
    if isinstance(data, tf.data.Dataset) and int(data.cardinality()) == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            f"`{argument}` is an infinite `tf.data.Dataset` (it repeats), but a "
            "teacher cache covers a finite dataset, one record per example. "
            f"Pass it without `.repeat()`. Received: {argument}={data!r}."
        )


def index_dtype(num_classes: int) -> str:
    return "<u2" if num_classes <= np.iinfo(np.uint16).max + 1 else "<i4"


def record_layout(num_classes: int, top_k: Optional[int], dtype: str, shape: tuple) -> np.dtype:
    """Full logits, or top-k values + indices + one tail logit, for each
    position of `shape` (`(views, teachers)` here, `()` for one LM token)."""
    value = np.dtype(dtype).newbyteorder("<")
    shape = tuple(shape)
    if top_k is None:
        return np.dtype([("logits", value, shape + (num_classes,))])
    return np.dtype([
        ("values", value, shape + (top_k,)),
        ("indices", index_dtype(num_classes), shape + (top_k,)),
        ("tail", value, shape),
    ])


def summarize_outputs(outputs, top_k: Optional[int], num_classes: int):
    """`(..., C)` float32 logits -> the record fields (full logits, or the
    top-k values, their indices and the tail logit of each row).

    The tail is the log-sum-exp of the logits below the k-th largest value
    `v_k`, plus `e * exp(v_k)` for the `e` logits equal to `v_k` that top-k
    left out (ties), shifted by the largest left-out logit so that nothing
    overflows. Elementwise passes only: no `(..., k, C)` one-hot and no
    scattered copy of the logits, which matters at LM vocabularies of 256k.
    """
    if top_k is None:
        return {"logits": outputs}
    values, indices = tf.math.top_k(outputs, k=top_k)
    kth = values[..., -1:]
    below = outputs < kth
    ties = tf.reduce_sum(tf.cast(outputs >= kth, tf.float32), axis=-1) - top_k
    neg_inf = tf.constant(-np.inf, tf.float32)
    shift = tf.where(ties > 0, kth[..., 0], tf.reduce_max(tf.where(below, outputs, neg_inf), axis=-1))
    # A row whose left-out logits are all -inf: shift by 0 (its tail is -inf).
    shift = tf.where(tf.math.is_finite(shift), shift, tf.zeros_like(shift))
    rest = tf.reduce_sum(tf.where(below, tf.exp(outputs - shift[..., None]), 0.0), axis=-1)
    # With ties the shift is v_k, so each tie adds exp(0); ties at -inf add 0.
    rest += tf.where(tf.math.is_finite(kth[..., 0]), ties, tf.zeros_like(ties))
    tail = tf.math.log(rest) + shift - math.log(num_classes - top_k)
    return {"values": values, "indices": indices, "tail": tail}


def records_from_fields(fields: dict, layout: np.dtype) -> np.ndarray:
    """One batch's structured records from its `{field: tensor}`, cast to
    the storage dtype."""
    records = np.empty(len(fields[layout.names[0]]), dtype=layout)
    # Silenced because the caller checks the stored values next and raises
    # with the teacher and the examples, which the numpy warning cannot name.
    with np.errstate(over="ignore"):
        for name in layout.names:
            records[name] = fields[name].numpy()
    return records


def check_cache_path(path: PathLike, magic: bytes) -> Path:
    """Fails before the teacher pass when `path` cannot hold a cache (an
    existing file is only replaced when it starts with `magic`)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "`path` must be a file path (str or os.PathLike). Received: "
            f"path={path!r} of type {type(path).__name__}."
        )
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            "`path` is a directory, but a teacher cache is one file. Expected a "
            f"file path such as '{path / 'teacher.kdcache'}'. Received: path='{path}'."
        )
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ValueError(
            f"The directory of `path`, '{parent}', {what}. Expected a file path "
            f"in an existing directory (create it first). Received: path='{path}'."
        )
    if path.exists():
        if not path.is_file():
            raise ValueError(
                "`path` exists and is not a regular file. Expected a new path or "
                f"an earlier teacher cache. Received: path='{path}'."
            )
        with open(path, "rb") as file:
            head = file.read(len(magic))
        if head and head != magic:
            # Strict on purpose: replacing it would delete someone's data.
            raise ValueError(
                "`path` is an existing file that is not a keras-kd teacher cache "
                f"(it starts with {head!r}, not {magic!r}), so it is not "
                "overwritten. Expected a new path or an earlier teacher cache. "
                f"Received: path='{path}'."
            )
    check_writable_directory(path)
    return path


def header_room(header: dict, growing: Sequence[str]) -> int:
    """The aligned offset of the data after a header whose `growing` counts
    are only known at the end: room is reserved for their largest values."""
    worst = dict(header, **{key: 2**62 for key in growing})
    offset = PREFIX + len(json.dumps(worst).encode()) + 64
    return -(-offset // ALIGN) * ALIGN


def encode_header(header: dict, data_offset: int, magic: bytes) -> bytes:
    text = json.dumps(header).encode()
    room = data_offset - PREFIX
    return magic + np.uint64(room).tobytes() + text + b" " * (room - len(text))


@contextlib.contextmanager
def partial_cache_file(path: Path, magic: bytes, data_offset: int) -> Iterator[BinaryIO]:
    """A new file, opened for writing after `data_offset` bytes of room for
    the header, that replaces `path` when the block completes.

    The file has a name of this writer's own (pid and random suffix), so two
    processes caching to one path each write a whole file and the last
    rename wins; it is on disk before the rename, so a crash cannot leave an
    empty file under the final name; and on any error it is removed, so an
    interrupted run never leaves a file that looks finished.
    """
    partial = unique_sibling(path, "partial")
    try:
        # os.open, not mkstemp: the file gets the umask's permissions.
        handle = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        with os.fdopen(handle, "wb") as file:
            file.write(b"\0" * data_offset)
            yield file
            file.flush()
            os.fsync(file.fileno())
        # Again: the pass took a while, and what is at `path` may have
        # changed (a directory, someone's file) since the first check.
        check_cache_path(path, magic)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def write_checksummed(file: BinaryIO, digest, array: np.ndarray) -> None:
    """Appends `array`'s bytes to `file` and to the running `digest`."""
    chunk = array.tobytes()
    digest.update(chunk)
    file.write(chunk)


def write_header(file: BinaryIO, header: dict, data_offset: int, magic: bytes) -> None:
    """Writes the final header into the room reserved at the file's start."""
    file.seek(0)
    file.write(encode_header(header, data_offset, magic))


def finish_progbar(progbar: keras.utils.Progbar, steps: int) -> None:
    # The step count is only known now for datasets of unknown size.
    progbar.target = steps
    progbar.update(steps, finalize=True)


def read_prefix(file, path, magic: bytes, what: str, hint: str = "") -> int:
    """Checks a cache file's magic bytes and returns its header length."""
    prefix = file.read(PREFIX)
    if len(prefix) < PREFIX or prefix[: len(magic)] != magic:
        raise ValueError(
            f"{str(path)!r} is not a keras-kd {what} (bad magic bytes "
            f"{prefix[:len(magic)]!r}, expected {magic!r}).{hint}"
        )
    return int(np.frombuffer(prefix[len(magic):], "<u8")[0])


def read_header(path: Path, magic: bytes, what: str, version: int,
                check: Callable[[dict, int], bool], hint: str = "") -> dict:
    """Reads and checks the header of the cache file at `path`.

    `check(header, room)` says whether the header's counts, record sizes and
    offsets agree with each other (`room`: the header's length on disk); a
    `KeyError`, `TypeError` or `ValueError` it raises means a missing or
    malformed field. Either way the error names `what` ("teacher cache",
    "LM teacher cache"), the file and the format `version` expected; any
    other exception of `check` propagates unchanged.
    """
    if not path.is_file():
        raise FileNotFoundError(f"No {what} at `path`={str(path)!r}.")
    with open(path, "rb") as file:
        room = read_prefix(file, path, magic, what, hint)
        try:
            header = json.loads(file.read(room).decode())
            consistent = check(header, room)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"The header of {what} {str(path)!r} is corrupted "
                f"({type(error).__name__}: {error})."
            ) from None
    if not consistent:
        raise ValueError(
            f"The header of {what} {str(path)!r} is inconsistent "
            f"(format version {header.get('format_version')}, expected "
            f"{version}); the file is corrupted or from another version."
        )
    return header


def file_digest(path: Path, offset: int, length: int) -> str:
    """The blake2b digest of `length` bytes of a file from `offset`, read
    about 16 MB at a time."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        file.seek(offset)
        while length > 0 and (chunk := file.read(min(CHUNK, length))):
            digest.update(chunk)
            length -= len(chunk)
    return digest.hexdigest()


def index_ranges(indices: np.ndarray) -> str:
    """`[3, 4, 5, 9]` -> "3..5, 9" (at most a few ranges)."""
    ranges, start = [], None
    for position, index in enumerate(indices):
        if start is None:
            start = index
        if position + 1 == len(indices) or indices[position + 1] != index + 1:
            ranges.append(str(start) if start == index else f"{start}..{index}")
            start = None
    return ", ".join(ranges[:5]) + (", ..." if len(ranges) > 5 else "")
