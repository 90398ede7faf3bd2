"""Export a student to SavedModel or LiteRT (TFLite), with a parity check.

`export()` writes the student alone (given a `Distiller`, its teacher, its
distillation terms and its temperature stay behind), optionally quantized,
then loads the written artifact, runs it on held-out data and compares it with
the Keras student. The file only appears at the target path once that check
has passed.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, List, Optional, Union

import keras
import numpy as np
from keras import ops

from keras_kd.src import keras_compat
from keras_kd.src.report import evaluation
from keras_kd.src.utils import arguments, keys, optional
from keras_kd.src.utils.io_utils import check_verbose as _check_verbose
from keras_kd.src.utils.io_utils import check_writable_directory, remove_empty_directories
from keras_kd.src.utils.io_utils import unique_sibling as _unique_sibling
from keras_kd.src.utils.model_outputs import ends_in_softmax as _ends_in_softmax

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = (None, "float16", "dynamic", "int8")
OUTPUTS = keys.OUTPUT_KINDS

#: Name of the serving signature, in the SavedModel and in the `.tflite` file.
SIGNATURE_NAME = "serving_default"

#: Largest max |p_export - p_keras| allowed, per quantization.
MAX_ABS_DIFF = {None: 1e-5, "float16": 1e-3}
#: Smallest top-1 agreement with the float Keras student allowed, for the
#: quantizations that change the arithmetic (where probabilities move).
MIN_TOP1_AGREEMENT = 0.99

_VERIFY_BATCH_SIZE = 256


class ParityError(RuntimeError):
    """The exported artifact does not compute what the Keras model does.

    `error.report` holds the `ParityReport`.
    """

    def __init__(self, message: str, report: Optional["ParityReport"] = None):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass
class ParityReport:
    """How closely an exported artifact follows the Keras model.

    Attributes:
        num_examples: Number of inputs compared (of positions, for a model
            with sequence outputs such as a causal LM).
        data: Where they came from (`"verification data"`, ...).
        max_abs_diff: Largest absolute difference of the class
            probabilities (softmax at T = 1), over all examples and classes.
        top1_agreement: Fraction of examples whose arg-max class matches.
        criterion: `"max_abs_diff"` or `"top1_agreement"`: the bounded one.
        bound: The bound on `criterion`.
        passed: Whether the bound holds.
        keras_accuracy, export_accuracy: Accuracy of each on the labels,
            when the data came with labels; `None` otherwise.
    """

    num_examples: int
    data: str
    max_abs_diff: float
    top1_agreement: float
    criterion: str
    bound: float
    passed: bool
    keras_accuracy: Optional[float] = None
    export_accuracy: Optional[float] = None

    def __str__(self) -> str:
        if self.criterion == "max_abs_diff":
            check = f"max |p_export - p_keras| = {self.max_abs_diff:.3g} (bound <= {self.bound:g})"
            other = f"top-1 agreement {100 * self.top1_agreement:.2f}%"
        else:
            check = (f"top-1 agreement = {100 * self.top1_agreement:.2f}% "
                     f"(bound >= {100 * self.bound:.2f}%)")
            other = f"max |p_export - p_keras| {self.max_abs_diff:.3g}"
        lines = [
            f"  {self.num_examples} examples ({self.data}): {check}: "
            f"{'PASS' if self.passed else 'FAIL'}; {other}"
        ]
        if self.keras_accuracy is not None:
            lines.append(
                f"  accuracy: keras {100 * self.keras_accuracy:.2f}%, "
                f"export {100 * self.export_accuracy:.2f}%"
            )
        return "\n".join(lines)


@dataclasses.dataclass
class ExportResult:
    """What `export()` wrote.

    Attributes:
        path: The artifact (a `.tflite` file or a SavedModel directory).
        format: `"saved_model"` or `"tflite"`.
        quantization: `None`, `"float16"`, `"dynamic"` or `"int8"`.
        outputs: `"logits"` or `"probabilities"`.
        input_name, output_name: Names of the input and output tensors in
            the serving signature.
        int8_io: Whether the TFLite input and output tensors are int8.
        size_bytes: Size on disk.
        parity: The `ParityReport`, or `None` when `verify=False`.
    """

    path: str
    format: str
    quantization: Optional[str]
    outputs: str
    input_name: str
    output_name: str
    int8_io: bool
    size_bytes: int
    parity: Optional[ParityReport] = None

    def __str__(self) -> str:
        kind = self.format if self.quantization is None else f"{self.format}, {self.quantization}"
        if self.int8_io:
            kind += ", int8 input/output"
        head = (f"Exported {self.path} ({kind}; {self.size_bytes / 1024:.1f} KiB): "
                f"signature '{SIGNATURE_NAME}' {self.input_name} -> {self.output_name}")
        if self.parity is None:
            return head + "\n  (not verified)"
        return head + "\nParity with the Keras model:\n" + str(self.parity)


# ---------------------------------------------------------------- validation


def _resolve_model(model_or_distiller) -> keras.Model:
    """The model to export: the student of a `Distiller`, or the model."""
    from keras_kd.src.distiller.distiller import Distiller

    if isinstance(model_or_distiller, Distiller):
        model = model_or_distiller.student
    elif isinstance(model_or_distiller, keras.Model):
        model = model_or_distiller
    else:
        raise TypeError(
            "`model_or_distiller` must be a `keras.Model` or a "
            f"`keras_kd.Distiller`. Received: {model_or_distiller!r} of type "
            f"{type(model_or_distiller).__name__}."
        )
    if not model.built:
        raise ValueError(
            f"The model {model.name!r} was never built, so its input shape is "
            "unknown and there is nothing to export. Build it first: create "
            "it with `keras.Input(...)`, call `model.build(input_shape)`, or "
            "call it on a batch of data."
        )
    return model


def _input_spec(model: keras.Model):
    """`(name, feature_shape, dtype)` of the model's single input."""
    try:
        signature = keras_compat.input_signature(model)
    except ValueError as error:
        raise ValueError(
            f"Cannot tell the input shape of model {model.name!r}: {error} "
            "Call the model on a batch of data before exporting it."
        ) from error
    specs = keras.tree.flatten(signature)
    if len(specs) != 1:
        raise ValueError(
            "`export` supports models with a single input tensor. Received: "
            f"model {model.name!r} with {len(specs)} inputs."
        )
    spec = specs[0]
    shape = tuple(spec.shape)
    name = re.sub(r"[^A-Za-z0-9_]", "_", spec.name or "") or "inputs"
    if name[0].isdigit():
        name = "input_" + name
    return name, shape[1:], keras.backend.standardize_dtype(spec.dtype)


