"""Stage 5 of benchmarks/bert_case.py: export the teacher and the distilled
students; size on disk, single-example latency, accuracy, agreement.

Every artifact is written by the package's public API, `keras_kd.export`:

- each model as a SavedModel, and as LiteRT float32 and dynamic-range (int8
  weights, float activations) files;
- full-integer int8 where `keras_kd.export` takes the model. The embedding
  bag reads only `token_ids`, so its single-input view (the same layers and
  weights) is exported int8 post-training (calibrated on training texts)
  and after a short quantization-aware distillation
  (`keras_kd.quantization_aware`: `QuantizedEmbedding`,
  `QuantizedMaskedAveragePooling1D`). The BERTs take a dict of inputs, which
  `export(quantization="int8")` refuses: its message is recorded, and the
  LiteRT converter is then tried directly on the exported SavedModel, int8
  only, and if that fails (its error is recorded) int8 with a float
  fallback (the ops left in float are listed).

`export` checks each artifact on the validation split (its parity bound);
then each is run on the whole test split for its accuracy and its agreement
with its Keras model. The models were chosen before, in stage 4; nothing is
chosen on the test split here. Latency: wall time of one call on one test
example (numpy in, numpy out) after a warm-up, one thread: the SavedModel's
serving signature, or the LiteRT interpreter's signature runner.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

import keras

import keras_kd
from keras_kd.src.export.export import MIN_TOP1_AGREEMENT, SIGNATURE_NAME, float_ops

import bert_case as bc
import bert_distill as bd

#: The models exported: the results row whose seed-0 model is used, and a label.
MODELS = (
    ("teacher/pretrained", "Teacher: BERT pretrained + fine-tuned"),
    ("embedding_bag/kd_logits_transfer", "Embedding bag, distilled (logits + transfer text)"),
    ("tiny_bert/kd_logits_transfer_intermediate",
     "Tiny BERT, distilled (logits + transfer + intermediate terms)"),
)
#: Training texts used to calibrate int8 activation ranges.
CALIBRATION_EXAMPLES = 500
#: Quantization-aware distillation of the embedding bag: a fixed recipe (that
#: of `benchmarks/results/export_qad.md`: 3 epochs, Adam 1e-4), not tuned.
QAD_EPOCHS, QAD_LEARNING_RATE = 3, 1e-4
WARMUP_CALLS = 20


def load_model(row, vocabulary_size, num_classes):
    """The Keras model of a results row (its seed 0), from the cache."""
    if row == "teacher/pretrained":
        model = bc.classifier(vocabulary_size, bc.TEACHER, num_classes, seed=0)
        model.load_weights(str(bc.CACHE / "teacher_pretrained.weights.h5"))
        return model
    path = bd.student_path(row)
    if not path.exists():
        raise FileNotFoundError(
            f"No cached student for results row {row!r}: expected {path}. Run "
            "`benchmarks/bert_case.py --stage distill` first (it saves the seed-0 students).")
    model = bd.make_student(row.split("/")[0], vocabulary_size, num_classes, seed=0)
    model.load_weights(str(path))
    return model


def token_ids_view(model):
    """The embedding bag as a model of `token_ids` alone: the same layers (so
    the same weights), with the single integer input that
    `export(quantization="int8")` and `quantization_aware` take."""
    view = keras.Model(model.input["token_ids"], model.output, name=f"{model.name}_token_ids")
    if view.count_params() != model.count_params():
        raise ValueError(
            f"The token_ids view of {model.name!r} has {view.count_params():,} parameters, "
            f"expected the model's {model.count_params():,}: the model reads other inputs.")
    return view


def as_model_inputs(model, x):
    """`x` (a dict of arrays) restricted and cast to the model's inputs; a
    single array for a single-input model."""
    if isinstance(model.input, dict):
        return {name: np.asarray(x[name]).astype(tensor.dtype) for name, tensor in model.input.items()}
    return np.asarray(x[model.input.name]).astype(model.input.dtype)


def _as_dict(model, x):
    return x if isinstance(x, dict) else {model.input.name: x}


def saved_model_call(path):
    """One call of the SavedModel's serving signature: a dict of arrays in, logits out."""
    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE_NAME]
    return lambda batch: signature(**{k: tf.constant(v) for k, v in batch.items()})["logits"].numpy()


