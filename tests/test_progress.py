"""What each `verbose` setting prints for `keras_kd.report` and `keras-kd report`.

The progress bar counts examples over every model pass (each teacher's, then
the student's); these tests check what is printed, never how long it took.
"""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd.src.cli import cli


def plain(text):
    """`text` without the terminal's colour codes (Keras colours the bar)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def dense(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


@pytest.fixture(scope="module")
def models():
    return dense(0), dense(1), dense(2)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((100, 4), dtype=np.float32), np.arange(100) % 3


def test_silent(models, data, capsys):
    teacher, _, student = models
    keras_kd.report(teacher, student, data, output_dir=None, verbose=0)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("verbose", [1, "auto"])
def test_progress_bar_counts_examples_over_every_pass(models, data, capsys, verbose):
    teacher, _, student = models
    # 100 examples in batches of 32: the teacher's pass, then the student's.
    keras_kd.report(teacher, student, data, output_dir=None, batch_size=32, verbose=verbose)
    out = plain(capsys.readouterr().out)
    assert "━" in out, out
    assert re.search(r"\b200/200\b", out), out
    assert "/example" in out, out


def test_one_line_at_the_end(models, data, capsys):
    teacher, _, student = models
    keras_kd.report(teacher, student, data, output_dir=None, batch_size=32, verbose=2)
    out = capsys.readouterr().out
    assert "━" not in out
    assert re.fullmatch(r"200/200 - \d+s - \S+/example\s*", out), out


def test_an_ensemble_and_a_dataset_count_every_pass(models, data, capsys):
    first, second, student = models
    x, y = data
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    keras_kd.report([first, second], student, dataset, output_dir=None, verbose=2)
    assert re.fullmatch(r"300/300 - \d+s - \S+/example\s*", capsys.readouterr().out)


def test_a_distiller_counts_its_teacher_and_student(models, data, capsys):
    teacher, _, student = models
    distiller = keras_kd.Distiller(student, teacher)
    keras_kd.report(None, distiller, data, output_dir=None, verbose=2)
    assert re.fullmatch(r"200/200 - \d+s - \S+/example\s*", capsys.readouterr().out)


@pytest.mark.parametrize("verbose", [3, -1, "loud", None, 1.0])
def test_a_bad_verbose_is_refused_before_any_work(models, data, tmp_path, capsys, verbose):
    teacher, _, student = models
    out = tmp_path / "report"
    with pytest.raises(ValueError, match=r"`verbose` must be 'auto', 0.*Received: verbose="):
        keras_kd.report(teacher, student, data, output_dir=out, verbose=verbose)
    assert not out.exists()
    assert capsys.readouterr().out == ""


def test_cli_passes_verbose(models, data, tmp_path, capsys):
    teacher, _, student = models
    teacher.save(tmp_path / "teacher.keras")
    student.save(tmp_path / "student.keras")
    np.save(tmp_path / "x.npy", data[0])
    np.save(tmp_path / "y.npy", data[1])
    base = [
        "report", "--teacher", str(tmp_path / "teacher.keras"),
        "--student", str(tmp_path / "student.keras"),
        "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"),
        "--output-dir", str(tmp_path / "out"), "--batch-size", "32",
    ]

    assert cli.main(base + ["--verbose", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # The summary only: accuracies, then the file written.
    assert len(lines) == 2 and lines[0].startswith("teacher accuracy"), lines
    assert lines[1].startswith("wrote "), lines

    assert cli.main(base + ["--verbose", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"200/200 - \d+s - \S+/example\s*", lines[0]), lines
    assert lines[1].startswith("teacher accuracy"), lines

    for flags in (["--verbose", "1"], ["--verbose", "auto"], []):
        assert cli.main(base + flags) == 0
        out = plain(capsys.readouterr().out)
        assert "━" in out and re.search(r"\b200/200\b", out), (flags, out)
        assert "teacher accuracy" in out

    with pytest.raises(SystemExit) as error:
        cli.main(base + ["--verbose", "3"])
    assert error.value.code == 2
    assert "must be auto, 0, 1 or 2" in capsys.readouterr().err
