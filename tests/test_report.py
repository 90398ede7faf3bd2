"""`keras_kd.report` and `keras-kd report` on a real (small) distillation."""

import importlib
import json

import keras
import numpy as np
import pytest

import keras_kd
from keras_kd.src.cli import cli
from keras_kd.src.report import evaluation
from keras_kd.src.data.datasets import FASHION_MNIST_CLASS_NAMES
from keras_kd.src.data.datasets import load_fashion_mnist
from keras_kd.src.models.models import mlp

report_module = importlib.import_module("keras_kd.src.report.report")

# Trains a small teacher and student on real Fashion-MNIST images.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained():
    """A small MLP teacher and a distilled MLP student on 3,000 images."""
    keras.utils.set_random_seed(7)
    (x, y), (x_test, y_test) = load_fashion_mnist()
    x, y = x[:3000], y[:3000]
    x_test, y_test = x_test[:1000], y_test[:1000]
    teacher = mlp((64,), name="teacher")
    teacher.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    teacher.fit(x, y, epochs=2, batch_size=128, verbose=0)
    distiller = keras_kd.Distiller(student=mlp((8,), name="student"), teacher=teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.5, temperature=2.0)
    history = distiller.fit(
        x, y, epochs=2, batch_size=128, verbose=0, validation_data=(x_test, y_test)
    )
    return distiller, history, (x_test, y_test)


def test_report_numbers_match_the_models(trained, tmp_path):
    distiller, history, (x, y) = trained
    result = keras_kd.report(
        distiller.teacher, distiller.student, (x, y),
        class_names=FASHION_MNIST_CLASS_NAMES, history=history, output_dir=tmp_path,
    )
    teacher_logits = distiller.teacher.predict(x, verbose=0)
    student_logits = distiller.student.predict(x, verbose=0)
    # Keras's own metric on the same predictions.
    metric = keras.metrics.SparseCategoricalAccuracy()
    metric.update_state(y, student_logits)
    assert result.student_accuracy == pytest.approx(float(metric.result()), abs=1e-6)
    assert result.teacher_accuracy == pytest.approx(np.mean(teacher_logits.argmax(-1) == y))
    assert result.agreement == pytest.approx(
        np.mean(teacher_logits.argmax(-1) == student_logits.argmax(-1))
    )
    assert result.student_ece == pytest.approx(
        evaluation.expected_calibration_error(evaluation.softmax(student_logits), y), abs=1e-6
    )
    assert result.num_examples == 1000
    assert result.student_confusion.sum() == 1000
    assert np.trace(result.student_confusion) == round(1000 * result.student_accuracy)
    # Every disagreement is a student mistake on an example the teacher gets right.
    teacher_right = teacher_logits.argmax(-1) == y
    student_wrong = student_logits.argmax(-1) != y
    assert result.disagreements.sum() == np.sum(teacher_right & student_wrong)
    assert result.teacher_parameters == distiller.teacher.count_params()
    assert result.student_parameters == distiller.student.count_params()
    json.dumps(result.as_dict())  # serialisable

    import matplotlib.image

    for key in ("per_class_accuracy", "confusion_matrices", "disagreements",
                "calibration", "training_curves"):
        image = matplotlib.image.imread(result.files[key])
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500, key
    summary = (tmp_path / "report.md").read_text()
    assert "T-shirt/top" in summary and "Ankle boot" in summary
    assert f"{100 * result.student_accuracy:.2f}%" in summary
    assert "![Training curves](training_curves.png)" in summary


def test_report_accepts_a_distiller_and_a_dataset(trained):
    import tensorflow as tf

    distiller, _, (x, y) = trained
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(100)
    from_dataset = keras_kd.report(None, distiller, dataset, output_dir=None)
    from_arrays = keras_kd.report(distiller.teacher, distiller.student, (x, y), output_dir=None)
    assert from_dataset.class_names == [str(i) for i in range(10)]
    assert from_dataset.files == {}
    assert from_dataset.agreement == pytest.approx(from_arrays.agreement)
    np.testing.assert_array_equal(from_dataset.disagreements, from_arrays.disagreements)


def test_report_of_an_ensemble_averages_probabilities(trained):
    distiller, _, (x, y) = trained
    teacher, student = distiller.teacher, distiller.student
    result = keras_kd.report([teacher, student], student, (x, y), output_dir=None)
    probabilities = (
        evaluation.softmax(teacher.predict(x, verbose=0))
        + evaluation.softmax(student.predict(x, verbose=0))
    ) / 2
    assert result.teacher_accuracy == pytest.approx(np.mean(probabilities.argmax(-1) == y))
    assert result.teacher_parameters == teacher.count_params() + student.count_params()