def litert_call(path):
    """One call of the LiteRT interpreter (one thread) through its signature runner."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner(SIGNATURE_NAME)
    return lambda batch: np.asarray(runner(**batch)["logits"], np.float32)


def latency_ms(call, examples, runs):
    """Median and 90th percentile (ms) of `runs` single-example calls on
    successive examples, after `WARMUP_CALLS` untimed ones."""
    count = len(next(iter(examples.values())))
    batches = [{k: v[i % count:i % count + 1] for k, v in examples.items()}
               for i in range(WARMUP_CALLS + runs)]
    for batch in batches[:WARMUP_CALLS]:
        call(batch)
    times = []
    for batch in batches[WARMUP_CALLS:]:
        start = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - start)
    times = 1000 * np.asarray(times)
    return float(np.median(times)), float(np.percentile(times, 90))


def _softmax(logits):
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def saved_model_parameters(path):
    """Float parameters in a SavedModel, and the names of any projection variables."""
    loaded = tf.saved_model.load(str(path))
    floats = [v for v in loaded.variables if v.dtype.is_floating]
    projections = [v.name for v in loaded.variables if "projection" in v.name.lower()]
    return sum(int(np.prod(v.shape)) for v in floats), projections


def _short(error, limit=600):
    """The informative part of a (LiteRT converter) error message."""
    text = f"{type(error).__name__}: {error}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    picked = [line for line in lines if re.search(r"error|not supported|unsupported|failed", line, re.I)]
    text = " | ".join(dict.fromkeys(picked or lines))
    return text if len(text) <= limit else text[:limit] + " ..."


def convert_directly(saved_model_dir, calibration, int8_only):
    """The LiteRT converter on an exported SavedModel, with int8 calibration:
    `int8_only` allows int8 builtins only; otherwise float builtins may
    remain where an op has no int8 kernel. Returns `(flatbuffer, error)`."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir),
                                                         signature_keys=[SIGNATURE_NAME])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if int8_only else tf.lite.OpsSet.TFLITE_BUILTINS]
    count = len(next(iter(calibration.values())))

    def representative_dataset():
        for index in range(count):
            yield {k: v[index:index + 1] for k, v in calibration.items()}

    converter.representative_dataset = representative_dataset
    try:
        return converter.convert(), None
    except Exception as error:  # the converter raises several private types
        return None, _short(error)


def measure(row, label, weights, model, path, api, inputs, args, keras_test, parity=None,
            parity_error=None):
    """The figures of one artifact at `path` (a SavedModel or a `.tflite` file)."""
    path = Path(path)
    x_test = inputs["x_test"]
    if path.is_dir():
        call, fmt = saved_model_call(path), "SavedModel"
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        logits = np.concatenate([call({k: v[i:i + 256] for k, v in _as_dict(model, x_test).items()})
                                 for i in range(0, len(inputs["y_test"]), 256)])
    else:
        call, fmt = litert_call(path), "LiteRT"
        size = path.stat().st_size
        logits = keras_kd.run_tflite(str(path), x_test, num_threads=1)
    median, p90 = latency_ms(call, _as_dict(model, x_test), args.latency_runs)
    entry = dict(
        model=row, label=label, format=fmt, weights=weights, api=api, size_bytes=int(size),
        latency_median_ms=median, latency_p90_ms=p90,
        test_accuracy=float(np.mean(np.argmax(logits, -1) == inputs["y_test"])),
        keras_test_accuracy=float(np.mean(np.argmax(keras_test, -1) == inputs["y_test"])),
        test_agreement=float(np.mean(np.argmax(logits, -1) == np.argmax(keras_test, -1))),
        test_max_abs_diff=float(np.max(np.abs(_softmax(logits) - _softmax(keras_test)))),
        keras_parameters=int(model.count_params()),
    )
    if parity is not None:
        entry["validation_parity"] = dict(criterion=parity.criterion, bound=parity.bound,
                                          passed=bool(parity.passed), examples=parity.num_examples,
                                          agreement=parity.top1_agreement,
                                          max_abs_diff=parity.max_abs_diff)
    if parity_error:
        entry["note"] = parity_error
    if fmt == "SavedModel":
        entry["exported_parameters"], entry["projection_variables"] = saved_model_parameters(path)
    else:
        entry["float_ops"] = sorted(set(float_ops(path.read_bytes())))
    bc.log(f"export {row} {fmt} {weights}: {size / 1e6:.3f} MB, {median:.3f} ms (p90 {p90:.3f}), "
           f"test {100 * entry['test_accuracy']:.2f}%, agreement {100 * entry['test_agreement']:.2f}%")
    return entry


