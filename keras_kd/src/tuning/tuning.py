"""`keras_kd.tune`: distillation settings found on validation data, with the
student trained alone always in the race.

Built on KerasTuner. Two searches share one budget per trial (epochs, batch
size, data):

1. the **baseline**: the student trained alone, over every learning rate and
   augmentation of the search space (a grid, so the strongest student-alone
   setting is always found);
2. the **distilled** candidates: the student trained by a `Distiller` over
   the whole space (temperature, alpha, augmentation, learning rate), with
   the tuner of your choice.

The best distilled student is returned only when it beats the best baseline
on the validation data; otherwise `tune` says so and returns the baseline.
Both searches keep their trials under `directory` and resume from it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import keras
import numpy as np

from keras_kd.src.report import evaluation
from keras_kd.src.utils import optional

#: The search space used when `hyperparameters` is not given.
DEFAULT_SPACE = {
    "temperature": (1.0, 2.0, 4.0),
    "alpha": (0.0, 0.1, 0.5),
    "augmentation": ("none", "mixup"),
    "learning_rate": (1e-3, 3e-3),
}

_AUGMENTATIONS = ("none", "mixup")


@dataclasses.dataclass
class TuneResult:
    """What `tune` found.

    Attributes:
        student: The chosen student (distilled, or the baseline when no
            distilled candidate beat it), trained and ready to save.
        distilled: True when `student` is a distilled candidate.
        settings: The chosen trial's hyperparameters.
        baseline_settings: The best student-alone trial's hyperparameters.
        validation_accuracy: The chosen student's validation accuracy.
        baseline_validation_accuracy: The best student-alone trial's.
        test_accuracy, baseline_test_accuracy: Test accuracies of the chosen
            student and of the best baseline, when `test_data` was given.
        trials: One row per trial: `{"trial", "method", "settings",
            "validation_accuracy"}`, best first within each method.
        notes: What `tune` changed in the search and why (e.g. MixUp left
            out for inputs that cannot be mixed).
    """

    student: keras.Model
    distilled: bool
    settings: Dict[str, Any]
    baseline_settings: Dict[str, Any]
    validation_accuracy: float
    baseline_validation_accuracy: float
    test_accuracy: Optional[float] = None
    baseline_test_accuracy: Optional[float] = None
    trials: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def verdict(self) -> str:
        """One sentence: did distillation beat the student alone?"""
        gain = 100 * (self.validation_accuracy - self.baseline_validation_accuracy)
        if self.distilled:
            return (f"Distillation beat the student alone on validation by "
                    f"{gain:+.2f} points.")
        return ("No distilled candidate beat the student trained alone on "
                "validation: returning the student trained alone.")

    def to_markdown(self) -> str:
        """The comparison table, validation (and test) accuracy per trial."""
        lines = [self.verdict, *(f"Note: {note}" for note in self.notes), "",
                 "| method | trial | settings | validation accuracy |",
                 "|---|---|---|---:|"]
        for row in self.trials:
            settings = ", ".join(f"{k}={v}" for k, v in sorted(row["settings"].items()))
            lines.append(f"| {row['method']} | {row['trial']} | {settings} | "
                         f"{100 * row['validation_accuracy']:.2f}% |")
        if self.test_accuracy is not None:
            lines += ["", "| student | test accuracy |", "|---|---:|",
                      f"| chosen ({'distilled' if self.distilled else 'alone'}) | "
                      f"{100 * self.test_accuracy:.2f}% |",
                      f"| best alone | {100 * self.baseline_test_accuracy:.2f}% |"]
        return "\n".join(lines)


def _check_space_values(name: str, values: Sequence, low: float, high: float,
                        low_open: bool) -> None:
    for value in values:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low) and value <= high
        if not ok:
            bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
            raise ValueError(
                f"The search space value {name}={value!r} is out of range: "
                f"`{name}` must be in {bound}."
            )


def _space_values(hp, name: str) -> Tuple:
    """The values a search space allows for `name` (for range checks)."""
    for entry in hp.space:
        if entry.name == name:
            config = entry.get_config()
            if "values" in config:
                return tuple(config["values"])
            if "value" in config:
                return (config["value"],)
            return tuple(v for v in (config.get("min_value"), config.get("max_value"))
                         if v is not None)
    return ()


def default_hyperparameters():
    """The default search space as `keras_tuner.HyperParameters`.

    Example:

    >>> hp = default_hyperparameters()
    >>> sorted(p.name for p in hp.space)
    ['alpha', 'augmentation', 'learning_rate', 'temperature']
    """
    return _hyperparameters_from(DEFAULT_SPACE)


def _hyperparameters_from(space: Dict[str, Sequence]):
    keras_tuner = optional.require("keras_tuner")

    hp = keras_tuner.HyperParameters()
    for name, values in space.items():
        hp.Choice(name, list(values))
    return hp


def _without_mixup(hp, x: np.ndarray, user_space: bool) -> Tuple[Any, List[str]]:
    """The search space for inputs `x`, and a note when it changed.

    MixUp mixes floating-point inputs only: token ids (integer inputs) mixed
    would no longer be ids. The default space then searches without it (and
    says so); a space the user gave that asks for it is refused, before any
    trial trains.
    """
    if np.issubdtype(x.dtype, np.floating) or "mixup" not in _space_values(hp, "augmentation"):
        return hp, []
    if user_space:
        raise ValueError(
            "`hyperparameters` lets `augmentation` be 'mixup', but MixUp mixes "
            "floating-point inputs only (token ids cannot be mixed). Expected "
            "`hp.Fixed('augmentation', 'none')` for these inputs. Received: x of "
            f"dtype {x.dtype}."
        )
    space = dict(DEFAULT_SPACE, augmentation=("none",))
    return _hyperparameters_from(space), [
        f"MixUp was left out of the search: `x` has dtype {x.dtype}, and only "
        "floating-point inputs can be mixed."]


def validate_hyperparameters(hp) -> None:
    """Raises unless every value of the search space is valid.

    Temperatures must be positive, alpha in [0, 1], learning rates positive,
    augmentation one of `"none"` and `"mixup"`.
    """
    _check_space_values("temperature", _space_values(hp, "temperature"), 0.0, 1e3, True)
    _check_space_values("alpha", _space_values(hp, "alpha"), 0.0, 1.0, False)
    _check_space_values("learning_rate", _space_values(hp, "learning_rate"), 0.0, 10.0, True)
    for value in _space_values(hp, "augmentation"):
        if value not in _AUGMENTATIONS:
            raise ValueError(
                f"The search space value augmentation={value!r} is not one of "
                f"{_AUGMENTATIONS}."
            )
    missing = [name for name in DEFAULT_SPACE if not _space_values(hp, name)]
    if missing:
        raise ValueError(
            f"`hyperparameters` must define {sorted(DEFAULT_SPACE)}; missing "
            f"{missing}. Use `hp.Fixed(name, value)` to hold one fixed."
        )


class _DistillationHyperModel:
    """Builds and trains one trial: the student alone or distilled."""

    def __init__(self, build_student, teacher, method: str, epochs: int, batch_size: int,
                 num_classes: int, seed: int, mixup_alpha: float, fit_verbose: int = 0,
                 teacher_outputs: str = "logits"):
        keras_tuner = optional.require("keras_tuner")

        self._base = keras_tuner.HyperModel
        self.build_student = build_student
        self.teacher = teacher
        self.teacher_outputs = teacher_outputs
        self.method = method
        self.epochs = epochs
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.seed = seed
        self.mixup_alpha = mixup_alpha
        self.fit_verbose = fit_verbose

    def as_keras_tuner(self):
        outer = self

        class HyperModel(self._base):
            def build(self, hp):
                return outer.build(hp)

            def fit(self, hp, model, *args, **kwargs):
                return outer.fit(hp, model, *args, **kwargs)

        return HyperModel(name=f"keras_kd_{self.method}")

    def _optimizer(self, hp, steps_per_epoch: int):
        schedule = keras.optimizers.schedules.CosineDecay(
            hp.get("learning_rate"), decay_steps=max(1, self.epochs * steps_per_epoch)
        )
        return keras.optimizers.Adam(schedule)

    def _mixer(self, hp):
        from keras_kd.src.augment import augment

        if hp.get("augmentation") == "mixup":
            return augment.MixUp(alpha=self.mixup_alpha, seed=self.seed)
        return None

    def build(self, hp):
        from keras_kd.src.distiller.distiller import Distiller

        keras.utils.set_random_seed(self.seed)
        student = self.build_student()
        if self.method == "alone":
            return student
        return Distiller(student=student, teacher=self.teacher, augmentation=self._mixer(hp),
                         teacher_outputs=self.teacher_outputs)

    def fit(self, hp, model, x, y=None, validation_data=None, **kwargs):
        import tensorflow as tf

        from keras_kd.src.distiller.distiller import Distiller

        steps = int(math.ceil(len(x) / self.batch_size))
        # KerasTuner passes its own `verbose` (its trial display) to fit;
        # the per-epoch lines follow `tune`'s verbosity instead.
        kwargs["verbose"] = self.fit_verbose
        x_val, y_val = validation_data
        if isinstance(model, Distiller):
            model.compile(optimizer=self._optimizer(hp, steps), metrics=["accuracy"],
                          alpha=hp.get("alpha"), temperature=hp.get("temperature"))
            model.fit(x, y, batch_size=self.batch_size, epochs=self.epochs,
                      validation_data=validation_data, **kwargs)
            # The objective is the trained student's final validation
            # accuracy: the student `tune` returns, not its best epoch.
            return _accuracy(model.student, x_val, y_val)
        # The student alone: one-hot labels, mixed like the inputs when the
        # trial uses mixup (the fair baseline for a mixed distillation).
        one_hot = lambda labels: keras.ops.one_hot(labels, self.num_classes)  # noqa: E731
        train = tf.data.Dataset.from_tensor_slices((x, one_hot(y)))
        train = train.shuffle(len(x), seed=self.seed, reshuffle_each_iteration=True)
        train = train.batch(self.batch_size)
        mixer = self._mixer(hp)
        if mixer is not None:
            train = train.map(mixer.mix_labeled)
        model.compile(optimizer=self._optimizer(hp, steps),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
        # `train` is shuffled above; Keras's `shuffle` does not apply to a
        # dataset (Keras 3.15 warns when it is left on).
        model.fit(train, epochs=self.epochs, validation_data=(x_val, one_hot(y_val)),
                  shuffle=False, **kwargs)
        return _accuracy(model, x_val, y_val)


def _accuracy(model, x, y) -> float:
    logits = model.predict(x, batch_size=1024, verbose=0)
    return evaluation.accuracy(np.asarray(y).reshape(-1), np.argmax(logits, axis=-1))


def _split_validation(x, y, validation_data, validation_split):
    if validation_data is not None and validation_split is not None:
        raise ValueError(
            "Pass one of `validation_data` and `validation_split`, not both. "
            f"Received: validation_split={validation_split!r} and validation_data."
        )
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError(
                "`validation_data` must be a tuple `(x_val, y_val)` of labelled "
                f"examples. Received: {type(validation_data).__name__}."
            )
        return (x, y), tuple(np.asarray(v) for v in validation_data)
    if validation_split is None:
        raise ValueError(
            "`tune` chooses every setting on validation data, never on the test "
            "set: pass `validation_data=(x_val, y_val)` or `validation_split=` "
            "(a fraction in (0, 1) of `x` held out). Received neither."
        )
    if not isinstance(validation_split, float) or not 0.0 < validation_split < 1.0:
        raise ValueError(
            f"`validation_split` must be a float in (0, 1). Received: "
            f"validation_split={validation_split!r}."
        )
    count = int(round(len(x) * validation_split))
    if count < 1 or count >= len(x):
        raise ValueError(
            f"`validation_split={validation_split}` of {len(x)} examples leaves "
            "no training or no validation examples."
        )
    # The last examples, as `keras.Model.fit(validation_split=...)` takes them.
    return (x[:-count], y[:-count]), (x[-count:], y[-count:])


def _class_indices(x: np.ndarray, labels, num_classes: int, argument: str) -> np.ndarray:
    """`labels` as `(N,)` int64 class indices, one per example of `x`.

    Accepted: class indices shaped `(N,)` or `(N, 1)` and one-hot rows.
    Refused: labels of another count than `x`, out of `[0, num_classes)`,
    unlabeled (`-1`: every trial trains the student alone on these labels),
    or soft rows (a search on hard labels cannot use them as they are).
    """
    from keras_kd.src.distiller import checks

    labels = np.asarray(labels)
    if len(labels) != len(x):
        raise ValueError(
            f"The inputs and labels of `{argument}` must have the same number of "
            f"examples. Received: {len(x)} inputs and {len(labels)} labels in {argument}."
        )
    if checks.check_label_array(labels, num_classes, argument) == "one_hot":
        soft = ~np.isin(labels, (0, 1)).all(axis=-1) | (labels.sum(axis=-1) != 1)
        if soft.any():
            raise ValueError(
                f"Labels in `{argument}` must be class indices or one-hot rows (a "
                "single 1 per row); `tune` trains the student alone on hard labels. "
                f"Received a row {labels[soft][0].tolist()}."
            )
    indices = evaluation._as_class_indices(labels, argument)
    if indices.size and indices.min() < 0:
        raise ValueError(
            f"Labels in `{argument}` must be class indices in [0, {num_classes}): "
            "`tune` trains the student alone on them, so every example needs a "
            f"label. Received a label {indices.min()}."
        )
    return indices


def _check_pairing(student: keras.Model, teacher, teacher_outputs: str, x: np.ndarray) -> None:
    """Fails before any trial when the teacher(s) and the student cannot
    form a `Distiller` (classes, softmax outputs, ...) or the teacher(s)
    cannot take `x`: otherwise the student-alone search would train first
    and every distilled trial fail after it."""
    from keras_kd.src.distiller.distiller import Distiller

    distiller = Distiller(student=student, teacher=teacher, teacher_outputs=teacher_outputs)
    for model in distiller.teachers:
        try:
            model(x[:2], training=False)
        except Exception as error:  # any failure of the user's model on `x`
            raise ValueError(
                f"The teacher {model.name!r} cannot take `x` ({_cause(error)}). Expected "
                f"inputs like the teacher's own, shaped {_input_shape(model)}. Received: x "
                f"of shape {x.shape} and dtype {x.dtype}."
            ) from error


def _cause(error: Exception) -> str:
    """The informative line of a Keras layer error (Keras wraps it between
    "Exception encountered when calling ..." and "Arguments received ...")."""
    for line in str(error).splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
        if line and not line.startswith(("Exception encountered", "Arguments received")):
            # Some messages go on to print the whole input tensor.
            return f"{type(error).__name__}: {line[:160]}"
    return type(error).__name__


def _input_shape(model: keras.Model):
    try:
        return tuple(model.inputs[0].shape)
    except (AttributeError, IndexError, TypeError, ValueError):
        return "(unknown)"


def _trial_rows(tuner, method: str) -> List[Dict[str, Any]]:
    rows = []
    for trial in tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials)):
        if trial.score is None:
            continue
        rows.append({"trial": trial.trial_id, "method": method,
                     "settings": dict(trial.hyperparameters.values),
                     "validation_accuracy": float(trial.score)})
    return rows


def tune(
    build_student: Callable[[], keras.Model],
    teacher: Union[keras.Model, Sequence[keras.Model]],
    x: np.ndarray,
    y: np.ndarray,
    *,
    validation_data: Optional[Tuple[np.ndarray, np.ndarray]] = None,
    validation_split: Optional[float] = None,
    test_data: Optional[Tuple[np.ndarray, np.ndarray]] = None,
    epochs: int = 10,
    batch_size: int = 128,
    max_trials: int = 10,
    hyperparameters=None,
    tuner: str = "random",
    mixup_alpha: float = 1.0,
    teacher_outputs: str = "logits",
    directory: str = "kd_tune",
    project_name: str = "keras_kd",
    overwrite: bool = False,
    seed: int = 0,
    verbose: Union[int, str] = "auto",
) -> TuneResult:
    """Searches distillation settings and compares them with the student alone.

    Every trial trains a fresh student from `build_student()` (same seed, so
    the same initial weights) for `epochs` epochs with Adam and a cosine
    schedule. The baseline search trains it alone over every
    `learning_rate` x `augmentation` pair of the space; the distillation
    search trains it in a `Distiller` for up to `max_trials` settings of
    temperature, alpha, augmentation (`"mixup"`: `keras_kd.src.augment.augment.MixUp`
    inside the step, the teacher and the student seeing the same mixed
    input) and learning rate. The objective is validation accuracy.

    Args:
        build_student: A function that returns a new, uncompiled student
            that outputs logits.
        teacher: A trained teacher (or a list of them).
        x: Training inputs (numpy).
        y: Class labels of `x` (numpy): indices shaped `(N,)` or `(N, 1)`,
            or one-hot rows. Every example needs a label.
        validation_data: `(x_val, y_val)`. Or `validation_split`.
        validation_split: Fraction of `x` held out (the last examples).
        test_data: Optional `(x_test, y_test)`, read once at the end to
            report the chosen student's and the best baseline's accuracy.
        epochs: Epochs of every trial.
        batch_size: Batch size of every trial.
        max_trials: Distillation trials.
        hyperparameters: A `keras_tuner.HyperParameters` defining
            `temperature`, `alpha`, `augmentation` and `learning_rate`
            (`hp.Fixed` holds one fixed). Defaults to `DEFAULT_SPACE`,
            without MixUp when `x` is not floating-point (token ids cannot
            be mixed; `TuneResult.notes` says so). A space of your own that
            allows MixUp for such inputs is refused before any trial.
        tuner: `"random"`, `"bayesian"` or `"grid"` (the distillation search).
        mixup_alpha: The Beta concentration of the mixup trials.
        teacher_outputs: What the teacher outputs, `"logits"` (default) or
            `"probabilities"` (a final softmax), as for `Distiller`.
        directory: Where the trials are kept; a search that finds its
            directory resumes from it (`overwrite=True` restarts).
        project_name: The search's subdirectory of `directory`.
        seed: Seed of the tuner, the students' initial weights and the mixing.
        verbose: 0 silent, 1 or `"auto"` KerasTuner's per-trial progress, 2
            the same plus Keras's per-epoch lines.

    Returns:
        A `TuneResult`.

    Example:

    >>> result = tune(build_student, teacher, x, y, validation_split=0.1,
    ...               epochs=5, max_trials=6)  # doctest: +SKIP
    >>> print(result.to_markdown())  # doctest: +SKIP
    """
    keras_tuner = optional.require("keras_tuner")

    from keras_kd.src.utils.model_outputs import output_classes as _output_classes

    if not callable(build_student):
        raise TypeError(
            "`build_student` must be a function that returns a new student model. "
            f"Received: build_student={build_student!r}."
        )
    for argument, value in (("epochs", epochs), ("batch_size", batch_size),
                            ("max_trials", max_trials)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{argument}` must be a positive integer. "
                             f"Received: {argument}={value!r}.")
    tuners = {"random": keras_tuner.RandomSearch, "bayesian": keras_tuner.BayesianOptimization,
              "grid": keras_tuner.GridSearch}
    if tuner not in tuners:
        raise ValueError(f"`tuner` must be one of {sorted(tuners)}. Received: tuner={tuner!r}.")
    if verbose not in ("auto", 0, 1, 2):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2. Received: verbose={verbose!r}.")
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(
            "`x` and `y` must have the same number of examples. Received: "
            f"{len(x)} inputs in `x` and {len(y)} labels in `y`."
        )
    (x_train, y_train), (x_val, y_val) = _split_validation(x, y, validation_data, validation_split)
    hp = default_hyperparameters() if hyperparameters is None else hyperparameters
    validate_hyperparameters(hp)
    hp, notes = _without_mixup(hp, x, user_space=hyperparameters is not None)
    probe = build_student()
    num_classes = _output_classes(probe)
    if num_classes is None:
        raise ValueError("`build_student()` must return a model with one logits output.")
    _check_pairing(probe, teacher, teacher_outputs, x_train)
    del probe
    # Checked here, before any trial: KerasTuner would log each failing
    # trial's traceback and stop after three with a message naming none.
    y_train = _class_indices(x_train, y_train, num_classes, "y")
    y_val = _class_indices(x_val, y_val, num_classes, "validation_data")
    if test_data is not None:
        test_data = (test_data[0], _class_indices(np.asarray(test_data[0]), test_data[1],
                                                  num_classes, "test_data"))

    fit_verbose = 1 if verbose == 2 else 0
    tuner_verbose = 0 if verbose == 0 else 1
    if tuner_verbose:
        for note in notes:
            print(f"keras_kd.tune: {note}")
    searches = {}
    for method in ("alone", "distill"):
        hypermodel = _DistillationHyperModel(
            build_student, teacher, method, epochs, batch_size, num_classes, seed, mixup_alpha,
            fit_verbose, teacher_outputs,
        ).as_keras_tuner()
        if method == "alone":
            space = keras_tuner.HyperParameters()
            for name in ("learning_rate", "augmentation"):
                space.Choice(name, list(_space_values(hp, name)))
            search = keras_tuner.GridSearch(
                hypermodel, objective=keras_tuner.Objective("val_student_accuracy", "max"),
                hyperparameters=space, seed=seed, directory=directory,
                project_name=f"{project_name}_alone", overwrite=overwrite)
        else:
            search = tuners[tuner](
                hypermodel, objective=keras_tuner.Objective("val_student_accuracy", "max"),
                max_trials=max_trials, hyperparameters=hp, seed=seed, directory=directory,
                project_name=f"{project_name}_distill", overwrite=overwrite)
        if tuner_verbose:
            print(f"keras_kd.tune: searching the student {'alone' if method == 'alone' else 'distilled'}.")
        search.search(x_train, y_train, validation_data=(x_val, y_val), verbose=tuner_verbose)
        if not _trial_rows(search, method):
            # KerasTuner logs a failed trial and goes on; a search with no
            # completed trial must not be reported as a result.
            raise RuntimeError(
                f"keras_kd.tune: every {method!r} trial failed (see the tracebacks "
                f"above); nothing was compared. Trials are kept in {directory!r}."
            )
        searches[method] = search

    def best(method):
        search = searches[method]
        trial_hp = search.get_best_hyperparameters(1)[0]
        # Retrain the best setting from scratch (same seed, same budget)
        # rather than reload a checkpoint: the returned student is then
        # exactly what `settings` produce.
        builder = search.hypermodel
        model = builder.build(trial_hp)
        builder.fit(trial_hp, model, x_train, y_train, validation_data=(x_val, y_val))
        student = model.student if hasattr(model, "student") else model
        return student, dict(trial_hp.values)

    baseline_rows, distill_rows = _trial_rows(searches["alone"], "alone"), _trial_rows(
        searches["distill"], "distilled")
    baseline_student, baseline_settings = best("alone")
    baseline_accuracy = _accuracy(baseline_student, x_val, y_val)
    distilled_student, distilled_settings = best("distill")
    distilled_accuracy = _accuracy(distilled_student, x_val, y_val)
    distilled = distilled_accuracy > baseline_accuracy
    chosen = distilled_student if distilled else baseline_student
    result = TuneResult(
        student=chosen,
        distilled=distilled,
        settings=distilled_settings if distilled else baseline_settings,
        baseline_settings=baseline_settings,
        validation_accuracy=distilled_accuracy if distilled else baseline_accuracy,
        baseline_validation_accuracy=baseline_accuracy,
        trials=baseline_rows + distill_rows,
        notes=notes,
    )
    if test_data is not None:
        x_test, y_test = test_data
        result.test_accuracy = _accuracy(chosen, x_test, y_test)
        result.baseline_test_accuracy = _accuracy(baseline_student, x_test, y_test)
    if tuner_verbose:
        print(f"keras_kd.tune: {result.verdict}")
    return result
