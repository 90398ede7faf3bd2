"""Evidence for `Distiller.compile()`'s defaults, on validation splits only.

For each task a validation split is carved from the *training* data (the test
sets are never read), a teacher is trained once on the rest, and a student is
trained alone and distilled at every `(alpha, T)` of a grid, with the same
architecture, epochs, optimizer and seeds. The teacher's logits on the
training split are computed once and streamed in the batches (identical to a
live teacher without augmentation: tested to 1e-5), so every run costs what
the student alone costs.

Tasks:
- `fmnist-mlp`: Fashion-MNIST, 50,000 training / 10,000 validation images;
  CNN teacher (`cnn_teacher(width=16)`); student `mlp((64, 64))`.
- `fmnist-cnn`: the same teacher and validation images; student
  `cnn_student(width=8)` trained on 5,000 of the training images.
- `digits`: scikit-learn's 8x8 handwritten digits (1,797 images), 1,200
  training / 597 validation; teacher `mlp((256, 256), dropout=0.3)`, student
  `mlp((16,))`.
- `text`: Debian package descriptions by section (8 classes) from apt's
  package lists, the last 15% of the training texts for validation; teacher a
  1-D CNN (`cnn1d_student(embedding_dim=64, filters=128)`), student an
  embedding bag (d=8).

A setting is *safe* on a task when its mean gain over the student alone is
not below `-2 x` the standard error of the paired per-seed differences (it is
not worse beyond seed noise). The default is the safe-everywhere setting with
the largest mean gain over the tasks.

    PYTHONPATH=. python benchmarks/defaults.py             # ~40 min on 2 CPU cores
    PYTHONPATH=. python benchmarks/defaults.py --quick     # smoke run, not written
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "examples"))
RESULTS = HERE / "results" / "defaults.md"
CACHE = HERE / ".cache" / "defaults"

ALPHAS = (0.1, 0.5, 0.9)
TEMPERATURES = (1.0, 2.0, 4.0)
OLD_DEFAULT = (0.1, 4.0)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Task:
    """One task: data split, teacher and student builders, a budget."""

    def __init__(self, name: str, data, build_teacher: Callable, build_student: Callable,
                 teacher_epochs: int, epochs: int, batch_size: int, description: str,
                 teacher_data=None, teacher_name: str = None):
        self.name, self.data = name, data
        # The teacher's training data (default: the students') and the name
        # it is cached under, so that two tasks can share one teacher.
        self.teacher_data = teacher_data if teacher_data is not None else data[0]
        self.teacher_name = teacher_name or name
        self.build_teacher, self.build_student = build_teacher, build_student
        self.teacher_epochs, self.epochs, self.batch_size = teacher_epochs, epochs, batch_size
        self.description = description


def _fashion_mnist(quick: bool):
    from keras_kd import datasets

    (x, y), _ = datasets.load_fashion_mnist()
    if quick:
        x, y = x[:3000], y[:3000]
    count = len(x) // 6
    return (x[:-count], y[:-count]), (x[-count:], y[-count:])


def tasks(quick: bool) -> List[Task]:
    from keras_kd import models
    from keras_kd.src.models import text_models

    fmnist = _fashion_mnist(quick)
    (x_train, y_train), validation = fmnist
    small = 5000 if not quick else 1000
    result = [
        Task("fmnist-mlp", fmnist, lambda: models.cnn_teacher(width=16),
             lambda: models.mlp((64, 64)), 4, 15, 128,
             "Fashion-MNIST, CNN teacher (width 16) -> MLP 64-64", teacher_name="fmnist"),
        Task("fmnist-cnn", ((x_train[:small], y_train[:small]), validation),
             lambda: models.cnn_teacher(width=16), lambda: models.cnn_student(width=8), 4, 15, 128,
             f"Fashion-MNIST ({small:,} labels), the same CNN teacher (trained on all "
             "training images) -> CNN student (width 8)",
             teacher_data=(x_train, y_train), teacher_name="fmnist"),
    ]
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    order = np.random.RandomState(0).permutation(len(images))
    images, labels = images[order], digits.target[order].astype("int64")
    result.append(Task(
        "digits", ((images[:1200], labels[:1200]), (images[1200:], labels[1200:])),
        lambda: models.mlp((256, 256), input_shape=(8, 8, 1), dropout=0.3),
        lambda: models.mlp((16,), input_shape=(8, 8, 1)), 60, 40, 32,
        "scikit-learn digits, MLP 256-256 teacher -> MLP 16"))
    import text_classification as tc

    data, class_names, _, vocabulary, length = tc.load("debian_packages", quick)
    (x_text, y_text), _ = data  # the test texts are not used
    count = int(0.15 * len(x_text))
    shape = dict(vocabulary_size=vocabulary, sequence_length=length, num_classes=len(class_names))
    result.append(Task(
        "text", ((x_text[:-count], y_text[:-count]), (x_text[-count:], y_text[-count:])),
        lambda: text_models.cnn1d_student(embedding_dim=64, filters=128, name="text_teacher", **shape),
        lambda: text_models.embedding_bag_student(embedding_dim=8, **shape), 6, 10, 64,
        "Debian package descriptions (8 sections), 1-D CNN teacher -> embedding bag (d=8)"))
    return result


def _optimizer(epochs: int, examples: int, batch_size: int, learning_rate: float):
    import keras

    steps = epochs * int(np.ceil(examples / batch_size))
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps))


def accuracy(model, x, y) -> float:
    logits = model.predict(x, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def teacher_for(task: Task, quick: bool):
    import keras

    path = CACHE / f"{task.teacher_name}{'-quick' if quick else ''}-teacher.keras"
    x, y = task.teacher_data
    if path.exists():
        return keras.saving.load_model(path)
    keras.utils.set_random_seed(1000)
    teacher = task.build_teacher()
    teacher.compile(optimizer=_optimizer(task.teacher_epochs, len(x), task.batch_size, 2e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, batch_size=task.batch_size, epochs=task.teacher_epochs, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    teacher.save(path)
    return teacher


def run_student(task: Task, seed: int, teacher_logits, setting) -> float:
    """Trains one student (alone when `setting` is None); validation accuracy."""
    import keras
    import tensorflow as tf

    import keras_kd

    (x, y), (x_val, y_val) = task.data
    keras.utils.set_random_seed(seed)
    student = task.build_student()
    optimizer = _optimizer(task.epochs, len(x), task.batch_size, 2e-3)
    if setting is None:
        student.compile(optimizer=optimizer,
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        train = tf.data.Dataset.from_tensor_slices((x, y))
    else:
        alpha, temperature = setting
        student_model = student
        student = keras_kd.Distiller(student_model, teacher=None)
        student.compile(optimizer=optimizer, alpha=alpha, temperature=temperature)
        train = tf.data.Dataset.from_tensor_slices(
            ({keras_kd.INPUTS_KEY: x, keras_kd.TEACHER_LOGITS_KEY: teacher_logits}, y))
    # The same shuffled order for every run of a seed.
    train = train.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(task.batch_size)
    student.fit(train, epochs=task.epochs, verbose=0)
    model = student.student if setting is not None else student
    return accuracy(model, x_val, y_val)


def mean_std(values) -> Tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", nargs="*", default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="Ignore the saved runs.")
    args = parser.parse_args(argv)
    seeds = list(range(1 if args.quick else args.seeds))
    settings = [(a, t) for a in ALPHAS for t in TEMPERATURES]
    started = time.time()
    results: Dict[str, dict] = {}
    descriptions = {}
    for task in tasks(args.quick):
        if args.tasks and task.name not in args.tasks:
            continue
        if args.quick:
            task.epochs, task.teacher_epochs = 1, 1
        descriptions[task.name] = task.description
        # Each task's runs are kept, so that a rerun (e.g. after a fix to one
        # task) recomputes only what changed; --fresh recomputes everything.
        saved = CACHE / f"{task.name}{'-quick' if args.quick else ''}-runs.json"
        key = {"seeds": seeds, "settings": [list(s) for s in settings], "epochs": task.epochs,
               "teacher": task.teacher_name, "teacher_epochs": task.teacher_epochs}
        if saved.exists() and not args.fresh:
            stored = json.loads(saved.read_text())
            if stored["key"] == key:
                results[task.name] = stored["row"]
                log(f"{task.name}: reusing the runs saved in {saved}")
                continue
        teacher = teacher_for(task, args.quick)
        (x, y), (x_val, y_val) = task.data
        teacher_logits = teacher.predict(x, batch_size=1024, verbose=0)
        teacher_val = accuracy(teacher, x_val, y_val)
        log(f"{task.name}: teacher {100 * teacher_val:.2f}% on validation")
        row = {"teacher": teacher_val, "alone": [], "settings": {}}
        for seed in seeds:
            row["alone"].append(run_student(task, seed, None, None))
            log(f"{task.name} seed {seed}: alone {100 * row['alone'][-1]:.2f}%")
            for setting in settings:
                value = run_student(task, seed, teacher_logits, setting)
                row["settings"].setdefault(str(setting), []).append(value)
                log(f"{task.name} seed {seed}: alpha={setting[0]} T={setting[1]} "
                    f"{100 * value:.2f}%")
        results[task.name] = row
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"key": key, "row": row}))
    if not results:
        raise SystemExit(f"No task matched --tasks {args.tasks}.")
    text, choice = report(results, descriptions, seeds, settings, time.time() - started)
    print(text)
    if not args.quick:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        args.output.with_suffix(".json").write_text(json.dumps(
            {"results": results, "choice": list(choice) if choice else None}, indent=1))


def report(results, descriptions, seeds, settings, seconds) -> Tuple[str, tuple]:
    names = list(results)
    gains, safe = {}, {}
    for setting in settings:
        key = str(setting)
        for name in names:
            alone = np.asarray(results[name]["alone"])
            distilled = np.asarray(results[name]["settings"][key])
            diff = distilled - alone
            standard_error = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
            gains[key, name] = float(diff.mean())
            safe[key, name] = bool(diff.mean() >= -2 * standard_error)
    eligible = [s for s in settings if all(safe[str(s), n] for n in names)]
    mean_gain = {str(s): float(np.mean([gains[str(s), n] for n in names])) for s in settings}
    choice = max(eligible, key=lambda s: mean_gain[str(s)]) if eligible else None
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Choosing `compile()`'s defaults on validation splits",
        "",
        f"Produced by `PYTHONPATH=. python benchmarks/defaults.py` on {now} "
        f"({platform.machine()}, {os.cpu_count()} CPU cores, no GPU; {seconds / 60:.0f} min; "
        f"load average at the end {os.getloadavg()[0]:.1f}). Validation accuracy, mean ± std "
        f"over {len(seeds)} student seeds; the test sets were not read.",
        "",
        "How the settings were chosen: every setting is compared on the validation splits "
        "only. The baseline is the same student trained alone with the same epochs, "
        "optimizer, learning-rate schedule, batch order and initial weights; no run uses "
        "augmentation, so the baseline needs none.",
        "",
    ]
    lines += [f"- `{name}`: {descriptions[name]}." for name in names]
    lines += ["", "| setting | " + " | ".join(names) + " | mean gain |",
              "|---|" + "---:|" * (len(names) + 1)]
    lines.append("| teacher | " + " | ".join(
        f"{100 * results[n]['teacher']:.2f}" for n in names) + " | |")
    lines.append("| student alone | " + " | ".join(
        "{:.2f} ± {:.2f}".format(*[100 * v for v in mean_std(results[n]["alone"])])
        for n in names) + " | |")
    for setting in settings:
        key = str(setting)
        cells = []
        for name in names:
            mean, std = mean_std(results[name]["settings"][key])
            mark = "" if safe[key, name] else " ✗"
            cells.append(f"{100 * mean:.2f} ± {100 * std:.2f} ({100 * gains[key, name]:+.2f}){mark}")
        label = f"alpha={setting[0]}, T={setting[1]:g}"
        if setting == OLD_DEFAULT:
            label += " (old default)"
        if setting == choice:
            label = f"**{label} (chosen)**"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {100 * mean_gain[key]:+.2f} |")
    lines += [
        "",
        "In parentheses: the mean gain over the student alone, in points. ✗: worse than "
        "the student alone beyond seed noise (mean paired difference below -2 standard "
        "errors) on that task.",
        "",
    ]
    if choice is None:
        lines.append("No setting is safe on every task.")
    else:
        lines.append(
            f"**Chosen default: alpha={choice[0]}, T={choice[1]:g}**, the setting with the "
            f"largest mean gain ({100 * mean_gain[str(choice)]:+.2f} points) among those "
            "that are not worse than the student alone beyond noise on any task.")
    return "\n".join(lines) + "\n", choice


if __name__ == "__main__":
    main()
