"""`keras_kd.tune`: a real KerasTuner search, the baseline always in the race."""

import numpy as np
import pytest

import keras
import keras_tuner

import keras_kd
from keras_kd.src.data import datasets
from keras_kd.src.models import models


@pytest.fixture(scope="module")
def data():
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist()
    return (x[:1500], y[:1500]), (x_test[:500], y_test[:500])


@pytest.fixture(scope="module")
def teacher(data):
    (x, y), _ = data
    keras.utils.set_random_seed(0)
    model = models.mlp((128,), name="teacher")
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=5, batch_size=64, verbose=0)
    return model


def small_space(temperatures=(1.0, 2.0), alpha=0.5, augmentations=("none",)):
    hp = keras_tuner.HyperParameters()
    hp.Choice("temperature", list(temperatures))
    hp.Fixed("alpha", alpha)
    hp.Choice("augmentation", list(augmentations))
    hp.Fixed("learning_rate", 3e-3)
    return hp


class CountingBuilder:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return models.mlp((16,), name="student")


@pytest.mark.slow
def test_tune_runs_a_real_search_and_compares_with_the_baseline(data, teacher, tmp_path, capsys):
    (x, y), test = data
    result = keras_kd.tune(CountingBuilder(), teacher, x, y, validation_split=0.2, test_data=test,
                           epochs=3, max_trials=2, hyperparameters=small_space(
                               augmentations=("none", "mixup")),
                           directory=str(tmp_path), seed=1)
    methods = [row["method"] for row in result.trials]
    # The baseline grid covers both augmentations; two distillation trials.
    assert methods.count("alone") == 2 and methods.count("distilled") == 2
    assert {row["settings"]["augmentation"] for row in result.trials if row["method"] == "alone"} == {
        "none", "mixup"}
    assert 0.0 < result.validation_accuracy <= 1.0
    assert result.validation_accuracy >= result.baseline_validation_accuracy
    assert result.test_accuracy is not None and result.baseline_test_accuracy is not None
    assert result.distilled == (result.validation_accuracy > result.baseline_validation_accuracy)
    table = result.to_markdown()
    assert "| alone |" in table and "| distilled |" in table
    printed = capsys.readouterr().out
    assert "Trial" in printed and "keras_kd.tune:" in printed


@pytest.mark.slow
def test_tune_resumes_from_its_directory(data, teacher, tmp_path):
    (x, y), _ = data
    arguments = dict(validation_split=0.2, epochs=2, max_trials=2,
                     hyperparameters=small_space(), directory=str(tmp_path), seed=2, verbose=0)
    first = keras_kd.tune(CountingBuilder(), teacher, x, y, **arguments)
    builder = CountingBuilder()
    second = keras_kd.tune(builder, teacher, x, y, **arguments)
    # Resumed: no trial runs again, only the probe and the two final students.
    assert builder.calls == 3
    assert [r["settings"] for r in second.trials] == [r["settings"] for r in first.trials]


@pytest.mark.slow
def test_tune_returns_the_baseline_when_the_teacher_cannot_help(data, tmp_path, capsys):
    (x, y), _ = data
    # A teacher that has learned nothing: its soft targets are noise, so
    # every distilled candidate (alpha = 0: soft targets only) is worse.
    keras.utils.set_random_seed(3)
    untrained = models.mlp((32,), name="untrained_teacher")
    result = keras_kd.tune(CountingBuilder(), untrained, x, y, validation_split=0.2, epochs=3,
                           max_trials=2, hyperparameters=small_space(alpha=0.0),
                           directory=str(tmp_path), seed=0)
    assert not result.distilled
    assert result.settings == result.baseline_settings
    assert result.validation_accuracy == result.baseline_validation_accuracy
    assert "returning the student trained alone" in result.verdict
    assert "returning the student trained alone" in capsys.readouterr().out


