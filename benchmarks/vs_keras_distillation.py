"""keras_kd against keras.distillation, side by side in one run.

The same code, written for keras.distillation, runs with both libraries:

    Distiller(teacher=teacher, student=student,
              distillation_losses=LogitsDistillation(temperature=T),
              student_loss_weight=0.5)
    distiller.compile(optimizer=Adam(1e-3), loss=CE(from_logits=True),
                      metrics=["accuracy"])

once as `keras.distillation.Distiller`, once as `keras_kd.Distiller`, on the
same Fashion-MNIST subset, teacher, student initializations and seeds; plus
the student trained alone. Reports test accuracy (mean ± std over seeds),
the epoch-time ratio, equality of one device and a two-replica
MirroredStrategy on two logical CPUs (in a subprocess, which configures the
devices before TensorFlow starts), a mixed-precision NaN check at T = 20 with a
confident teacher, and a feature table whose rows are measured here.

    python benchmarks/vs_keras_distillation.py            # writes the results file
    python benchmarks/vs_keras_distillation.py --train 2000 --epochs 1 --seeds 1  # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if "--mirrored-worker" in sys.argv:  # logical devices before TensorFlow starts
    import tensorflow as tf  # noqa: E402

    _cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import distillation as keras_distillation  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd import datasets, models  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "vs_keras_distillation.md"
LIBRARIES = {"keras.distillation": keras_distillation.Distiller, "keras_kd": keras_kd.Distiller}

#: Written into the results file: where its settings came from.
SETTINGS_NOTE = (
    "How the settings were chosen: not tuned. T = 3 and the student weight 0.5 are the settings of the issue's held-out comparison, the same for both libraries; the baseline is the student alone with the same epochs, data order and initialization, without augmentation (neither distilled run uses any). The test set is read once per run, for the table."
)


def ce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def make_student(kind: str) -> keras.Model:
    if kind == "cnn_student":
        return models.cnn_student()
    return models.mlp((128,), name="mlp_student")


def make_distiller(library: str, teacher, student, temperature: float):
    """The same keras.distillation code, for either library."""
    distiller = LIBRARIES[library](
        teacher=teacher,
        student=student,
        distillation_losses=keras_distillation.LogitsDistillation(temperature=temperature),
        student_loss_weight=0.5,
    )
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ce(), metrics=["accuracy"])
    return distiller


class EpochTimer(keras.callbacks.Callback):
    """Wall and process-CPU seconds per epoch (CPU time is steadier on a
    shared machine: it counts only this process's work)."""

    def on_train_begin(self, logs=None):
        self.times, self.cpu_times = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start[0])
        self.cpu_times.append(time.process_time() - self._start[1])


def accuracy(model, x, y) -> float:
    logits = model.predict(x, batch_size=512, verbose=0)
    return float((logits.argmax(-1) == y).mean())


def make_teacher(name: str = "teacher") -> keras.Model:
    """A small CNN teacher (about 420k parameters): `cnn_student` at 4x the
    width. No BatchNormalization, whose moving averages lag after the few
    hundred steps this run can afford (`cnn_teacher` scored 50% here)."""
    return models.cnn_student(width=32, name=name)


def train_teacher(x, y, epochs: int, seed: int):
    keras.utils.set_random_seed(seed)
    teacher = make_teacher()
    teacher.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ce())
    teacher.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    return teacher


def accuracy_runs(args, x, y, x_test, y_test, teacher):
    """`{kind: {method: [(accuracy, epoch_times), ...]}}` over the seeds."""
    results = {}
    for kind in ("cnn_student", "mlp_student"):
        results[kind] = {"alone": [], **{lib: [] for lib in LIBRARIES}}
        for seed in range(args.seeds):
            for method in ("alone", *LIBRARIES):
                keras.utils.set_random_seed(100 + seed)
                student = make_student(kind)
                if method == "alone":
                    model = student
                    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ce())
                else:
                    model = make_distiller(method, teacher, student, args.temperature)
                timer = EpochTimer()
                keras.utils.set_random_seed(200 + seed)
                model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs,
                          callbacks=[timer], verbose=0)
                acc = accuracy(student, x_test, y_test)
                results[kind][method].append((acc, timer.times, timer.cpu_times))
                print(f"{kind:12s} seed {seed} {method:18s} acc {acc:.4f} "
                      f"epochs {['%.1f' % t for t in timer.times]}", flush=True)
    return results


# --------------------------------------------------------------- mirrored


