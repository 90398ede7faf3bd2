"""Hostile and careless inputs to `export` and the teacher cache (issue 13).

Each test here failed before its fix: exports that deleted a user's files,
concurrent cache writers that mixed their records, a dataset fingerprint that
looked at 256 examples, NaN/inf teacher outputs stored without a word,
multi-output models exported as a stacked tensor, cache paths refused only
after the whole teacher pass, and no progress reporting.
"""

import importlib
import json
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
from keras_kd.src.cli.cli import main as cli_main

# The module, not the function `keras_kd.export` that shadows it.
export_module = importlib.import_module("keras_kd.src.export.export")

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


@pytest.mark.parametrize("name", ["exported", "m.tflite"])
def test_failed_export_removes_the_directories_it_created(tmp_path, name):
    before = snapshot(tmp_path)
    with pytest.raises(keras_kd.ParityError):
        keras_kd.export(tiny_model(), tmp_path / "new" / "nested" / name,
                        outputs="probabilities", max_abs_diff=-1.0, verbose=0)
    assert snapshot(tmp_path) == before


def test_failed_export_keeps_a_created_directory_someone_wrote_into(tmp_path, monkeypatch):
    # Between the directory check and the failure another writer put a file
    # there: that directory, and its parents, are not the export's to remove.
    stage = export_module._stage_artifact

    def stage_beside_another_writer(plan):
        (plan.path.parent / "other.txt").write_text("not the export's")
        return stage(plan)

    monkeypatch.setattr(export_module, "_stage_artifact", stage_beside_another_writer)
    with pytest.raises(keras_kd.ParityError):
        keras_kd.export(tiny_model(), tmp_path / "new" / "nested" / "exported",
                        outputs="probabilities", max_abs_diff=-1.0, verbose=0)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "new", "new/nested", "new/nested/other.txt"]


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


# ------------------------------------------------------------------ cache


def tiny_teacher(name="teacher", scale=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name=name)
    if scale is not None:
        kernel, bias = model.get_weights()
        model.set_weights([np.full_like(kernel, scale), bias])
    return model


def tiny_data(count=600):
    rng = np.random.default_rng(0)
    return rng.uniform(size=(count, 4)).astype("float32"), rng.integers(0, 3, count)


class CallRecorder(keras.Model):
    """A teacher that notes every call (eager or traced)."""

    def __init__(self):
        super().__init__(name="recorder")
        self.dense = keras.layers.Dense(3)
        self.calls = 0

    def call(self, inputs, training=False):
        self.calls += 1
        return self.dense(inputs)


CONCURRENT_WRITER = textwrap.dedent("""
    import os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, keras_kd
    path, me, other = sys.argv[1:4]
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((32,)), keras.layers.Dense(10)], name="t")
    x = np.random.default_rng(0).normal(size=(20000, 32)).astype("float32")
    open(me, "w").close()
    while not os.path.exists(other):  # start both passes together
        time.sleep(0.005)
    keras_kd.cache_teacher_outputs(teacher, x, path, batch_size=64, verbose=0)
""")


@pytest.mark.slow
def test_two_processes_caching_to_one_path(tmp_path):
    path = tmp_path / "teacher.kdcache"
    env = dict(os.environ, PYTHONPATH=ROOT)
    ready = [tmp_path / "ready_0", tmp_path / "ready_1"]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, str(path), str(ready[i]), str(ready[1 - i])],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=300)
        assert writer.returncode == 0, stderr[-3000:]
    cache = keras_kd.TeacherCache(path)  # checks the size and the checksum
    x = np.random.default_rng(0).normal(size=(20000, 32)).astype("float32")
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((32,)), keras.layers.Dense(10)], name="t")
    np.testing.assert_allclose(
        cache.teacher_logits(np.arange(0, 20000, 997))[:, 0],
        teacher.predict(x[::997], verbose=0), atol=1e-5,
    )
    keras_kd.load_teacher_cache(path, x, teacher=teacher)
    # No temporary file of either writer left.
    assert sorted(os.listdir(tmp_path)) == ["ready_0", "ready_1", "teacher.kdcache"]


def test_unique_temporary_names(tmp_path, monkeypatch):
    seen = []
    replace = os.replace

    def recording_replace(source, destination):
        seen.append(os.path.basename(os.fspath(source)))
        replace(source, destination)

    monkeypatch.setattr(os, "replace", recording_replace)
    x, _ = tiny_data(20)
    for _ in range(2):
        keras_kd.cache_teacher_outputs(tiny_teacher(), x, tmp_path / "c.kdcache", verbose=0)
    assert len(set(seen)) == 2
    assert all(re.fullmatch(rf"\.c\.kdcache\.partial\.{os.getpid()}\.[0-9a-f]{{12}}", n) for n in seen)
    assert os.listdir(tmp_path) == ["c.kdcache"]