def test_tune_requires_validation_data(data, teacher, tmp_path):
    (x, y), _ = data
    with pytest.raises(ValueError, match="never on the test set.*validation_data"):
        keras_kd.tune(CountingBuilder(), teacher, x, y, directory=str(tmp_path))
    with pytest.raises(ValueError, match=r"validation_split=1.5"):
        keras_kd.tune(CountingBuilder(), teacher, x, y, validation_split=1.5,
                      directory=str(tmp_path))


@pytest.mark.parametrize("name, values, message", [
    ("temperature", [1.0, 0.0], r"temperature=0.0 is out of range.*\(0.0, 1000.0\]"),
    ("alpha", [0.5, 1.5], r"alpha=1.5 is out of range.*\[0.0, 1.0\]"),
    ("learning_rate", [-1e-3], r"learning_rate=-0.001 is out of range"),
    ("augmentation", ["cutout"], r"augmentation='cutout' is not one of"),
])
def test_search_space_values_out_of_range_are_refused_before_training(
        data, teacher, tmp_path, name, values, message):
    (x, y), _ = data
    hp = keras_tuner.HyperParameters()
    defaults = {"temperature": [1.0], "alpha": [0.1], "augmentation": ["none"],
                "learning_rate": [1e-3]}
    defaults[name] = values
    for key, choices in defaults.items():
        hp.Choice(key, choices)
    builder = CountingBuilder()
    with pytest.raises(ValueError, match=message):
        keras_kd.tune(builder, teacher, x, y, validation_split=0.2, hyperparameters=hp,
                      directory=str(tmp_path))
    assert builder.calls == 0
    assert not any(tmp_path.iterdir())


def test_search_space_must_define_every_setting(data, teacher, tmp_path):
    (x, y), _ = data
    hp = keras_tuner.HyperParameters()
    hp.Choice("temperature", [1.0])
    with pytest.raises(ValueError, match=r"missing \['alpha', 'augmentation', 'learning_rate'\]"):
        keras_kd.tune(CountingBuilder(), teacher, x, y, validation_split=0.2,
                      hyperparameters=hp, directory=str(tmp_path))


