"""Export a student to SavedModel or LiteRT (TFLite), with a parity check.

`export()` writes the student alone (given a `Distiller`, its teacher, its
distillation terms and its temperature stay behind), optionally quantized,
then loads the written artifact, runs it on held-out data and compares it with
the Keras student. The file only appears at the target path once that check
has passed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Union

import keras
import numpy as np
from keras import ops

from keras_kd.distiller import _ends_in_softmax  # one definition of "ends in a softmax"

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = (None, "float16", "dynamic", "int8")
OUTPUTS = ("logits", "probabilities")

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
        num_examples: Number of inputs compared.
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
    from keras_kd.distiller import Distiller

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
    from keras.src.export.export_utils import get_input_signature

    try:
        signature = get_input_signature(model)
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


def _check_choice(value, choices, argument: str) -> None:
    if value not in choices:
        raise ValueError(
            f"Unknown {argument}. Expected one of {list(choices)}. "
            f"Received: {argument}={value!r}."
        )


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
        if limit is not None:
            # Enough elements even if the dataset is not batched.
            data = data.take(limit)
        xs, ys = [], []
        rank = len(feature_shape)
        for element in data.as_numpy_iterator():
            x, y = element[:2] if isinstance(element, tuple) else (element, None)
            x = np.asarray(x)
            if x.ndim == rank:
                x = x[None]
                y = None if y is None else np.asarray(y)[None]
            xs.append(x)
            if y is not None:
                ys.append(np.asarray(y))
        if not xs:
            raise ValueError(f"`{argument}` is an empty dataset.")
        data = np.concatenate(xs)
        labels = np.concatenate(ys) if len(ys) == len(xs) else None
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
        hint = (" Scale and cast it the way the model was trained, e.g. "
                "`x.astype('float32') / 255`." if want_float else "")
        raise ValueError(
            f"`{argument}` has dtype {x.dtype}, but the model's input is "
            f"{dtype}.{hint}"
        )
    if labels is not None and len(labels) != len(x):
        raise ValueError(
            f"`{argument}` has {len(x)} inputs but {len(labels)} labels."
        )
    if limit is not None:
        x = x[:limit]
        labels = None if labels is None else labels[:limit]
    return x.astype(dtype, copy=False), labels


# --------------------------------------------------------------- writing


def _prepare_target(path: Path, format: str, overwrite: bool) -> None:
    """Fails early, before any conversion, if `path` cannot be written."""
    if path.exists():
        if not overwrite:
            raise ValueError(
                f"`path` already exists and `overwrite=False`. Received: path='{path}'."
            )
        is_dir = path.is_dir()
        if is_dir != (format == "saved_model"):
            raise ValueError(
                f"`path` '{path}' is an existing {'directory' if is_dir else 'file'}; "
                f"a {format} export writes a {'directory' if format == 'saved_model' else 'file'}. "
                "Choose another path or remove it."
            )
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            f"Cannot write to `path`: its directory '{parent}' is not writable "
            f"({error.strerror or error}). Received: path='{path}'."
        ) from error


def _replace(temporary: Path, path: Path) -> None:
    """Moves `temporary` to `path` in one rename (same directory)."""
    if temporary.is_dir() and path.is_dir():
        # A directory cannot be renamed over a non-empty one: move the old
        # one aside first, so `path` is never half-written.
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
        os.replace(path, old / path.name)
        os.replace(temporary, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, path)


def _write_saved_model(model, directory: str, input_name, feature_shape, dtype, outputs,
                       model_gives_probabilities: bool) -> None:
    import tensorflow as tf

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
        input_signature=[tf.TensorSpec((None, *feature_shape), dtype, name=input_name)],
    )
    archive.write_out(directory, verbose=False)


def _convert_to_tflite(saved_model_dir: str, quantization, calibration, int8_io: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[SIGNATURE_NAME]
    )
    # Builtin ops only: a file that needs the Flex (TF ops) delegate would not
    # run in a plain LiteRT runtime, which is the point of exporting.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
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
        inputs: A numpy array of shape `(batch, ...)`.
        batch_size: Examples per interpreter invocation.
        num_threads: Interpreter threads; `None` lets LiteRT choose.

    Returns:
        The model's outputs as a float32 array of shape `(batch, classes)`.

    Example:

    >>> probabilities = run_tflite("student.tflite", x_test[:8])  # doctest: +SKIP
    """
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(model), num_threads=num_threads)
    else:
        interpreter = Interpreter(model_path=os.fspath(model), num_threads=num_threads)
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


