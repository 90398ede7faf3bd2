"""`keras-kd demo`: distil a CNN teacher into a small student on Fashion-MNIST.

Trains (or reuses) a teacher, distils a much smaller student, trains the same
student from scratch with the same budget and seed, and prints a table:
parameters, size, test accuracy and agreement with the teacher.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import List, Optional


@dataclasses.dataclass
class DemoRow:
    """One line of the demo table."""

    model: str
    parameters: int
    size_kib: float
    test_accuracy: float
    agreement: float
    train_seconds: float


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="Distil a CNN teacher into a small student on Fashion-MNIST.",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=10, help="Student epochs (distilled and scratch).")
    parser.add_argument("--teacher-epochs", type=int, default=4, help="Teacher epochs, when it is trained.")
    parser.add_argument("--temperature", type=float, default=2.0, help="Distillation temperature T.")
    parser.add_argument("--alpha", type=float, default=0.5, help="Weight of the hard-label loss.")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--student-width", type=int, default=8, help="Width of the CNN student.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-examples", type=int, default=None,
                        help="Use only the first N training images (quick runs).")
    parser.add_argument("--test-examples", type=int, default=None,
                        help="Use only the first N test images (quick runs).")
    parser.add_argument("--output-dir", default="kd_output",
                        help="Where the teacher, student and table are written.")
    parser.add_argument("--data-dir", default=None,
                        help="Directory holding the four Fashion-MNIST .gz files.")
    parser.add_argument("--retrain-teacher", action="store_true",
                        help="Train a new teacher even if one is saved in --output-dir.")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                        help="Keras verbosity (1: progress bars).")
    parser.set_defaults(run=run)


def _agreement(logits_a, logits_b) -> float:
    import numpy as np

    return float(np.mean(np.argmax(logits_a, -1) == np.argmax(logits_b, -1)))


def _accuracy(logits, labels) -> float:
    import numpy as np

    return float(np.mean(np.argmax(logits, -1) == labels))


def _row(name, model, x_test, y_test, teacher_logits, seconds, path: Path) -> DemoRow:
    import numpy as np

    model.save(path)
    logits = model.predict(x_test, batch_size=1024, verbose=0)
    weight_bytes = sum(
        int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights
    )
    return DemoRow(
        model=name,
        parameters=model.count_params(),
        size_kib=weight_bytes / 1024,
        test_accuracy=_accuracy(logits, y_test),
        agreement=_agreement(logits, teacher_logits),
        train_seconds=seconds,
    )


def _train_alone(model, train, validation, epochs: int, batch_size: int, verbose: int) -> float:
    """Trains `model` on its own (cross-entropy from logits); returns seconds."""
    import keras

    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(*train, batch_size=batch_size, epochs=epochs,
              validation_data=validation, verbose=verbose)
    return time.perf_counter() - start


def format_table(rows: List[DemoRow]) -> str:
    """The demo table as Markdown.

    Example:

    >>> print(format_table([DemoRow("student", 1234, 4.8, 0.851, 0.902, 12.0)]))
    | model | parameters | weights (KiB) | test accuracy | agreement with teacher | train time (s) |
    |---|---:|---:|---:|---:|---:|
    | student | 1,234 | 5 | 85.10% | 90.20% | 12 |
    """
    lines = [
        "| model | parameters | weights (KiB) | test accuracy | agreement with teacher | train time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.model} | {row.parameters:,} | {row.size_kib:,.0f} | "
            f"{100 * row.test_accuracy:.2f}% | {100 * row.agreement:.2f}% | "
            f"{row.train_seconds:.0f} |"
        )
    return "\n".join(lines)


def run_demo(
    epochs: int = 10,
    teacher_epochs: int = 4,
    temperature: float = 2.0,
    alpha: float = 0.5,
    batch_size: int = 128,
    student_width: int = 8,
    seed: int = 0,
    train_examples: Optional[int] = None,
    test_examples: Optional[int] = None,
    output_dir: str = "kd_output",
    data_dir: Optional[str] = None,
    retrain_teacher: bool = False,
    verbose: int = 1,
) -> List[DemoRow]:
    """Runs the demo and returns the table's rows (teacher, scratch, distilled).

    Example:

    >>> rows = run_demo(epochs=1, teacher_epochs=1, train_examples=2000,
    ...                 test_examples=500, verbose=0)  # doctest: +SKIP
    """
    import keras

    from keras_kd import datasets
    from keras_kd import losses
    from keras_kd import models
    from keras_kd.distiller import Distiller

    # Fail before any training, not after the teacher's minutes of it.
    losses.validate_temperature(temperature)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}.")
    for argument, value in (("epochs", epochs), ("teacher_epochs", teacher_epochs),
                            ("batch_size", batch_size), ("student_width", student_width)):
        if value < 1:
            raise ValueError(f"`{argument}` must be a positive integer. "
                             f"Received: {argument}={value!r}.")
    # None means all; a negative N would slice `x[:-N]`, every image but N.
    for argument, value in (("train_examples", train_examples),
                            ("test_examples", test_examples)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"`{argument}` must be a positive integer or None (all). "
                             f"Received: {argument}={value!r}.")

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(data_dir=data_dir)
    x_train, y_train = x_train[:train_examples], y_train[:train_examples]
    x_test, y_test = x_test[:test_examples], y_test[:test_examples]
    print(f"Fashion-MNIST: {len(x_train):,} training and {len(x_test):,} test images.")

    teacher_path = output / "teacher.keras"
    if teacher_path.exists() and not retrain_teacher:
        print(f"Reusing the teacher saved in {teacher_path}.")
        teacher = keras.models.load_model(teacher_path)
        teacher_seconds = 0.0
    else:
        print(f"Training the teacher for {teacher_epochs} epochs.")
        keras.utils.set_random_seed(seed)
        teacher = models.cnn_teacher()
        teacher_seconds = _train_alone(teacher, (x_train, y_train), (x_test, y_test),
                                       teacher_epochs, batch_size, verbose)
    teacher_logits = teacher.predict(x_test, batch_size=1024, verbose=0)
    rows = [_row("teacher (CNN)", teacher, x_test, y_test, teacher_logits,
                 teacher_seconds, teacher_path)]

    print(f"Training the student from scratch for {epochs} epochs.")
    keras.utils.set_random_seed(seed + 1)
    scratch = models.cnn_student(width=student_width, name="scratch_student")
    scratch_seconds = _train_alone(scratch, (x_train, y_train), (x_test, y_test),
                                   epochs, batch_size, verbose)
    rows.append(_row("student from scratch", scratch, x_test, y_test, teacher_logits,
                     scratch_seconds, output / "scratch_student.keras"))

    print(f"Distilling the student for {epochs} epochs (T={temperature}, alpha={alpha}).")
    # Same seed as the scratch student: both start from the same weights.
    keras.utils.set_random_seed(seed + 1)
    student = models.cnn_student(width=student_width, name="distilled_student")
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=alpha,
                      temperature=temperature)
    start = time.perf_counter()
    distiller.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
                  validation_data=(x_test, y_test), verbose=verbose)
    rows.append(_row("distilled student", student, x_test, y_test, teacher_logits,
                     time.perf_counter() - start, output / "distilled_student.keras"))

    table = format_table(rows)
    settings = (
        f"keras-kd demo: {epochs} student epochs, teacher epochs {teacher_epochs}, "
        f"T={temperature}, alpha={alpha}, batch {batch_size}, seed {seed}, "
        f"{len(x_train):,} training / {len(x_test):,} test images"
    )
    (output / "demo_results.md").write_text(f"{settings}\n\n{table}\n")
    print()
    print(settings)
    print(table)
    print(f"\nModels and table written to {output.resolve()}")
    return rows


def run(args) -> int:
    run_demo(
        epochs=args.epochs,
        teacher_epochs=args.teacher_epochs,
        temperature=args.temperature,
        alpha=args.alpha,
        batch_size=args.batch_size,
        student_width=args.student_width,
        seed=args.seed,
        train_examples=args.train_examples,
        test_examples=args.test_examples,
        output_dir=args.output_dir,
        data_dir=args.data_dir,
        retrain_teacher=args.retrain_teacher,
        verbose=args.verbose,
    )
    return 0
