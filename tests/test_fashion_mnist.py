"""End to end on real Fashion-MNIST: distillation, the demo and the CLI."""

import subprocess
import sys

import numpy as np
import pytest

import keras
import keras_kd
from keras_kd.src.cli import cli
from keras_kd.src.data import datasets
from keras_kd.src.models import models


@pytest.fixture(scope="module")
def fashion_subset():
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(download=False)
    return (x_train[:3000], y_train[:3000]), (x_test[:1000], y_test[:1000])


@pytest.mark.slow
def test_distillation_lowers_the_loss_and_beats_chance(fashion_subset):
    (x_train, y_train), (x_test, y_test) = fashion_subset
    keras.utils.set_random_seed(0)
    teacher = models.mlp((128,), name="teacher")
    teacher.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    teacher.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    student = models.mlp((16,), name="student")
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.5, temperature=4.0)
    history = distiller.fit(x_train, y_train, epochs=3, batch_size=64, verbose=0)
    for key in ("loss", "student_loss", "distillation_loss"):
        assert history.history[key][-1] < 0.8 * history.history[key][0], (key, history.history[key])
    accuracy = distiller.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    assert accuracy > 0.6, accuracy  # chance is 0.1
    agreement = np.mean(
        np.argmax(student.predict(x_test, verbose=0), -1) == np.argmax(teacher.predict(x_test, verbose=0), -1)
    )
    assert agreement > 0.7


@pytest.mark.slow
def test_demo_command_prints_the_table(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "keras_kd", "demo", "--labels", "500", "--epochs", "1",
         "--teacher-epochs", "1", "--train-examples", "2000", "--test-examples", "500",
         "--output-dir", str(tmp_path), "--verbose", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("teacher (CNN)", "student alone", "distilled student"):
        assert row in result.stdout
    assert "500 labelled and 1,500 unlabelled training images" in result.stdout
    table = (tmp_path / "demo_results.md").read_text()
    assert "agreement with teacher" in table and "points from the student alone" in table
    for name in ("teacher.keras", "student_alone.keras", "distilled_student.keras",
                 "teacher_logits.kdcache"):
        assert (tmp_path / name).exists(), name
    student = keras.models.load_model(tmp_path / "distilled_student.keras")
    teacher = keras.models.load_model(tmp_path / "teacher.keras")
    assert student.count_params() < teacher.count_params() / 4


def test_demo_refuses_bad_counts_before_training(tmp_path, capsys):
    # In-process: the same entry point `python -m keras_kd` calls, without
    # importing TensorFlow again per case (the subprocess path is tested below).
    for flags, message in ((["--train-examples", "-5"], "--train-examples"),
                           (["--labels", "0"], "--labels"),
                           (["--labels", "5000", "--train-examples", "1000"], "labels=5000")):
        try:
            returncode = cli.main(["demo", *flags, "--output-dir", str(tmp_path), "--verbose", "0"])
        except SystemExit as exit_:  # argparse's own refusals
            returncode = exit_.code
        stderr = capsys.readouterr().err
        assert returncode == 2, (flags, stderr[-2000:])
        assert message in stderr, (flags, stderr[-2000:])
        assert not (tmp_path / "teacher.keras").exists()


def test_cli_reports_bad_arguments_clearly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "keras_kd", "demo", "--temperature", "-1", "--epochs", "1",
         "--teacher-epochs", "1", "--train-examples", "256", "--test-examples", "64",
         "--output-dir", str(tmp_path), "--verbose", "0"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 2
    assert "temperature" in result.stderr and "Received: temperature=-1.0" in result.stderr