def _run_saved_model(directory: str, input_name: str, output_name: str, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    signature = tf.saved_model.load(directory).signatures[SIGNATURE_NAME]
    outputs = [
        signature(**{input_name: tf.constant(x[start : start + _VERIFY_BATCH_SIZE])})[output_name].numpy()
        for start in range(0, len(x), _VERIFY_BATCH_SIZE)
    ]
    return np.concatenate(outputs).astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


def _compare(keras_outputs, exported, outputs, x_source, labels, quantization,
             max_abs_diff, min_top1_agreement, model_gives_probabilities) -> ParityReport:
    keras_p = (keras_outputs.astype(np.float64) if model_gives_probabilities
               else _softmax(keras_outputs))
    export_p = exported.astype(np.float64) if outputs == "probabilities" else _softmax(exported)
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
        keras_accuracy = float(np.mean(np.argmax(keras_p, -1) == labels))
        export_accuracy = float(np.mean(np.argmax(export_p, -1) == labels))
    return ParityReport(
        num_examples=len(keras_p), data=x_source, max_abs_diff=diff,
        top1_agreement=agreement, criterion=criterion, bound=bound, passed=passed,
        keras_accuracy=keras_accuracy, export_accuracy=export_accuracy,
    )


# ------------------------------------------------------------------ export


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
    verbose: bool = True,
) -> ExportResult:
    """Exports a student for serving: a SavedModel or a LiteRT (`.tflite`) file.

    Given a `Distiller`, only its student is exported: no teacher, no
    distillation terms, no temperature. The artifact has one signature,
    `"serving_default"`, with a named input (the model's input name, e.g.
    `"image"`) of dynamic batch size and one output named after `outputs`.

    With `verify=True` (the default) the written artifact is loaded
    (`tf.saved_model.load`, or the `ai_edge_litert` interpreter) and run on
    `verification_data`, and compared with the Keras model:

    - float32 (SavedModel, or TFLite without quantization): max absolute
      difference of the probabilities at most 1e-5;
    - `"float16"`: at most 1e-3;
    - `"dynamic"` and `"int8"`: the top-1 class agrees with the float Keras
      model on at least 99% of the examples.

    A short report is printed; a broken bound raises `ParityError`. The
    artifact is written under a temporary name in the target directory and
    renamed to `path` only once it passed, so a failed export leaves nothing
    half-written at `path` (an existing artifact there stays as it was).

    Args:
        model_or_distiller: A built `keras.Model` that outputs logits (or,
            with `outputs="probabilities"`, one that ends in a softmax), or a
            `keras_kd.Distiller` (its student is exported).
        path: Where to write: a `.tflite` file or a SavedModel directory.
        format: `"saved_model"` or `"tflite"`. `None` (default) picks
            `"tflite"` when `path` ends in `.tflite`, else `"saved_model"`.
        quantization: TFLite only. `None` (float32), `"float16"` (weights),
            `"dynamic"` (int8 weights, float activations) or `"int8"` (full
            integer; needs `representative_data`).
        representative_data: Calibration inputs for `"int8"`: a numpy array
            `(n, ...)`, an `(x, y)` tuple or a `tf.data.Dataset` of inputs or
            `(x, y)` pairs, batched or not, shaped and typed like the model's
            input. The first `num_calibration_examples` are used.
        int8_io: With `"int8"`, make the input and output tensors int8 too
            (for integer-only accelerators). The caller quantizes inputs with
            the input tensor's scale and zero point (see `quantize_input`).
        outputs: `"logits"` (default) or `"probabilities"` (softmax at T = 1).
        verify: Run the parity check. Defaults to `True`.
        verification_data: Held-out inputs (same forms as
            `representative_data`); with labels, accuracies are reported too.
            Defaults to `representative_data`; for float exports without any
            data, 64 random inputs in [0, 1] are used. `"dynamic"` needs it.
        num_calibration_examples: At most this many calibration examples.
        max_abs_diff: Override the bound for float32/float16 exports.
        min_top1_agreement: Bound for `"dynamic"` and `"int8"` exports.
        overwrite: Replace an existing artifact at `path`. Defaults to `True`.
        verbose: Print the parity report.

    Returns:
        An `ExportResult` (path, size, tensor names, parity report).

    Example:

    >>> import os, tempfile
    >>> from keras_kd import models
    >>> student = models.cnn_student()
    >>> path = os.path.join(tempfile.mkdtemp(), "student.tflite")
    >>> result = export(student, path, verbose=False)
    >>> result.parity.passed, result.input_name, result.output_name
    (True, 'image', 'logits')
    """
    path = Path(path)
    model = _resolve_model(model_or_distiller)
    format = _infer_format(path, format)
    _check_choice(quantization, QUANTIZATIONS, "quantization")
    _check_choice(outputs, OUTPUTS, "outputs")
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
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "quantization='int8' needs `representative_data`: a few hundred "
            "typical inputs to calibrate the activation ranges."
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
    input_name, feature_shape, dtype = _input_spec(model)
    model_gives_probabilities = _ends_in_softmax(model)
    if model_gives_probabilities and outputs == "logits":
        raise ValueError(
            f"The model {model.name!r} ends in a softmax, so it outputs "
            "probabilities, not logits. Received: outputs='logits'. Pass "
            "outputs='probabilities', or remove the final softmax."
        )
    calibration = None
    if representative_data is not None:
        calibration, _ = _as_inputs(
            representative_data, "representative_data", feature_shape, dtype,
            limit=num_calibration_examples,
        )
    x_check = y_check = None
    if verify:
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
            source = "random inputs in [0, 1]"
        else:
            raise ValueError(
                f"quantization={quantization!r} is verified by top-1 agreement, "
                "which needs real inputs. Pass held-out inputs as "
                "`verification_data` (or `verify=False`)."
            )
    _prepare_target(path, format, overwrite)

    temporary = None
    try:
        with tempfile.TemporaryDirectory(prefix="keras_kd_export_") as workdir:
            saved_model_dir = os.path.join(workdir, "saved_model")
            _write_saved_model(model, saved_model_dir, input_name, feature_shape, dtype,
                               outputs, model_gives_probabilities)
            if format == "saved_model":
                temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp."))
                shutil.rmtree(temporary)
                shutil.copytree(saved_model_dir, temporary)
            else:
                flatbuffer = _convert_to_tflite(saved_model_dir, quantization, calibration, int8_io)
                handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp.")
                temporary = Path(name)
                with os.fdopen(handle, "wb") as file:
                    file.write(flatbuffer)
        parity = None
        if verify:
            if format == "saved_model":
                exported = _run_saved_model(str(temporary), input_name, outputs, x_check)
            else:
                exported = run_tflite(temporary, x_check)
            keras_logits = ops.convert_to_numpy(
                model.predict(x_check, batch_size=_VERIFY_BATCH_SIZE, verbose=0)
            )
            parity = _compare(keras_logits, exported, outputs, source, y_check,
                              quantization, max_abs_diff, min_top1_agreement,
                              model_gives_probabilities)
        size = (sum(f.stat().st_size for f in temporary.rglob("*") if f.is_file())
                if temporary.is_dir() else temporary.stat().st_size)
        result = ExportResult(
            path=str(path), format=format, quantization=quantization, outputs=outputs,
            input_name=input_name, output_name=outputs, int8_io=int8_io,
            size_bytes=size, parity=parity,
        )
        if parity is not None and not parity.passed:
            raise ParityError(
                f"The exported {format} model (quantization={quantization!r}) "
                f"does not match the Keras model, so '{path}' was not written.\n"
                f"{parity}",
                report=parity,
            )
        _replace(temporary, path)
        temporary = None
        if parity is not None and verbose:
            print(result)
    finally:
        if temporary is not None and temporary.exists():
            if temporary.is_dir():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink()
    return result