def mirrored_worker(output: str) -> None:
    """One device against two logical CPUs, for both libraries."""
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    (x, y), _ = datasets.load_fashion_mnist()
    x, y = x[:512], y[:512].astype("int32")
    keras.utils.set_random_seed(0)
    teacher_weights = models.mlp((64,), name="teacher").get_weights()
    results = {}
    for library in LIBRARIES:
        students = {}
        for name, scope in (("one device", tf.distribute.get_strategy()), ("mirrored", strategy)):
            with scope.scope():
                keras.utils.set_random_seed(1)
                teacher = models.mlp((64,), name="teacher")
                teacher.set_weights(teacher_weights)
                student = models.mlp((16,), name="student")
                distiller = make_distiller(library, teacher, student, 3.0)
            dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
            history = distiller.fit(dataset, epochs=2, verbose=0)
            students[name] = (student.get_weights(), history.history["loss"][-1])
        difference = max(
            float(np.abs(a - b).max())
            for a, b in zip(students["one device"][0], students["mirrored"][0])
        )
        results[library] = {
            "max_weight_difference": difference,
            "loss_one_device": float(students["one device"][1]),
            "loss_mirrored": float(students["mirrored"][1]),
        }
    Path(output).write_text(json.dumps(results))


def run_mirrored() -> dict:
    with tempfile.TemporaryDirectory() as directory:
        output = os.path.join(directory, "mirrored.json")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
        completed = subprocess.run(
            [sys.executable, __file__, "--mirrored-worker", output],
            capture_output=True, text=True, env=env, timeout=900,
        )
        if completed.returncode != 0:
            return {"error": completed.stderr.strip().splitlines()[-1:]}
        return json.loads(Path(output).read_text())


# ----------------------------------------------------- mixed precision


def mixed_precision_check(x, y, teacher_weights, temperature=20.0) -> dict:
    """A few steps at T = 20 under mixed_float16 with a confident teacher."""
    reference = make_teacher("reference")
    reference.set_weights(teacher_weights)
    scale = 500.0 / float(np.abs(reference.predict(x[:1024], verbose=0)).max())
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    results = {}
    try:
        variants = {
            "keras.distillation": lambda: keras_distillation.LogitsDistillation(temperature),
            "keras.distillation, KLDivergence()": lambda: keras_distillation.LogitsDistillation(
                temperature, loss=keras.losses.KLDivergence()),
            "keras_kd": lambda: keras_distillation.LogitsDistillation(temperature),
        }
        for name, loss in variants.items():
            library = "keras_kd" if name == "keras_kd" else "keras.distillation"
            keras.utils.set_random_seed(3)
            base = make_teacher()
            base.set_weights(teacher_weights)
            # Confident: the trained teacher's logits scaled to |logit| <= 500
            # (float16 holds them; its softmax at T = 1 is one-hot).
            inputs = keras.Input((28, 28, 1))
            teacher = keras.Model(inputs, keras.layers.Rescaling(scale)(base(inputs)), name="confident")
            student = models.mlp((64,), name="student")
            distiller = LIBRARIES[library](
                teacher=teacher, student=student, distillation_losses=loss(),
                student_loss_weight=0.5,
            )
            distiller.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ce())
            history = distiller.fit(x[:1024], y[:1024], batch_size=128, epochs=1, verbose=0)
            finite_weights = all(np.isfinite(w).all() for w in student.get_weights())
            loss_value = float(history.history["loss"][-1])
            results[name] = {"loss": loss_value, "finite": bool(np.isfinite(loss_value) and finite_weights),
                             "max_teacher_logit": float(np.abs(teacher.predict(x[:256], verbose=0)).max())}
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return results


# -------------------------------------------------------- feature table


class NotOffered(Exception):
    """The library has no API for the row (not a failure of a run)."""


def attempt(function):
    """`(ok, detail)`: whether `function()` ran, and what it said."""
    try:
        return True, function()
    except NotOffered as error:
        return False, f"not offered ({error})"
    except Exception as error:  # noqa: BLE001 - reported in the table
        lines = str(error).splitlines() or [""]
        line = next((l for l in lines if "label value" in l), lines[0]).strip()
        return False, f"{type(error).__name__}: {line[:110]}"


def small_pair():
    keras.utils.set_random_seed(5)
    return models.mlp((32,), name="teacher"), models.mlp((8,), name="student")


