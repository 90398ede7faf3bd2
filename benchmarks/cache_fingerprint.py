"""Cost of the teacher cache's dataset fingerprint next to the teacher pass.

Since cache format version 2 the fingerprint that `cache_teacher_outputs`
stores and `load_teacher_cache` checks hashes every example in order (version
1 hashed the first 256 only, so reordered or replaced later examples went
unnoticed). This script measures, on Fashion-MNIST's 60,000 training images
(28x28x1 float32, 188 MB):

1. the fingerprint of the numpy arrays (what `load_teacher_cache(path, x, y)`
   computes),
2. the fingerprint of the same images as a `tf.data.Dataset` stream of
   unknown size (what it computes for a dataset `x`; also counts it),
3. the old fingerprint of the first 256 examples, for reference,
4. the teacher forward pass it guards: `model.predict(x, batch_size=256)` of
   `cnn_teacher()` (the cache benchmark's teacher) and of the small MLP
   teacher `models.mlp((256, 128))`. The CNN's pass is timed on
   `--teacher-examples` images and scaled linearly to 60,000 (a forward pass
   is linear in the example count at a fixed batch size), so the benchmark
   stays short on a shared machine.

Wall-clock and process CPU time, median of `--repeats` runs (after a warm-up
for the teachers). The load average (`os.getloadavg`, as `uptime`) is
recorded at the start and the end.

    PYTHONPATH=. python benchmarks/cache_fingerprint.py   # writes benchmarks/results/cache_fingerprint.md
    PYTHONPATH=. python benchmarks/cache_fingerprint.py --quick   # prints only
"""

import argparse
import hashlib
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cache_fingerprint.md")


def timed(function, repeats: int):
    """Median wall and CPU seconds of `function()` over `repeats` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        function()
        wall.append(time.perf_counter() - wall_start)
        cpu.append(time.process_time() - cpu_start)
    return statistics.median(wall), statistics.median(cpu)


def old_fingerprint(dataset) -> str:
    """Format version 1: the first 256 examples, one at a time."""
    import numpy as np
    import tensorflow as tf

    digest = hashlib.blake2b(digest_size=16)
    for x, _ in dataset.take(256).as_numpy_iterator():
        for array in tf.nest.flatten(x):
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="6,000 images, prints only.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--teacher-examples", type=int, default=6000,
                        help="Images the CNN teacher's pass is timed on (scaled to all).")
    args = parser.parse_args()

    load_start = os.getloadavg()
    import keras
    import tensorflow as tf

    from keras_kd import models
    from keras_kd.src.data.cache import _example_dataset, _input_fingerprint
    from keras_kd.datasets import load_fashion_mnist

    (x, y), _ = load_fashion_mnist()
    if args.quick:
        x, y = x[:6000], y[:6000]
    count = len(x)
    examples, _, _, arrays = _example_dataset(x, "x", y)
    stream = tf.data.Dataset.from_tensor_slices(x).filter(lambda e: True)  # unknown size
    stream_examples = _example_dataset(stream, "x")[0]

    rows = []
    wall, cpu = timed(lambda: _input_fingerprint(examples, arrays), args.repeats)
    rows.append(("fingerprint, every example (numpy arrays)", wall, cpu, count))
    wall, cpu = timed(lambda: _input_fingerprint(stream_examples), args.repeats)
    rows.append(("fingerprint, every example (tf.data stream, batches of 1,024)", wall, cpu, count))
    wall, cpu = timed(lambda: old_fingerprint(examples), args.repeats)
    rows.append(("old fingerprint, first 256 examples (format 1)", wall, cpu, count))

    keras.utils.set_random_seed(0)
    teachers = {
        "cnn_teacher()": (models.cnn_teacher(), min(args.teacher_examples, count)),
        "mlp((256, 128))": (models.mlp((256, 128)), count),
    }
    forward = {}
    for name, (teacher, measured) in teachers.items():
        subset = x[:measured]
        teacher.predict(subset[:512], batch_size=256, verbose=0)  # warm-up: tracing
        wall, cpu = timed(lambda: teacher.predict(subset, batch_size=256, verbose=0), args.repeats)
        scale = count / measured
        forward[name] = (wall * scale, cpu * scale)
        label = f"teacher forward pass, {name}, {teacher.count_params():,d} parameters"
        if scale != 1:
            label += f" (timed on {measured:,d}, scaled x{scale:g})"
        rows.append((label, wall * scale, cpu * scale, count))
    load_end = os.getloadavg()

    new_wall, new_cpu = rows[0][1], rows[0][2]
    table = [
        f"| what (all {count:,d} images unless noted) | wall s | CPU s "
        "| fingerprint (arrays) / this, CPU |",
        "|---|---:|---:|---:|",
    ]
    for label, wall, cpu, _ in rows:
        ratio = "" if label.startswith(("fingerprint", "old")) else f"{100 * new_cpu / cpu:.1f}%"
        table.append(f"| {label} | {wall:.3f} | {cpu:.3f} | {ratio} |")
    cnn_wall, cnn_cpu = forward["cnn_teacher()"]
    mlp_wall, mlp_cpu = forward["mlp((256, 128))"]
    lines = [
        "# Teacher cache: cost of the whole-dataset fingerprint",
        "",
        "Written by `PYTHONPATH=. python benchmarks/cache_fingerprint.py`"
        + (" (--quick)" if args.quick else "") + ". "
        f"Fashion-MNIST, {count:,d} training images of 28x28x1 float32 "
        f"({x.nbytes / 1e6:.0f} MB); median of {args.repeats} runs. The fingerprint "
        "(cache format 2) is a `hashlib.blake2b` of every example's bytes in order, "
        "plus dtypes and shapes; `load_teacher_cache` computes it once per call, "
        "`cache_teacher_outputs` during its teacher pass.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"no GPU, shared with other jobs; load average (1, 5, 15 min) "
        f"{load_start[0]:.2f}, {load_start[1]:.2f}, {load_start[2]:.2f} at the start and "
        f"{load_end[0]:.2f}, {load_end[1]:.2f}, {load_end[2]:.2f} at the end.",
        "",
        *table,
        "",
        f"The whole-dataset fingerprint of the arrays costs {new_wall:.2f} s wall "
        f"({new_cpu:.2f} s CPU), {100 * new_cpu / cnn_cpu:.1f}% of the CPU time of one "
        f"`cnn_teacher()` pass over the same images ({cnn_cpu:.1f} s) and "
        f"{100 * new_cpu / mlp_cpu:.0f}% of that of the small MLP teacher ({mlp_cpu:.2f} s). "
        "Streamed from a `tf.data.Dataset`, the fingerprint costs what one pass of the "
        f"input pipeline costs ({rows[1][1]:.2f} s wall, {rows[1][2]:.2f} s CPU here); "
        "`cache_teacher_outputs` hashes the batches its teacher pass reads anyway, so "
        "there it adds only the hashing. CPU times are the better guide on this loaded "
        "machine: the wall-clock times include waiting for the cores.",
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