def test_fingerprint_covers_every_example(tmp_path):
    x, y = tiny_data(600)
    path = tmp_path / "c.kdcache"
    keras_kd.cache_teacher_outputs(tiny_teacher(), x, path, verbose=0)
    swapped = x.copy()
    swapped[[300, 500]] = swapped[[500, 300]]
    replaced = x.copy()
    replaced[256:] = np.random.default_rng(1).uniform(size=(344, 4))
    touched = x.copy()
    touched[599, 3] = np.nextafter(touched[599, 3], 2.0)  # one ulp of the last example
    for bad in (swapped, replaced, touched):
        with pytest.raises(ValueError, match=r"inputs `x` differ.*covers every example"):
            keras_kd.load_teacher_cache(path, bad, y)
        stream = tf.data.Dataset.from_tensor_slices((bad, y)).filter(lambda a, b: True)
        with pytest.raises(ValueError, match=r"inputs `x` differ"):
            keras_kd.load_teacher_cache(path, stream)
    with pytest.raises(ValueError, match=r"inputs `x` differ"):
        keras_kd.load_teacher_cache(path, x.astype("float64"), y)
    # The same examples pass as arrays, as a stream of unknown size, and
    # whatever batch sizes built and read them.
    keras_kd.load_teacher_cache(path, x, y)
    stream = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda a, b: True)
    keras_kd.load_teacher_cache(path, stream)
    other = tmp_path / "stream.kdcache"
    header = keras_kd.cache_teacher_outputs(tiny_teacher(), stream, other, batch_size=7, verbose=0)
    assert header["input_fingerprint"] == keras_kd.read_teacher_cache_header(path)["input_fingerprint"]
    with pytest.raises(ValueError, match=r"holds 600 examples, but `x` has 599"):
        keras_kd.load_teacher_cache(path, stream.take(599))


def test_fingerprint_of_dict_and_string_inputs_matches_its_stream(tmp_path):
    from keras_kd.src.data.cache import _example_dataset, _input_fingerprint
    from keras_kd.src.data.cache_format import InputFingerprint

    def of_arrays(x):
        examples, _, _, arrays = _example_dataset(x, "x")
        return _input_fingerprint(examples, arrays).hexdigest()

    x = {"a": np.arange(60, dtype="int32").reshape(20, 3), "b": np.array([f"w{i}" for i in range(20)])}
    from_arrays = of_arrays(x)
    stream = tf.data.Dataset.from_tensor_slices(x).filter(lambda e: True)
    from_stream = _input_fingerprint(_example_dataset(stream, "x")[0]).hexdigest()
    assert from_arrays == from_stream
    chunked = InputFingerprint()
    for start in (0, 1, 8, 19):
        stop = {0: 1, 1: 8, 8: 19, 19: 20}[start]
        chunked.update({k: v[start:stop] for k, v in x.items()})
    assert chunked.hexdigest() == from_arrays
    x["b"] = x["b"][::-1].copy()
    assert of_arrays(x) != from_arrays


def test_cache_of_the_old_format_is_refused(tmp_path):
    x, y = tiny_data(20)
    path = tmp_path / "old.kdcache"
    header = keras_kd.cache_teacher_outputs(tiny_teacher(), x, path, verbose=0)
    raw = bytearray(path.read_bytes())
    room = header["data_offset"] - 16  # after the magic and the header length
    json_bytes = json.dumps(dict(header, format_version=1)).encode()
    raw[16 : 16 + room] = json_bytes + b" " * (room - len(json_bytes))
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"earlier keras-kd \(cache format version 1\).*first 256 "
                                         r"examples.*Expected format version 2: rebuild it"):
        keras_kd.load_teacher_cache(path, x, y)


def test_infinite_datasets_are_refused(tmp_path):
    x, _ = tiny_data(20)
    forever = tf.data.Dataset.from_tensor_slices(x).repeat()
    with pytest.raises(ValueError, match=r"`dataset` is an infinite `tf.data.Dataset`"):
        keras_kd.cache_teacher_outputs(tiny_teacher(), forever, tmp_path / "c", verbose=0)
    keras_kd.cache_teacher_outputs(tiny_teacher(), x, tmp_path / "c", verbose=0)
    with pytest.raises(ValueError, match=r"`x` is an infinite `tf.data.Dataset`"):
        keras_kd.load_teacher_cache(tmp_path / "c", forever)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("top_k", [None, 1])
def test_non_finite_teacher_outputs_are_refused(tmp_path, value, top_k):
    x, _ = tiny_data(600)
    x[[300, 301, 302, 410]] = value  # a NaN or inf input gives NaN or inf logits
    with pytest.raises(ValueError, match=(
        r"Teacher 'teacher' returned non-finite outputs \(NaN or inf\) for 4 example\(s\) "
        r"of dataset index 300..302, 410 \(the batch of examples 256..511\). Nothing was cached"
    )):
        keras_kd.cache_teacher_outputs(tiny_teacher(), x, tmp_path / "c", top_k=top_k, verbose=0)
    assert os.listdir(tmp_path) == []


