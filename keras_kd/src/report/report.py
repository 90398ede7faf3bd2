"""The distillation report: how the student compares with its teacher.

`report(teacher, student, data)` runs both models on labelled data and writes
PNG plots (per-class accuracy, confusion matrices, the teacher-student
disagreements, a reliability diagram, training curves) plus a Markdown
summary into a directory; it returns a `DistillationReport` with the numbers.
`keras-kd report` does the same from saved `.keras` files.

The math lives in `keras_kd.evaluation`; this module runs the models and draws.
Plots are drawn on `matplotlib.figure.Figure` objects with the Agg canvas, so
making a report never changes pyplot's global backend or state.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from keras_kd.src.report import evaluation
from keras_kd.src.utils import arguments, optional

DEFAULT_OUTPUT_DIR = "kd_report"

#: Names of the files a report writes into its output directory.
FILES = {
    "per_class_accuracy": "per_class_accuracy.png",
    "confusion_matrices": "confusion_matrices.png",
    "disagreements": "disagreements.png",
    "calibration": "calibration.png",
    "training_curves": "training_curves.png",
    "summary": "report.md",
}


@dataclasses.dataclass
class DistillationReport:
    """The numbers of a distillation report (see `keras_kd.report`).

    Accuracies and the calibration error are fractions in `[0, 1]`; per-class
    arrays follow `class_names`; confusion matrices are `[true, predicted]`
    counts; `disagreements[true, student]` counts the examples the teacher
    classifies correctly and the student does not. `files` maps each plot's
    key (see `FILES`) to the path written.
    """

    class_names: List[str]
    num_examples: int
    teacher_accuracy: float
    student_accuracy: float
    agreement: float
    teacher_ece: float
    student_ece: float
    teacher_per_class_accuracy: np.ndarray
    student_per_class_accuracy: np.ndarray
    teacher_confusion: np.ndarray
    student_confusion: np.ndarray
    disagreements: np.ndarray
    teacher_parameters: Optional[int] = None
    student_parameters: Optional[int] = None
    num_bins: int = 15
    files: Dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def gap(self) -> float:
        """Teacher accuracy minus student accuracy."""
        return self.teacher_accuracy - self.student_accuracy

    def top_disagreements(self, k: int = 5) -> List[Tuple[str, str, int]]:
        """The `k` most frequent `(true class, student prediction, count)`
        confusions that the teacher does not make."""
        flat = self.disagreements.ravel()
        order = np.argsort(-flat, kind="stable")[:k]
        classes = self.disagreements.shape[0]
        return [
            (self.class_names[i // classes], self.class_names[i % classes], int(flat[i]))
            for i in order
            if flat[i] > 0
        ]

    def as_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable dictionary of the report."""
        result = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value = [None if (isinstance(v, float) and np.isnan(v)) else v for v in value.tolist()]
            result[field.name] = value
        result["gap"] = self.gap
        return result

    def to_markdown(self) -> str:
        """The Markdown summary, linking the plots by file name."""
        return _markdown(self)


def _percent(value: float) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.2f}%"


