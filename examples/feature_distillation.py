"""Distillation methods side by side: Hinton KD, hints, attention transfer, DKD.

Trains `cnn_teacher` on Fashion-MNIST, then the same `cnn_student` (same
seed, data and budget) with each method, and prints the test accuracy.

    python examples/feature_distillation.py            # about 30 minutes on 2 CPU cores
    python examples/feature_distillation.py --quick    # a few minutes: small subset, 1 epoch
    python examples/feature_distillation.py --methods hint dkd
    python examples/feature_distillation.py --train-size 10000 --epochs 4
"""

import argparse

import keras

import keras_kd
from keras_kd import callbacks, datasets, models, schedules


def method_settings(method: str, epochs: int):
    """`(alpha, distillation_terms, callbacks)` for one method.

    Every method keeps the student's cross-entropy on the labels (`alpha`);
    Hinton's term (`1 - alpha`) comes from `compile`.
    """
    if method == "scratch":
        return 1.0, [], []  # the labels alone: the baseline to beat
    if method == "hinton":
        return 0.5, [], []
    if method == "hint":
        # FitNets: a 1x1-conv adapter maps the student's 16 channels to the
        # teacher's 64 at 14x14.
        return 0.5, [keras_kd.HintLoss(student_layer="block2", teacher_layer="block2")], []
    if method == "attention":
        # Zagoruyko & Komodakis: beta / 2 = 500, at both resolutions.
        pairs = {"block1": "block1", "block2": "block2"}
        return 0.5, [keras_kd.AttentionTransfer(feature_pairs=pairs, loss_weight=500.0)], []
    if method == "dkd":
        # Zhao et al.: cross-entropy (weight 1, so no Hinton term) + DKD,
        # with the DKD weight warmed up over the first quarter of training.
        warm_up = callbacks.LossWeightScheduler("dkd", schedules.WarmUp(epochs=max(1, epochs // 4)))
        return 1.0, [keras_kd.DecoupledKD(alpha=1.0, beta=8.0, temperature=4.0)], [warm_up]
    raise ValueError(f"Unknown method {method!r}. Choose from {METHODS}.")


METHODS = ("scratch", "hinton", "hint", "attention", "dkd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Tiny settings, for tests.")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="Student epochs (default 8).")
    parser.add_argument("--train-size", type=int, default=None, help="First N training images.")
    parser.add_argument("--test-size", type=int, default=None, help="First N test images.")
    args = parser.parse_args()
    train_size, test_size, epochs = (1000, 300, 1) if args.quick else (None, None, 8)
    train_size = args.train_size or train_size
    test_size = args.test_size or test_size
    epochs = args.epochs or epochs

    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    x_train, y_train = x_train[:train_size], y_train[:train_size]
    x_test, y_test = x_test[:test_size], y_test[:test_size]

    keras.utils.set_random_seed(args.seed)
    teacher = models.cnn_teacher()
    if args.quick:
        # Few steps: let BatchNormalization's moving statistics catch up.
        for layer in teacher.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
    teacher.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    teacher.fit(x_train, y_train, epochs=max(1, epochs // 2), batch_size=64, verbose=2)
    teacher_accuracy = teacher.evaluate(x_test, y_test, verbose=0)[1]
    print(f"teacher: {teacher.count_params():,} parameters, test accuracy {teacher_accuracy:.4f}")

    results = {}
    for method in args.methods:
        keras.utils.set_random_seed(args.seed)
        alpha, terms, extra_callbacks = method_settings(method, epochs)
        distiller = keras_kd.Distiller(student=models.cnn_student(), teacher=teacher)
        distiller.compile(
            optimizer="adam", metrics=["accuracy"], alpha=alpha, temperature=4.0,
            distillation_terms=terms,
        )
        distiller.fit(
            x_train, y_train, epochs=epochs, batch_size=128,
            callbacks=extra_callbacks, verbose=2,
        )
        results[method] = distiller.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"]

    print("\n| method | student test accuracy |\n|---|---|")
    for method, accuracy in results.items():
        print(f"| {method} | {accuracy:.4f} |")


if __name__ == "__main__":
    main()
