"""Hostile and careless inputs to `export` and the teacher cache (issue 13).

Each test here failed before its fix: exports that deleted a user's files,
concurrent cache writers that mixed their records, a dataset fingerprint that
looked at 256 examples, NaN/inf teacher outputs stored without a word,
multi-output models exported as a stacked tensor, cache paths refused only
after the whole teacher pass, and no progress reporting.
"""

import importlib
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_kd
from keras_kd.cli import main as cli_main

# The module, not the function `keras_kd.export` that shadows it.
export_module = importlib.import_module("keras_kd.export")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model(name="tiny", width=3, inputs=4):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((inputs,), name="features"), keras.layers.Dense(width)], name=name
    )


def snapshot(directory):
    """{relative path: bytes or None (directory)} of everything under `directory`."""
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), directory)] = None
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                found[os.path.relpath(path, directory)] = file.read()
    return found


@pytest.fixture
def no_conversion(monkeypatch):
    """Fails the test if `export` starts writing or converting anything."""
    def forbidden(*args, **kwargs):
        raise AssertionError("export converted the model before refusing the path")

    monkeypatch.setattr(export_module, "_write_saved_model", forbidden)
    monkeypatch.setattr(export_module, "_convert_to_tflite", forbidden)


def make_project(root):
    """A directory a user cares about."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text("print('my code')\n")
    (root / "teacher.keras").write_bytes(b"PK\x03\x04 a zipped Keras model")
    (root / "results.md").write_text("| a | b |\n")


# ------------------------------------------------------------ export: data loss


def test_export_refuses_a_directory_that_is_not_a_saved_model(tmp_path, no_conversion):
    project = tmp_path / "proj"
    make_project(project)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=(
        r"`path` is not an earlier saved_model export: it holds entries that are not "
        r"part of a SavedModel: \['results.md', 'src', 'teacher.keras'\].*"
        r"Expected a new path, an empty directory or an earlier SavedModel directory.*"
        r"Received: path='.*proj'"
    )):
        keras_kd.export(tiny_model(), project, verbose=0)
    assert snapshot(tmp_path) == before


def test_export_refuses_a_saved_model_with_anything_else_in_it(tmp_path):
    path = tmp_path / "exported"
    keras_kd.export(tiny_model(), path, verbose=0)
    (path / "notes.txt").write_text("mine")
    (path / "variables" / "backup.ckpt").write_text("mine too")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"\['notes.txt'\]"):
        keras_kd.export(tiny_model(), path, verbose=0)
    (path / "notes.txt").unlink()
    with pytest.raises(ValueError, match=r"'variables/backup.ckpt' is not a variables file"):
        keras_kd.export(tiny_model(), path, verbose=0)
    (path / "notes.txt").write_text("mine")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", [".", "..", "sub/.."])
def test_export_refuses_the_working_directory_and_its_ancestors(tmp_path, monkeypatch, target,
                                                                 no_conversion):
    work = tmp_path / "work"
    make_project(work)
    (work / "sub").mkdir()
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"`path` is (the current working directory|an ancestor of)"
                                         r".*Received: path="):
        keras_kd.export(tiny_model(), target, verbose=0)
    # No `..old.*` directory (or anything else) left behind.
    assert snapshot(tmp_path) == before


def test_export_refuses_keras_model_files(tmp_path, no_conversion):
    model_file = tmp_path / "teacher.keras"
    model_file.write_bytes(b"PK\x03\x04 a zipped Keras model")
    with pytest.raises(ValueError, match=r"ends in '.keras'.*a SavedModel is a directory"):
        keras_kd.export(tiny_model(), model_file, verbose=0)
    with pytest.raises(ValueError, match=r"ends in '.keras'"):
        keras_kd.export(tiny_model(), tmp_path / "new.keras", verbose=0)
    with pytest.raises(ValueError, match=r"not an earlier tflite export: its bytes 4..8 are "
                                         r"b' a z', not the TFLite identifier b'TFL3'"):
        keras_kd.export(tiny_model(), model_file, format="tflite", verbose=0)
    assert model_file.read_bytes() == b"PK\x03\x04 a zipped Keras model"
    assert sorted(os.listdir(tmp_path)) == ["teacher.keras"]


def test_export_refuses_a_tflite_path_holding_another_file(tmp_path, no_conversion):
    path = tmp_path / "student.tflite"
    path.write_text("my notes, not a flatbuffer")
    with pytest.raises(ValueError, match=r"not an earlier tflite export.*path='.*student.tflite'"):
        keras_kd.export(tiny_model(), path, verbose=0)
    assert path.read_text() == "my notes, not a flatbuffer"


def test_export_refuses_a_symbolic_link(tmp_path, no_conversion):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ValueError, match=r"is a symbolic link"):
        keras_kd.export(tiny_model(), tmp_path / "link", verbose=0)


def test_export_replaces_earlier_artifacts_of_the_same_kind(tmp_path):
    model = tiny_model()
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty.tflite").touch()
    for target in ("saved", "empty_dir", "m.tflite", "empty.tflite"):
        keras_kd.export(model, tmp_path / target, verbose=0)
        keras_kd.export(model, tmp_path / target, outputs="probabilities", verbose=0)
    signature = tf.saved_model.load(str(tmp_path / "saved")).signatures["serving_default"]
    assert list(signature.structured_outputs) == ["probabilities"]
    x = np.random.default_rng(0).uniform(size=(5, 4)).astype("float32")
    probabilities = keras_kd.run_tflite(tmp_path / "m.tflite", x)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    # Nothing left behind: no temporary, no old copy.
    assert sorted(os.listdir(tmp_path)) == ["empty.tflite", "empty_dir", "m.tflite", "saved"]


def test_exported_tflite_file_gets_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        keras_kd.export(tiny_model(), tmp_path / "m.tflite", verbose=0)
    finally:
        os.umask(old)
    # mkstemp used to leave it 0600, unreadable to the serving user.
    assert oct((tmp_path / "m.tflite").stat().st_mode & 0o777) == oct(0o644)


def test_failed_export_keeps_the_earlier_saved_model(tmp_path):
    path = tmp_path / "exported"
    keras_kd.export(tiny_model(), path, verbose=0)
    before = snapshot(tmp_path)
    with pytest.raises(keras_kd.ParityError):
        keras_kd.export(tiny_model(), path, outputs="probabilities", max_abs_diff=-1.0, verbose=0)
    assert snapshot(tmp_path) == before


def test_failed_swap_rolls_back_to_the_earlier_saved_model(tmp_path, monkeypatch):
    path = tmp_path / "exported"
    keras_kd.export(tiny_model(), path, verbose=0)
    before = snapshot(tmp_path)
    # Where the atomic exchange is not available, the old directory is moved
    # aside; make the second rename (the new one into place) fail.
    monkeypatch.setattr(export_module, "_exchange", lambda first, second: False)
    rename = os.rename

    def failing_rename(source, destination):
        if ".tmp." in os.path.basename(os.fspath(source)):
            raise OSError(28, "No space left on device (simulated)")
        rename(source, destination)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="simulated"):
        keras_kd.export(tiny_model(), path, outputs="probabilities", verbose=0)
    monkeypatch.setattr(os, "rename", rename)
    assert snapshot(tmp_path) == before


def test_saved_model_swap_is_atomic_here(tmp_path):
    """On Linux the directories are exchanged in one `renameat2` call."""
    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux only")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    if not export_module._exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this file system cannot exchange directories")
    assert (tmp_path / "b" / "x").read_text() == "a"
    assert not os.listdir(tmp_path / "a")


def test_cli_refuses_an_output_directory_holding_the_model(tmp_path, capsys):
    out = tmp_path / "kd_output"
    out.mkdir()
    tiny_model().save(out / "distilled_student.keras")
    (out / "teacher.keras").write_bytes(b"PK\x03\x04 teacher")
    (out / "results.md").write_text("results")
    before = snapshot(tmp_path)
    code = cli_main(["export", str(out / "distilled_student.keras"), str(out)])
    assert code == 2
    error = capsys.readouterr().err
    assert "OUT" in error and "contains MODEL" in error and "distilled_student.keras" in error
    assert snapshot(tmp_path) == before
    # The API refuses it as well (it is not an earlier SavedModel).
    with pytest.raises(ValueError, match=r"not part of a SavedModel"):
        keras_kd.export(keras.saving.load_model(out / "distilled_student.keras"), out, verbose=0)
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------- export: several outputs


def two_headed(widths, as_dict=False):
    inputs = keras.Input((4,), name="features")
    heads = [keras.layers.Dense(w, name=f"head_{i}")(inputs) for i, w in enumerate(widths)]
    outputs = {f"out_{i}": h for i, h in enumerate(heads)} if as_dict else heads
    return keras.Model(inputs, outputs, name="two_headed")


class TupleModel(keras.Model):
    def __init__(self):
        super().__init__(name="tuple_model")
        self.a = keras.layers.Dense(3)
        self.b = keras.layers.Dense(3)

    def call(self, inputs):
        return self.a(inputs), self.b(inputs)


@pytest.mark.parametrize("kind", ["equal", "unequal", "dict", "subclassed"])
def test_export_refuses_models_with_several_outputs(tmp_path, kind, no_conversion):
    if kind == "subclassed":
        model = TupleModel()
        model(np.zeros((1, 4), "float32"))
        names = r"'output_0' \(None, 3\), 'output_1' \(None, 3\)"
    else:
        model = two_headed((3, 3) if kind == "equal" else (3, 5), as_dict=kind == "dict")
        prefix = "out" if kind == "dict" else "head"
        width = 3 if kind == "equal" else 5
        names = rf"'{prefix}_0' \(None, 3\), '{prefix}_1' \(None, {width}\)"
    for path in (tmp_path / "m.tflite", tmp_path / "saved"):
        with pytest.raises(ValueError, match=(
            rf"single output tensor.*with 2 outputs: {names}\. Wrap the model so it "
            r"returns the logits tensor"
        )):
            keras_kd.export(model, path, verbose=0)
    assert not os.listdir(tmp_path)


def test_wrapped_multi_output_model_exports(tmp_path):
    model = two_headed((3, 5))
    wrapped = keras.Model(model.inputs, model.outputs[1])
    result = keras_kd.export(wrapped, tmp_path / "m.tflite", verbose=0)
    assert result.parity.passed
    x = np.random.default_rng(1).uniform(size=(6, 4)).astype("float32")
    assert keras_kd.run_tflite(tmp_path / "m.tflite", x).shape == (6, 5)


# ------------------------------------------------------------------ export: verbose


def test_export_verbosity(tmp_path, capsys):
    model = tiny_model()
    keras_kd.export(model, tmp_path / "a.tflite", verbose=0)
    assert capsys.readouterr().out == ""

    # 64 random inputs: one conversion step, one parity batch, the Keras run.
    for verbose in (1, "auto"):
        keras_kd.export(model, tmp_path / "b.tflite", verbose=verbose)
        out = capsys.readouterr().out
        assert "━" in out and re.search(r"3/3", out), out
        assert "Exported" in out and "PASS" in out

    keras_kd.export(model, tmp_path / "c.tflite", verbose=2)
    out = capsys.readouterr().out
    assert "━" not in out
    assert re.match(r"3/3 - \d+s - ", out), out
    assert "Exported" in out and "PASS" in out

    with pytest.raises(ValueError, match=r"`verbose` must be 'auto', 0.*Received: verbose=3"):
        keras_kd.export(model, tmp_path / "d.tflite", verbose=3)
    assert not (tmp_path / "d.tflite").exists()