def test_report_errors(trained):
    distiller, _, (x, y) = trained
    teacher, student = distiller.teacher, distiller.student
    with pytest.raises(ValueError, match=r"`class_names` must have one name per class \(10\)"):
        keras_kd.report(teacher, student, (x, y), class_names=["a", "b"], output_dir=None)
    with pytest.raises(TypeError, match="`data` must be a tuple"):
        keras_kd.report(teacher, student, x, output_dir=None)
    with pytest.raises(ValueError, match="1000 inputs and 10 labels"):
        keras_kd.report(teacher, student, (x, y[:10]), output_dir=None)
    with pytest.raises(TypeError, match="`teacher` must be a `keras.Model`"):
        keras_kd.report("teacher.keras", student, (x, y), output_dir=None)
    with pytest.raises(ValueError, match="either a `Distiller`"):
        keras_kd.report(teacher, distiller, (x, y), output_dir=None)
    with pytest.raises(TypeError, match="`history` must be a `keras.callbacks.History`"):
        keras_kd.report(teacher, student, (x, y), history=[1, 2], output_dir=None)
    with pytest.raises(ValueError, match="batch_size=0"):
        keras_kd.report(teacher, student, (x, y), batch_size=0, output_dir=None)
    with pytest.raises(ValueError, match="non-empty list"):
        keras_kd.report([], student, (x, y), output_dir=None)
    with pytest.raises(ValueError, match="`student` must be a single model"):
        keras_kd.report(teacher, [student, student], (x, y), output_dir=None)
    with pytest.raises(ValueError, match="same number of classes. Received 10 and 3"):
        keras_kd.report(teacher, mlp((4,), num_classes=3), (x, y), output_dir=None)
    with pytest.raises(ValueError, match="has no teacher"):
        keras_kd.report(None, keras_kd.Distiller(student=student), (x, y), output_dir=None)

    import tensorflow as tf

    with pytest.raises(ValueError, match="must yield batches of `\\(x, y\\)`"):
        keras_kd.report(teacher, student, tf.data.Dataset.from_tensor_slices(x).batch(10), output_dir=None)
    with pytest.raises(ValueError, match="empty dataset"):
        keras_kd.report(teacher, student, tf.data.Dataset.from_tensor_slices((x, y)).take(0).batch(10), output_dir=None)


def test_cli_report_from_saved_models(trained, tmp_path, capsys):
    distiller, history, (x, y) = trained
    distiller.teacher.save(tmp_path / "teacher.keras")
    distiller.student.save(tmp_path / "student.keras")
    distiller.save(tmp_path / "distiller.keras")
    np.save(tmp_path / "x.npy", x[:500])
    np.save(tmp_path / "y.npy", y[:500])
    (tmp_path / "history.json").write_text(json.dumps(history.history))

    out = tmp_path / "from_files"
    code = cli.main([
        "report", "--teacher", str(tmp_path / "teacher.keras"),
        "--student", str(tmp_path / "student.keras"),
        "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"),
        "--class-names", ",".join(FASHION_MNIST_CLASS_NAMES),
        "--history", str(tmp_path / "history.json"), "--output-dir", str(out),
    ])
    assert code == 0
    expected = keras_kd.report(distiller.teacher, distiller.student, (x[:500], y[:500]), output_dir=None)
    assert f"agreement {100 * expected.agreement:.2f}%" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(report_module.FILES.values())

    out = tmp_path / "from_distiller"
    code = cli.main([
        "report", "--distiller", str(tmp_path / "distiller.keras"),
        "--data", "fashion_mnist", "--limit", "300", "--output-dir", str(out),
    ])
    assert code == 0
    summary = (out / "report.md").read_text()
    assert "300 labelled examples" in summary and "Sneaker" in summary
    assert not (out / "training_curves.png").exists()


def test_cli_report_errors(tmp_path, capsys):
    assert cli.main(["report", "--x", "a.npy", "--y", "b.npy"]) == 2
    assert "Give the models" in capsys.readouterr().err
    model = mlp((4,))
    model.save(tmp_path / "m.keras")
    assert cli.main([
        "report", "--teacher", str(tmp_path / "m.keras"), "--student",
        str(tmp_path / "m.keras"), "--data", "cifar10",
    ]) == 2
    assert "--data 'cifar10'" in capsys.readouterr().err
    path = str(tmp_path / "m.keras")
    assert cli.main(["report", "--distiller", path, "--teacher", path, "--data", "fashion_mnist"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli.main(["report", "--teacher", path, "--student", path, "--x", "a.npy"]) == 2
    assert "both `--x X.npy` and `--y Y.npy`" in capsys.readouterr().err
    assert cli.main(["report", "--teacher", path, "--student", path, "--data", "fashion_mnist", "--limit", "0"]) == 2
    assert "--limit 0" in capsys.readouterr().err