def _markdown(result: DistillationReport) -> str:
    lines = [
        "# Distillation report",
        "",
        f"{result.num_examples} labelled examples, {len(result.class_names)} classes.",
        "",
        "| | Teacher | Student |",
        "|---|---:|---:|",
        f"| Accuracy | {_percent(result.teacher_accuracy)} | {_percent(result.student_accuracy)} |",
        f"| Errors | {int(round((1 - result.teacher_accuracy) * result.num_examples))} "
        f"| {int(round((1 - result.student_accuracy) * result.num_examples))} |",
        f"| Expected calibration error ({result.num_bins} bins) | "
        f"{_percent(result.teacher_ece)} | {_percent(result.student_ece)} |",
    ]
    if result.teacher_parameters is not None and result.student_parameters is not None:
        ratio = result.teacher_parameters / max(result.student_parameters, 1)
        lines.append(
            f"| Parameters | {result.teacher_parameters:,} | "
            f"{result.student_parameters:,} ({ratio:.1f}x fewer) |"
        )
    lines += [
        "",
        f"Teacher-student agreement (same top-1 class): **{_percent(result.agreement)}**. "
        f"Accuracy gap: {100 * result.gap:+.2f} points.",
        "",
        "## Per-class accuracy",
        "",
        "| Class | Teacher | Student | Difference |",
        "|---|---:|---:|---:|",
    ]
    for name, t, s in zip(
        result.class_names, result.teacher_per_class_accuracy, result.student_per_class_accuracy
    ):
        difference = "n/a" if np.isnan(t) or np.isnan(s) else f"{100 * (s - t):+.1f}"
        lines.append(f"| {name} | {_percent(t)} | {_percent(s)} | {difference} |")
    lines += ["", "## Confusions the student makes and the teacher does not", ""]
    top = result.top_disagreements(5)
    total = int(result.disagreements.sum())
    if top:
        lines.append(
            f"{total} examples are classified correctly by the teacher and wrongly "
            "by the student. The most frequent:"
        )
        lines.append("")
        lines += ["| True class | Student predicts | Examples |", "|---|---|---:|"]
        lines += [f"| {true} | {predicted} | {count} |" for true, predicted, count in top]
    else:
        lines.append("None: the student is right wherever the teacher is.")
    lines += ["", "## Plots", ""]
    captions = {
        "per_class_accuracy": "Per-class accuracy",
        "confusion_matrices": "Confusion matrices",
        "disagreements": "Teacher-student disagreements",
        "calibration": "Reliability diagram",
        "training_curves": "Training curves",
    }
    for key, caption in captions.items():
        if key in result.files:
            lines.append(f"![{caption}]({Path(result.files[key]).name})")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------- plots

def _figure(width: float, height: float):
    FigureCanvasAgg = optional.require("matplotlib.backends.backend_agg").FigureCanvasAgg
    Figure = optional.require("matplotlib.figure").Figure

    figure = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plot_per_class_accuracy(result: DistillationReport, path: Path) -> None:
    names = result.class_names
    figure = _figure(max(6.0, 0.8 * len(names) + 2), 4.2)
    axis = figure.subplots()
    positions = np.arange(len(names))
    width = 0.4
    for offset, values, label, color in (
        (-width / 2, result.teacher_per_class_accuracy, f"Teacher ({_percent(result.teacher_accuracy)})", "tab:blue"),
        (width / 2, result.student_per_class_accuracy, f"Student ({_percent(result.student_accuracy)})", "tab:orange"),
    ):
        axis.bar(positions + offset, 100 * np.nan_to_num(values), width, label=label, color=color)
    axis.set_xticks(positions, names, rotation=30, ha="right")
    axis.set_ylabel("Accuracy on the class (%)")
    low = 100 * np.nanmin(np.concatenate([result.teacher_per_class_accuracy, result.student_per_class_accuracy]))
    axis.set_ylim(max(0.0, np.floor(low / 10) * 10 - 10), 100)
    axis.set_title(f"Per-class accuracy (agreement {_percent(result.agreement)})")
    # Outside the axes: inside, it would hide bars near 100%.
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.grid(axis="y", alpha=0.3)
    figure.savefig(path)


def _draw_matrix(figure, axis, matrix, names, title, cmap, normalize_rows: bool, xlabel: str):
    counts = np.asarray(matrix)
    if normalize_rows:
        support = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, np.maximum(support, 1))
        vmax = 1.0
    else:
        shown = counts.astype(float)
        vmax = max(float(shown.max()), 1.0)
    image = axis.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax)
    classes = len(names)
    ticks = np.arange(classes)
    axis.set_xticks(ticks, names, rotation=45, ha="right")
    axis.set_yticks(ticks, names)
    axis.set_xlabel(xlabel)
    axis.set_ylabel("True class")
    axis.set_title(title)
    # Cell labels stay legible up to ~15 classes; beyond that colour alone.
    if classes <= 15:
        fontsize = 8 if classes <= 10 else 6
        for i in range(classes):
            for j in range(classes):
                if counts[i, j]:
                    dark = shown[i, j] > 0.6 * vmax
                    axis.text(j, i, str(int(counts[i, j])), ha="center", va="center",
                              fontsize=fontsize, color="white" if dark else "black")
    return image