def feature_rows(x, y) -> list:
    """Each row: (feature, keras.distillation, keras_kd), measured here."""
    x, y = x[:256], y[:256].astype("int32")
    rows = []

    def distil(library, **kwargs):
        teacher, student = small_pair()
        losses = kwargs.pop("losses", keras_distillation.LogitsDistillation(3.0))
        distiller = LIBRARIES[library](teacher=kwargs.pop("teacher", teacher), student=student,
                                       distillation_losses=losses, student_loss_weight=0.5)
        distiller.compile(optimizer="adam", loss=ce())
        return distiller, student

    # Several teachers.
    def several(library):
        teachers = [small_pair()[0], models.mlp((16,), name="teacher2")]
        distiller, _ = distil(library, teacher=teachers)
        distiller.fit(x, y, batch_size=64, verbose=0)
        return "trains"
    rows.append(("Several teachers (`teacher=[t1, t2]`)",
                 *[describe(*attempt(lambda lib=lib: several(lib))) for lib in LIBRARIES]))

    # Cached teacher logits.
    def cached(library):
        teacher, _ = small_pair()
        logits = teacher.predict(x, verbose=0)
        distiller, _ = distil(library, teacher=None)
        distiller.fit({"inputs": x, "teacher_logits": logits}, y, batch_size=64, verbose=0)
        return "trains without the teacher"
    rows.append(("Cached teacher logits (`teacher=None`)",
                 *[describe(*attempt(lambda lib=lib: cached(lib))) for lib in LIBRARIES]))

    # sample_weight: all zero must leave the student unchanged.
    def zero_weights(library):
        distiller, student = distil(library)
        before = [w.copy() for w in student.get_weights()]
        distiller.fit(x, y, sample_weight=np.zeros(len(x), "float32"), batch_size=64, verbose=0)
        moved = any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights()))
        return "ignored (weight 0 still trains)" if moved else "honoured (weight 0: no update)"
    rows.append(("`sample_weight`",
                 *[describe(*attempt(lambda lib=lib: zero_weights(lib))) for lib in LIBRARIES]))

    # Unlabeled examples (label -1) mixed into the batch.
    def unlabeled(library):
        distiller, student = distil(library)
        labels = y.copy()
        labels[::2] = -1
        history = distiller.fit(x, labels, batch_size=64, verbose=0)
        loss = history.history["loss"][-1]
        finite = np.isfinite(loss) and all(np.isfinite(w).all() for w in student.get_weights())
        return "masked (loss finite)" if finite else f"loss {loss}"
    rows.append(("Unlabeled examples (label -1) in a batch",
                 *[describe(*attempt(lambda lib=lib: unlabeled(lib))) for lib in LIBRARIES]))

    # .keras save and load.
    def save_load(library):
        distiller, _ = distil(library)
        distiller.fit(x, y, batch_size=64, verbose=0)
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "d.keras")
            distiller.save(path)
            loaded = keras.saving.load_model(path)
        same = np.allclose(loaded.predict(x[:32], verbose=0), distiller.predict(x[:32], verbose=0))
        return "round-trips" if same else "loads, predictions differ"
    rows.append(("`.keras` save / load of the distiller",
                 *[describe(*attempt(lambda lib=lib: save_load(lib))) for lib in LIBRARIES]))

    # A temperature schedule during training.
    def schedule(library):
        distiller, _ = distil(library)
        if library == "keras_kd":
            callback = keras_kd.callbacks.TemperatureScheduler(
                keras_kd.schedules.Linear(start=4.0, end=2.0, epochs=2))
            distiller.fit(x, y, batch_size=64, epochs=2, callbacks=[callback], verbose=0)
            return f"yes (`TemperatureScheduler`: T 4 -> {distiller.temperature:g} over 2 epochs)"
        raise NotOffered("no callbacks; `temperature` is a Python float read when the step is traced")
    rows.append(("Temperature / loss-weight schedules",
                 *[describe(*attempt(lambda lib=lib: schedule(lib))) for lib in LIBRARIES]))

    # Mixing with a feature term of the other library.
    def mixed(library):
        teacher, student = make_teacher(), models.cnn_student()
        distiller = LIBRARIES[library](
            teacher=teacher, student=student,
            distillation_losses=keras_distillation.LogitsDistillation(3.0), student_loss_weight=0.5)
        images, labels = x[:64], y[:64]
        if library != "keras_kd":
            raise NotOffered("FeatureDistillation compares equal shapes; no adapter")
        distiller.compile(optimizer="adam", loss=ce(), distillation_terms=[
            keras_kd.HintLoss(student_layer="block2", teacher_layer="block2")])
        distiller.fit(images, labels, batch_size=32, verbose=0)
        return "trains: LogitsDistillation + keras_kd.HintLoss (16 -> 64 channels, learned 1x1 adapter)"
    rows.append(("Feature hints between layers of different widths",
                 *[describe(*attempt(lambda lib=lib: mixed(lib))) for lib in LIBRARIES]))

    # Export of the student.
    def export(library):
        if library != "keras_kd":
            _, student = small_pair()
            with tempfile.TemporaryDirectory() as directory:
                student.export(os.path.join(directory, "saved"), verbose=False)
            return "student.export() (SavedModel; no TFLite parity check)"
        return "keras_kd.export: TFLite float/int8 with a parity report (tests/test_export.py)"
    rows.append(("Export", *[describe(*attempt(lambda lib=lib: export(lib))) for lib in LIBRARIES]))

    # A sequence model with padding.
    def sequence(library):
        rng = np.random.default_rng(0)
        tokens = rng.integers(1, 50, size=(64, 12))
        tokens[:, 8:] = 0  # padding
        targets = np.roll(tokens, -1, axis=1)

        def lm(units, name):
            inputs = keras.Input((12,), dtype="int32")
            h = keras.layers.Embedding(50, units, mask_zero=True)(inputs)
            h = keras.layers.GRU(units, return_sequences=True)(h)
            return keras.Model(inputs, keras.layers.Dense(50)(h), name=name)

        keras.utils.set_random_seed(0)
        distiller = LIBRARIES[library](
            teacher=lm(32, "teacher"), student=lm(8, "student"),
            distillation_losses=keras_distillation.LogitsDistillation(2.0), student_loss_weight=0.5)
        distiller.compile(optimizer="adam", loss=ce())
        history = distiller.fit(tokens, targets, batch_size=32, verbose=0)
        return f"trains (loss {history.history['loss'][-1]:.3g})"
    ok_rows = [attempt(lambda lib=lib: sequence(lib)) for lib in LIBRARIES]
    cells = [describe(*r) for r in ok_rows]
    if not ok_rows[1][0]:
        cells[1] = f"not yet (language-model issue): {ok_rows[1][1]}"
    rows.append(("Sequence model with padding (token-level logits)", *cells))
    return rows