def _dict_input_specs(model: keras.Model):
    """`{name: (feature_shape, dtype)}` of a model whose inputs are a dict of
    tensors (a keras-hub `CausalLM`: `token_ids`, `padding_mask`), else None."""
    try:
        signature = keras_compat.input_signature(model)
    except ValueError:
        return None
    if isinstance(signature, (list, tuple)) and len(signature) == 1:
        signature = signature[0]
    if not isinstance(signature, dict):
        return None
    specs = {}
    for name, spec in signature.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(
                f"`export` names the artifact's inputs after the model's input keys, "
                f"but {name!r} is not a valid tensor name. Received: model "
                f"{model.name!r} with inputs {sorted(signature)}."
            )
        specs[name] = (tuple(spec.shape)[1:], keras.backend.standardize_dtype(spec.dtype))
    return specs


def _count(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _rows(x, start: int, stop: int):
    if isinstance(x, dict):
        return {name: value[start:stop] for name, value in x.items()}
    return x[start:stop]


def _as_dict_inputs(data, argument: str, specs: dict, limit: Optional[int] = None):
    """`(x, None)`: a dict of numpy arrays, one per input of `specs`, from a
    dict, an `(x, y[, sample_weight])` tuple or a `tf.data.Dataset` of batches
    of either (labels are not used: the outputs are compared per position)."""
    import tensorflow as tf

    if isinstance(data, tf.data.Dataset):
        parts = []
        for element in data.as_numpy_iterator():
            parts.append(element[0] if isinstance(element, tuple) else element)
            if limit is not None and sum(map(_count, parts)) >= limit:
                break
        if not parts or not isinstance(parts[0], dict):
            raise ValueError(
                f"`{argument}` must yield dicts of inputs {sorted(specs)} (or `(x, y)` "
                "batches with such an `x`)."
            )
        data = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    elif isinstance(data, tuple) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict) or set(data) != set(specs):
        received = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"The model takes a dict of inputs {sorted(specs)}, so `{argument}` must be "
            f"a dict with exactly these keys (or an `(x, y)` tuple or a tf.data.Dataset "
            f"of them). Received: {received}."
        )
    x = {}
    for name, (feature_shape, dtype) in specs.items():
        value = np.asarray(data[name])
        if value.ndim != len(feature_shape) + 1 or any(
            want is not None and want != got for want, got in zip(feature_shape, value.shape[1:])
        ):
            raise ValueError(
                f"`{argument}['{name}']` does not match the model's input shape "
                f"(batch, {', '.join('None' if d is None else str(d) for d in feature_shape)}). "
                f"Received shape {value.shape}."
            )
        x[name] = value.astype(dtype, copy=False)
    if len({len(value) for value in x.values()}) != 1:
        raise ValueError(
            f"`{argument}`'s inputs hold different numbers of examples: "
            f"{ {name: len(value) for name, value in x.items()} }."
        )
    if _count(x) == 0:
        raise ValueError(f"`{argument}` holds no examples.")
    if limit is not None:
        x = _rows(x, 0, limit)
    return x, None


def _check_single_output(model: keras.Model, feature_shape, dtype: str) -> None:
    """Refuses a model with several outputs.

    The artifact has one output tensor; TF would stack outputs of equal
    widths into a `(outputs, batch, classes)` tensor that still passes the
    parity check, and fail with a cryptic `Pack` error on unequal widths.
    """
    try:
        structure = model.output  # functional and Sequential models
    except (AttributeError, ValueError):
        try:  # subclassed: trace `call` symbolically, no computation
            structure = model.compute_output_spec(
                keras.KerasTensor((None, *feature_shape), dtype=dtype)
            )
        except Exception:  # any tracing failure: the export will report it
            return
    flat = keras.tree.flatten(structure)
    if len(flat) <= 1:
        return
    if isinstance(structure, dict):
        names = list(structure)
    else:
        names = getattr(model, "output_names", None)
        if not names or len(names) != len(flat):
            names = [f"output_{index}" for index in range(len(flat))]
    described = ", ".join(
        f"{name!r} {tuple(tensor.shape)}" for name, tensor in zip(names, flat)
    )
    raise ValueError(
        "`export` writes a model with a single output tensor (the logits). "
        f"Received: model {model.name!r} with {len(flat)} outputs: {described}. "
        "Wrap the model so it returns the logits tensor, e.g. "
        "`keras.Model(model.inputs, model.outputs[0])`, and export that."
    )


_check_choice = arguments.choice


def _infer_format(path: Path, format: Optional[str]) -> str:
    if format is None:
        return "tflite" if path.suffix == ".tflite" else "saved_model"
    _check_choice(format, FORMATS, "format")
    return format


def _as_inputs(data, argument: str, feature_shape, dtype: str, limit: Optional[int] = None):
    """`(x, y)` numpy arrays from an array, an `(x, y)` tuple or a
    `tf.data.Dataset`; checks `x` against the model's input. `y` may be None.
    """
    import tensorflow as tf

    labels = None
    if isinstance(data, tf.data.Dataset):
        data, labels = _dataset_arrays(data, argument, feature_shape, limit)
    elif isinstance(data, tuple) and len(data) == 2:
        data, labels = data
        labels = np.asarray(labels)
    if not isinstance(data, np.ndarray) and not hasattr(data, "__array__"):
        raise TypeError(
            f"`{argument}` must be a numpy array of inputs, an `(x, y)` tuple "
            f"or a `tf.data.Dataset`. Received: {argument} of type "
            f"{type(data).__name__}."
        )
    x = np.asarray(data)
    _check_input_array(x, argument, feature_shape, dtype)
    if labels is not None and len(labels) != len(x):
        raise ValueError(
            f"`{argument}` has {len(x)} inputs but {len(labels)} labels."
        )
    if limit is not None:
        x = x[:limit]
        labels = None if labels is None else labels[:limit]
    return x.astype(dtype, copy=False), labels


def _dataset_arrays(dataset: Any, argument: str, feature_shape: tuple,
                    limit: Optional[int]) -> tuple:
    """`(x, y)` numpy arrays gathered from a `tf.data.Dataset` of inputs or
    `(x, y)` pairs, batched or not; `y` is None unless every element has
    labels."""
    if limit is not None:
        # Enough elements even if the dataset is not batched.
        dataset = dataset.take(limit)
    xs, ys = [], []
    rank = len(feature_shape)
    for element in dataset.as_numpy_iterator():
        x, y = element[:2] if isinstance(element, tuple) else (element, None)
        x = np.asarray(x)
        if x.ndim == rank:  # an unbatched element: one example
            x = x[None]
            y = None if y is None else np.asarray(y)[None]
        xs.append(x)
        if y is not None:
            ys.append(np.asarray(y))
    if not xs:
        raise ValueError(f"`{argument}` is an empty dataset.")
    return np.concatenate(xs), (np.concatenate(ys) if len(ys) == len(xs) else None)