def _plot_confusion_matrices(result: DistillationReport, path: Path) -> None:
    names = result.class_names
    size = max(5.0, 0.45 * len(names) + 2.5)
    figure = _figure(2 * size + 1.0, size)
    left, right = figure.subplots(1, 2)
    _draw_matrix(figure, left, result.teacher_confusion, names,
                 f"Teacher ({_percent(result.teacher_accuracy)})", "Blues", True, "Teacher predicts")
    image = _draw_matrix(figure, right, result.student_confusion, names,
                         f"Student ({_percent(result.student_accuracy)})", "Blues", True, "Student predicts")
    colorbar = figure.colorbar(image, ax=[left, right], shrink=0.8)
    colorbar.set_label("Fraction of the true class (numbers are counts)")
    figure.savefig(path)


def _plot_disagreements(result: DistillationReport, path: Path) -> None:
    names = result.class_names
    size = max(5.5, 0.45 * len(names) + 3.0)
    figure = _figure(size + 1.0, size)
    axis = figure.subplots()
    image = _draw_matrix(
        figure, axis, result.disagreements, names,
        f"Teacher right, student wrong ({int(result.disagreements.sum())} examples)",
        "Reds", False, "Student predicts",
    )
    figure.colorbar(image, ax=axis, shrink=0.8).set_label("Examples")
    figure.savefig(path)


def _plot_calibration(result: DistillationReport, curves: Mapping[str, Tuple], path: Path) -> None:
    figure = _figure(10.0, 4.4)
    diagram, histogram = figure.subplots(1, 2)
    diagram.plot([0, 1], [0, 1], linestyle="--", color="gray", label="Perfect calibration")
    colors = {"Teacher": "tab:blue", "Student": "tab:orange"}
    ece = {"Teacher": result.teacher_ece, "Student": result.student_ece}
    edges = np.linspace(0.0, 1.0, result.num_bins + 1)
    for name, (confidence, acc, count) in curves.items():
        occupied = count > 0
        diagram.plot(confidence[occupied], acc[occupied], marker="o", color=colors[name],
                     label=f"{name} (ECE {_percent(ece[name])})")
        histogram.stairs(count / max(count.sum(), 1), edges, color=colors[name], label=name, linewidth=1.5)
    diagram.set_xlim(0, 1)
    diagram.set_ylim(0, 1)
    diagram.set_xlabel("Confidence (top-class probability)")
    diagram.set_ylabel("Accuracy")
    diagram.set_title("Reliability diagram")
    diagram.legend(loc="upper left")
    diagram.grid(alpha=0.3)
    histogram.set_yscale("log")
    histogram.set_xlim(0, 1)
    histogram.set_xlabel("Confidence (top-class probability)")
    histogram.set_ylabel("Fraction of examples (log scale)")
    histogram.set_title("Confidence histogram")
    histogram.legend(loc="upper left")
    histogram.grid(alpha=0.3)
    figure.savefig(path)


def history_dict(history) -> Dict[str, List[float]]:
    """The `{metric: [value per epoch]}` dict of a `keras.callbacks.History`,
    a dict, or a path to a JSON file holding one."""
    if history is None:
        return {}
    if isinstance(history, (str, os.PathLike)):
        with open(history) as handle:
            history = json.load(handle)
    values = getattr(history, "history", history)
    if not isinstance(values, Mapping):
        raise TypeError(
            "`history` must be a `keras.callbacks.History`, a dict of metric "
            "lists, a path to a JSON file holding one, or None. Received: "
            f"history={history!r} of type {type(history).__name__}."
        )
    result = {}
    for key, series in values.items():
        try:
            result[str(key)] = [float(v) for v in np.ravel(np.asarray(series, dtype=float))]
        except (TypeError, ValueError):
            raise TypeError(
                f"`history[{key!r}]` must be a list of numbers. Received: {series!r}."
            ) from None
    return result