def describe(ok, detail):
    if ok or str(detail).startswith("not offered"):
        return str(detail)
    return f"fails: {detail}"


# ---------------------------------------------------------------- report


def mean_std(values):
    values = [100 * v for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def epoch_time(runs, cpu: bool = False):
    """Median epoch time, leaving out the first epoch (tracing)."""
    index = 2 if cpu else 1
    times = [t for run in runs for t in (run[index][1:] or run[index])]
    return statistics.median(times)


def report(args, teacher_accuracy, runs, mirrored, mixed, rows, load_before, load_after, wall) -> str:
    lines = [
        "# keras_kd against keras.distillation",
        "",
        f"Generated by `benchmarks/vs_keras_distillation.py` (Keras {keras.__version__}, "
        f"TensorFlow {tf.__version__}, Python {platform.python_version()}, CPU only). "
        f"Fashion-MNIST: the first {args.train:,} training images, the full 10,000 test "
        f"images; teacher `cnn_student(width=32)` (a 4x wider CNN, no BatchNormalization) trained {args.teacher_epochs} epochs "
        f"(test accuracy {100 * teacher_accuracy:.2f}%); students `cnn_student()` and "
        f"`mlp((128,))`; {args.epochs} epochs, batch {args.batch_size}, Adam 1e-3, "
        f"T = {args.temperature:g}, student_loss_weight = 0.5, seeds 0..{args.seeds - 1}. "
        "Both libraries run the *same* keras.distillation code "
        "(`Distiller(teacher=, student=, distillation_losses=LogitsDistillation(T), "
        "student_loss_weight=0.5)`, `compile(optimizer, loss=CE(from_logits=True), "
        "metrics=[...])`); same teacher, same student initialization and data order per seed.",
        "",
        f"The machine was shared with other jobs (2 CPU cores): `uptime` before the run: "
        f"`{load_before}`; after: `{load_after}`. Total wall time {wall / 60:.1f} min. Times are "
        "wall-clock and noisy; the ratio compares runs interleaved seed by seed.",
        "",
        SETTINGS_NOTE,
        "",
        "## Test accuracy (%, mean ± std over seeds) and epoch time",
        "",
        "| student | alone | keras.distillation | keras_kd | epoch time keras.distillation | "
        "epoch time keras_kd | ratio keras_kd / keras.distillation (wall; CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, methods in runs.items():
        acc = {m: mean_std([run[0] for run in r]) for m, r in methods.items()}
        tk, tkd = epoch_time(methods["keras.distillation"]), epoch_time(methods["keras_kd"])
        ck = epoch_time(methods["keras.distillation"], cpu=True)
        ckd = epoch_time(methods["keras_kd"], cpu=True)
        lines.append(
            f"| `{kind}` | {acc['alone']} | {acc['keras.distillation']} | {acc['keras_kd']} | "
            f"{tk:.2f} s wall, {ck:.2f} s CPU | {tkd:.2f} s wall, {ckd:.2f} s CPU | "
            f"{tkd / tk:.2f}; {ckd / ck:.2f} |"
        )
    lines += [
        "",
        "Per seed (accuracy %):",
        "",
    ]
    for kind, methods in runs.items():
        for method, r in methods.items():
            lines.append(f"- `{kind}`, {method}: " + ", ".join(f"{100 * run[0]:.2f}" for run in r))
    lines += [
        "",
        "keras.distillation's default `LogitsDistillation()` (its `loss=\"kl_divergence\"` "
        "string) applies `keras.losses.kl_divergence` to the tempered *logits*, clipped to "
        "[1e-7, 1], with no softmax and no T²; keras_kd maps the same object to "
        "`T² · KL(softmax(t/T) ‖ softmax(s/T))` from `log_softmax` in float32.",
        "",
        "## One device against MirroredStrategy (2 logical CPUs)",
        "",
        "MLP teacher (64 units, untrained) and student (16 units), 512 images, global batch 64, "
        "2 epochs; the student created with the same seed on one device and under the strategy. "
        "keras_kd averages each term over the global batch; keras.distillation's `compute_loss` "
        "takes means over each replica's share.",
        "",
    ]
    if "error" in mirrored:
        lines.append(f"The worker failed: {mirrored['error']}")
    else:
        lines += ["| library | max abs weight difference | last loss, one device | last loss, mirrored |",
                  "|---|---|---|---|"]
        for library, r in mirrored.items():
            lines.append(f"| {library} | {r['max_weight_difference']:.2e} | "
                         f"{r['loss_one_device']:.5f} | {r['loss_mirrored']:.5f} |")
    lines += [
        "",
        "## Mixed precision (`mixed_float16`), T = 20, confident teacher",
        "",
        "The trained teacher's logits scaled so that the largest |logit| on 1,024 images is about 500; "
        "MLP student; those 1,024 images, one epoch, batch 128.",
        "",
        "| run | last loss | loss and weights finite | max abs teacher logit |",
        "|---|---|---|---|",
    ]
    for name, r in mixed.items():
        lines.append(f"| {name} | {r['loss']:.4g} | {'yes' if r['finite'] else '**no (NaN/inf)**'} | "
                     f"{r['max_teacher_logit']:.0f} |")
    lines += [
        "",
        "## Features (each cell measured by this script, or names the test that does)",
        "",
        "| feature | keras.distillation | keras_kd |",
        "|---|---|---|",
    ]
    for feature, left, right in rows:
        lines.append(f"| {feature} | {left.replace('|', '/')} | {right.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=3.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--mirrored-worker", metavar="OUTPUT.json")
    args = parser.parse_args(argv)
    if args.mirrored_worker:
        mirrored_worker(args.mirrored_worker)
        return
    if args.train < 1 or args.epochs < 1 or args.seeds < 1:
        parser.error("--train, --epochs and --seeds must be at least 1")
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    start = time.perf_counter()
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist()
    x, y = x[: args.train], y[: args.train].astype("int32")
    teacher = train_teacher(x, y, args.teacher_epochs, seed=0)
    teacher_accuracy = accuracy(teacher, x_test, y_test)
    print(f"teacher test accuracy {teacher_accuracy:.4f}", flush=True)
    runs = accuracy_runs(args, x, y, x_test, y_test, teacher)
    mirrored = run_mirrored()
    print("mirrored", mirrored, flush=True)
    mixed = mixed_precision_check(x, y, teacher.get_weights())
    print("mixed precision", mixed, flush=True)
    rows = feature_rows(x, y)
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    text = report(args, teacher_accuracy, runs, mirrored, mixed, rows, load_before, load_after,
                  time.perf_counter() - start)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
