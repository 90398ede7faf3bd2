"""Distil one small student from several teachers of different architectures.

Trains three teachers on Fashion-MNIST (a VGG-style CNN, an MLP and a
smaller CNN), then a small CNN student from their weighted ensemble, and
compares it with the same student trained alone (same epochs and seed).

    python examples/several_teachers.py           # full run
    python examples/several_teachers.py --quick   # a minute on a laptop CPU
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras

import keras_kd
from keras_kd import datasets, models


def accuracy(model, x, y):
    return keras_kd.evaluation.accuracy(y, model.predict(x, verbose=0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subset, one epoch")
    parser.add_argument("--epochs", type=int, default=5, help="student epochs")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--reduction", default="mean_probabilities",
                        choices=["mean_probabilities", "mean_kl"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = args.teacher_epochs = 1

    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:1000], y_train[:1000], x_test[:500], y_test[:500]

    keras.utils.set_random_seed(args.seed)
    teachers = [
        models.cnn_teacher(name="vgg_teacher"),
        models.mlp((512, 256), dropout=0.2, name="mlp_teacher"),
        models.cnn_teacher(width=16, name="small_vgg_teacher"),
    ]
    scores = []
    for teacher in teachers:
        teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        teacher.fit(x_train, y_train, batch_size=128, epochs=args.teacher_epochs, verbose=0)
        scores.append(accuracy(teacher, x_test, y_test))
        print(f"{teacher.name:>20}: {teacher.count_params():>8,d} parameters, "
              f"test accuracy {scores[-1]:.4f}")
    # Better teachers get more weight; any non-negative weights work.
    weights = scores

    results = {}
    for label, teacher in [("student alone", None), ("student from 3 teachers", teachers)]:
        keras.utils.set_random_seed(args.seed)
        student = models.cnn_student()
        if teacher is None:
            student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            student.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=0)
        else:
            distiller = keras_kd.Distiller(student, teacher=teacher, teacher_weights=weights)
            distiller.compile(optimizer="adam", alpha=args.alpha, temperature=args.temperature,
                              teacher_reduction=args.reduction)
            distiller.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=0)
        results[label] = accuracy(student, x_test, y_test)
        print(f"{label:>24}: {student.count_params():,d} parameters, "
              f"test accuracy {results[label]:.4f}")
    return results


if __name__ == "__main__":
    main()
