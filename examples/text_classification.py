"""Distil a small Transformer encoder into an embedding-bag text classifier.

The text case users ask about most: a BERT-like teacher distilled into a
student cheap enough for a phone or a CPU server. Here the teacher is a
2-layer Transformer encoder built from Keras layers (no pretrained download),
and the student a fastText-style embedding bag (or a 1-D CNN). The student is
trained twice, with the same architecture, epochs, batch size, optimizer and
seed: once alone on the labels ("scratch"), once from the teacher
("distilled"), so the comparison shows what distillation adds.

Data: IMDB reviews through `keras.datasets.imdb` when they can be downloaded;
offline, Debian package descriptions labelled by section, from apt's package
lists (see `keras_kd.text_datasets`).

    python examples/text_classification.py              # full run
    python examples/text_classification.py --quick      # a smoke test
    python examples/text_classification.py --dataset debian_packages --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

# Each of the three models traces its own predict function; TensorFlow's
# retracing warning about that is noise here.
tf.get_logger().setLevel("ERROR")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd import text_datasets  # noqa: E402
from keras_kd.src.models import text_models  # noqa: E402

#: Settings per corpus: IMDB reviews are long, package descriptions short.
CORPUS_SETTINGS = {
    "imdb": {"max_tokens": 20000, "sequence_length": 200},
    "debian_packages": {"max_tokens": 10000, "sequence_length": 24},
}

STUDENTS = {
    "embedding_bag": text_models.embedding_bag_student,
    "cnn1d": text_models.cnn1d_student,
}


def vectorize(train_texts, test_texts, max_tokens: int, sequence_length: int):
    """Token ids from a vocabulary fitted on the training texts only."""
    vectorizer = keras.layers.TextVectorization(
        max_tokens=max_tokens, output_sequence_length=sequence_length
    )
    vectorizer.adapt(list(train_texts), batch_size=1024)
    to_ids = lambda texts: np.asarray(vectorizer(np.asarray(list(texts))), dtype="int32")  # noqa: E731
    return to_ids(train_texts), to_ids(test_texts), vectorizer.vocabulary_size()


def _cross_entropy():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def train_teacher(data, num_classes, vocabulary_size, sequence_length, seed=0,
                  epochs=8, batch_size=64, verbose=0):
    """The Transformer teacher, trained on the labels. Returns `(model, seconds)`."""
    (x_train, y_train), _ = data
    keras.utils.set_random_seed(seed)
    teacher = text_models.transformer_teacher(
        vocabulary_size, sequence_length, num_classes, dropout=0.3
    )
    # Decoupled weight decay and dropout: the encoder overfits a few
    # thousand short texts quickly otherwise.
    teacher.compile(
        optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01),
        loss=_cross_entropy(), metrics=["accuracy"],
    )
    start = time.perf_counter()
    teacher.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return teacher, time.perf_counter() - start


def train_student(data, num_classes, vocabulary_size, sequence_length, teacher=None,
                  seed=0, epochs=10, batch_size=64, learning_rate=3e-3,
                  temperature=4.0, alpha=0.1, student="embedding_bag",
                  embedding_dim=8, validation_data=None, verbose=0):
    """A student trained alone (`teacher=None`) or distilled from `teacher`,
    with the same seed, initial weights, batches and optimizer either way.

    Returns `(student, history, seconds)`.
    """
    (x_train, y_train), _ = data
    keras.utils.set_random_seed(seed + 1)
    model = STUDENTS[student](
        vocabulary_size, sequence_length, num_classes, embedding_dim=embedding_dim,
        name="distilled_student" if teacher is not None else "scratch_student",
    )
    optimizer = keras.optimizers.Adam(learning_rate)
    if teacher is None:
        trainer = model
        trainer.compile(optimizer=optimizer, loss=_cross_entropy(), metrics=["accuracy"])
    else:
        trainer = keras_kd.Distiller(student=model, teacher=teacher)
        trainer.compile(optimizer=optimizer, metrics=["accuracy"], alpha=alpha,
                        temperature=temperature)
    start = time.perf_counter()
    history = trainer.fit(
        x_train, y_train, epochs=epochs, batch_size=batch_size, verbose=verbose,
        validation_data=validation_data,
    )
    return model, history, time.perf_counter() - start


def accuracy_on(model, x, y) -> float:
    return float(np.mean(model.predict(x, batch_size=512, verbose=0).argmax(-1) == y))


def run(data, num_classes, vocabulary_size, sequence_length, seed=0, epochs=10,
        teacher_epochs=8, temperature=4.0, alpha=0.1, student="embedding_bag",
        embedding_dim=8, verbose=0) -> Dict[str, object]:
    """Trains the teacher, the scratch student and the distilled student.

    `data` is `((x_train, y_train), (x_test, y_test))` as token ids. Returns
    test accuracies, parameter counts, wall-clock training times and the
    models themselves.
    """
    shape = dict(num_classes=num_classes, vocabulary_size=vocabulary_size,
                 sequence_length=sequence_length)
    student_args = dict(shape, seed=seed, epochs=epochs, student=student,
                        embedding_dim=embedding_dim, verbose=verbose)
    _, (x_test, y_test) = data
    teacher, teacher_seconds = train_teacher(data, seed=seed, epochs=teacher_epochs,
                                             verbose=verbose, **shape)
    scratch, _, scratch_seconds = train_student(data, **student_args)
    distilled, history, distilled_seconds = train_student(
        data, teacher=teacher, temperature=temperature, alpha=alpha,
        validation_data=(x_test, y_test), **student_args,
    )
    return {
        "teacher_accuracy": accuracy_on(teacher, x_test, y_test),
        "scratch_accuracy": accuracy_on(scratch, x_test, y_test),
        "distilled_accuracy": accuracy_on(distilled, x_test, y_test),
        "teacher_parameters": teacher.count_params(),
        "student_parameters": distilled.count_params(),
        "teacher_seconds": teacher_seconds,
        "scratch_seconds": scratch_seconds,
        "distilled_seconds": distilled_seconds,
        "teacher": teacher,
        "scratch": scratch,
        "distilled": distilled,
        "history": history,
    }


def load(dataset: str = "auto", quick: bool = False):
    """The corpus as token ids: `(data, class_names, corpus, vocabulary_size,
    sequence_length)`."""
    kwargs = {"max_per_class": 150} if quick and dataset == "debian_packages" else {}
    (train, test), class_names, corpus = text_datasets.load_text_classification(dataset, **kwargs)
    if quick and corpus == "imdb":
        train, test = (train[0][:2000], train[1][:2000]), (test[0][:1000], test[1][:1000])
    settings = CORPUS_SETTINGS[corpus]
    x_train, x_test, vocabulary_size = vectorize(
        train[0], test[0], settings["max_tokens"], settings["sequence_length"]
    )
    data = ((x_train, train[1]), (x_test, test[1]))
    return data, class_names, corpus, vocabulary_size, settings["sequence_length"]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="auto", choices=text_datasets.TEXT_DATASETS)
    parser.add_argument("--student", default="embedding_bag", choices=sorted(STUDENTS))
    parser.add_argument("--quick", action="store_true", help="Tiny data and one epoch, for tests.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embedding-dim", type=int, default=8, help="The student's embedding size.")
    parser.add_argument("--epochs", type=int, default=10, help="Epochs for each student.")
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--report-dir", help="Also write a keras_kd.report there.")
    parser.add_argument("--json", help="Write the numbers to this JSON file.")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    data, class_names, corpus, vocabulary_size, sequence_length = load(args.dataset, args.quick)
    epochs = 1 if args.quick else args.epochs
    teacher_epochs = 1 if args.quick else args.teacher_epochs
    result = run(
        data, len(class_names), vocabulary_size, sequence_length, seed=args.seed,
        epochs=epochs, teacher_epochs=teacher_epochs, temperature=args.temperature,
        alpha=args.alpha, student=args.student, embedding_dim=args.embedding_dim,
    )
    (x_train, _), (x_test, _) = data
    print(f"corpus: {corpus}, {len(class_names)} classes ({', '.join(class_names)}), "
          f"{len(x_train)} train / {len(x_test)} test texts, vocabulary {vocabulary_size}")
    print(f"{'model':<22}{'parameters':>12}{'test accuracy':>15}{'train seconds':>15}")
    for label, key, parameters in (
        ("teacher (Transformer)", "teacher", result["teacher_parameters"]),
        ("student, scratch", "scratch", result["student_parameters"]),
        ("student, distilled", "distilled", result["student_parameters"]),
    ):
        print(f"{label:<22}{parameters:>12,}{100 * result[key + '_accuracy']:>14.2f}%"
              f"{result[key + '_seconds']:>15.1f}")
    if args.report_dir:
        keras_kd.report(
            result["teacher"], result["distilled"], data[1], class_names=class_names,
            history=result["history"], output_dir=args.report_dir,
        )
        print(f"report written to {args.report_dir}")
    numbers = {k: v for k, v in result.items() if isinstance(v, (int, float))}
    numbers.update(corpus=corpus, class_names=class_names, seed=args.seed, epochs=epochs)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(numbers, handle, indent=2)
    return numbers


if __name__ == "__main__":
    main()
