"""`keras-kd demo`: a teacher labels unlabelled images for a small student.

The common situation where distillation pays: a large model is trained on the
few labelled images there are, and there are many more images without
labels. The demo takes `--labels` Fashion-MNIST training images with their
labels and treats the rest of the training images as unlabelled. It trains a
CNN teacher on the labelled images (or reuses the one saved in
`--output-dir`), caches the teacher's logits on every training image once
(`keras_kd.cache_teacher_outputs`), and then trains the same small MLP
student twice with the same seed, optimizer and number of steps:

- alone, on the labelled images (cross-entropy);
- distilled, on the labelled and the unlabelled images: the hard-label loss
  where there is a label, the teacher's soft targets everywhere.

It prints a table (parameters, size, test accuracy, agreement with the
teacher, training time) and the gain, and writes the models and the table to
`--output-dir`. The test images are read only to fill the table.
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {value}")
    return value


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="Distil a CNN teacher into a small student on Fashion-MNIST.",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--labels", type=_positive_int, default=DEFAULTS["labels"],
                        help="Labelled training images; the other training images are "
                             "used without their labels.")
    parser.add_argument("--epochs", type=_positive_int, default=DEFAULTS["epochs"],
                        help="Distillation epochs over all training images; the student "
                             "alone takes the same number of steps on the labelled ones.")
    parser.add_argument("--teacher-epochs", type=_positive_int, default=DEFAULTS["teacher_epochs"],
                        help="Teacher epochs, when it is trained.")
    parser.add_argument("--temperature", type=float, default=DEFAULTS["temperature"],
                        help="Distillation temperature T.")
    parser.add_argument("--alpha", type=float, default=DEFAULTS["alpha"],
                        help="Weight of the hard-label loss.")
    parser.add_argument("--batch-size", type=_positive_int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-examples", type=_positive_int, default=None,
                        help="Use only the first N training images (quick runs).")
    parser.add_argument("--test-examples", type=_positive_int, default=None,
                        help="Use only the first N test images (quick runs).")
    parser.add_argument("--output-dir", default="kd_output",
                        help="Where the teacher, students, cache and table are written.")
    parser.add_argument("--data-dir", default=None,
                        help="Directory holding the four Fashion-MNIST .gz files.")
    parser.add_argument("--retrain-teacher", action="store_true",
                        help="Train a new teacher even if one is saved in --output-dir.")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                        help="Keras verbosity (1: progress bars).")
    parser.set_defaults(run=run)


#: The demo's defaults (also the flags' defaults).
DEFAULTS = dict(labels=10000, epochs=15, teacher_epochs=10, temperature=1.0, alpha=0.5)
LEARNING_RATE = 2e-3
STUDENT_HIDDEN = (64, 64)


def _row(name, model, x_test, y_test, teacher_logits, seconds, path: Path) -> DemoRow:
    import numpy as np

    from keras_kd.src.report import evaluation

    model.save(path)
    logits = model.predict(x_test, batch_size=1024, verbose=0)
    weight_bytes = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)
    return DemoRow(
        model=name,
        parameters=model.count_params(),
        size_kib=weight_bytes / 1024,
        test_accuracy=evaluation.accuracy(y_test, logits),
        agreement=evaluation.agreement(teacher_logits, logits),
        train_seconds=seconds,
    )


def _optimizer(steps: int):
    import keras

    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps))


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
    labels: int = DEFAULTS["labels"],
    epochs: int = DEFAULTS["epochs"],
    teacher_epochs: int = DEFAULTS["teacher_epochs"],
    temperature: float = DEFAULTS["temperature"],
    alpha: float = DEFAULTS["alpha"],
    batch_size: int = 128,
    seed: int = 0,
    train_examples: Optional[int] = None,
    test_examples: Optional[int] = None,
    output_dir: str = "kd_output",
    data_dir: Optional[str] = None,
    retrain_teacher: bool = False,
    verbose: int = 1,
) -> List[DemoRow]:
    """Runs the demo and returns the table's rows (teacher, alone, distilled).

    Example:

    >>> rows = run_demo(labels=500, epochs=1, teacher_epochs=1, train_examples=2000,
    ...                 test_examples=500, verbose=0)  # doctest: +SKIP
    """
    import keras
    import numpy as np

    import keras_kd
    from keras_kd.src.data import datasets
    from keras_kd.src.models import models
    from keras_kd.src.terms import losses

    started = time.perf_counter()
    # Fail before any training, not after the teacher's minutes of it.
    losses.validate_temperature(temperature)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}.")
    for argument, value in (("labels", labels), ("epochs", epochs),
                            ("teacher_epochs", teacher_epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{argument}` must be a positive integer. "
                             f"Received: {argument}={value!r}.")
    for argument, value in (("train_examples", train_examples), ("test_examples", test_examples)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"`{argument}` must be a positive integer or None. "
                             f"Received: {argument}={value!r}.")

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(data_dir=data_dir)
    x_train, y_train = x_train[:train_examples], y_train[:train_examples]
    x_test, y_test = x_test[:test_examples], y_test[:test_examples]
    if labels > len(x_train):
        raise ValueError(f"`labels` must be at most the number of training images "
                         f"({len(x_train):,}). Received: labels={labels}.")
    # A fixed random order, so that the labelled images cover every class.
    order = np.random.RandomState(seed).permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order].astype("int32")
    x_labelled, y_labelled = x_train[:labels], y_train[:labels]
    unlabelled = len(x_train) - labels
    print(f"Fashion-MNIST: {labels:,} labelled and {unlabelled:,} unlabelled training "
          f"images, {len(x_test):,} test images.")

    teacher_path = output / "teacher.keras"
    if teacher_path.exists() and not retrain_teacher:
        print(f"Reusing the teacher saved in {teacher_path} (--retrain-teacher trains a new one).")
        teacher = keras.models.load_model(teacher_path)
        teacher_seconds = 0.0
    else:
        print(f"Training the CNN teacher on the {labels:,} labelled images for "
              f"{teacher_epochs} epochs.")
        keras.utils.set_random_seed(seed)
        teacher = models.cnn_teacher()
        steps = teacher_epochs * int(np.ceil(labels / batch_size))
        teacher.compile(optimizer=_optimizer(steps), metrics=["accuracy"],
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        start = time.perf_counter()
        teacher.fit(x_labelled, y_labelled, batch_size=batch_size, epochs=teacher_epochs,
                    verbose=verbose)
        teacher_seconds = time.perf_counter() - start
    teacher_logits = teacher.predict(x_test, batch_size=1024, verbose=0)
    rows = [_row("teacher (CNN)", teacher, x_test, y_test, teacher_logits,
                 teacher_seconds, teacher_path)]

    print("Caching the teacher's logits on every training image.")
    cache_path = output / "teacher_logits.kdcache"
    start = time.perf_counter()
    keras_kd.cache_teacher_outputs(teacher, x_train, cache_path, verbose=verbose)
    cache_seconds = time.perf_counter() - start

    # The distilled student sees every training image `epochs` times; the
    # student alone takes the same number of steps on the labelled images.
    steps_per_epoch = int(np.ceil(len(x_train) / batch_size))
    steps = epochs * steps_per_epoch
    alone_epochs = max(1, int(round(steps / np.ceil(labels / batch_size))))
    print(f"Training the student alone on the labelled images ({alone_epochs} epochs, "
          f"{steps:,} steps).")
    keras.utils.set_random_seed(seed + 1)
    alone = models.mlp(STUDENT_HIDDEN, name="student_alone")
    alone.compile(optimizer=_optimizer(steps), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    alone.fit(x_labelled, y_labelled, batch_size=batch_size, epochs=alone_epochs,
              verbose=verbose)
    rows.append(_row("student alone", alone, x_test, y_test, teacher_logits,
                     time.perf_counter() - start, output / "student_alone.keras"))

    print(f"Distilling the student on all training images ({epochs} epochs, {steps:,} "
          f"steps; T={temperature}, alpha={alpha}).")
    transfer_labels = y_train.copy()
    transfer_labels[labels:] = keras_kd.UNLABELED
    train = keras_kd.load_teacher_cache(cache_path, x_train, transfer_labels,
                                        batch_size=batch_size, seed=seed, teacher=teacher)
    # Same seed as the student alone: both start from the same weights.
    keras.utils.set_random_seed(seed + 1)
    student = models.mlp(STUDENT_HIDDEN, name="distilled_student")
    distiller = keras_kd.Distiller(student, teacher=None)
    distiller.compile(optimizer=_optimizer(steps), metrics=["accuracy"], alpha=alpha,
                      temperature=temperature)
    start = time.perf_counter()
    # The loader shuffles every epoch itself (`seed`); Keras's own `shuffle`
    # does not apply to a dataset, and Keras 3.15 warns when it is left on.
    distiller.fit(train, epochs=epochs, shuffle=False, verbose=verbose)
    rows.append(_row("distilled student", student, x_test, y_test, teacher_logits,
                     time.perf_counter() - start + cache_seconds,
                     output / "distilled_student.keras"))

    gain = 100 * (rows[2].test_accuracy - rows[1].test_accuracy)
    total = time.perf_counter() - started
    table = format_table(rows)
    settings = (
        f"keras-kd demo: {labels:,} labelled + {unlabelled:,} unlabelled training images, "
        f"{len(x_test):,} test images; teacher {teacher_epochs} epochs; students "
        f"{steps:,} steps of batch {batch_size} (Adam {LEARNING_RATE:g}, cosine decay); "
        f"T={temperature}, alpha={alpha}, seed {seed}"
    )
    verdict = (f"The distilled student is {gain:+.2f} points from the student alone "
               f"({'better' if gain > 0 else 'not better'}), "
               f"{rows[0].parameters / rows[2].parameters:.1f}x smaller than its teacher. "
               f"Total wall time {total / 60:.1f} min (the distilled row's time includes "
               f"caching the teacher's logits, {cache_seconds:.0f} s).")
    (output / "demo_results.md").write_text(f"{settings}\n\n{table}\n\n{verdict}\n")
    print()
    print(settings)
    print(table)
    print(verdict)
    print(f"\nModels and table written to {output.resolve()}")
    return rows


def run(args) -> int:
    run_demo(
        labels=args.labels,
        epochs=args.epochs,
        teacher_epochs=args.teacher_epochs,
        temperature=args.temperature,
        alpha=args.alpha,
        batch_size=args.batch_size,
        seed=args.seed,
        train_examples=args.train_examples,
        test_examples=args.test_examples,
        output_dir=args.output_dir,
        data_dir=args.data_dir,
        retrain_teacher=args.retrain_teacher,
        verbose=args.verbose,
    )
    return 0
