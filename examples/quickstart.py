"""Quick start: distil a CNN teacher into a small CNN student on Fashion-MNIST.

    python examples/quickstart.py            # about 10 minutes on 2 CPU cores
    python examples/quickstart.py --quick    # a minute: small subset, 1 epoch
"""

import argparse

import keras

import keras_kd
from keras_kd import datasets, models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Tiny settings, for tests.")
    args = parser.parse_args()
    train_size, test_size, epochs = (2000, 500, 1) if args.quick else (None, None, 8)

    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    x_train, y_train = x_train[:train_size], y_train[:train_size]
    x_test, y_test = x_test[:test_size], y_test[:test_size]

    keras.utils.set_random_seed(0)
    teacher = models.cnn_teacher()
    teacher.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    teacher.fit(x_train, y_train, epochs=max(1, epochs // 2), batch_size=128, verbose=2)

    student = models.cnn_student()
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer="adam", metrics=["accuracy"], alpha=0.5, temperature=4.0)
    distiller.fit(
        x_train, y_train, epochs=epochs, batch_size=128,
        validation_data=(x_test, y_test), verbose=2,
    )
    teacher_accuracy = teacher.evaluate(x_test, y_test, verbose=0)[1]
    student_accuracy = distiller.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]
    print(f"teacher: {teacher.count_params():,} parameters, test accuracy {teacher_accuracy:.4f}")
    print(f"student: {student.count_params():,} parameters, test accuracy {student_accuracy:.4f}")


if __name__ == "__main__":
    main()
