"""Side-by-side throughput of LM distillation vs its two models' own work.

Issue 16, item 7: tokens per second of distillation against the student
alone and against "student step + teacher forward" (target <= 1.15x the
latter). `benchmarks/lm_distillation.py` reports that ratio from rates taken
in different training runs at different times; this script measures every
rate in one process, in interleaved rounds, on the same token batches:

- (a) the student alone: `student.fit` (cross-entropy, Adam);
- (b) the teacher's forward pass: `teacher(x, training=False)` in a
  `tf.function` with the same `jit_compile`, over the same batches;
- (c) `keras_kd.Distiller.fit` with the live teacher (`divergence=
  "forward_kl"`, every other setting its default: alpha 0.5, T 1);
- (d) `Distiller.fit` without a teacher, on the teacher's logits cached
  (dense, in memory) for the same batches;
- (e) a minimal hand-written distillation step (`keras.Model.train_step`:
  teacher forward, student forward and backward, 0.5 * CE + 0.5 * forward
  KL, masked by `sample_weight`, Adam) and (f) the same step without the
  KL (the student step and the teacher forward in one graph).

The models and sizes are those of `lm_distillation.py` (the builders of
`examples/distil_causal_lm.py`, imported): GPT-2 4 x 128 teacher, 2 x 64
student, bytes (vocabulary 256), batch 8 x 128. The weights are random: the
cost of a step does not depend on them. Nothing is tuned.

Each round runs every variant for `--steps` timed steps (after one untimed
step that starts the iterator), after one untimed warm-up call per variant
that traces the step; rounds alternate the order. Reported: the median (and
min/max) time per token over the rounds, and the ratio (c) / ((a) + (b))
computed within each round.

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 PYTHONPATH=. \\
        python benchmarks/lm_throughput.py                 # ~5 min, writes the results
    PYTHONPATH=. python benchmarks/lm_throughput.py --quick  # smoke run, not written
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import distil_causal_lm as lm  # noqa: E402

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd import text_datasets  # noqa: E402

OUTPUT = ROOT / "benchmarks" / "results" / "lm_throughput.md"
LEARNING_RATE = 1e-3
TARGET = 1.15
BATCH_SEED = 2000  # lm_distillation.py's batches for seed 0

VARIANTS = {
    "student": "(a) student alone: `student.fit` (CE, Adam)",
    "teacher": "(b) teacher forward: `teacher(x, training=False)` in a `tf.function`",
    "distiller": "(c) `Distiller.fit`, live teacher (forward KL, defaults)",
    "cached": "(d) `Distiller.fit`, cached teacher logits (dense, in memory)",
    "minimal": "(e) minimal hand-written step: teacher + student, 0.5 CE + 0.5 KL",
    "minimal_no_kl": "(f) minimal step without the KL: student step + teacher forward in one graph",
}


class Timer(lm.StepTimer):
    """`lm.StepTimer` (wall time of the steps after the first `skip`) plus the
    process's CPU time over the same steps (all its threads; steadier than
    wall time when other jobs share the machine)."""

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if batch == self.skip - 1:
            self.cpu_start = time.process_time()
        elif batch >= self.skip:
            self.cpu_end = time.process_time()

    def seconds(self):
        return self.end - self.start, self.cpu_end - self.cpu_start


class MinimalDistillation(keras.Model):
    """The least a distillation step does (variants e and f): the teacher's
    forward pass, the student's forward and backward pass, `alpha * CE +
    (1 - alpha) * KL(teacher || student)` at T = 1 in float32, each the mean
    over the tokens weighted by `sample_weight`, and Adam. No label checks,
    health counts, global-batch reduction, terms or per-term logs. With
    `soft=False` the loss is the CE alone (the teacher still runs: its mean
    logit is returned, one pass over its logits, so that it is not pruned)."""

    def __init__(self, student, teacher, soft=True, alpha=0.5, **kwargs):
        super().__init__(**kwargs)
        self.student, self.teacher = student, teacher
        self.soft, self.alpha = soft, alpha
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def train_step(self, data):
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        teacher_logits = tf.stop_gradient(self.teacher(x, training=False))
        weight = tf.cast(weight, "float32")
        count = tf.reduce_sum(weight)
        with tf.GradientTape() as tape:
            logits = self.student(x, training=True)
            hard = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            loss = tf.reduce_sum(hard * weight) / count
            if self.soft:
                log_t = tf.nn.log_softmax(tf.cast(teacher_logits, "float32"))
                log_s = tf.nn.log_softmax(tf.cast(logits, "float32"))
                kl = tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1)
                loss = self.alpha * loss + (1 - self.alpha) * tf.reduce_sum(kl * weight) / count
        variables = self.student.trainable_weights
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        self.loss_tracker.update_state(loss)
        # Returned so that the teacher's forward pass is a fetched result:
        # with `soft=False` nothing else reads it, and TensorFlow would prune it.
        return {"loss": self.loss_tracker.result(),
                "teacher_mean": tf.reduce_mean(teacher_logits)}


def optimizer(total_steps):
    # lm_distillation.py's optimizer: Adam, warm-up then cosine decay.
    return keras.optimizers.Adam(lm.schedule(LEARNING_RATE, total_steps))


def build(args, total_steps):
    """The models, compiled, and a runner per variant: `run(data) -> (wall s,
    CPU s)` over the timed steps of one pass over `data`."""
    teacher = lm.causal_lm(lm.TEACHER_CONFIG, seed=0, name="teacher")
    teacher.trainable = False
    students = {name: lm.causal_lm(lm.STUDENT_CONFIG, seed=1, name=f"student_{name}")
                for name in VARIANTS if name != "teacher"}
    tokens = args.batch_size * lm.SEQUENCE_LENGTH
    jit = args.jit_compile

    student = students["student"]
    # As lm.train_alone compiles it.
    student.compile(optimizer=optimizer(total_steps),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    weighted_metrics=[], jit_compile=jit)
    distiller = keras_kd.Distiller(student=students["distiller"], teacher=teacher)
    distiller.compile(optimizer=optimizer(total_steps), divergence="forward_kl",
                      jit_compile=jit)
    cached = keras_kd.Distiller(student=students["cached"], teacher=None)
    cached.compile(optimizer=optimizer(total_steps), divergence="forward_kl", jit_compile=jit)
    minimal = MinimalDistillation(students["minimal"], teacher, soft=True)
    minimal.compile(optimizer=optimizer(total_steps), jit_compile=jit)
    no_kl = MinimalDistillation(students["minimal_no_kl"], teacher, soft=False)
    no_kl.compile(optimizer=optimizer(total_steps), jit_compile=jit)
    forward = tf.function(lambda x: teacher(x, training=False), jit_compile=jit)

    def fitter(model):
        def run(data):
            timer = Timer(tokens, skip=1)
            model.fit(data, epochs=1, verbose=0, callbacks=[timer])
            return timer.seconds()
        return run

    def forward_run(data):
        for i, (x, _, _) in enumerate(data):
            forward(x)
            if i == 0:
                start = time.perf_counter(), time.process_time()
        return time.perf_counter() - start[0], time.process_time() - start[1]

    runners = {"student": fitter(student), "teacher": forward_run,
               "distiller": fitter(distiller), "cached": fitter(cached),
               "minimal": fitter(minimal), "minimal_no_kl": fitter(no_kl)}
    models = {"teacher": teacher, "student": student, "distiller": distiller,
              "cached": cached, "minimal": minimal, "minimal_no_kl": no_kl}
    return runners, models, forward


def datasets(args, forward):
    """The same `1 + steps` batches for every variant (`lm_distillation.py`'s
    training windows for seed 0), and the cached variant's copy with the
    teacher's logits for them."""
    corpus = text_datasets.load_python_source(root=lm.STDLIB)
    batches = args.steps + 1
    x, y, w = lm.training_windows(corpus["train"], batches, args.batch_size, seed=BATCH_SEED)
    data = lm.dataset((x, y, w), args.batch_size)
    logits = np.concatenate([np.asarray(forward(bx)) for bx, _, _ in data])
    cached = tf.data.Dataset.from_tensor_slices(
        ({keras_kd.INPUTS_KEY: x, keras_kd.TEACHER_LOGITS_KEY: logits}, y, w)
    ).batch(args.batch_size, drop_remainder=True)
    return {"plain": data, "cached": cached}, corpus


def machine_state():
    """Load average and the other python processes now (the machine is shared)."""
    out = subprocess.run(["ps", "-eo", "pid,pcpu,args"], capture_output=True, text=True).stdout
    others = [line.strip() for line in out.splitlines()[1:]
              if "python" in line and str(os.getpid()) != line.split()[0]]
    return os.getloadavg(), others


def summarize(times, tokens):
    """Per variant: median/min/max seconds per token (wall and CPU) over rounds."""
    result = {}
    for name, rounds in times.items():
        for clock, index in (("wall", 0), ("cpu", 1)):
            per_token = [t[index] / tokens for t in rounds]
            result[name, clock] = (statistics.median(per_token), min(per_token), max(per_token))
    return result


def ratios(times, numerator, denominator, clock):
    """Per-round ratio numerator / sum(denominator), same round's times."""
    index = 0 if clock == "wall" else 1
    return [times[numerator][r][index] / sum(times[d][r][index] for d in denominator)
            for r in range(len(times[numerator]))]


def explain(ms, met):
    """Where the excess of (c) over (a) + (b) goes, in words, from the medians."""
    excess = ms["distiller"] - ms["student"] - ms["teacher"]
    parts = {
        "the forward-KL loss and its gradient, (e) - (f)": ms["minimal"] - ms["minimal_no_kl"],
        "keras_kd's own step beyond the minimal one, (c) - (e)": ms["distiller"] - ms["minimal"],
        "running the two models in one graph instead of two calls, (f) - (a) - (b)":
            ms["minimal_no_kl"] - ms["student"] - ms["teacher"],
    }
    ranked = sorted(parts.items(), key=lambda item: -item[1])
    text = ("Why not: " if not met else "Where the time goes: ") + (
        f"a Distiller step takes {excess:+.1f} ms over (a) + (b) "
        f"({ms['student'] + ms['teacher']:.1f} ms); that difference is "
        + ", ".join(f"{value:+.1f} ms {label}" for label, value in ranked)
        + " (differences of wall medians: parts smaller than the rounds' spread in the "
        "per-round table below are not resolved)."
    )
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Smoke run; writes nothing.")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40, help="Timed steps per variant per round.")
    parser.add_argument("--batch-size", type=int, default=8, help="lm_distillation.py's.")
    parser.add_argument("--jit-compile", action="store_true",
                        help="XLA for every variant (default off for all: what "
                             "jit_compile='auto' resolves to on a CPU).")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 2, 3
    output = args.output or (None if args.quick else OUTPUT)
    load_before, others_before = machine_state()
    began = time.time()

    total_steps = (args.rounds + 1) * (args.steps + 1)
    runners, models, forward = build(args, total_steps)
    data, corpus = datasets(args, forward)
    tokens = args.steps * args.batch_size * lm.SEQUENCE_LENGTH
    names = list(VARIANTS)

    def data_for(name):
        return data["cached"] if name == "cached" else data["plain"]

    # Warm-up: trace (compile) every step once; not timed.
    for name in names:
        runners[name](data_for(name))
    times = {name: [] for name in names}
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(runners[name](data_for(name)))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{n} {1e3 * times[n][-1][0] / args.steps:.1f} ms/step" for n in names), flush=True)
    load_after, others_after = machine_state()
    wall = time.time() - began

    stats = summarize(times, tokens)
    base = ("student", "teacher")
    ratio = {clock: ratios(times, "distiller", base, clock) for clock in ("wall", "cpu")}
    median_ratio = statistics.median(ratio["wall"])
    met = median_ratio <= TARGET
    jit_resolved = {name: getattr(m, "jit_compile", None) for name, m in models.items()}

    def rate(name, clock="wall"):
        return 1.0 / stats[name, clock][0]

    baseline = {clock: stats["student", clock][0] + stats["teacher", clock][0]
                for clock in ("wall", "cpu")}
    rows = [
        "| variant | tokens/s (median) | ms per step: median [min, max] | "
        "time per token vs (a)+(b), wall | same, CPU time |",
        "|---|---:|---:|---:|---:|",
    ]
    step_tokens = args.batch_size * lm.SEQUENCE_LENGTH
    for name in names:
        med, lo, hi = (1e3 * v * step_tokens for v in stats[name, "wall"])
        rows.append(
            f"| {VARIANTS[name]} | {rate(name):,.0f} | {med:.1f} [{lo:.1f}, {hi:.1f}] | "
            f"{stats[name, 'wall'][0] / baseline['wall']:.3f}x | "
            f"{stats[name, 'cpu'][0] / baseline['cpu']:.3f}x |"
        )
        if name == "teacher":
            b = 1e3 * baseline["wall"] * step_tokens
            rows.append(f"| (a) + (b): student step + teacher forward (baseline) | "
                        f"{1 / baseline['wall']:,.0f} | {b:.1f} | 1.000x | 1.000x |")

    per_round = {clock: ratios(times, "distiller", base, clock) for clock in ("wall", "cpu")}
    paired = [
        "| ratio (per round, same round's times) | median | min | max |",
        "|---|---:|---:|---:|",
    ]
    for label, num, den in (
        ("(c) / ((a) + (b)): distillation vs student step + teacher forward", "distiller", base),
        ("(c) / (a): distillation vs student alone", "distiller", ("student",)),
        ("(d) / (a): distiller, cached logits, vs student alone", "cached", ("student",)),
        ("(e) / ((a) + (b)): minimal step vs student step + teacher forward", "minimal", base),
        ("(f) / ((a) + (b)): one graph, no KL, vs the two apart", "minimal_no_kl", base),
        ("(c) / (e): Distiller vs the minimal step", "distiller", ("minimal",)),
    ):
        for clock in ("wall", "cpu"):
            values = ratios(times, num, den, clock)
            paired.append(f"| {label} ({clock}) | {statistics.median(values):.3f}x | "
                          f"{min(values):.3f}x | {max(values):.3f}x |")

    ms = {name: 1e3 * stats[name, "wall"][0] * step_tokens for name in names}
    parts = [
        "| where the time of a Distiller step goes (wall, median ms per step) | ms | share of (c) |",
        "|---|---:|---:|",
    ]
    for label, value in (
        ("student step alone (a)", ms["student"]),
        ("teacher forward alone (b)", ms["teacher"]),
        ("one graph instead of two, no KL: (f) - (a) - (b)",
         ms["minimal_no_kl"] - ms["student"] - ms["teacher"]),
        ("the forward-KL loss and its gradient: (e) - (f)", ms["minimal"] - ms["minimal_no_kl"]),
        ("keras_kd's own step beyond the minimal one: (c) - (e)", ms["distiller"] - ms["minimal"]),
        ("= Distiller step (c)", ms["distiller"]),
        ("for reference: the teacher inside the Distiller step, (c) - (d)",
         ms["distiller"] - ms["cached"]),
        ("for reference: the Distiller without a teacher beyond the student: (d) - (a)",
         ms["cached"] - ms["student"]),
    ):
        parts.append(f"| {label} | {value:+.1f} | {100 * value / ms['distiller']:+.1f}% |"
                     if not label.startswith("=") else
                     f"| {label} | {value:.1f} | 100% |")

    # Each variant's fastest round: the least disturbed by other jobs, so a
    # check on the median ratio when one variant had slow rounds.
    fastest = {clock: stats["distiller", clock][1]
               / (stats["student", clock][1] + stats["teacher", clock][1])
               for clock in ("wall", "cpu")}
    for clock in ("wall", "cpu"):
        paired.append(f"| min (c) / (min (a) + min (b)), each variant's fastest round ({clock}) "
                      f"| {fastest[clock]:.3f}x | | |")
    verdict = (
        f"**Ratio (c) / ((a) + (b)) = {median_ratio:.3f}x** (median over {args.rounds} rounds, "
        f"wall time; min {min(ratio['wall']):.3f}x, max {max(ratio['wall']):.3f}x; CPU time "
        f"{statistics.median(ratio['cpu']):.3f}x; from each variant's fastest round "
        f"{fastest['wall']:.3f}x): target <= {TARGET:.2f}x "
        f"**{'met' if met else 'not met'}**."
    )
    for line in rows + [""] + paired + [""] + parts + ["", verdict]:
        print(line)
    if output is None:
        return {"times": times, "ratio": median_ratio}

    env = {k: os.environ.get(k) for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                                          "OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES")}
    prefix = " ".join(f"{k}={v}" for k, v in env.items() if v is not None)
    command = f"{prefix} PYTHONPATH=. python benchmarks/lm_throughput.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    teacher, student = models["teacher"], models["student"]
    doc = [
        "# LM distillation throughput, side by side (issue 16, item 7)",
        "",
        f"Command: `{command.strip()}`  ",
        f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}; wall time "
        f"{wall / 60:.1f} min.  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs "
        f"({len(os.sched_getaffinity(0))} usable by this process), shared with other jobs. "
        f"Load average (1/5/15 min) before: {load_before[0]:.2f} / {load_before[1]:.2f} / "
        f"{load_before[2]:.2f}; after: {load_after[0]:.2f} / {load_after[1]:.2f} / "
        f"{load_after[2]:.2f}. Other python processes at the start: "
        f"{len(others_before)}{' (' + '; '.join(o[:90] for o in others_before) + ')' if others_before else ''}; "
        f"at the end: {len(others_after)}"
        f"{' (' + '; '.join(o[:90] for o in others_after) + ')' if others_after else ''}.  ",
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras "
        f"{keras.__version__}, keras-hub {keras_hub.__version__}, keras-kd "
        f"{keras_kd.__version__}. Threads: "
        + ", ".join(f"{k}={v}" for k, v in env.items() if k.startswith("TF_"))
        + f". jit_compile={args.jit_compile} for every variant (resolved: "
        + ", ".join(f"{n} {v}" for n, v in jit_resolved.items()) + ").",
        "",
        "## What is measured",
        "",
        "Settings: nothing tuned. The models and sizes are those of "
        "`benchmarks/lm_distillation.py`, built by the same functions "
        "(`examples/distil_causal_lm.py`'s `causal_lm`, `training_windows`, `dataset`, "
        f"`schedule`, imported): teacher `GPT2CausalLM` {lm.TEACHER_CONFIG} "
        f"({teacher.count_params():,} parameters), student {lm.STUDENT_CONFIG} "
        f"({student.count_params():,} parameters), bytes (vocabulary {lm.VOCABULARY_SIZE}), "
        f"batch {args.batch_size} x {lm.SEQUENCE_LENGTH} = {step_tokens:,} tokens per step, "
        f"Adam {LEARNING_RATE:g} with warm-up and cosine decay (as there). The batches are "
        "`lm_distillation.py`'s training windows of the Python standard library's source "
        "for seed 0, the same for every variant. Weights are random (untrained teacher): "
        "the cost of a step does not depend on them.",
        "",
        "Baseline: (a) + (b), a student train step plus a teacher forward pass, measured "
        "side by side with the Distiller in the same process: every round runs each variant "
        f"for {args.steps} timed steps ({tokens:,} tokens) after one untimed step; one "
        "untimed warm-up pass per variant before the rounds traces the steps (compilation "
        f"excluded); {args.rounds} rounds, the order reversed every other round. The "
        "ratios are computed within each round (same load for numerator and denominator); "
        "the table gives their median, min and max. Times are wall time (what tokens/s "
        "means) and the process's CPU time (all its threads; steadier on a shared machine). "
        "(b) calls the compiled forward once per batch from Python, so it carries a "
        "function call that the Distiller's in-graph teacher does not: if anything this "
        "makes the baseline slightly slower, not faster.",
        "",
        "Variants (d), (e), (f) only explain where the time of (c) goes. (d) reads the "
        "teacher's dense logits from memory (8 x 128 x 256 float32 per batch). (e) is the "
        "least a distillation step does (`MinimalDistillation` in the script: no label "
        "checks, health counts, global-batch reduction, terms or per-term logs); (f) is "
        "(e) without the KL, i.e. the student step and the teacher forward in one graph.",
        "",
        "## Results",
        "",
        *rows,
        "",
        *paired,
        "",
        *parts,
        "",
        verdict,
        "",
    ]
    doc += [explain(ms, met), ""]
    doc += [
        "`benchmarks/results/lm_distillation.md` reported 1.43x from rates of different "
        "runs at different times (student rates from the student-alone runs, the teacher "
        "forward timed once at the end, distillation the mean of the distillation runs); "
        "this file replaces that comparison with a side-by-side one.",
        "",
        "## Per round (wall ms per step)",
        "",
        "| round | " + " | ".join(names) + " | (c)/((a)+(b)) |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for r in range(args.rounds):
        doc.append(f"| {r + 1} | " + " | ".join(
            f"{1e3 * times[n][r][0] / args.steps:.1f}" for n in names)
            + f" | {per_round['wall'][r]:.3f} |")
    doc.append("")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(doc))
    print(f"wrote {output}")
    return {"times": times, "ratio": median_ratio}


if __name__ == "__main__":
    main()
