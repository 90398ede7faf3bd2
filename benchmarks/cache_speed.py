"""Epoch time of distillation from cached teacher outputs vs a live teacher.

One run, side by side, on Fashion-MNIST (60,000 training images) with
`keras_kd.models.cnn_teacher()` and `cnn_student()`, batch 128, Adam:

1. the student trained alone (no teacher, no distiller),
2. live distillation (the teacher runs on every batch),
3. distillation from a float32 cache of the teacher's logits,
4. distillation from a top-5 cache.

Rows 1 and 2 train on the numpy arrays with `fit(x, y, batch_size=128)`
(Keras's own pipeline: shuffled indices, one gather per batch); rows 3 and 4
on `keras_kd.load_teacher_cache(path, x, y, batch_size=128)`, which works the
same way and gathers the cached logits alongside. The configurations take turns, one epoch each, for
`--rounds` rounds; the first round is a warm-up (tracing) and is not counted;
the table gives the median of the others, as wall-clock and as process CPU
time. First, a subprocess started before this script loads TensorFlow caches
1,000,000 synthetic teacher outputs of 1,000 classes with `top_k=5` and
reports its peak RSS (`resource.getrusage`, cross-checked with `VmHWM`; on
Linux a child inherits the parent's peak at `fork`, hence the order).

The teacher is not trained: the cost of a forward pass does not depend on its
weights. Target: cached distillation at most 1.15x the student-alone epoch;
the 1M x 1000 top-5 cache under 1 GB peak RSS.

    python benchmarks/cache_speed.py            # writes benchmarks/results/cache_speed.md
    python benchmarks/cache_speed.py --quick    # a smoke run, prints only
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cache_speed.md")
BATCH = 128

MEMORY_CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, tensorflow as tf
import keras_kd
count, classes, top_k, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
# A synthetic "teacher": random features -> 1,000 logits.
keras.utils.set_random_seed(0)
teacher = keras.Sequential([keras.Input((16,)), keras.layers.Dense(classes)], name="synthetic")
inputs = tf.data.Dataset.range(count).map(
    lambda i: tf.random.stateless_normal([16], seed=tf.stack([i, tf.constant(0, tf.int64)])))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
header = keras_kd.cache_teacher_outputs(teacher, inputs, path, top_k=top_k, batch_size=2048)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open("/proc/self/status") as status:
    hwm = [int(l.split()[1]) for l in status if l.startswith("VmHWM:")][0]
print(json.dumps({"rss_before_kb": before, "peak_rss_kb": peak, "vm_hwm_kb": hwm, "seconds": seconds,
                  "file_bytes": os.path.getsize(path), "examples": header["example_count"]}))
"""


