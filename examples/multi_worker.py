"""Distil a Fashion-MNIST student on several machines.

`tf.distribute.MultiWorkerMirroredStrategy` reads the cluster from the
`TF_CONFIG` environment variable. Start the same command on every machine,
each with its own `task.index` (worker 0 is the chief: it writes the outputs):

    # on host1
    export TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                       "task": {"type": "worker", "index": 0}}'
    python examples/multi_worker.py --teacher teacher.keras --output out/
    # on host2: the same, with "index": 1

Without `TF_CONFIG` the script runs as a single worker, with the same global
batch, and gives the same student (the test suite checks this with two
workers on 127.0.0.1). Without `--teacher`, it first trains
`keras_kd.models.cnn_teacher()` itself; train the teacher once and pass the
saved file when running on several workers: a teacher with batch
normalization trained on several workers differs from one trained on one.

    python examples/multi_worker.py --quick --output /tmp/kd   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

# The strategy must exist before TensorFlow runs any op.
STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd import datasets, models  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a 1,000-image subset, one epoch: a smoke test")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="a trained teacher (.keras); trained here when missing")
    parser.add_argument("--save-teacher", type=Path, default=None,
                        help="where to save the teacher this script trains")
    parser.add_argument("--output", type=Path, required=True,
                        help="directory for student.npz and history.json (chief only)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the global batch size, over all workers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 1 if args.quick else 5
    if args.batch_size is None:
        args.batch_size = 48 if args.quick else 128
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive. "
                         f"Received: {getattr(args, name)}.")
    return args


def is_chief() -> bool:
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return task.get("type", "worker") in ("worker", "chief") and task.get("index", 0) == 0


def load(args):
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    if args.quick:
        # 1,001 images: the last batch of 48 holds 41, split unevenly.
        x_train, y_train = x_train[:1001], y_train[:1001]
        x_test, y_test = x_test[:500], y_test[:500]
    return (x_train, y_train.astype("int32")), (x_test, y_test.astype("int32"))


def dataset(x, y, batch_size, seed, shuffle):
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        # The same seed on every worker: they agree on each global batch.
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def get_teacher(args, train_data):
    """Loads the teacher, or trains one (on a dataset of its own, so that
    the distillation sees the same shuffles either way)."""
    if args.teacher is not None:
        return keras.saving.load_model(args.teacher)
    teacher = models.cnn_teacher()
    teacher.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    teacher.fit(train_data, epochs=1 if args.quick else 3, verbose=2)
    if args.save_teacher is not None and is_chief():
        args.save_teacher.parent.mkdir(parents=True, exist_ok=True)
        teacher.save(args.save_teacher)
    return teacher


def main(argv=None):
    args = parse_args(argv)
    (x_train, y_train), (x_test, y_test) = load(args)
    def train_data():
        return dataset(x_train, y_train, args.batch_size, args.seed, shuffle=True)

    test_data = dataset(x_test, y_test, args.batch_size, args.seed, shuffle=False)
    print(f"{STRATEGY.num_replicas_in_sync} replicas, global batch {args.batch_size}",
          flush=True)
    with STRATEGY.scope():
        # Everything that owns variables is created in the scope.
        keras.utils.set_random_seed(args.seed)
        teacher = get_teacher(args, train_data())
        keras.utils.set_random_seed(args.seed + 1)
        student = models.cnn_student()
        distiller = keras_kd.Distiller(student, teacher)
        distiller.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
            alpha=0.5,
            temperature=2.0,
        )
    history = distiller.fit(train_data(), epochs=args.epochs, verbose=2)
    evaluation = distiller.evaluate(test_data, verbose=0, return_dict=True)
    print(f"student test accuracy: {evaluation['acc']:.4f}", flush=True)
    if is_chief():
        args.output.mkdir(parents=True, exist_ok=True)
        np.savez(args.output / "student.npz", *student.get_weights())
        summary = {
            "replicas": STRATEGY.num_replicas_in_sync,
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "evaluate": {k: float(v) for k, v in evaluation.items()},
        }
        (args.output / "history.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
