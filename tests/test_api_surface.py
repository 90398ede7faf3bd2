"""The API traps a reviewer found, closed: compile's positional arguments,
`compute_loss`, the module/function names that shadowed each other, and the
one data loader of the command line."""

import numpy as np
import pytest
import keras

import keras_kd
from keras_kd.src.cli import data as cli_data


def small_distiller():
    model = lambda seed: (keras.utils.set_random_seed(seed),  # noqa: E731
                          keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))[1]
    return keras_kd.Distiller(student=model(0), teacher=model(1))


def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 4)).astype("float32"), rng.integers(0, 3, 8)


def test_positional_loss_is_the_student_loss_as_in_keras():
    distiller = small_distiller()
    distiller.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    x, y = batch()
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        y, distiller.student(x))
    values = distiller.term_losses(x, y)
    np.testing.assert_allclose(values["student_loss"], expected, rtol=1e-6)
    assert "accuracy" in distiller.fit(x, y, verbose=0).history


def test_metrics_passed_where_keras_puts_the_loss_are_refused():
    with pytest.raises(TypeError, match=r"student's `loss`.*metrics=\[\.\.\.\]"):
        small_distiller().compile("adam", ["accuracy"])


def test_arguments_after_loss_and_metrics_are_keyword_only():
    with pytest.raises(TypeError, match="keyword-only"):
        small_distiller().compile("adam", None, ["accuracy"], 0.5)


def test_compute_loss_is_the_loss_fit_logs():
    distiller = small_distiller()
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), alpha=0.3, temperature=2.0)
    x, y = batch()
    loss = float(distiller.compute_loss(x, y))
    history = distiller.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert loss == pytest.approx(history.history["loss"][0], rel=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda d, x, y: d.compute_loss(None, y), "needs the batch's inputs"),
    (lambda d, x, y: d.compute_loss(x, y, y_pred=d.student(x)), "pass `x`"),
])
def test_compute_loss_says_what_it_needs(call, match):
    distiller = small_distiller()
    distiller.compile(alpha=0.5)
    x, y = batch()
    with pytest.raises(ValueError, match=match):
        call(distiller, x, y)


def test_export_and_report_are_functions_not_modules():
    assert callable(keras_kd.export) and callable(keras_kd.report)
    assert keras_kd.export.__module__ == "keras_kd.src.export.export"
    assert keras_kd.report.__module__ == "keras_kd.src.report.report"


def test_public_namespaces_re_export_the_implementation():
    from keras_kd.src.augment import augment as implementation

    assert keras_kd.augment.MixUp is implementation.MixUp is keras_kd.MixUp
    for namespace in (keras_kd.augment, keras_kd.callbacks, keras_kd.schedules,
                      keras_kd.datasets, keras_kd.models, keras_kd.evaluation,
                      keras_kd.text_datasets):
        assert namespace.__all__ and all(hasattr(namespace, n) for n in namespace.__all__)


def test_cli_data_from_one_npz_or_two_npy_files(tmp_path):
    x, y = batch()
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    (x1, y1), names = cli_data.labelled_test_data(None, str(tmp_path / "xy.npz"), None)
    (x2, y2), _ = cli_data.labelled_test_data(None, str(tmp_path / "x.npy"),
                                              str(tmp_path / "y.npy"))
    assert names is None
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    with pytest.raises(ValueError, match=r"both `--x X\.npy` and `--y Y\.npy`"):
        cli_data.labelled_test_data(None, str(tmp_path / "x.npy"), None)
    np.savez(tmp_path / "x_only.npz", x=x)
    with pytest.raises(ValueError, match="holds inputs only"):
        cli_data.labelled_test_data(None, str(tmp_path / "x_only.npz"), None)
    with pytest.raises(FileNotFoundError, match="--x: no such file"):
        cli_data.labelled_test_data(None, str(tmp_path / "missing.npy"), str(tmp_path / "y.npy"))
    with pytest.raises(ValueError, match="must be one of"):
        cli_data.labelled_test_data("cifar10", None, None)
    assert [len(a) for a in cli_data.limit_examples((x, y), 3)] == [3, 3]
