"""Distil from cached teacher outputs: the teacher runs once, not every epoch.

Trains a CNN teacher on Fashion-MNIST, caches its logits for three seeded
augmented views of every training image (full float32 and top-5), then
trains a small student from each cache and, for comparison, the same student
alone and with the live teacher. The student sees exactly the augmented view
the teacher saw ("consistent teaching").

    python examples/cached_teacher.py           # full run
    python examples/cached_teacher.py --quick   # a minute on a laptop CPU
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import tensorflow as tf

import keras_kd
from keras_kd import datasets, models


def augment(image, seed):
    """Seeded flip and 2-pixel shift; replayable from its seed."""
    image = tf.image.stateless_random_flip_left_right(image, seed)
    padded = tf.pad(image, [[2, 2], [2, 2], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed + 1)


def accuracy(model, x, y):
    return keras_kd.evaluation.accuracy(y, model.predict(x, verbose=0))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subset, one epoch")
    parser.add_argument("--epochs", type=int, default=5, help="student epochs")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--views", type=int, default=3, help="augmented views cached per image")
    parser.add_argument("--cache-dir", default=None, help="where to write the caches")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = args.teacher_epochs = 1
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="keras_kd_cache_")

    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:1000], y_train[:1000], x_test[:500], y_test[:500]
        args.views = min(args.views, 2)
    y_train = y_train.astype("int32")

    keras.utils.set_random_seed(args.seed)
    teacher = models.cnn_teacher()
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x_train, y_train, batch_size=128, epochs=args.teacher_epochs, verbose=0)
    print(f"teacher: test accuracy {accuracy(teacher, x_test, y_test):.4f}")

    caches = {}
    for label, top_k in [("full", None), ("top-5", 5)]:
        path = os.path.join(cache_dir, f"teacher_{label}.kdcache")
        start = time.perf_counter()
        header = keras_kd.cache_teacher_outputs(
            teacher, x_train, path, top_k=top_k, views=args.views, augment=augment,
            seed=args.seed,
        )
        caches[label] = path
        print(f"cache {label:>5}: {header['example_count']} images x {args.views} views, "
              f"{header['data_bytes'] / 1e6:.2f} MB, written in {time.perf_counter() - start:.1f} s")
    full_size = keras_kd.cache_storage_bytes(1_281_167, 1000)
    top5_size = keras_kd.cache_storage_bytes(1_281_167, 1000, top_k=5)
    print(f"for ImageNet-1k (1.28M images, 1000 classes, one view): float32 "
          f"{full_size / 1e9:.2f} GB, top-5 {top5_size / 1e6:.1f} MB")

    def run(label, make_data, teacher_arg):
        keras.utils.set_random_seed(args.seed)
        student = models.cnn_student()
        distiller = keras_kd.Distiller(student, teacher=teacher_arg)
        distiller.compile(optimizer="adam", alpha=0.5, temperature=2.0)
        start = time.perf_counter()
        distiller.fit(make_data(), epochs=args.epochs, verbose=0)
        seconds = (time.perf_counter() - start) / args.epochs
        print(f"{label:>34}: test accuracy {accuracy(student, x_test, y_test):.4f}, "
              f"{seconds:.1f} s/epoch")

    def replayed(path):
        return lambda: keras_kd.load_teacher_cache(
            path, x_train, y_train, batch_size=128, augment=augment, seed=args.seed
        )

    def live_augmented():
        # The live teacher sees a fresh view every step.
        data = tf.data.Dataset.from_tensor_slices((x_train, y_train)).shuffle(len(x_train))
        seeds = tf.data.Dataset.random(seed=args.seed).batch(2)
        data = tf.data.Dataset.zip((data, seeds)).map(
            lambda xy, s: (augment(xy[0], s), xy[1]), num_parallel_calls=tf.data.AUTOTUNE
        )
        return data.batch(128).prefetch(tf.data.AUTOTUNE)

    keras.utils.set_random_seed(args.seed)
    student = models.cnn_student()
    student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.perf_counter()
    student.fit(live_augmented(), epochs=args.epochs, verbose=0)
    print(f"{'student alone':>34}: test accuracy {accuracy(student, x_test, y_test):.4f}, "
          f"{(time.perf_counter() - start) / args.epochs:.1f} s/epoch")
    run("live teacher, fresh views", live_augmented, teacher)
    run(f"cached float32, {args.views} replayed views", replayed(caches["full"]), None)
    run(f"cached top-5, {args.views} replayed views", replayed(caches["top-5"]), None)


if __name__ == "__main__":
    main()