def converter_parity(path, model, check):
    """`export`'s check for quantized files (top-1 agreement with the Keras
    model >= `MIN_TOP1_AGREEMENT`), applied to a file the converter wrote
    directly, on the whole validation split."""
    exported = keras_kd.run_tflite(str(path), check, num_threads=1)
    reference = model.predict(check, batch_size=512, verbose=0)
    agreement = float(np.mean(np.argmax(exported, -1) == np.argmax(reference, -1)))
    return keras_kd.ParityReport(
        num_examples=len(exported), data="validation split", top1_agreement=agreement,
        max_abs_diff=float(np.max(np.abs(_softmax(exported) - _softmax(reference)))),
        criterion="top1_agreement", bound=MIN_TOP1_AGREEMENT, passed=agreement >= MIN_TOP1_AGREEMENT)


def export_checked(model, path, check, **kwargs):
    """`keras_kd.export`; an artifact that misses its parity bound is written
    anyway (`verify=False`) so it can be measured, with the report kept."""
    try:
        result = keras_kd.export(model, path, verification_data=check, verbose=0, **kwargs)
        return result.parity, None
    except keras_kd.ParityError as error:
        keras_kd.export(model, path, verify=False, verbose=0, **kwargs)
        return error.report, f"parity bound not met on the validation split: {error.report}".strip()