def _plot_training_curves(history: Mapping[str, List[float]], path: Path) -> None:
    MaxNLocator = optional.require("matplotlib.ticker").MaxNLocator

    # One panel per metric, training and validation together; the total loss
    # first, then the loss terms, then the metrics.
    names = []
    for key in history:
        base = key[4:] if key.startswith("val_") else key
        if base not in names:
            names.append(base)
    names.sort(key=lambda name: (name != "loss", "loss" not in name))
    columns = min(3, len(names))
    rows = int(np.ceil(len(names) / columns))
    figure = _figure(4.2 * columns, 3.3 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axis, name in zip(axes, names):
        for key, label, style in ((name, "train", "-"), (f"val_{name}", "validation", "--")):
            if key in history:
                epochs = np.arange(1, len(history[key]) + 1)
                axis.plot(epochs, history[key], style, marker="o", markersize=3, label=label)
        title = name
        if name == "loss" and "distillation_loss" in history and "val_loss" in history:
            # A Distiller's training loss is the weighted sum of its terms;
            # its validation loss is the student's own cross-entropy.
            title = "loss (train: all terms; validation: student's own)"
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("Epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    for axis in axes[len(names):]:
        axis.set_visible(False)
    figure.suptitle("Training curves")
    figure.savefig(path)


# ------------------------------------------------------------ running models

_check_model = arguments.model_list


def _outputs_probabilities(model) -> bool:
    from keras_kd.src.utils.model_outputs import ends_in_softmax as _ends_in_softmax

    return _ends_in_softmax(model)


def _probabilities(models, batches, on_batch=None) -> np.ndarray:
    """Mean predicted probabilities of `models` (an ensemble averages them).

    `on_batch(n)` is called after each batch of `n` examples, per model.
    """
    from keras_kd.src.distiller import checks

    total = None
    for model in models:
        outputs = []
        for x in batches:
            outputs.append(np.asarray(model(x, training=False), dtype=np.float64))
            if on_batch is not None:
                on_batch(len(outputs[-1]))
        outputs = np.concatenate(outputs)
        # A softmax hidden in a Lambda or a nested model shows in the values.
        is_probabilities = _outputs_probabilities(model) or checks.rows_are_probabilities(outputs)
        probabilities = outputs if is_probabilities else evaluation.softmax(outputs)
        total = probabilities if total is None else total + probabilities
    return total / len(models)


def _batches(data, batch_size: int):
    """Splits `data` into a list of input batches and one label array."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
        y = np.asarray(y)
        if isinstance(x, Mapping):
            size = len(next(iter(x.values())))
            batches = [{k: v[i:i + batch_size] for k, v in x.items()} for i in range(0, size, batch_size)]
        else:
            size = len(x)
            batches = [x[i:i + batch_size] for i in range(0, size, batch_size)]
        if size != len(y):
            raise ValueError(
                f"`data` must be `(x, y)` with as many labels as inputs. "
                f"Received {size} inputs and {len(y)} labels."
            )
        return batches, y
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        tf = None
    if tf is not None and isinstance(data, tf.data.Dataset):
        batches, labels = [], []
        for element in data:
            if not isinstance(element, (tuple, list)) or len(element) < 2:
                raise ValueError(
                    "A `tf.data.Dataset` passed as `data` must yield batches "
                    f"of `(x, y)`. Received an element of type {type(element).__name__}."
                )
            batches.append(element[0])
            labels.append(np.asarray(element[1]))
        if not labels:
            raise ValueError("`data` is an empty dataset.")
        return batches, np.concatenate(labels)
    raise TypeError(
        "`data` must be a tuple `(x, y)` of arrays or a batched `tf.data.Dataset` "
        f"of `(x, y)`. Received: data of type {type(data).__name__}."
    )


def _check_output_dir(output_dir) -> Path:
    """Refuses an output directory that cannot be written, before any work.

    Otherwise the models run first and the report ends in a traceback.
    """
    directory = Path(output_dir)
    if directory.exists() and not directory.is_dir():
        raise ValueError(
            "`output_dir` must be a directory (created if needed). Received: "
            f"output_dir={str(output_dir)!r}, which is a file."
        )
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(
            f"`output_dir` cannot be created: {str(existing)!r} is a file. "
            f"Received: output_dir={str(output_dir)!r}."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"`output_dir` is not writable: no permission to write in "
            f"{str(existing)!r}. Received: output_dir={str(output_dir)!r}."
        )
    return directory


def _check_labels(labels: np.ndarray, num_classes: Optional[int]) -> np.ndarray:
    """Class indices from `data`'s labels, refusing what would score wrongly.

    `(N, 1)` class indices (as `keras.datasets.cifar10` ships them) are
    squeezed; other 2-D labels must be one-hot rows, one per class.
    """
    from keras_kd.src.distiller import checks

    kind = checks.check_label_array(labels, num_classes, "data")
    if kind == "sparse" and labels.size and labels.min() < 0:
        raise ValueError(
            "Labels in `data` must be class indices in [0, "
            f"{num_classes}); a report needs every example labeled. "
            f"Received a label {labels.min()}."
        )
    return evaluation._as_class_indices(labels, "labels")


def _count_parameters(models) -> int:
    return int(sum(model.count_params() for model in models))


def report(
    teacher,
    student,
    data,
    class_names: Optional[Sequence[str]] = None,
    history=None,
    output_dir: Union[str, os.PathLike, None] = DEFAULT_OUTPUT_DIR,
    batch_size: int = 256,
    num_bins: int = 15,
    verbose: Union[str, int] = "auto",
) -> DistillationReport:
    """Compares a student with its teacher and writes plots and a summary.

    Computes accuracy, per-class accuracy, top-1 agreement, expected
    calibration error, both confusion matrices and the disagreement matrix
    (examples the teacher gets right and the student does not), and writes
    into `output_dir`: `per_class_accuracy.png`, `confusion_matrices.png`,
    `disagreements.png`, `calibration.png`, `training_curves.png` (when
    `history` is given) and `report.md`.

    Args:
        teacher: A `keras.Model`, or a list of them (an ensemble: their
            probabilities are averaged). Models output logits or end in a
            softmax; both are recognised.
        student: A `keras.Model`. A trained `keras_kd.Distiller` can be
            passed instead, with `teacher=None`: its teacher and student are
            used.
        data: `(x, y)` arrays or a batched `tf.data.Dataset` of `(x, y)`;
            labels as class indices or one-hot rows.
        class_names: One name per class. Defaults to `"0"`, `"1"`, ...
        history: A `keras.callbacks.History`, its `.history` dict or a path
            to a JSON file of it, for the training-curve plot.
        output_dir: Directory for the files, created if needed. `None`
            computes the numbers and writes nothing.
        batch_size: Batch size for running the models on arrays.
        num_bins: Number of confidence bins for calibration.
        verbose: `"auto"` (default, means 1), 0 (silent), 1 (a
            `keras.utils.Progbar` over the model passes: examples done by
            every teacher and the student, rate and time left) or 2 (one
            line when the passes are done), as in Keras's `fit`.

    Returns:
        A `DistillationReport`.

    Example:

    >>> import numpy as np, keras, keras_kd
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> x, y = np.random.rand(64, 4).astype("float32"), np.arange(64) % 3
    >>> result = keras_kd.report(teacher, student, (x, y), output_dir=None, verbose=0)
    >>> 0.0 <= result.agreement <= 1.0
    True
    """
    import keras

    from keras_kd.src.distiller.distiller import Distiller
    from keras_kd.src.utils.io_utils import check_verbose as _check_verbose

    verbose = _check_verbose(verbose)
    if isinstance(student, Distiller):
        if teacher is not None:
            raise ValueError(
                "Pass either a `Distiller` as `student` with `teacher=None`, or "
                "a teacher and a student model. Received both a Distiller and "
                f"teacher={teacher!r}."
            )
        if student.teacher is None:
            raise ValueError(
                "The Distiller passed as `student` has no teacher (it trains "
                "from cached logits); pass the teacher model as `teacher`."
            )
        teacher, student = student.teacher, student.student
    teachers = _check_model(teacher, "teacher")
    students = _check_model(student, "student")
    if len(students) != 1:
        raise ValueError(f"`student` must be a single model. Received a list of {len(students)}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}.")
    num_bins = evaluation._check_num_bins(num_bins)
    curves_history = history_dict(history)
    if output_dir is not None:
        _check_output_dir(output_dir)

    from keras_kd.src.utils.model_outputs import output_classes as _output_classes

    batches, raw_labels = _batches(data, batch_size)
    # Checked before the models run when the models' width is known (and
    # agreed on: a mismatch is reported as such below).
    widths = {_output_classes(model) for model in (*teachers, *students)}
    _check_labels(raw_labels, widths.pop() if len(widths) == 1 else None)
    # One bar over every model pass: each teacher's, then the student's.
    passes = len(teachers) + len(students)
    progbar = keras.utils.Progbar(
        passes * len(raw_labels), verbose=verbose, unit_name="example"
    )
    done = [0]

    def step(examples: int) -> None:
        done[0] += examples
        progbar.update(done[0], finalize=False)

    teacher_probabilities = _probabilities(teachers, batches, step)
    student_probabilities = _probabilities(students, batches, step)
    progbar.update(done[0], finalize=True)
    num_classes = student_probabilities.shape[-1]
    if teacher_probabilities.shape[-1] != num_classes:
        raise ValueError(
            "`teacher` and `student` must output the same number of classes. "
            f"Received {teacher_probabilities.shape[-1]} and {num_classes}."
        )
    labels = _check_labels(raw_labels, num_classes)
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    class_names = [str(name) for name in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"`class_names` must have one name per class ({num_classes}). "
            f"Received {len(class_names)} names: {class_names}."
        )
    teacher_predictions = teacher_probabilities.argmax(-1)
    student_predictions = student_probabilities.argmax(-1)
    result = DistillationReport(
        class_names=class_names,
        num_examples=int(len(labels)),
        teacher_accuracy=evaluation.accuracy(labels, teacher_predictions),
        student_accuracy=evaluation.accuracy(labels, student_predictions),
        agreement=evaluation.agreement(teacher_predictions, student_predictions),
        teacher_ece=evaluation.expected_calibration_error(teacher_probabilities, labels, num_bins),
        student_ece=evaluation.expected_calibration_error(student_probabilities, labels, num_bins),
        teacher_per_class_accuracy=evaluation.per_class_accuracy(labels, teacher_predictions, num_classes),
        student_per_class_accuracy=evaluation.per_class_accuracy(labels, student_predictions, num_classes),
        teacher_confusion=evaluation.confusion_matrix(labels, teacher_predictions, num_classes),
        student_confusion=evaluation.confusion_matrix(labels, student_predictions, num_classes),
        disagreements=evaluation.disagreement_matrix(
            labels, teacher_predictions, student_predictions, num_classes
        ),
        teacher_parameters=_count_parameters(teachers),
        student_parameters=_count_parameters(students),
        num_bins=num_bins,
    )
    if output_dir is None:
        return result

    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {key: directory / name for key, name in FILES.items()}
    _plot_per_class_accuracy(result, paths["per_class_accuracy"])
    _plot_confusion_matrices(result, paths["confusion_matrices"])
    _plot_disagreements(result, paths["disagreements"])
    curves = {
        "Teacher": evaluation.reliability_curve(teacher_probabilities, labels, num_bins),
        "Student": evaluation.reliability_curve(student_probabilities, labels, num_bins),
    }
    _plot_calibration(result, curves, paths["calibration"])
    written = [key for key in FILES if key not in ("training_curves", "summary")]
    if curves_history:
        _plot_training_curves(curves_history, paths["training_curves"])
        written.append("training_curves")
    result.files = {key: str(paths[key]) for key in written}
    result.files["summary"] = str(paths["summary"])
    paths["summary"].write_text(result.to_markdown())
    return result