def _check_input_array(x: np.ndarray, argument: str, feature_shape: tuple, dtype: str) -> None:
    """Refuses inputs of another shape than the model's, none at all, or of
    the wrong kind of dtype (floats for an integer input, or the reverse)."""
    expected = "(batch, " + ", ".join("None" if d is None else str(d) for d in feature_shape) + ")"
    compatible = x.ndim == len(feature_shape) + 1 and all(
        want is None or want == got for want, got in zip(feature_shape, x.shape[1:])
    )
    if not compatible:
        raise ValueError(
            f"`{argument}` does not match the model's input shape {expected}. "
            f"Received: {argument} with shape {x.shape}."
        )
    if len(x) == 0:
        raise ValueError(f"`{argument}` holds no examples (shape {x.shape}).")
    want_float = np.issubdtype(np.dtype(dtype), np.floating)
    if want_float != np.issubdtype(x.dtype, np.floating) or x.dtype == np.bool_:
        # Casting would run the model on garbage (e.g. uint8 pixels 0..255 for
        # a model trained on [0, 1]): the user has to convert.
        hint = (" Scale and cast it the way the model was trained, e.g. "
                "`x.astype('float32') / 255`." if want_float else "")
        raise ValueError(
            f"`{argument}` has dtype {x.dtype}, but the model's input is "
            f"{dtype}.{hint}"
        )


# --------------------------------------------------------------- writing


#: What a SavedModel directory may hold at its top level. Anything else in an
#: existing directory is taken for user data, and the directory is not replaced.
_SAVED_MODEL_ENTRIES = frozenset({
    "saved_model.pb", "saved_model.pbtxt", "fingerprint.pb", "keras_metadata.pb",
    "variables", "assets", "assets.extra",
})
_VARIABLES_FILE = re.compile(r"variables\.(index|data-\d{5}-of-\d{5})")
#: A LiteRT/TFLite flatbuffer has its file identifier at bytes 4..8.
_TFLITE_IDENTIFIER = b"TFL3"
#: File suffixes of Keras model files: never the name of a SavedModel.
_MODEL_FILE_SUFFIXES = (".keras", ".h5", ".hdf5", ".weights.h5")


def _not_a_saved_model(directory: Path) -> Optional[str]:
    """Why `directory` is not (only) a SavedModel, or None if it is one.

    Strict on purpose: the directory is deleted when it is replaced, so a
    single entry that a SavedModel does not have (a project's `src/`, a
    `.keras` file, results) keeps it.
    """
    entries = {entry.name: entry for entry in os.scandir(directory)}
    if not entries:
        return None  # an empty directory: nothing to lose
    foreign = sorted(set(entries) - _SAVED_MODEL_ENTRIES)
    if foreign:
        shown = foreign[:5] + (["..."] if len(foreign) > 5 else [])
        return f"it holds entries that are not part of a SavedModel: {shown}"
    if "saved_model.pb" not in entries:
        return "it has no 'saved_model.pb'"
    for name, entry in entries.items():
        if entry.is_symlink():
            return f"'{name}' is a symbolic link"
        wants_dir = name in ("variables", "assets", "assets.extra")
        if entry.is_dir() != wants_dir:
            return f"'{name}' is a {'directory' if entry.is_dir() else 'file'}"
    if "variables" in entries:
        for entry in os.scandir(entries["variables"].path):
            if entry.is_symlink() or not entry.is_file() or not _VARIABLES_FILE.fullmatch(entry.name):
                return f"'variables/{entry.name}' is not a variables file"
    return None


def _not_a_tflite_file(file: Path) -> Optional[str]:
    """Why `file` is not a LiteRT flatbuffer, or None if it is one (or empty)."""
    with open(file, "rb") as handle:
        head = handle.read(8)
    if not head:
        return None  # an empty file: nothing to lose
    if len(head) < 8 or head[4:8] != _TFLITE_IDENTIFIER:
        return (f"its bytes 4..8 are {head[4:8]!r}, not the TFLite identifier "
                f"{_TFLITE_IDENTIFIER!r}")
    return None


def _check_target(path: Path, format: str, overwrite: bool) -> None:
    """Refuses a `path` whose current content is not an earlier artifact of
    the same kind, since exporting there would delete it."""
    expected = ("a new path, an empty directory or an earlier SavedModel directory"
                if format == "saved_model" else
                "a new path, an empty file or an earlier .tflite file")
    def refuse(why: str) -> ValueError:
        return ValueError(
            f"`path` {why}, so exporting a {format} there would destroy it. "
            f"Expected {expected}. Received: path='{path}'."
        )

    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        where = "the current working directory" if resolved == cwd else (
            f"an ancestor of the current working directory '{cwd}'")
        raise refuse(f"is {where}")
    if format == "saved_model" and path.name.lower().endswith(_MODEL_FILE_SUFFIXES):
        raise ValueError(
            f"`path` ends in '{path.suffix}', the suffix of a Keras model file, "
            "but a SavedModel is a directory. Expected a directory name such as "
            "'student_savedmodel' (or a path ending in '.tflite' for LiteRT). "
            f"Received: path='{path}'."
        )
    if not (path.exists() or path.is_symlink()):
        return
    if not overwrite:
        raise ValueError(
            f"`path` already exists and `overwrite=False`. Received: path='{path}'."
        )
    if path.is_symlink():
        raise refuse(f"is a symbolic link (to '{os.readlink(path)}')")
    is_dir = path.is_dir()
    if is_dir != (format == "saved_model"):
        raise ValueError(
            f"`path` '{path}' is an existing {'directory' if is_dir else 'file'}; "
            f"a {format} export writes a {'directory' if format == 'saved_model' else 'file'}. "
            "Choose another path or remove it."
        )
    why = _not_a_saved_model(path) if is_dir else (
        _not_a_tflite_file(path) if path.is_file() else "is not a regular file")
    if why is not None:
        raise refuse(f"is not an earlier {format} export: {why}")


def _prepare_target(path: Path, format: str, overwrite: bool) -> List[Path]:
    """Fails early, before any conversion, if `path` cannot be written.
    Returns the directories it created for `path` (deepest first)."""
    _check_target(path, format, overwrite)
    return check_writable_directory(path)


