"""Real exports of a briefly distilled student, run by real runtimes."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import keras_kd
from keras_kd.src.models import models
from keras_kd.src.cli.cli import main as cli_main
from keras_kd.src.data.datasets import load_fashion_mnist
from keras_kd.src.export.export import MIN_TOP1_AGREEMENT
from keras_kd.src.export.export import ParityError
from keras_kd.src.export.export import quantize_input
from keras_kd.src.export.export import run_tflite


def _softmax(logits):
    z = logits - logits.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    return (x_train[:3000], y_train[:3000].astype("int32")), (x_test[:400], y_test[:400])


@pytest.fixture(scope="module")
def distiller(data):
    """A student distilled for a few epochs from a small MLP teacher."""
    (x_train, y_train), _ = data
    keras.utils.set_random_seed(7)
    teacher = models.mlp((64,), name="teacher")
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    result = keras_kd.Distiller(student=models.cnn_student(), teacher=teacher)
    result.compile(optimizer="adam", alpha=0.5, temperature=2.0)
    result.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    return result


@pytest.fixture(scope="module")
def untrained_distiller():
    """For argument checks, which fail before anything is converted."""
    return keras_kd.Distiller(student=models.cnn_student(), teacher=models.mlp((8,)))


def _student_logits(distiller, x):
    return keras.ops.convert_to_numpy(distiller.student.predict(x, verbose=0))


@pytest.mark.slow
def test_saved_model_has_named_signature_dynamic_batch_and_student_only(distiller, data, tmp_path):
    _, (x_test, y_test) = data
    path = tmp_path / "student_savedmodel"
    result = keras_kd.export(distiller, path, verification_data=(x_test, y_test), verbose=False)
    assert result.format == "saved_model" and result.parity.passed
    assert result.parity.num_examples == len(x_test)
    assert result.parity.keras_accuracy == result.parity.export_accuracy

    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    _, inputs = signature.structured_input_signature
    assert list(inputs) == ["image"]
    assert inputs["image"].shape.as_list() == [None, 28, 28, 1]
    assert list(signature.structured_outputs) == ["logits"]
    # Only the student's weights travel: no teacher, no temperature.
    assert len(loaded.variables) == len(distiller.student.variables)
    expected = _student_logits(distiller, x_test)
    for batch in (1, 7, 64):
        got = signature(image=tf.constant(x_test[:batch]))["logits"].numpy()
        np.testing.assert_allclose(got, expected[:batch], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "quantization, outputs",
    [(None, "probabilities"), ("float16", "logits"), ("dynamic", "probabilities"), ("int8", "logits")],
)
def test_tflite_export_matches_keras_within_bounds(distiller, data, tmp_path, quantization, outputs):
    (x_train, _), (x_test, y_test) = data
    path = tmp_path / "student.tflite"
    # This student trained for seconds (about 76% accurate) has near-ties that
    # int8 rounding flips, so full-integer gets 97% here; the default 99% is
    # met by the trained student in benchmarks/export_size_latency.py.
    min_agreement = 0.97 if quantization == "int8" else MIN_TOP1_AGREEMENT
    result = keras_kd.export(
        distiller, path, quantization=quantization, outputs=outputs,
        representative_data=x_train[:500] if quantization == "int8" else None,
        verification_data=(x_test, y_test), min_top1_agreement=min_agreement, verbose=False,
    )
    assert result.parity.passed and path.is_file()
    assert result.parity.bound == (min_agreement if quantization in ("dynamic", "int8") else
                                   {None: 1e-5, "float16": 1e-3}[quantization])
    assert result.size_bytes == path.stat().st_size
    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["image"], "outputs": [outputs]}
    }
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, 28, 28, 1]

    # Check the bounds independently of the report.
    exported = run_tflite(path, x_test, batch_size=100)
    keras_p = _softmax(_student_logits(distiller, x_test).astype(np.float64))
    export_p = exported if outputs == "probabilities" else _softmax(exported.astype(np.float64))
    agreement = np.mean(export_p.argmax(-1) == keras_p.argmax(-1))
    if quantization is None:
        assert np.abs(export_p - keras_p).max() <= 1e-5
    elif quantization == "float16":
        assert np.abs(export_p - keras_p).max() <= 1e-3
    else:
        assert agreement >= min_agreement
    assert result.parity.top1_agreement == pytest.approx(agreement)


@pytest.mark.slow
def test_quantized_files_are_smaller(distiller, data, tmp_path):
    (x_train, _), (x_test, _) = data
    sizes = {}
    for quantization in (None, "float16", "int8"):
        result = keras_kd.export(
            distiller, tmp_path / f"{quantization}.tflite", quantization=quantization,
            representative_data=x_train[:100] if quantization == "int8" else None,
            verify=False,
        )
        sizes[quantization] = result.size_bytes
    assert sizes[None] > 1.7 * sizes["float16"] > 1.7 * 1.5 * sizes["int8"]


@pytest.mark.slow
def test_int8_io_runs_on_integer_tensors_like_an_app(distiller, data, tmp_path):
    (x_train, _), (x_test, _) = data
    path = tmp_path / "int8_io.tflite"
    dataset = tf.data.Dataset.from_tensor_slices((x_train[:300], np.zeros(300)))  # unbatched (x, y)
    result = keras_kd.export(
        distiller, path, quantization="int8", int8_io=True, representative_data=dataset,
        verification_data=x_test, min_top1_agreement=0.97, verbose=False,
    )
    assert result.int8_io and result.parity.passed
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    input_detail = runner.get_input_details()["image"]
    output_detail = runner.get_output_details()["logits"]
    assert input_detail["dtype"] == np.int8 and output_detail["dtype"] == np.int8
    predictions = []
    for image in x_test[:100]:
        quantized = quantize_input(image[None], input_detail)
        predictions.append(runner(image=quantized)["logits"][0].argmax())
    keras_predictions = _student_logits(distiller, x_test[:100]).argmax(-1)
    assert np.mean(np.array(predictions) == keras_predictions) >= 0.97


def test_plain_model_to_existing_saved_model_directory_is_replaced(tmp_path):
    model = models.mlp((8,))
    path = tmp_path / "model"
    keras_kd.export(model, path, verbose=False)
    keras_kd.export(model, path, outputs="probabilities", verbose=False)
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert list(signature.structured_outputs) == ["probabilities"]
    assert sorted(os.listdir(tmp_path)) == ["model"]


@pytest.mark.slow
def test_broken_bound_raises_and_leaves_the_target_untouched(distiller, data, tmp_path):
    _, (x_test, _) = data
    path = tmp_path / "student.tflite"
    previous = b"\x1c\x00\x00\x00TFL3previous export"  # a file with the TFLite identifier
    path.write_bytes(previous)
    with pytest.raises(ParityError, match="top-1 agreement") as info:
        keras_kd.export(distiller, path, quantization="dynamic", verification_data=x_test,
                        min_top1_agreement=1.01, verbose=False)
    assert not info.value.report.passed
    assert path.read_bytes() == previous
    assert sorted(os.listdir(tmp_path)) == ["student.tflite"]  # no temporary left


# ------------------------------------------------------------------ bad input


def test_representative_data_of_wrong_shape(untrained_distiller, tmp_path):
    bad = np.zeros((10, 32, 32, 3), "float32")
    with pytest.raises(ValueError, match=r"representative_data.*\(batch, 28, 28, 1\).*\(10, 32, 32, 3\)"):
        keras_kd.export(untrained_distiller, tmp_path / "m.tflite", quantization="int8", representative_data=bad)
    assert not os.listdir(tmp_path)


def test_representative_data_of_wrong_dtype(untrained_distiller, tmp_path):
    raw = np.zeros((10, 28, 28, 1), "uint8")
    with pytest.raises(ValueError, match=r"representative_data.*uint8.*float32.*/ 255"):
        keras_kd.export(untrained_distiller, tmp_path / "m.tflite", quantization="int8", representative_data=raw)


def test_verification_dataset_of_wrong_shape(untrained_distiller, tmp_path):
    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((8, 28, 28, 3), "float32")).batch(4)
    with pytest.raises(ValueError, match=r"verification_data.*\(8, 28, 28, 3\)"):
        keras_kd.export(untrained_distiller, tmp_path / "m.tflite", verification_data=dataset)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"format": "onnx"}, r"Unknown format.*Received: format='onnx'"),
        ({"quantization": "int4"}, r"Unknown quantization.*Received: quantization='int4'"),
        ({"outputs": "softmax"}, r"Unknown outputs.*Received: outputs='softmax'"),
        ({"format": "saved_model", "quantization": "int8"}, r"TFLite exports only"),
        ({"quantization": "int8"}, r"needs `representative_data`"),
        ({"int8_io": True}, r"int8_io=True.*quantization=None"),
        ({"quantization": "dynamic"}, r"needs real inputs.*verification_data"),
    ],
)
def test_bad_arguments(untrained_distiller, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_kd.export(untrained_distiller, tmp_path / "m.tflite", **kwargs)


def test_model_ending_in_softmax(tmp_path):
    inputs = keras.Input((6,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    with pytest.raises(ValueError, match=r"ends in a softmax.*outputs='logits'.*outputs='probabilities'"):
        keras_kd.export(model, tmp_path / "m.tflite")
    # Its probabilities are exported as they are, not put through a second softmax.
    result = keras_kd.export(model, tmp_path / "m.tflite", outputs="probabilities", verbose=False)
    x = np.random.default_rng(0).uniform(size=(16, 6)).astype("float32")
    np.testing.assert_allclose(run_tflite(tmp_path / "m.tflite", x), model.predict(x, verbose=0), atol=1e-6)
    assert result.input_name == "features"


def test_model_that_was_never_built(tmp_path):
    model = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"was never built.*build"):
        keras_kd.export(model, tmp_path / "m.tflite")


def test_not_a_model(tmp_path):
    with pytest.raises(TypeError, match=r"model_or_distiller.*str"):
        keras_kd.export("student.keras", tmp_path / "m.tflite")


def test_path_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=r"Cannot write to `path`.*a_file"):
        keras_kd.export(models.mlp((4,)), blocker / "m.tflite")
    assert blocker.read_text() == "not a directory"


def test_path_of_the_wrong_kind(tmp_path):
    (tmp_path / "m.tflite").mkdir()
    with pytest.raises(ValueError, match=r"existing directory"):
        keras_kd.export(models.mlp((4,)), tmp_path / "m.tflite")


# ------------------------------------------------------------------------ CLI


@pytest.mark.slow
def test_cli_exports_a_saved_distiller(distiller, data, tmp_path, capsys):
    _, (x_test, y_test) = data
    model_path = tmp_path / "distiller.keras"
    distiller.save(model_path)
    np.savez(tmp_path / "heldout.npz", x=x_test, y=y_test)
    out = tmp_path / "student.tflite"
    code = cli_main([
        "export", str(model_path), str(out), "--quantization", "dynamic",
        "--verification-data", str(tmp_path / "heldout.npz"),
    ])
    assert code == 0 and out.is_file()
    report = capsys.readouterr().out
    assert "top-1 agreement" in report and "PASS" in report and "accuracy" in report
    exported = run_tflite(out, x_test)
    keras_predictions = _student_logits(distiller, x_test).argmax(-1)
    assert np.mean(exported.argmax(-1) == keras_predictions) >= 0.99


def test_cli_reports_bad_representative_data(untrained_distiller, tmp_path, capsys):
    model_path = tmp_path / "student.keras"
    untrained_distiller.student.save(model_path)
    np.save(tmp_path / "bad.npy", np.zeros((5, 28, 28, 1), "uint8"))
    code = cli_main([
        "export", str(model_path), str(tmp_path / "s.tflite"), "--quantization", "int8",
        "--representative-data", str(tmp_path / "bad.npy"),
    ])
    assert code == 2
    assert "representative_data" in capsys.readouterr().err
    assert not (tmp_path / "s.tflite").exists()


@pytest.mark.slow
def test_example_runs_quick():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    completed = subprocess.run(
        [sys.executable, os.path.join(root, "examples", "export_tflite.py"), "--quick"],
        cwd=root, env=env, capture_output=True, text=True,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "App-style accuracy" in completed.stdout
    assert "PASS" in completed.stdout