def test_non_finite_outputs_name_the_teacher_they_came_from(tmp_path):
    x, _ = tiny_data(64)
    x[[5, 9]] = -1.0
    log_teacher = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda v: keras.ops.log(v[:, :3]))], name="log_teacher"
    )
    with pytest.raises(ValueError, match=r"Teacher 'log_teacher'.*for 2 example\(s\) of dataset index 5, 9"):
        keras_kd.cache_teacher_outputs([tiny_teacher(), log_teacher], x, tmp_path / "c", verbose=0)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("top_k", [None, 1, 2])
def test_float16_overflow_is_refused(tmp_path, top_k):
    x, _ = tiny_data(40)
    big = tiny_teacher("big", scale=40000.0)  # logits up to 4 * 40000 = 160000
    with pytest.raises(ValueError, match=(
        r"Teacher 'big' returned outputs beyond the range of dtype='float16' \(\|x\| > 65504\).*"
        r"Nothing was cached. Use dtype='float32'"
    )):
        keras_kd.cache_teacher_outputs(big, x, tmp_path / "c", dtype="float16", top_k=top_k, verbose=0)
    assert os.listdir(tmp_path) == []
    # float32 holds them, exactly as computed.
    keras_kd.cache_teacher_outputs(big, x, tmp_path / "c", top_k=top_k, verbose=0)
    stored = keras_kd.TeacherCache(tmp_path / "c").teacher_logits(np.arange(40))
    assert np.isfinite(stored).all()
    # Logits within the float16 range are stored in float16 as before.
    fits = tiny_teacher("fits", scale=10000.0)
    keras_kd.cache_teacher_outputs(fits, x, tmp_path / "f16", dtype="float16", top_k=top_k, verbose=0)
    assert np.isfinite(keras_kd.TeacherCache(tmp_path / "f16").teacher_logits(np.arange(40))).all()


def test_bad_cache_paths_fail_before_the_teacher_pass(tmp_path, monkeypatch):
    x, _ = tiny_data(20)
    teacher = CallRecorder()
    directory = tmp_path / "a_directory"
    directory.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    data_file = tmp_path / "train.npy"
    np.save(data_file, x)
    data = data_file.read_bytes()
    cases = [
        (directory, r"`path` is a directory.*Expected a file path such as '.*teacher.kdcache'"
                    r".*Received: path='.*a_directory'"),
        (tmp_path / "missing" / "c.kdcache", r"The directory of `path`, '.*missing', does not exist"),
        (a_file / "c.kdcache", r"The directory of `path`, '.*a_file', is not a directory"),
        (data_file, r"existing file that is not a keras-kd teacher cache.*not overwritten"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=message):
            keras_kd.cache_teacher_outputs(teacher, x, path, verbose=0)
    with pytest.raises(TypeError, match=r"`path` must be a file path.*Received: path=3"):
        keras_kd.cache_teacher_outputs(teacher, x, 3, verbose=0)

    def read_only(path, flags, *args):
        if ".probe." in os.path.basename(os.fspath(path)):
            raise PermissionError(13, "Permission denied")
        return os_open(path, flags, *args)

    os_open = os.open
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(ValueError, match=r"Cannot write to `path`.*not writable \(Permission denied\)"):
        keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "c.kdcache", verbose=0)
    monkeypatch.setattr(os, "open", os_open)
    assert teacher.calls == 0  # refused before the teacher ran at all
    assert data_file.read_bytes() == data and a_file.read_text() == "not a directory"
    assert sorted(os.listdir(tmp_path)) == ["a_directory", "a_file", "train.npy"]
    assert os.listdir(directory) == []
    # An earlier cache and an empty file are replaced.
    (tmp_path / "empty").touch()
    for path in (tmp_path / "empty", tmp_path / "empty"):
        keras_kd.cache_teacher_outputs(teacher, x, path, verbose=0)
        keras_kd.load_teacher_cache(path, x)


def test_cache_verbosity(tmp_path, capsys):
    x, _ = tiny_data(600)  # 3 batches of 256
    teacher = tiny_teacher()
    keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "a", verbose=0)
    assert capsys.readouterr().out == ""
    for verbose in (1, "auto"):
        keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "a", verbose=verbose)
        out = capsys.readouterr().out
        assert "━" in out and "3/3" in out, out
    keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "a", verbose=2)
    out = capsys.readouterr().out
    assert "━" not in out and re.fullmatch(r"3/3 - \d+s - .*step\s*", out), out
    # A stream of unknown size: the step count is known at the end.
    stream = tf.data.Dataset.from_tensor_slices(x).filter(lambda e: True)
    keras_kd.cache_teacher_outputs(teacher, stream, tmp_path / "a", verbose=2)
    assert re.fullmatch(r"3/3 - \d+s - .*step\s*", capsys.readouterr().out)
    with pytest.raises(ValueError, match=r"`verbose` must be 'auto', 0.*Received: verbose='loud'"):
        keras_kd.cache_teacher_outputs(teacher, x, tmp_path / "b", verbose="loud")
    assert not (tmp_path / "b").exists()