def _exchange(first: Path, second: Path) -> bool:
    """Swaps two paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`).

    Returns False where the system or the file system cannot do it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl, ...
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _replace(temporary: Path, path: Path) -> None:
    """Puts `temporary` (in the same directory) at `path`.

    A file is renamed over the old one. A directory cannot be renamed over a
    non-empty one, so the two are swapped atomically where the system can;
    elsewhere the old one is moved aside and moved back if the second rename
    fails. Either way `path` is never half-written and a failure keeps the
    old artifact.
    """
    if not (temporary.is_dir() and path.is_dir()):
        os.replace(temporary, path)
        return
    if _exchange(temporary, path):
        shutil.rmtree(temporary, ignore_errors=True)  # it now holds the old artifact
        return
    aside = _unique_sibling(path, "old")
    os.rename(path, aside)
    try:
        os.rename(temporary, path)
    except BaseException:
        os.rename(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _write_saved_model(model, directory: str, input_name, feature_shape, dtype, outputs,
                       model_gives_probabilities: bool, dict_specs=None) -> None:
    import tensorflow as tf

    if dict_specs is None:
        signature = tf.TensorSpec((None, *feature_shape), dtype, name=input_name)
    else:
        signature = {
            name: tf.TensorSpec((None, *shape), spec_dtype, name=name)
            for name, (shape, spec_dtype) in dict_specs.items()
        }

    def serve(inputs):
        values = ops.cast(model(inputs, training=False), "float32")
        if outputs == "probabilities" and not model_gives_probabilities:
            values = ops.softmax(values)
        return {outputs: values}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE_NAME,
        serve,
        input_signature=[signature],
    )
    archive.write_out(directory, verbose=False)


def _remedies(quantization, quantization_aware: bool, calibration, parity: "ParityReport",
              num_calibration_examples: int, held_out: bool) -> str:
    """What the user can do about a failed parity check, as one message."""
    lines = ["What you can do:"]
    if quantization == "int8" and not quantization_aware:
        used = 0 if calibration is None else len(calibration)
        lines += [
            f"  - calibrate on more, or more typical, data: `representative_data` "
            f"({used} examples used; at most `num_calibration_examples`="
            f"{num_calibration_examples}), drawn from the training distribution;",
            "  - train the student quantization-aware: `qat = keras_kd.quantization_aware("
            "student, calibration_data=x_train[:1000])`, distil `qat` a few epochs at a "
            "low learning rate, then export it (no calibration data needed);",
            "  - export with quantization='dynamic' (int8 weights, float activations) "
            "or 'float16' instead;",
        ]
    elif quantization == "int8":
        lines += [
            "  - distil the quantization-aware student longer (its ranges and weights "
            "adapt to int8 as it trains), or from a better float student;",
            "  - export with quantization='dynamic' or 'float16' instead;",
        ]
    elif quantization == "dynamic":
        lines += [
            "  - full-integer quantization with a quantization-aware student: "
            "`keras_kd.quantization_aware(student)`, distilled a few epochs, exported "
            "with quantization='int8';",
            "  - export with quantization='float16' (or None) instead;",
        ]
    elif quantization == "float16":
        lines += ["  - export in float32 (quantization=None) instead;"]
    if not held_out and parity.criterion == "top1_agreement":
        lines.append("  - check on held-out data (`verification_data=(x_test, y_test)`), "
                     "not only the calibration inputs;")
    if parity.criterion == "top1_agreement":
        lines.append(
            f"  - or accept the result knowingly: `min_top1_agreement="
            f"{max(0.0, np.floor(100 * parity.top1_agreement) / 100):.2f}` "
            f"(received min_top1_agreement={parity.bound:g}).")
    else:
        lines.append(
            f"  - or accept the result knowingly: `max_abs_diff={parity.max_abs_diff:.2g}` "
            f"(the bound was {parity.bound:g}).")
    return "\n".join(lines)


#: LiteRT ops that compute (as opposed to move or convert) values: in a full
#: integer model none of them may run on float32 tensors.
_COMPUTE_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "ADD", "MUL",
    "SUB", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "RELU", "RELU6", "LEAKY_RELU",
    "TANH", "LOGISTIC", "SOFTMAX", "CONCATENATION", "RESHAPE", "TRANSPOSE_CONV",
    # Reductions, lookups and arithmetic of pooled / embedded tensors.
    "SUM", "DIV", "GATHER", "REDUCE_MAX", "REDUCE_MIN", "SELECT_V2", "SQUARED_DIFFERENCE",
    "RSQRT",
})


def float_ops(flatbuffer: bytes) -> list:
    """Names of the compute ops of a LiteRT model that take float32 inputs
    (empty for a fully int8 model)."""
    Interpreter = optional.require("ai_edge_litert.interpreter").Interpreter

    interpreter = Interpreter(model_content=bytes(flatbuffer))
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():
        if op["op_name"] in _COMPUTE_OPS and any(
                dtypes.get(index) == np.float32 for index in op["inputs"] if index >= 0):
            found.append(op["op_name"])
    return found


def _convert_to_tflite(saved_model_dir: str, quantization, calibration, int8_io: bool,
                       quantization_aware: bool = False) -> bytes:
    """The LiteRT flatbuffer of the SavedModel's serving signature."""
    if quantization == "int8" and quantization_aware:
        return _convert_quantization_aware(saved_model_dir, int8_io)
    return _convert_post_training(saved_model_dir, quantization, calibration, int8_io)


