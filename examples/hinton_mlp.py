"""Hinton et al. (2015)'s MNIST experiment, transposed to Fashion-MNIST.

The paper's setting: a teacher MLP with two hidden layers of 1,200 units,
trained with dropout, and a student MLP with two layers of 800 units, trained
alone on the labels or from the teacher's soft targets at T = 20. On MNIST the
student made 146 test errors alone and 74 when distilled (the teacher 67).
This script runs the same comparison on Fashion-MNIST: same student
architecture, epochs, batch size, optimizer and seed for both students.
Dropout slows the teacher down: with a short schedule (a few epochs, as on
a CPU) it can end up no better than the 2x800 student trained alone, and
then there is nothing to distil; check the teacher's row first.

    python examples/hinton_mlp.py                      # full run (minutes on a CPU)
    python examples/hinton_mlp.py --quick              # a smoke test
    python examples/hinton_mlp.py --report-dir report  # also a keras_kd.report
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd.datasets import FASHION_MNIST_CLASS_NAMES  # noqa: E402
from keras_kd.datasets import load_fashion_mnist  # noqa: E402
from keras_kd.models import mlp  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 images and one epoch, for tests.")
    parser.add_argument("--epochs", type=int, default=20, help="Epochs for each student.")
    parser.add_argument("--teacher-epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=20.0)
    parser.add_argument("--alpha", type=float, default=0.1, help="Weight of the hard-label loss.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report-dir", help="Write a keras_kd.report of teacher and distilled student there.")
    return parser.parse_args(argv)


def hinton_teacher(input_dropout: float = 0.2, dropout: float = 0.5) -> keras.Model:
    """The 2x1200 teacher with dropout as in Hinton et al. (2012): 20% of the
    input pixels, 50% of the hidden units. (`keras_kd.models.mlp` applies one
    rate everywhere; half the pixels is too much for a short schedule.)"""
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dropout(input_dropout, name="input_dropout")(x)
    for index in (1, 2):
        x = keras.layers.Dense(1200, activation="relu", name=f"hidden{index}")(x)
        x = keras.layers.Dropout(dropout, name=f"dropout{index}")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="teacher_2x1200")


def _classifier(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _errors(model: keras.Model, x: np.ndarray, y: np.ndarray) -> int:
    return int(np.sum(model.predict(x, batch_size=1024, verbose=0).argmax(-1) != y))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    args = parse_args(argv)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    epochs, teacher_epochs = args.epochs, args.teacher_epochs
    if args.quick:
        x_train, y_train = x_train[:2000], y_train[:2000]
        x_test, y_test = x_test[:1000], y_test[:1000]
        epochs = teacher_epochs = 1
    fit = dict(batch_size=args.batch_size, verbose=0)

    keras.utils.set_random_seed(args.seed)
    teacher = _classifier(hinton_teacher())
    start = time.perf_counter()
    teacher.fit(x_train, y_train, epochs=teacher_epochs, **fit)
    teacher_seconds = time.perf_counter() - start

    # The same seed before each student: same initial weights, same batches.
    keras.utils.set_random_seed(args.seed + 1)
    scratch = _classifier(mlp((800, 800), name="student_2x800"))
    start = time.perf_counter()
    scratch.fit(x_train, y_train, epochs=epochs, **fit)
    scratch_seconds = time.perf_counter() - start

    keras.utils.set_random_seed(args.seed + 1)
    student = mlp((800, 800), name="student_2x800")
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        metrics=["accuracy"],
        alpha=args.alpha,
        temperature=args.temperature,
    )
    start = time.perf_counter()
    history = distiller.fit(
        x_train, y_train, epochs=epochs, validation_data=(x_test, y_test), **fit
    )
    distilled_seconds = time.perf_counter() - start

    n = len(y_test)
    results = {
        "teacher_errors": _errors(teacher, x_test, y_test),
        "scratch_errors": _errors(scratch, x_test, y_test),
        "distilled_errors": _errors(student, x_test, y_test),
    }
    print(f"Fashion-MNIST, {len(x_train)} training / {n} test images, T = {args.temperature:g}, "
          f"alpha = {args.alpha:g}, {epochs} student epochs, seed {args.seed}")
    print(f"{'model':<26}{'parameters':>12}{'test errors':>13}{'accuracy':>10}{'train s':>9}")
    for label, key, model, seconds in (
        ("teacher 2x1200 + dropout", "teacher", teacher, teacher_seconds),
        ("student 2x800, alone", "scratch", scratch, scratch_seconds),
        ("student 2x800, distilled", "distilled", student, distilled_seconds),
    ):
        errors = results[f"{key}_errors"]
        results[f"{key}_accuracy"] = 1 - errors / n
        print(f"{label:<26}{model.count_params():>12,}{errors:>13}{100 * (1 - errors / n):>9.2f}%{seconds:>9.1f}")
    if args.report_dir:
        report = keras_kd.report(
            teacher, student, (x_test, y_test), class_names=FASHION_MNIST_CLASS_NAMES,
            history=history, output_dir=args.report_dir,
        )
        print(f"report: {report.files['summary']}")
    return results


if __name__ == "__main__":
    main()