def measure_memory(count, classes, top_k):
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "synthetic.kdcache")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
             os.environ.get("PYTHONPATH", "")]))
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(count), str(classes), str(top_k), path],
            capture_output=True, text=True, env=env, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"memory child failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run; writes nothing")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--memory-examples", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.memory_examples = 2, 20_000
    memory = measure_memory(args.memory_examples, 1000, 5)
    print("memory:", memory, flush=True)

    import keras
    import numpy as np
    import tensorflow as tf

    import keras_kd
    from keras_kd import datasets, models

    (x, y), _ = datasets.load_fashion_mnist()
    y = y.astype("int32")
    if args.quick:
        x, y = x[:2048], y[:2048]
    load_start = os.getloadavg()[0]

    keras.utils.set_random_seed(0)
    teacher = models.cnn_teacher()
    directory = tempfile.mkdtemp(prefix="kd_cache_speed_")
    cache_seconds, cache_bytes, paths = {}, {}, {}
    for label, top_k in [("full", None), ("top-5", 5)]:
        paths[label] = os.path.join(directory, f"{label}.kdcache")
        start = time.perf_counter()
        header = keras_kd.cache_teacher_outputs(teacher, (x, y), paths[label], top_k=top_k)
        cache_seconds[label] = time.perf_counter() - start
        cache_bytes[label] = os.path.getsize(paths[label])

    class Fit:
        """One configuration: a model and the arguments of its `fit`."""

        def __init__(self, model, *data):
            self.model, self.data = model, data

        def epoch(self):
            kwargs = {"batch_size": BATCH} if len(self.data) == 2 else {}
            self.model.fit(*self.data, epochs=1, verbose=0, **kwargs)

    def student_alone():
        student = models.cnn_student()
        student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return Fit(student, x, y)

    def distiller(teacher_arg, *data):
        def build():
            model = keras_kd.Distiller(models.cnn_student(), teacher=teacher_arg)
            model.compile(optimizer="adam", alpha=0.5, temperature=2.0)
            return Fit(model, *(d() if callable(d) else d for d in data))
        return build

    configs = {
        "student alone": student_alone,
        "live teacher": distiller(teacher, x, y),
        "cache, float32": distiller(None, lambda: keras_kd.load_teacher_cache(
            paths["full"], x, y, batch_size=BATCH)),
        "cache, top-5": distiller(None, lambda: keras_kd.load_teacher_cache(
            paths["top-5"], x, y, batch_size=BATCH)),
    }
    built = {}
    for name, build in configs.items():
        keras.utils.set_random_seed(0)
        built[name] = build()
    wall = {name: [] for name in configs}
    cpu = {name: [] for name in configs}
    for round_index in range(args.rounds):
        for name, run in built.items():
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            run.epoch()
            if round_index > 0:  # round 0 traces the step functions
                wall[name].append(time.perf_counter() - wall_start)
                cpu[name].append(time.process_time() - cpu_start)
            print(f"round {round_index} {name}: {time.perf_counter() - wall_start:.2f} s", flush=True)
    load_end = os.getloadavg()[0]

    base_wall = statistics.median(wall["student alone"])
    base_cpu = statistics.median(cpu["student alone"])
    rows = []
    for name in configs:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        each = ", ".join(f"{v:.1f}" for v in wall[name])
        rows.append(
            f"| {name} | {w:.2f} | {w / base_wall:.2f}x | {c:.2f} | {c / base_cpu:.2f}x | {each} |"
        )
    full_imagenet = keras_kd.cache_storage_bytes(1_281_167, 1000)
    top5_imagenet = keras_kd.cache_storage_bytes(1_281_167, 1000, top_k=5)
    cached = ("cache, float32", "cache, top-5")
    cached_ratio = max(statistics.median(wall[n]) for n in cached) / base_wall
    cached_cpu_ratio = max(statistics.median(cpu[n]) for n in cached) / base_cpu
    lines = [
        "# Cached teacher outputs: epoch time and memory",
        "",
        "Written by `python benchmarks/cache_speed.py`"
        + (" (--quick)" if args.quick else "") + ". "
        f"Fashion-MNIST, {len(x):,d} training images, batch {BATCH}, Adam; teacher "
        f"`cnn_teacher()` ({teacher.count_params():,d} parameters), student `cnn_student()` "
        f"({models.cnn_student().count_params():,d} parameters). The first two rows train with "
        "`fit(x, y)` on numpy arrays (Keras's pipeline), the cached rows on "
        "`load_teacher_cache(path, x, y)` (the same kind of pipeline: shuffled indices, one "
        "gather per batch); all shuffle every epoch. The configurations take turns one epoch at a "
        f"time; median of {args.rounds - 1} epochs after a warm-up round.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU; "
        f"load average {load_start:.1f} at the start and {load_end:.1f} at the end "
        "(a shared machine: wall-clock times are noisy, CPU times less so). "
        "No GPU numbers: no GPU was available for this run.",
        "",
        "| configuration | epoch, wall s | vs student alone | epoch, CPU s | vs student alone "
        "| wall s of each measured epoch |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
        "",
        "Target: cached distillation <= 1.15x the student-alone epoch. Measured on the "
        f"slower cache: CPU time {cached_cpu_ratio:.2f}x, "
        + ("met" if cached_cpu_ratio <= 1.15 else "NOT met")
        + f"; wall-clock {cached_ratio:.2f}x, "
        + ("met" if cached_ratio <= 1.15 else "NOT met")
        + ". On a loaded machine the wall-clock epochs vary a lot (last column); the CPU "
        "times are the better guide there.",
        "",
        "## Writing the caches (teacher forward pass once over the training set)",
        "",
        "| cache | write time, s | file size |",
        "|---|---:|---:|",
        f"| float32, all 10 logits | {cache_seconds['full']:.1f} | {cache_bytes['full'] / 1e6:.2f} MB |",
        f"| top-5 (5 logits, 5 uint16 indices, 1 tail logit) | {cache_seconds['top-5']:.1f} | "
        f"{cache_bytes['top-5'] / 1e6:.2f} MB |",
        "",
        "Storage for ImageNet-1k scale (1,281,167 images x 1,000 classes, one view), from "
        "`keras_kd.cache_storage_bytes`: float32 "
        f"{full_imagenet / 1e9:.2f} GB, top-5 {top5_imagenet / 1e6:.1f} MB "
        f"({full_imagenet / top5_imagenet:.0f}x smaller).",
        "",
        "## Memory: caching 1M examples x 1,000 classes with top_k=5",
        "",
        f"A subprocess caches {memory['examples']:,d} synthetic teacher outputs (a Dense "
        "layer on random inputs, 1,000 logits each) with `top_k=5`, batch 2,048, streaming "
        "to disk.",
        "",
        "| peak RSS (getrusage) | VmHWM | RSS before caching (TensorFlow loaded) | write time | file size |",
        "|---:|---:|---:|---:|---:|",
        f"| {memory['peak_rss_kb'] / 1024:.0f} MB | {memory['vm_hwm_kb'] / 1024:.0f} MB | "
        f"{memory['rss_before_kb'] / 1024:.0f} MB | "
        f"{memory['seconds']:.1f} s | {memory['file_bytes'] / 1e6:.1f} MB |",
        "",
        "Target: peak RSS under 1 GB: "
        + ("met." if memory["peak_rss_kb"] < 1024 * 1024 else "NOT met.")
        + " Holding the same outputs in memory as float32 would take "
        f"{keras_kd.cache_storage_bytes(memory['examples'], 1000) / 1e9:.1f} GB.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        with open(RESULTS, "w") as file:
            file.write(text)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