def _token_task():
    """Integer token ids whose first token decides the class: inputs MixUp
    cannot mix."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 50, (300, 12)).astype("int32")
    return x, (x[:, 0] % 3).astype("int32")


def _token_model(name):
    return keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(50, 8),
                             keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3)],
                            name=name)


@pytest.mark.slow
def test_default_space_leaves_mixup_out_for_token_ids(tmp_path, capsys):
    x, y = _token_task()
    keras.utils.set_random_seed(0)
    teacher = _token_model("teacher")
    teacher.compile(optimizer="adam",
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=2, verbose=0)
    result = keras_kd.tune(lambda: _token_model("student"), teacher, x, y, validation_split=0.2,
                           epochs=1, max_trials=2, directory=str(tmp_path))
    # No trial failed on a mixer: every trial ran, none of them with MixUp.
    assert {row["settings"]["augmentation"] for row in result.trials} == {"none"}
    assert [row["method"] for row in result.trials].count("alone") == 2  # two learning rates
    assert [row["method"] for row in result.trials].count("distilled") == 2
    assert result.notes == ["MixUp was left out of the search: `x` has dtype int32, and only "
                            "floating-point inputs can be mixed."]
    assert "Note: MixUp was left out" in result.to_markdown()
    assert "keras_kd.tune: MixUp was left out" in capsys.readouterr().out


def test_a_space_asking_mixup_for_token_ids_is_refused_before_training(tmp_path):
    x, y = _token_task()
    builder = CountingBuilder()
    with pytest.raises(ValueError, match=r"lets `augmentation` be 'mixup'.*Received: x of dtype int32"):
        keras_kd.tune(builder, _token_model("teacher"), x, y, validation_split=0.2, epochs=1,
                      hyperparameters=small_space(augmentations=("none", "mixup")),
                      directory=str(tmp_path))
    assert builder.calls == 0 and not any(tmp_path.iterdir())


def _bad_labels(x, y, x_test, y_test):
    soft = keras.utils.to_categorical(y, 10)
    soft[0] = 0.1
    wrong = y.copy()
    wrong[-1] = 12
    return [
        (dict(y=y[:-5]), r"`x` and `y` must have the same number of examples.*1500 inputs in "
                         r"`x` and 1495 labels"),
        (dict(y=wrong), r"Labels in `validation_data` must be class indices in \[0, 10\).*12"),
        (dict(y=np.where(np.arange(len(y)) == 3, -1, y.astype("int32"))),
         r"every example needs a label. Received a label -1"),
        (dict(y=soft), r"a single 1 per row.*Received a row \[0.1, 0.1"),
        (dict(test_data=(x_test, y_test[:7])), r"inputs and labels of `test_data`.*500 inputs and 7"),
    ]


@pytest.mark.parametrize("case", range(5))
def test_bad_labels_are_refused_before_any_trial(data, teacher, tmp_path, case):
    (x, y), (x_test, y_test) = data
    overrides, message = _bad_labels(x, y, x_test, y_test)[case]
    arguments = dict(dict(y=y, test_data=None), **overrides)
    with pytest.raises(ValueError, match=message):
        keras_kd.tune(CountingBuilder(), teacher, x, arguments["y"], validation_split=0.2,
                      test_data=arguments["test_data"], directory=str(tmp_path))
    assert not any(tmp_path.iterdir())  # no search was created


@pytest.mark.slow
def test_one_hot_labels_give_the_same_search_as_class_indices(data, teacher, tmp_path):
    (x, y), _ = data
    runs = {}
    for name, labels in (("sparse", y), ("one_hot", keras.utils.to_categorical(y, 10))):
        result = keras_kd.tune(CountingBuilder(), teacher, x[:600], labels[:600],
                               validation_split=0.2, epochs=1, max_trials=1,
                               hyperparameters=small_space(temperatures=(1.0,)),
                               directory=str(tmp_path / name), verbose=0)
        runs[name] = [(row["method"], row["validation_accuracy"]) for row in result.trials]
    assert runs["one_hot"] == runs["sparse"]


@pytest.mark.parametrize("teacher_model, message", [
    (lambda: models.mlp((8,), num_classes=5, name="five_classes"),
     r"must output the same number of classes.*outputs 5, student .* outputs 10"),
    (lambda: keras.Sequential([keras.Input((9,)), keras.layers.Dense(10)], name="other_inputs"),
     r"teacher 'other_inputs' cannot take `x` \(\w+: .*shaped \(None, 9\).*"
     r"x of shape \(1200, 28, 28, 1\)"),
    (lambda: keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                               keras.layers.Dense(10, activation="softmax")], name="softmax"),
     r"ends in a softmax, but teacher_outputs='logits'"),
])
def test_a_teacher_that_cannot_teach_the_student_is_refused_before_any_trial(
        data, tmp_path, teacher_model, message):
    (x, y), _ = data
    with pytest.raises(ValueError, match=message):
        keras_kd.tune(CountingBuilder(), teacher_model(), x, y, validation_split=0.2,
                      directory=str(tmp_path))
    assert not any(tmp_path.iterdir())  # the student-alone search never started


@pytest.mark.slow
def test_a_softmax_teacher_is_searched_when_declared(data, tmp_path):
    (x, y), _ = data
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(10, activation="softmax")])
    teacher.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    teacher.fit(x, y, epochs=1, verbose=0)
    result = keras_kd.tune(CountingBuilder(), teacher, x[:600], y[:600], validation_split=0.2,
                           epochs=1, max_trials=1, teacher_outputs="probabilities",
                           hyperparameters=small_space(temperatures=(2.0,)),
                           directory=str(tmp_path), verbose=0)
    assert [row["method"] for row in result.trials] == ["alone", "distilled"]
    assert 0.0 < result.trials[1]["validation_accuracy"] <= 1.0