def run(state, vocabulary, inputs, args):
    record = state.setdefault("export", {})
    if record.get("done"):
        return
    started = time.time()
    V, C = len(vocabulary), inputs["classes"]
    out = bc.CACHE / "export"
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train = inputs["train"]
    x_val, y_val = inputs["val"]
    x_test, y_test = inputs["test"]
    rows, refused = [], []
    for row, label in MODELS:
        if row not in state.get("results", {}):
            refused.append(dict(model=row, label=label, weights="all",
                                reason="no such results row (the distillation run failed or was skipped)"))
            continue
        model = load_model(row, V, C)
        assert not any("projection" in w.path for w in model.weights), row
        keras_model = token_ids_view(model) if row.startswith("embedding_bag") else model
        data = dict(x_test=as_model_inputs(keras_model, x_test), y_test=y_test)
        check = as_model_inputs(keras_model, x_val)
        check = (check, y_val) if not isinstance(check, dict) else check
        keras_test = keras_model.predict(data["x_test"], batch_size=512, verbose=0)
        stem = row.replace("/", ".")

        def measured(weights, path, model_=keras_model, data_=data, keras_test_=keras_test, **kwargs):
            api = kwargs.pop("api", "keras_kd.export")
            rows.append(measure(row, label, weights, model_, path, api, data_, args, keras_test_, **kwargs))

        # SavedModel; LiteRT float32 and dynamic-range.
        parity, note = export_checked(keras_model, out / f"{stem}.saved_model", check)
        measured("float32", out / f"{stem}.saved_model", parity=parity, parity_error=note)
        parity, note = export_checked(keras_model, out / f"{stem}.float32.tflite", check)
        measured("float32", out / f"{stem}.float32.tflite", parity=parity, parity_error=note)
        parity, note = export_checked(keras_model, out / f"{stem}.dynamic.tflite", check,
                                      quantization="dynamic")
        measured("dynamic range (int8 weights, float activations)", out / f"{stem}.dynamic.tflite",
                 parity=parity, parity_error=note)

        calibration = as_model_inputs(keras_model, take_rows(x_train, CALIBRATION_EXAMPLES))
        int8_path = out / f"{stem}.int8.tflite"
        if not isinstance(keras_model.input, dict):
            parity, note = export_checked(keras_model, int8_path, check, quantization="int8",
                                          representative_data=calibration)
            measured("int8, post-training", int8_path, parity=parity, parity_error=note)
            qat, qat_test = quantization_aware_distilled(keras_model, inputs, state, x_train, y_train)
            path = out / f"{stem}.int8_qad.tflite"
            parity, note = export_checked(qat, path, check, quantization="int8")
            measured(f"int8, quantization-aware distillation ({QAD_EPOCHS} epochs)", path, model_=qat,
                     keras_test_=qat_test, parity=parity, parity_error=note)
            continue
        # A dict of inputs: the package refuses full int8; say why, then try
        # the converter directly on the exported SavedModel.
        try:
            keras_kd.export(keras_model, int8_path, quantization="int8", representative_data=calibration,
                            verification_data=check, verbose=0)
            refusal = None
        except ValueError as error:
            refusal = str(error)
        refused.append(dict(model=row, label=label, weights="int8 (keras_kd.export)",
                            reason=refusal or "accepted"))
        for int8_only in (True, False):
            if not int8_only and not refused[-1]["weights"].startswith("int8 only"):
                break  # int8 only converted: there is nothing for a float fallback to do
            flatbuffer, error = convert_directly(out / f"{stem}.saved_model", calibration, int8_only)
            weights = ("int8 only (TFLITE_BUILTINS_INT8)" if int8_only
                       else "int8 where the ops allow, float fallback (TFLITE_BUILTINS)")
            if error:
                refused.append(dict(model=row, label=label, weights=weights + ", converter directly",
                                    reason=error))
                bc.log(f"export {row} {weights}: {error}")
                continue
            path = out / f"{stem}.int8_{'only' if int8_only else 'fallback'}.tflite"
            path.write_bytes(flatbuffer)
            measured(weights, path, api="LiteRT converter directly",
                     parity=converter_parity(path, keras_model, check))
    record.update(rows=rows, refused=refused, seconds=time.time() - started, done=True,
                  calibration_examples=CALIBRATION_EXAMPLES, latency_runs=args.latency_runs,
                  warmup_calls=WARMUP_CALLS)
    bc.save_state(state)


def take_rows(x, count):
    return {k: v[:count] for k, v in x.items()}


def quantization_aware_distilled(view, inputs, state, x_train, y_train):
    """`quantization_aware(view)` distilled `QAD_EPOCHS` epochs from the
    teacher's cached logits on the float student's data (labelled + transfer
    text), T and alpha of the float student; returns it and its test logits."""
    logits = np.load(bc.CACHE / "teacher_logits.npz")
    count = state["transfer_used"]
    ids = np.concatenate([x_train["token_ids"], inputs["transfer"]["token_ids"][:count]]).astype("int32")
    teacher_logits = np.concatenate([logits["train"], logits["transfer"][:count]])
    labels = np.concatenate([y_train, np.full(count, keras_kd.UNLABELED, "int32")])
    grid = state["selection"]["embedding_bag/grid"]
    temperature, alpha = [float(part.split("=")[1]) for part in max(grid, key=grid.get).split(", ")]
    keras.utils.set_random_seed(0)
    qat = keras_kd.quantization_aware(view, calibration_data=ids[:1000])
    distiller = keras_kd.Distiller(student=qat, teacher=None)
    distiller.compile(optimizer=keras.optimizers.Adam(QAD_LEARNING_RATE), alpha=alpha,
                      temperature=temperature)
    distiller.fit({keras_kd.INPUTS_KEY: ids, keras_kd.TEACHER_LOGITS_KEY: teacher_logits}, labels,
                  batch_size=bd.BATCH, epochs=QAD_EPOCHS, shuffle=True, verbose=0)
    test_ids = np.asarray(inputs["test"][0]["token_ids"]).astype("int32")
    return qat, qat.predict(test_ids, batch_size=512, verbose=0)
