"""Peak memory and step time of the token-level loss, chunked and not.

A language model's soft-target loss over `tokens x vocabulary` logits is
where large vocabularies run out of memory. This script trains one
`Distiller` step after another on cached teacher logits `(1, 512,
vocabulary)` with a student whose last layer is the LM head (a `Dense` from
64 features to the vocabulary), at vocabulary 32k and 256k, with
`chunk_size=None` (everything at once) and with chunks of tokens. Each
setting runs in a fresh process, so that its peak resident memory is its
own; the table reports the peak *above* the process's memory after its data
and models were built (what the steps themselves added), the median step
time, and the first step's loss, which must agree between chunked and
unchunked to 1e-6 (relative).

    PYTHONPATH=. python benchmarks/lm_loss_memory.py          # writes the results file
    PYTHONPATH=. python benchmarks/lm_loss_memory.py --quick  # small vocabularies
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "lm_loss_memory.md"
COMMAND = "PYTHONPATH=. python benchmarks/lm_loss_memory.py"
SEQUENCE, HIDDEN = 512, 64


def _rss_mib() -> float:
    """The process's resident memory now (Linux)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


class _PeakSampler:
    """Samples resident memory every millisecond in a thread; keeps the max.

    (`ru_maxrss` would report the high-water mark of TensorFlow's import.)
    """

    def __init__(self):
        self.peak = _rss_mib()
        self._running = True
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while self._running:
            self.peak = max(self.peak, _rss_mib())
            time.sleep(0.001)

    def stop(self) -> float:
        self._running = False
        self._thread.join()
        return self.peak


def run_one(vocabulary: int, chunk_size, steps: int, divergence: str) -> dict:
    """One setting, in this process: the child side of `main`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_kd

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1, SEQUENCE, HIDDEN)).astype("float32")
    teacher_logits = (rng.normal(size=(1, SEQUENCE, vocabulary)) * 2).astype("float32")
    labels = rng.integers(0, vocabulary, size=(1, SEQUENCE)).astype("int32")
    student = keras.Sequential([keras.Input((SEQUENCE, HIDDEN)), keras.layers.Dense(vocabulary)])
    distiller = keras_kd.Distiller(student, teacher=None)
    distiller.compile(optimizer=keras.optimizers.SGD(1e-3), alpha=0.5, divergence=divergence,
                      chunk_size=chunk_size, jit_compile=False)
    batch = ({keras_kd.INPUTS_KEY: tf.constant(features),
              keras_kd.TEACHER_LOGITS_KEY: tf.constant(teacher_logits)}, tf.constant(labels))
    base = _rss_mib()
    sampler = _PeakSampler()
    times, first_loss = [], None
    for _ in range(steps + 1):  # the first step traces the function
        start = time.perf_counter()
        logs = distiller.train_on_batch(*batch, return_dict=True)
        times.append(time.perf_counter() - start)
        if first_loss is None:
            # Logged before that step's update: the same weights everywhere.
            first_loss = float(logs["distillation_loss"])
    peak = sampler.stop()
    return {
        "vocabulary": vocabulary,
        "chunk_size": chunk_size,
        "first_loss": first_loss,
        "peak_above_base_mib": peak - base,
        "base_mib": base,
        "step_s": statistics.median(times[1:]),
        "logits_mib": SEQUENCE * vocabulary * 4 / 2**20,
    }


def _child(vocabulary: int, chunk_size, steps: int, divergence: str) -> dict:
    argument = "none" if chunk_size is None else str(chunk_size)
    completed = subprocess.run(
        [sys.executable, __file__, "--child", str(vocabulary), argument, str(steps), divergence],
        capture_output=True, text=True, env=dict(
            os.environ, TF_CPP_MIN_LOG_LEVEL="3",
            # Blocks of 1 MiB and more are mmap-ed and unmapped when freed
            # (glibc would otherwise raise this threshold and keep them), so
            # that resident memory follows what is alive.
            MALLOC_MMAP_THRESHOLD_="1048576", MALLOC_TRIM_THRESHOLD_="0",
        ),
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-3000:])
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--divergence", default="forward_kl")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        vocabulary, chunk, steps, divergence = args.child
        chunk_size = None if chunk == "none" else int(chunk)
        print(json.dumps(run_one(int(vocabulary), chunk_size, int(steps), divergence)))
        return RESULTS
    vocabularies = (4096, 16384) if args.quick else (32768, 262144)
    load_start = os.getloadavg()[0]
    started = time.time()
    rows = []
    for vocabulary in vocabularies:
        chunk = max(1, (1 << 22) // vocabulary)  # what chunk_size="auto" picks
        for chunk_size in (None, chunk):
            row = _child(vocabulary, chunk_size, args.steps, args.divergence)
            rows.append(row)
            print(row, flush=True)
    lines = [
        "# Token-level loss: peak memory and step time, chunked and not",
        "",
        f"Produced by `{COMMAND}{' --quick' if args.quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({platform.machine()}, "
        f"{os.cpu_count()} CPU cores, no GPU; {time.time() - started:.0f} s; load average "
        f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end).",
        "",
        f"One `Distiller` step on cached teacher logits `(1, {SEQUENCE}, vocabulary)`; the "
        f"student is the LM head alone (`Dense` from {HIDDEN} features to the vocabulary), "
        f"so the loss dominates the step. `{args.divergence}`, alpha 0.5, SGD, no XLA. Each "
        "row is a fresh process; *peak above base* is the growth of its peak resident "
        "memory during the steps (the data, the teacher logits and the weights are already "
        f"counted in the base). One float32 copy of the logits is the *logits* column. "
        f"Step time: median of {args.steps} steps after a first, traced one. The chunk size "
        "is what `chunk_size=\"auto\"` picks (about 4M logits per chunk).",
        "",
        "How the settings were chosen: this is a memory and speed measurement, not an "
        "accuracy comparison; nothing is tuned and no test set is read. The baseline is the "
        "unchunked loss (`chunk_size=None`) of the same step.",
        "",
        "| vocabulary | chunk_size | logits (MiB) | peak above base (MiB) | in logits copies "
        "| step (s) | first loss | vs unchunked |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        reference = next(r for r in rows if r["vocabulary"] == row["vocabulary"]
                         and r["chunk_size"] is None)
        difference = abs(row["first_loss"] - reference["first_loss"]) / abs(reference["first_loss"])
        lines.append(
            f"| {row['vocabulary']:,} | {row['chunk_size'] or 'None'} | {row['logits_mib']:.0f} "
            f"| {row['peak_above_base_mib']:.0f} | {row['peak_above_base_mib'] / row['logits_mib']:.1f} "
            f"| {row['step_s']:.2f} | {row['first_loss']:.6f} | {difference:.1e} |"
        )
    lines += [
        "",
        "*vs unchunked*: relative difference of the first step's distillation loss. "
        "Resident memory is sampled every millisecond during the steps: a coarse "
        "measure (the allocator keeps some freed pages), so read the ratio between the "
        "rows of one vocabulary.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return RESULTS


if __name__ == "__main__":
    main()