def _builtin_ops_converter(saved_model_dir: str) -> Any:  # a tf.lite.TFLiteConverter
    """A `tf.lite.TFLiteConverter` of the serving signature, limited to
    builtin ops."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[SIGNATURE_NAME]
    )
    # Builtin ops only: a file that needs the Flex (TF ops) delegate would not
    # run in a plain LiteRT runtime, which is the point of exporting.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _convert_quantization_aware(saved_model_dir: str, int8_io: bool) -> bytes:
    """Full-integer conversion of a quantization-aware model, checked to be
    int8 throughout."""
    import tensorflow as tf

    # The fake-quant ops in the graph carry every range: the converter's
    # quantization-aware path needs no representative dataset (and
    # TFLITE_BUILTINS_INT8 would demand one), so int8-ness is checked on
    # the result instead.
    converter = _builtin_ops_converter(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():
            # "Statistics for quantized inputs were expected": they are in the graph.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            flatbuffer = converter.convert()
    except Exception as error:
        raise RuntimeError(
            f"The LiteRT converter failed on the quantization-aware model: {error}"
        ) from error
    still_float = float_ops(flatbuffer)
    if still_float:
        raise RuntimeError(
            "The quantization-aware model did not convert to a full-integer model: "
            f"these ops still run in float32: {sorted(set(still_float))}. A tensor "
            "feeding them has no fake-quantization range."
        )
    return flatbuffer


def _convert_post_training(saved_model_dir: str, quantization: Optional[str],
                           calibration: Optional[np.ndarray], int8_io: bool) -> bytes:
    """Float32, or post-training quantization (`"int8"` calibrated on
    `calibration`)."""
    import tensorflow as tf

    converter = _builtin_ops_converter(saved_model_dir)
    if quantization is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        def representative_dataset():
            for index in range(len(calibration)):
                yield [calibration[index : index + 1]]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    try:
        return converter.convert()
    except Exception as error:  # the converter raises several private types
        raise RuntimeError(
            f"The LiteRT converter failed (quantization={quantization!r}): {error}"
        ) from error


# ------------------------------------------------------------------ running


def run_tflite(
    model: Union[str, os.PathLike, bytes],
    inputs: np.ndarray,
    batch_size: int = _VERIFY_BATCH_SIZE,
    num_threads: Optional[int] = None,
) -> np.ndarray:
    """Runs a `.tflite` model with the LiteRT interpreter on a batch of inputs.

    Quantized (int8) input and output tensors are handled as an app would:
    float inputs are quantized with the input tensor's scale and zero point,
    and outputs are dequantized to float32.

    Args:
        model: Path to a `.tflite` file, or its bytes.
        inputs: A numpy array of shape `(batch, ...)`, or for a model with
            several named inputs (a keras-hub `CausalLM`) a dict of them.
        batch_size: Examples per interpreter invocation.
        num_threads: Interpreter threads; `None` lets LiteRT choose.

    Returns:
        The model's outputs as a float32 array of shape `(batch, classes)`.

    Example:

    >>> probabilities = run_tflite("student.tflite", x_test[:8])  # doctest: +SKIP
    """
    return _run_tflite(model, inputs, batch_size, num_threads)


def _run_tflite(model, inputs, batch_size: int, num_threads: Optional[int] = None,
                on_batch: Optional[Callable[[], None]] = None) -> np.ndarray:
    """`run_tflite`, calling `on_batch()` after each invocation (progress)."""
    Interpreter = optional.require("ai_edge_litert.interpreter").Interpreter

    if isinstance(model, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
    else:
        interpreter = Interpreter(model_path=os.fspath(model), num_threads=num_threads)
    if isinstance(inputs, dict):
        # Several named inputs: the signature runner matches them by name.
        runner = interpreter.get_signature_runner(SIGNATURE_NAME)
        results = []
        for start in range(0, _count(inputs), batch_size):
            outputs = runner(**_rows(inputs, start, start + batch_size))
            results.append(np.asarray(next(iter(outputs.values())), dtype=np.float32))
            if on_batch is not None:
                on_batch()
        return np.concatenate(results)
    input_detail = interpreter.get_input_details()[0]
    output_index = interpreter.get_output_details()[0]["index"]
    inputs = np.asarray(inputs)
    results, allocated = [], None
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size]
        if allocated != len(batch):
            interpreter.resize_tensor_input(input_detail["index"], [len(batch), *batch.shape[1:]])
            interpreter.allocate_tensors()
            allocated = len(batch)
        interpreter.set_tensor(input_detail["index"], quantize_input(batch, input_detail))
        interpreter.invoke()
        detail = interpreter.get_output_details()[0]
        results.append(dequantize_output(interpreter.get_tensor(output_index), detail))
        if on_batch is not None:
            on_batch()
    return np.concatenate(results)


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Casts float inputs to a LiteRT input tensor's dtype, quantizing them
    with its scale and zero point when the tensor is an integer one."""
    dtype = detail["dtype"]
    if not np.issubdtype(dtype, np.integer) or not np.issubdtype(np.asarray(x).dtype, np.floating):
        return np.asarray(x, dtype=dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """A LiteRT output tensor as float32, dequantized when it is an integer one."""
    scale, zero_point = detail["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
        return (y.astype(np.float32) - zero_point) * scale
    return y.astype(np.float32)


def _run_saved_model(directory: str, input_name: str, output_name: str, x,
                     on_batch: Optional[Callable[[], None]] = None) -> np.ndarray:
    import tensorflow as tf

    signature = tf.saved_model.load(directory).signatures[SIGNATURE_NAME]
    named = x if isinstance(x, dict) else {input_name: x}
    outputs = []
    for start in range(0, _count(named), _VERIFY_BATCH_SIZE):
        batch = {name: tf.constant(value) for name, value in
                 _rows(named, start, start + _VERIFY_BATCH_SIZE).items()}
        outputs.append(signature(**batch)[output_name].numpy())
        if on_batch is not None:
            on_batch()
    return np.concatenate(outputs).astype(np.float32)


def _compare(keras_outputs, exported, outputs, x_source, labels, quantization,
             max_abs_diff, min_top1_agreement, model_gives_probabilities) -> ParityReport:
    keras_p = (keras_outputs.astype(np.float64) if model_gives_probabilities
               else evaluation.softmax(keras_outputs))
    export_p = exported.astype(np.float64) if outputs == "probabilities" else evaluation.softmax(exported)
    diff = float(np.max(np.abs(export_p - keras_p)))
    agreement = float(np.mean(np.argmax(export_p, -1) == np.argmax(keras_p, -1)))
    if quantization in MAX_ABS_DIFF:
        bound = MAX_ABS_DIFF[quantization] if max_abs_diff is None else max_abs_diff
        criterion, passed = "max_abs_diff", diff <= bound
    else:
        bound = min_top1_agreement
        criterion, passed = "top1_agreement", agreement >= bound
    keras_accuracy = export_accuracy = None
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 2:  # one-hot
            labels = np.argmax(labels, -1)
        labels = labels.reshape(-1)
        keras_accuracy = float(np.mean(np.argmax(keras_p, -1).reshape(-1) == labels))
        export_accuracy = float(np.mean(np.argmax(export_p, -1).reshape(-1) == labels))
    return ParityReport(
        num_examples=int(np.prod(keras_p.shape[:-1])), data=x_source, max_abs_diff=diff,
        top1_agreement=agreement, criterion=criterion, bound=bound, passed=passed,
        keras_accuracy=keras_accuracy, export_accuracy=export_accuracy,
    )


# ------------------------------------------------------------------ export


def _check_export_options(model, format: str, quantization, representative_data,
                          int8_io: bool, num_calibration_examples) -> bool:
    """Refuses export options that do not go together, before any work;
    returns whether `model` is quantization-aware."""
    if format == "saved_model" and quantization is not None:
        raise ValueError(
            "Quantization applies to TFLite exports only. Received: "
            f"format='saved_model', quantization={quantization!r}. Use "
            "format='tflite' (or a path ending in '.tflite')."
        )
    if int8_io and quantization != "int8":
        raise ValueError(
            "`int8_io=True` needs full-integer quantization. Received: "
            f"int8_io=True, quantization={quantization!r}; use quantization='int8'."
        )
    from keras_kd.src.export.quantization import is_quantization_aware, uncalibrated_quantizers

    quantization_aware = is_quantization_aware(model)
    if quantization == "int8" and representative_data is None and not quantization_aware:
        raise ValueError(
            "quantization='int8' needs `representative_data`: a few hundred "
            "typical inputs to calibrate the activation ranges (or a student "
            "made with `keras_kd.quantization_aware`, which learned them)."
        )
    if quantization == "int8" and quantization_aware:
        unset = uncalibrated_quantizers(model)
        if unset:
            raise ValueError(
                f"The quantization-aware model {model.name!r} has activation ranges "
                f"that were never set ({len(unset)}: {unset[:3]}{'...' if len(unset) > 3 else ''}): "
                "it was neither calibrated nor trained. Pass `calibration_data` to "
                "`keras_kd.quantization_aware`, or train it for at least one step."
            )
    if representative_data is not None and quantization != "int8":
        raise ValueError(
            "`representative_data` is only used by quantization='int8'. "
            f"Received: quantization={quantization!r}. Pass the held-out "
            "inputs as `verification_data` instead."
        )
    if not isinstance(num_calibration_examples, int) or num_calibration_examples < 1:
        raise ValueError(
            "`num_calibration_examples` must be a positive integer. "
            f"Received: num_calibration_examples={num_calibration_examples!r}."
        )
    return quantization_aware


def _verification_inputs(model, format: str, quantization, verify: bool, verification_data,
                         calibration, dict_specs, input_name, feature_shape, dtype):
    """`(x_check, y_check, source)`: the inputs the parity check runs on, and
    what they are (held-out data, calibration data, or random inputs, with a
    warning); all `None` without verification."""
    x_check = y_check = source = None
    if verify and dict_specs is not None:
        if verification_data is None:
            raise ValueError(
                f"The model takes a dict of inputs ({input_name}), so random verification "
                "inputs cannot be made. Pass held-out inputs as `verification_data` (a dict "
                "of arrays, e.g. a batch of token ids and its padding mask), or "
                "`verify=False`."
            )
        x_check, _ = _as_dict_inputs(verification_data, "verification_data", dict_specs,
                                     limit=_VERIFY_BATCH_SIZE)
        source = "verification data"
    elif verify:
        if verification_data is not None:
            x_check, y_check = _as_inputs(verification_data, "verification_data", feature_shape, dtype)
            source = "verification data"
        elif calibration is not None:
            x_check, source = calibration, "calibration data, not held out"
        elif quantization is None or quantization == "float16":
            if None in feature_shape:
                raise ValueError(
                    f"The model's input shape {feature_shape} has unknown "
                    "dimensions, so random verification inputs cannot be made. "
                    "Pass `verification_data` (or `verify=False`)."
                )
            rng = np.random.default_rng(0)
            x_check = rng.uniform(0.0, 1.0, (64, *feature_shape)).astype(dtype)
            source = "random inputs in [0, 1], NOT real data"
            # stacklevel=4: this function, `_plan_export`, `export`, then the
            # user's call, which the warning names.
            warnings.warn(
                f"export: no `verification_data` given, so the {format} file of "
                f"{model.name!r} was only checked on 64 random inputs in [0, 1]. That is "
                "no test of a model that expects other inputs (standardized features, "
                "token ids, ...). Pass held-out inputs as `verification_data`.",
                UserWarning, stacklevel=4,
            )
        else:
            raise ValueError(
                f"quantization={quantization!r} is verified by top-1 agreement, "
                "which needs real inputs. Pass held-out inputs as "
                "`verification_data` (or `verify=False`)."
            )
    return x_check, y_check, source


@dataclasses.dataclass(frozen=True)
class _InputSignature:
    """The inputs of the artifact's serving signature, read from the model."""

    #: The input tensor's name; for a dict of inputs, their names joined by
    #: ", " (the form messages and `ExportResult.input_name` show).
    input_name: str
    #: Shape of one example, and dtype, of the single input; `None` for a
    #: dict of inputs (each has its own, in `dict_specs`).
    feature_shape: Optional[tuple]
    dtype: Optional[str]
    #: `{name: (feature_shape, dtype)}` for a dict of inputs, else `None`.
    dict_specs: Optional[dict]


# eq=False: the plan holds numpy arrays, which `==` cannot compare as a whole.
@dataclasses.dataclass(frozen=True, eq=False)
class _ExportPlan:
    """What `export()` resolved and checked before writing anything.

    Frozen: staging, the parity check and the commit only read it, so they
    act on exactly what the checks accepted.
    """

    model: keras.Model
    path: Path
    format: str
    quantization: Optional[str]
    quantization_aware: bool
    int8_io: bool
    outputs: str
    overwrite: bool
    verbose: int
    signature: _InputSignature
    model_gives_probabilities: bool
    #: The int8 calibration inputs (at most `num_calibration_examples`), or None.
    calibration: Optional[np.ndarray]
    #: The parity check's inputs (an array or a dict of arrays), labels (or
    #: None) and what they are; all None with `verify=False`.
    check_inputs: Any
    check_labels: Optional[np.ndarray]
    check_source: Optional[str]
    #: The directories created for `path` (deepest first): a failed export
    #: removes them again, so it leaves nothing behind.
    created_directories: List[Path]


def _read_input_signature(model: keras.Model, quantization: Optional[str]) -> _InputSignature:
    """The model's serving inputs; refuses several outputs, and int8 for a
    dict of inputs."""
    dict_specs = _dict_input_specs(model)
    if dict_specs is None:
        input_name, feature_shape, dtype = _input_spec(model)
        _check_single_output(model, feature_shape, dtype)
        return _InputSignature(input_name, feature_shape, dtype, None)
    input_name = ", ".join(dict_specs)
    if quantization == "int8":
        raise ValueError(
            "quantization='int8' is not supported for models with a dict of inputs "
            f"({input_name}): calibrating integer inputs such as token ids means "
            "nothing. Use quantization='dynamic' or 'float16'."
        )
    return _InputSignature(input_name, None, None, dict_specs)


def _check_output_kind(model: keras.Model, outputs: str) -> bool:
    """Whether the model already outputs probabilities (ends in a softmax);
    refuses `outputs="logits"` for such a model."""
    model_gives_probabilities = _ends_in_softmax(model)
    if model_gives_probabilities and outputs == "logits":
        raise ValueError(
            f"The model {model.name!r} ends in a softmax, so it outputs "
            "probabilities, not logits. Received: outputs='logits'. Pass "
            "outputs='probabilities', or remove the final softmax."
        )
    return model_gives_probabilities


def _plan_export(model_or_distiller: keras.Model, path: Path, format: Optional[str],
                 quantization: Optional[str], representative_data: Any, int8_io: bool,
                 outputs: str, verify: bool, verification_data: Any,
                 num_calibration_examples: int, overwrite: bool,
                 verbose: Union[str, int]) -> _ExportPlan:
    """Runs all of `export()`'s checks, in this order, and returns what they
    resolved.

    Nothing is converted or written here (`_prepare_target` only creates
    the target's directory and probes that it takes a new file; `export()`
    removes the directories again if it fails later), so a refusal leaves
    the user's files as they were.
    """
    model = _resolve_model(model_or_distiller)
    format = _infer_format(path, format)
    _check_choice(quantization, QUANTIZATIONS, "quantization")
    _check_choice(outputs, OUTPUTS, "outputs")
    quantization_aware = _check_export_options(
        model, format, quantization, representative_data, int8_io, num_calibration_examples
    )
    verbose = _check_verbose(verbose)
    signature = _read_input_signature(model, quantization)
    model_gives_probabilities = _check_output_kind(model, outputs)
    calibration = None
    if representative_data is not None:
        calibration, _ = _as_inputs(
            representative_data, "representative_data", signature.feature_shape,
            signature.dtype, limit=num_calibration_examples,
        )
    x_check, y_check, source = _verification_inputs(
        model, format, quantization, verify, verification_data, calibration,
        signature.dict_specs, signature.input_name, signature.feature_shape, signature.dtype,
    )
    created_directories = _prepare_target(path, format, overwrite)
    return _ExportPlan(
        model=model, path=path, format=format, quantization=quantization,
        quantization_aware=quantization_aware, int8_io=int8_io, outputs=outputs,
        overwrite=overwrite, verbose=verbose, signature=signature,
        model_gives_probabilities=model_gives_probabilities, calibration=calibration,
        check_inputs=x_check, check_labels=y_check, check_source=source,
        created_directories=created_directories,
    )


def _progress(verbose: int, check_inputs: Any, verify: bool) -> Callable[[], None]:
    """A callback that advances a progress bar by one step.

    One step for the conversion, one per parity batch, one for the Keras
    reference outputs.
    """
    parity_batches = 0 if check_inputs is None else -(-_count(check_inputs) // _VERIFY_BATCH_SIZE)
    progbar = keras.utils.Progbar(
        1 + parity_batches + (1 if verify else 0), verbose=verbose, unit_name="step"
    )
    done = [0]

    def step() -> None:
        done[0] += 1
        progbar.update(done[0])

    return step


def _write_new_file(path: Path, content: bytes) -> None:
    """Creates `path`, which must not exist yet, holding `content` (on disk
    when this returns)."""
    # os.open, not mkstemp: the file gets the umask's permissions.
    handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    with os.fdopen(handle, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())  # on disk before the rename


def _discard_staged(staged: Optional[Path]) -> None:
    """Removes what an unfinished export left at its staging path, if anything."""
    if staged is not None and (staged.exists() or staged.is_symlink()):
        if staged.is_dir() and not staged.is_symlink():
            shutil.rmtree(staged, ignore_errors=True)
        else:
            staged.unlink()


def _stage_artifact(plan: _ExportPlan) -> Path:
    """Writes the artifact under a new hidden sibling of `plan.path`, and
    returns that sibling; `plan.path` itself is not touched.

    A sibling is on the target's file system, so `_commit_staged` can rename
    it into place. If writing fails, what was written there is removed
    before the error propagates (the caller never learns its name).
    """
    signature = plan.signature
    staged: Optional[Path] = None
    try:
        with tempfile.TemporaryDirectory(prefix="keras_kd_export_") as workdir:
            # Traced to a private directory first: a SavedModel export copies
            # it, a TFLite export converts it.
            saved_model_dir = os.path.join(workdir, "saved_model")
            _write_saved_model(plan.model, saved_model_dir, signature.input_name,
                               signature.feature_shape, signature.dtype, plan.outputs,
                               plan.model_gives_probabilities, signature.dict_specs)
            # A unique sibling, so two exports to one path never share it.
            staged = _unique_sibling(plan.path, "tmp")
            if plan.format == "saved_model":
                shutil.copytree(saved_model_dir, staged)
            else:
                flatbuffer = _convert_to_tflite(saved_model_dir, plan.quantization,
                                                plan.calibration, plan.int8_io,
                                                quantization_aware=plan.quantization_aware)
                _write_new_file(staged, flatbuffer)
    except BaseException:
        _discard_staged(staged)
        raise
    return staged


def _keras_outputs(plan: _ExportPlan) -> np.ndarray:
    """The Keras model's outputs on the parity check's inputs: the reference."""
    x_check = plan.check_inputs
    if plan.signature.dict_specs is None:
        return ops.convert_to_numpy(
            plan.model.predict(x_check, batch_size=_VERIFY_BATCH_SIZE, verbose=0)
        )
    # The model itself: keras-hub's `predict` would run an attached
    # preprocessor on these token ids.
    return np.concatenate([
        ops.convert_to_numpy(plan.model(_rows(x_check, start, start + _VERIFY_BATCH_SIZE),
                                        training=False))
        for start in range(0, _count(x_check), _VERIFY_BATCH_SIZE)
    ])


def _check_parity(plan: _ExportPlan, staged: Path, step: Callable[[], None],
                  max_abs_diff: Optional[float], min_top1_agreement: float) -> ParityReport:
    """Runs the staged artifact (as it will be served, before it is at
    `plan.path`) and the Keras model on the check inputs, and compares them."""
    if plan.format == "saved_model":
        exported = _run_saved_model(str(staged), plan.signature.input_name, plan.outputs,
                                    plan.check_inputs, step)
    else:
        exported = _run_tflite(staged, plan.check_inputs, _VERIFY_BATCH_SIZE, on_batch=step)
    keras_logits = _keras_outputs(plan)
    step()
    return _compare(keras_logits, exported, plan.outputs, plan.check_source, plan.check_labels,
                    plan.quantization, max_abs_diff, min_top1_agreement,
                    plan.model_gives_probabilities)


def _export_result(plan: _ExportPlan, staged: Path,
                   parity: Optional[ParityReport]) -> ExportResult:
    """The `ExportResult` for `plan.path`, measured on the staged artifact
    (the same bytes, before the rename)."""
    size = (sum(f.stat().st_size for f in staged.rglob("*") if f.is_file())
            if staged.is_dir() else staged.stat().st_size)
    return ExportResult(
        path=str(plan.path), format=plan.format, quantization=plan.quantization,
        outputs=plan.outputs, input_name=plan.signature.input_name, output_name=plan.outputs,
        int8_io=plan.int8_io, size_bytes=size, parity=parity,
    )


def _refuse_failed_parity(plan: _ExportPlan, parity: Optional[ParityReport],
                          num_calibration_examples: int, held_out: bool) -> None:
    """Raises `ParityError`, with the remedies, when the parity bound broke:
    such an artifact must not reach `plan.path`."""
    if parity is None or parity.passed:
        return
    raise ParityError(
        f"The exported {plan.format} model (quantization={plan.quantization!r}) "
        f"does not match the Keras model, so '{plan.path}' was not written.\n"
        f"{parity}\n"
        + _remedies(plan.quantization, plan.quantization_aware, plan.calibration, parity,
                    num_calibration_examples, held_out),
        report=parity,
    )


def _commit_staged(plan: _ExportPlan, staged: Path) -> None:
    """Puts the verified staged artifact at `plan.path`."""
    # Again: the conversion took a while, and what is at `path` may have
    # changed since the first check.
    _check_target(plan.path, plan.format, plan.overwrite)
    _replace(staged, plan.path)


def export(
    model_or_distiller: keras.Model,
    path: Union[str, os.PathLike],
    format: Optional[str] = None,
    quantization: Optional[str] = None,
    representative_data: Any = None,
    int8_io: bool = False,
    outputs: str = "logits",
    verify: bool = True,
    verification_data: Any = None,
    num_calibration_examples: int = 500,
    max_abs_diff: Optional[float] = None,
    min_top1_agreement: float = MIN_TOP1_AGREEMENT,
    overwrite: bool = True,
    verbose: Union[str, int] = "auto",
) -> ExportResult:
    """Exports a student for serving: a SavedModel or a LiteRT (`.tflite`) file.

    Given a `Distiller`, only its student is exported: no teacher, no
    distillation terms, no temperature. The artifact has one signature,
    `"serving_default"`, with a named input (the model's input name, e.g.
    `"image"`) of dynamic batch size and one output named after `outputs`.

    A model whose inputs are a dict of tensors, such as a keras-hub
    `CausalLM` (`{"token_ids", "padding_mask"}` -> `(batch, sequence,
    vocabulary)` logits), gets one named input per key, with dynamic batch
    and sequence dimensions where the model has them; its preprocessor, if
    attached, is not part of the artifact (feed it token ids). Such a model
    needs `verification_data` (a dict of arrays, or `(x, y)` batches with
    such an `x`; the outputs are compared position by position, on at most
    256 rows) and supports `quantization=None`, `"float16"` and `"dynamic"`.
    `run_tflite` takes the same dict.

    With `verify=True` (the default) the written artifact is loaded
    (`tf.saved_model.load`, or the `ai_edge_litert` interpreter) and run on
    `verification_data`, and compared with the Keras model:

    - float32 (SavedModel, or TFLite without quantization): max absolute
      difference of the probabilities at most 1e-5;
    - `"float16"`: at most 1e-3;
    - `"dynamic"` and `"int8"`: the top-1 class agrees with the float Keras
      model on at least 99% of the examples.

    For a quantization-aware student (`keras_kd.quantization_aware`), the
    reference is that fake-quantized Keras model.

    A short report is printed; a broken bound raises `ParityError`, whose
    message lists the remedies (more calibration data, `"dynamic"`,
    `quantization_aware`, or loosening `min_top1_agreement`/`max_abs_diff`). The
    artifact is written under a unique temporary name in the target directory
    and renamed to `path` (a SavedModel directory is swapped in atomically
    where the system allows) only once it passed, so a failed export leaves
    nothing half-written at `path` (an existing artifact there stays as it
    was).

    An existing `path` is only replaced when it is an earlier artifact of the
    same kind: a directory holding a SavedModel and nothing else, or a file
    with the TFLite identifier (an empty file or directory is fine too).
    Anything else, the current working directory or one of its ancestors,
    and a SavedModel path named like a Keras model file (`.keras`, `.h5`) are
    refused before anything is converted.

    Args:
        model_or_distiller: A built `keras.Model` that outputs logits (or,
            with `outputs="probabilities"`, one that ends in a softmax), or a
            `keras_kd.Distiller` (its student is exported).
        path: Where to write: a `.tflite` file or a SavedModel directory.
        format: `"saved_model"` or `"tflite"`. `None` (default) picks
            `"tflite"` when `path` ends in `.tflite`, else `"saved_model"`.
        quantization: TFLite only. `None` (float32), `"float16"` (weights),
            `"dynamic"` (int8 weights, float activations) or `"int8"` (full
            integer; needs `representative_data`, except for a student made
            with `keras_kd.quantization_aware`, which is converted with the
            ranges it learned and checked to be int8 throughout).
        representative_data: Calibration inputs for `"int8"`: a numpy array
            `(n, ...)`, an `(x, y)` tuple or a `tf.data.Dataset` of inputs or
            `(x, y)` pairs, batched or not, shaped and typed like the model's
            input. The first `num_calibration_examples` are used. A
            quantization-aware student accepts it but does not need it (it
            then only serves as verification data when none is given).
        int8_io: With `"int8"`, make the input and output tensors int8 too
            (for integer-only accelerators). The caller quantizes inputs with
            the input tensor's scale and zero point (see `quantize_input`).
        outputs: `"logits"` (default) or `"probabilities"` (softmax at T = 1).
        verify: Run the parity check. Defaults to `True`.
        verification_data: Held-out inputs (same forms as
            `representative_data`); with labels, accuracies are reported too.
            Defaults to `representative_data`; for float exports without any
            data, 64 random inputs in [0, 1] are used, with a `UserWarning`
            (they are no test of a model expecting other inputs). `"dynamic"`
            needs it.
        num_calibration_examples: At most this many calibration examples.
        max_abs_diff: Override the bound for float32/float16 exports.
        min_top1_agreement: Bound for `"dynamic"` and `"int8"` exports.
        overwrite: Replace an earlier artifact at `path` (see above).
            Defaults to `True`.
        verbose: `"auto"` (default, means 1), 0 (silent), 1 (a
            `keras.utils.Progbar` over the conversion and the parity run's
            batches, then the report) or 2 (one line when done, then the
            report). `True` and `False` mean 1 and 0.

    Returns:
        An `ExportResult` (path, size, tensor names, parity report).

    Example:

    >>> import os, tempfile
    >>> from keras_kd import models
    >>> student = models.cnn_student()
    >>> path = os.path.join(tempfile.mkdtemp(), "student.tflite")
    >>> result = export(student, path, verbose=0)
    >>> result.parity.passed, result.input_name, result.output_name
    (True, 'image', 'logits')
    """
    path = Path(path)
    plan = _plan_export(
        model_or_distiller, path, format, quantization, representative_data, int8_io, outputs,
        verify, verification_data, num_calibration_examples, overwrite, verbose,
    )
    step = _progress(plan.verbose, plan.check_inputs, verify)
    # Staged next to `path` and renamed onto it only once it passed: until
    # then, and on any failure, what is at `path` stays as it was.
    staged = None
    try:
        staged = _stage_artifact(plan)
        step()
        parity = (_check_parity(plan, staged, step, max_abs_diff, min_top1_agreement)
                  if verify else None)
        result = _export_result(plan, staged, parity)
        _refuse_failed_parity(plan, parity, num_calibration_examples,
                              held_out=verification_data is not None)
        _commit_staged(plan, staged)
    except BaseException:
        _discard_staged(staged)
        remove_empty_directories(plan.created_directories)
        raise
    if plan.verbose:
        print(result)
    return result
