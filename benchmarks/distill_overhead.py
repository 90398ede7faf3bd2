"""How much does the Distiller add beyond the two models' own work?

Side by side in one run, on the same batches of Fashion-MNIST:
(a) plain `student.fit`, (b) the teacher's forward pass alone
(`teacher.predict`), (c) `Distiller.fit` with the live teacher, (e) the same with in-step
augmentation (`augmentation=keras_kd.augment.MixUp()`: one mixed view per
batch that both models see).
Reports the per-epoch time (median of the timed epochs, after one warm-up
epoch that includes tracing/compilation) and the ratios `c / (a + b)`
and `e / (a + b)` (targets <= 1.10) and `c / a`, with XLA off and on.

    python benchmarks/distill_overhead.py            # writes the results file
    python benchmarks/distill_overhead.py --examples 2048 --epochs 2  # quick

The models are `keras_kd.models.cnn_teacher()` and `cnn_student()`; the
teacher is untrained (its weights do not change the cost).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd import datasets, models  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "distill_overhead.md"


def clocks():
    return time.perf_counter(), time.process_time()


def elapsed(start):
    """(wall seconds, CPU seconds of this process) since `start`.

    CPU time counts only this process's own work, so on a shared machine it
    is far steadier than wall time.
    """
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


class EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = clocks()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(elapsed(self._start))


def median_after_warmup(times, which):
    return statistics.median(t[which] for t in times[1:])


def compiled_student(jit_compile):
    keras.utils.set_random_seed(0)
    student = models.cnn_student()
    student.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return student


def compiled_distiller(teacher, jit_compile, augmentation=None):
    keras.utils.set_random_seed(0)
    distiller = keras_kd.Distiller(models.cnn_student(), teacher, augmentation=augmentation)
    distiller.compile(optimizer="adam", metrics=["accuracy"], jit_compile=jit_compile)
    return distiller


class MinimalDistiller(keras.Model):
    """(d) the least a distiller can do: the keras.io example's train step
    (teacher forward, student forward and backward, alpha * CE + (1 - alpha)
    * T^2 * KL), with no label masking, global-batch reduction, metrics
    filtering or term objects. It sets the floor that (c) is compared with.
    """

    def __init__(self, student, teacher, alpha=0.1, temperature=3.0):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.alpha, self.temperature = alpha, temperature
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, x):
        return self.student(x)

    def train_step(self, data):
        x, y = data
        teacher_logits = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            logits = self.student(x, training=True)
            hard = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            t = self.temperature
            soft = keras.losses.kl_divergence(
                tf.nn.softmax(teacher_logits / t), tf.nn.softmax(logits / t)
            )
            loss = tf.reduce_mean(self.alpha * hard + (1 - self.alpha) * t * t * soft)
        gradients = tape.gradient(loss, self.student.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.student.trainable_weights))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


def compiled_minimal_distiller(teacher, jit_compile):
    keras.utils.set_random_seed(0)
    distiller = MinimalDistiller(models.cnn_student(), teacher)
    distiller.compile(optimizer="adam", jit_compile=jit_compile)
    return distiller


def fit_one_epoch(model, x, y, batch_size, epoch):
    timer = EpochTimer()
    model.fit(x, y, batch_size=batch_size, initial_epoch=epoch, epochs=epoch + 1,
              shuffle=False, verbose=0, callbacks=[timer])
    return timer.times[0]


def predict_one_epoch(teacher, x, batch_size):
    start = clocks()
    teacher.predict(x, batch_size=batch_size, verbose=0)
    return elapsed(start)


def run(examples: int, batch_size: int, epochs: int):
    (x, y), _ = datasets.load_fashion_mnist()
    x, y = x[:examples], y[:examples]
    rows = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(0)
        teacher = models.cnn_teacher()
        # predict() compiles like fit(): the same jit_compile setting.
        teacher.compile(jit_compile=jit_compile)
        student = compiled_student(jit_compile)
        distiller = compiled_distiller(teacher, jit_compile)
        minimal = compiled_minimal_distiller(teacher, jit_compile)
        augmented = compiled_distiller(teacher, jit_compile, keras_kd.augment.MixUp(seed=0))
        a_times, b_times, c_times, d_times, e_times = [], [], [], [], []
        # Epoch by epoch in turn, so that a change in the machine's load
        # hits (a), (b) and (c) alike.
        for epoch in range(epochs):
            a_times.append(fit_one_epoch(student, x, y, batch_size, epoch))
            b_times.append(predict_one_epoch(teacher, x, batch_size))
            c_times.append(fit_one_epoch(distiller, x, y, batch_size, epoch))
            d_times.append(fit_one_epoch(minimal, x, y, batch_size, epoch))
            e_times.append(fit_one_epoch(augmented, x, y, batch_size, epoch))
        for which, clock in enumerate(("wall", "CPU")):
            a, b, c, d, e = (median_after_warmup(t, which)
                             for t in (a_times, b_times, c_times, d_times, e_times))
            rows.append({
                "xla": jit_compile, "clock": clock, "a": a, "b": b, "c": c, "d": d, "e": e,
                "c/(a+b)": c / (a + b), "c/a": c / a, "c/d": c / d, "d/(a+b)": d / (a + b),
                "e/(a+b)": e / (a + b), "e/c": e / c,
            })
            print(rows[-1], flush=True)
    return rows


def table(rows, examples, batch_size, epochs) -> str:
    lines = [
        "# Distillation overhead: `Distiller.fit` vs the two models' own work",
        "",
        "Produced by `python benchmarks/distill_overhead.py "
        f"--examples {examples} --batch-size {batch_size} --epochs {epochs}`.",
        "",
        f"- Data: the first {examples} Fashion-MNIST training images, batch "
        f"size {batch_size}, `shuffle=False`; every run sees the same batches.",
        f"- Models: `keras_kd.models.cnn_teacher()` "
        f"({models.cnn_teacher().count_params():,} parameters, untrained: "
        "weights do not change the cost) and `cnn_student()` "
        f"({models.cnn_student().count_params():,} parameters), Adam.",
        f"- Times are seconds per epoch: the median of {epochs - 1} timed "
        "epochs after one warm-up epoch (tracing, XLA compilation), as wall "
        "time and as the CPU time of the benchmark process (all its threads; "
        "steadier than wall time when other jobs share the machine).",
        "- (a) `student.fit`; (b) `teacher.predict` over the same images "
        "(the teacher's forward pass alone); (c) `Distiller.fit` with the "
        "live teacher; (d) the keras.io example's minimal train step (see "
        "`MinimalDistiller`), the floor for any distiller; (e) `Distiller.fit` "
        "with `augmentation=keras_kd.augment.MixUp()` (the teacher and the "
        "student see one mixed batch). The five run in one "
        "process, with the same `jit_compile` setting, taking turns epoch by epoch.",
        f"- Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores, no GPU; TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}. Load average (1 min) at the end of the "
        f"run: {os.getloadavg()[0]:.1f}; when it is above the core count, other "
        "jobs shared the machine and the CPU rows are the ones to read.",
        "- GPU: no GPU machine was lent to this task, so there are no GPU, "
        "mixed-precision speed-up or multi-GPU figures here.",
        "",
        "| XLA (`jit_compile`) | clock | (a) student.fit | (b) teacher forward | "
        "(c) Distiller.fit | (d) minimal distiller | (e) Distiller.fit + MixUp | "
        "c / (a + b) | e / (a + b) | d / (a + b) | c / d | c / a |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['xla']} | {row['clock']} | {row['a']:.2f} s | {row['b']:.2f} s | "
            f"{row['c']:.2f} s | {row['d']:.2f} s | {row['e']:.2f} s | {row['c/(a+b)']:.2f} | "
            f"{row['e/(a+b)']:.2f} | {row['d/(a+b)']:.2f} | {row['c/d']:.2f} | {row['c/a']:.2f} |"
        )
    lines += [
        "",
        "Target: `c / (a + b) <= 1.10`, i.e. the distiller adds little beyond "
        "training the student and running the teacher. `c / a` is what a live "
        "teacher costs over training the student alone; caching the teacher's "
        "outputs removes (b). `d / (a + b)` shows what merging the two "
        "models' work into one step costs by itself, and `c / d` what the "
        "Distiller adds over the minimal step.",
        "",
        "Target check, by clock:",
        "",
    ]
    for row in rows:
        met = row["c/(a+b)"] <= 1.10
        augmented_met = row["e/(a+b)"] <= 1.10
        lines.append(
            f"- XLA {row['xla']}, {row['clock']}: c / (a + b) = {row['c/(a+b)']:.2f} "
            f"({'met' if met else 'not met'}); with MixUp in the step e / (a + b) = "
            f"{row['e/(a+b)']:.2f} ({'met' if augmented_met else 'not met'}); the "
            f"Distiller costs {row['c/d']:.2f}x the minimal step."
        )
    lines += [
        "",
        "On CPU, Keras's default `jit_compile=\"auto\"` does not use XLA; the XLA rows "
        "are for comparison. Wall time counts waiting for the CPU when other jobs run; "
        "CPU time (all threads of this process) does not.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=4,
                        help="epochs per run, the first one a warm-up")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (one warm-up). Received: {args.epochs}.")
    rows = run(args.examples, args.batch_size, args.epochs)
    text = table(rows, args.examples, args.batch_size, args.epochs)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
