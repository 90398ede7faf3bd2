"""Language-model distillation on real text: keras-hub GPT-2, Python's own source.

Teacher: `GPT2CausalLM` 4 layers x 128 wide over bytes, trained once on the
train split of `keras_kd.text_datasets.load_python_source()` and cached under
`benchmarks/.cache/` (reruns skip it). Student: 2 layers x 64 wide. Every
student run sees the same batches (same steps x batch x sequence positions),
optimizer and schedule; scored by held-out (test split) bits per byte:

- the student alone (cross-entropy on the next byte);
- distilled, off-policy, with `divergence="forward_kl"`, `"reverse_kl"`,
  `"jsd"` (the live teacher in the Distiller's step);
- distilled on-policy (GKD): `keras_kd.OnPolicyBatches`, half the batches
  continued by the student itself, scored by the teacher.

Settings are chosen first on the validation split (seed 0): the learning
rate of the student alone, then alpha for forward KL; the on-policy run uses
the off-policy divergence that was best on validation. Then 3 seeds each.

Throughput: tokens/s of the student alone, of a teacher forward pass, and of
distillation, against "student step + teacher forward" (target <= 1.15x).

    PYTHONPATH=. python benchmarks/lm_distillation.py            # ~35 min on one core
    PYTHONPATH=. python benchmarks/lm_distillation.py --quick    # smoke run, not written
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
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

OUTPUT = ROOT / "benchmarks" / "results" / "lm_distillation.md"
CACHE = ROOT / "benchmarks" / ".cache"
TEACHER_LEARNING_RATE = 1e-3
TEACHER_BATCH_SIZE = 32
LEARNING_RATES = (1e-3, 3e-3, 1e-2)
ALPHAS = (0.0, 0.5)
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")
JSD_BETA = 0.5
LMBDA = 0.5
PROMPT = b"    def __init__(self, "
SAMPLE_TOKENS = 100


def teacher_model(corpus, steps: int, batch_size: int, log):
    """The trained teacher, from the cache when it holds this configuration."""
    key = json.dumps({"config": lm.TEACHER_CONFIG, "steps": steps, "batch": batch_size,
                      "lr": TEACHER_LEARNING_RATE, "seq": lm.SEQUENCE_LENGTH,
                      "train_bytes": int(len(corpus["train"]))}, sort_keys=True)
    path = CACHE / f"lm_teacher_{hashlib.sha256(key.encode()).hexdigest()[:12]}.keras"
    if path.exists():
        log(f"teacher: loaded from {path.relative_to(ROOT)}")
        return keras.saving.load_model(path), None
    teacher = lm.causal_lm(lm.TEACHER_CONFIG, seed=0, name="teacher")
    train = lm.training_windows(corpus["train"], steps, batch_size, seed=1000)
    start = time.perf_counter()
    rate = lm.train_alone(teacher, train, TEACHER_LEARNING_RATE, batch_size, seed=0)
    log(f"teacher: trained {steps} steps in {time.perf_counter() - start:.0f} s "
        f"({rate:,.0f} tokens/s)")
    CACHE.mkdir(parents=True, exist_ok=True)
    teacher.save(path)
    return teacher, rate


def forward_rate(model, batch, batch_size: int, repeats: int = 20) -> float:
    """Tokens/s of `model`'s forward pass (inference) on training batches."""
    forward = tf.function(lambda inputs: model(inputs, training=False))
    x = {k: v[:batch_size] for k, v in batch[0].items()}
    forward(x)
    start = time.perf_counter()
    for _ in range(repeats):
        forward(x)
    return repeats * batch_size * lm.SEQUENCE_LENGTH / (time.perf_counter() - start)


class Runner:
    def __init__(self, corpus, teacher, steps, batch_size, eval_windows, log):
        self.corpus, self.teacher, self.steps, self.batch_size = corpus, teacher, steps, batch_size
        self.validation = lm.evaluation_windows(corpus["validation"], eval_windows // 2)
        self.test = lm.evaluation_windows(corpus["test"], eval_windows)
        self.log = log
        self._done = {}

    def batches(self, seed: int):
        # The same batches for every method at a given seed.
        return lm.training_windows(self.corpus["train"], self.steps, self.batch_size,
                                   seed=2000 + seed)

    def run(self, method: str, seed: int, learning_rate: float, alpha: float = 0.5,
            divergence: str = "forward_kl"):
        """Trains one student; scores it on both held-out splits. Memoized, so
        a setting chosen on validation (seed 0) is also that seed's test run."""
        key = (method, seed, learning_rate, alpha if method != "alone" else None, divergence)
        if key in self._done:
            return self._done[key]
        student = lm.causal_lm(lm.STUDENT_CONFIG, seed=seed, name=f"student_{method}_{seed}")
        batch = self.batches(seed)
        extra = {}
        if method == "alone":
            rate = lm.train_alone(student, batch, learning_rate, self.batch_size, seed=seed)
        elif method == "on_policy":
            data = OnPolicy(batch, self.batch_size, student, seed)
            _, rate = lm.distil(student, self.teacher, data.batches, learning_rate, self.steps,
                                seed=seed, divergence=divergence, alpha=alpha, jsd_beta=JSD_BETA)
            stats = data.batches.stats
            extra = {"generated_tokens": stats["generated_tokens"],
                     "generation_seconds": stats["generation_seconds"],
                     "generation_tokens_per_second":
                         stats["generated_tokens"] / max(stats["generation_seconds"], 1e-9)}
        else:
            _, rate = lm.distil(student, self.teacher, lm.dataset(batch, self.batch_size),
                                learning_rate, self.steps, seed=seed, divergence=divergence,
                                alpha=alpha, jsd_beta=JSD_BETA)
        validation = lm.bits_per_token(student, self.validation)
        test = lm.bits_per_token(student, self.test)
        self.log(f"  {method:<10} {divergence if method != 'alone' else '':<11} seed {seed} "
                 f"lr {learning_rate:g} alpha {alpha if method != 'alone' else '-'}: "
                 f"validation {validation:.4f}, test {test:.4f} bits/byte, {rate:,.0f} tokens/s")
        self._done[key] = student, {"validation": validation, "bits": test,
                                    "tokens_per_second": rate, **extra}
        return self._done[key]


class OnPolicy:
    """`OnPolicyBatches` over the run's batches (half of them generated)."""

    def __init__(self, batch, batch_size, student, seed):
        self.batches = keras_kd.OnPolicyBatches(
            lm.dataset(batch, batch_size), student, lmbda=LMBDA,
            prompt_length=lm.SEQUENCE_LENGTH // 2, max_new_tokens=lm.SEQUENCE_LENGTH // 2,
            sampler="random", seed=seed,
        )


def mean_std(values):
    values = np.asarray(values, float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--teacher-only", action="store_true",
                        help="Train and cache the teacher, then stop.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--teacher-steps", type=int, default=1000)
    parser.add_argument("--student-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-windows", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.teacher_steps, args.student_steps = 1, 20, 10
        args.batch_size, args.eval_windows = 8, 64
    began = time.time()
    lines = []

    def log(text):
        print(text, flush=True)
        lines.append(text)

    corpus = text_datasets.load_python_source(root=lm.STDLIB)
    log(f"corpus: the standard library source under {lm.STDLIB or 'sysconfig stdlib'} "
        f"({len(text_datasets.python_source_files(lm.STDLIB))} files), bytes: "
        + ", ".join(f"{k} {len(v):,}" for k, v in corpus.items()))
    teacher, teacher_rate = teacher_model(corpus, args.teacher_steps,
                                          8 if args.quick else TEACHER_BATCH_SIZE, log)
    if args.teacher_only:
        return
    runner = Runner(corpus, teacher, args.student_steps, args.batch_size, args.eval_windows, log)
    teacher_bits = lm.bits_per_token(teacher, runner.test)
    student_params = lm.causal_lm(lm.STUDENT_CONFIG, 0, "count").count_params()
    log(f"teacher: {teacher.count_params():,} parameters, test {teacher_bits:.4f} bits/byte; "
        f"student {student_params:,} parameters")

    # Settings on the validation split, seed 0. Runs are memoized: the run
    # at the chosen setting is also seed 0's test run.
    log("runs (settings chosen on the validation split, seed 0):")
    by_lr = {lr: runner.run("alone", 0, lr)[1]["validation"] for lr in LEARNING_RATES}
    learning_rate = min(by_lr, key=by_lr.get)
    by_alpha = {a: runner.run("forward_kl", 0, learning_rate, alpha=a)[1]["validation"]
                for a in ALPHAS}
    alpha = min(by_alpha, key=by_alpha.get)
    methods = [("student alone", "alone", "forward_kl")] + [
        (f"distilled, {d}", d, d) for d in DIVERGENCES
    ]
    results, samples = {}, {}
    for label, method, divergence in methods:
        for seed in range(args.seeds):
            student, result = runner.run(method, seed, learning_rate, alpha=alpha,
                                         divergence=divergence)
            results.setdefault(label, []).append(result)
            if seed == 0:
                samples[label] = lm.sample(student, PROMPT, SAMPLE_TOKENS, seed=0)
    by_divergence = {d: results[f"distilled, {d}"][0]["validation"] for d in DIVERGENCES}
    on_policy_divergence = min(by_divergence, key=by_divergence.get)
    label = f"distilled on-policy (GKD, lmbda={LMBDA:g}, {on_policy_divergence})"
    methods.append((label, "on_policy", on_policy_divergence))
    for seed in range(args.seeds):
        student, result = runner.run("on_policy", seed, learning_rate, alpha=alpha,
                                     divergence=on_policy_divergence)
        results.setdefault(label, []).append(result)
        if seed == 0:
            samples[label] = lm.sample(student, PROMPT, SAMPLE_TOKENS, seed=0)
    log(f"chosen: learning rate {learning_rate:g} (of {LEARNING_RATES}), alpha {alpha:g} "
        f"(of {ALPHAS}), on-policy divergence {on_policy_divergence}")
    samples = {"teacher": lm.sample(teacher, PROMPT, SAMPLE_TOKENS, seed=0), **samples}

    student_rate = np.mean([r["tokens_per_second"] for r in results["student alone"]])
    teacher_forward = forward_rate(teacher, runner.batches(0), args.batch_size)
    combined = 1.0 / (1.0 / student_rate + 1.0 / teacher_forward)
    distil_rates = [r["tokens_per_second"] for label, rs in results.items()
                    if label.startswith("distilled, ") for r in rs]
    distil_rate = float(np.mean(distil_rates))
    on_policy = results[methods[-1][0]]
    on_policy_rate = float(np.mean([r["tokens_per_second"] for r in on_policy]))
    generation_rate = float(np.mean([r["generation_tokens_per_second"] for r in on_policy]))

    tokens = args.student_steps * args.batch_size * lm.SEQUENCE_LENGTH
    table = [
        "| model | parameters | test bits/byte (mean ± std) | perplexity (per byte) | "
        "validation bits/byte, seed 0 | seeds |",
        "|---|---:|---:|---:|---:|---:|",
        f"| teacher (4 x 128) | {teacher.count_params():,} | {teacher_bits:.4f} | "
        f"{2 ** teacher_bits:.3f} | | 1 |",
    ]
    for label, rs in results.items():
        mean, std = mean_std([r["bits"] for r in rs])
        table.append(f"| {label} | {student_params:,} | {mean:.4f} ± {std:.4f} | "
                     f"{2 ** mean:.3f} | {rs[0]['validation']:.4f} | {len(rs)} |")
    speed = [
        "| what | tokens/s | time per token vs student step + teacher forward |",
        "|---|---:|---:|",
        f"| student alone (train step) | {student_rate:,.0f} | {combined / student_rate:.2f}x |",
        f"| teacher forward (inference) | {teacher_forward:,.0f} | |",
        f"| student step + teacher forward (sum of the two) | {combined:,.0f} | 1.00x |",
        f"| distillation, off-policy (Distiller.fit, mean of {len(distil_rates)} runs) | "
        f"{distil_rate:,.0f} | {combined / distil_rate:.2f}x |",
        f"| distillation, on-policy (incl. generating half the batches) | {on_policy_rate:,.0f} "
        f"| {combined / on_policy_rate:.2f}x |",
        f"| student generation (KV-cached, batch {args.batch_size}) | {generation_rate:,.0f} | |",
    ]
    for row in table + [""] + speed:
        log(row)
    wall = time.time() - began
    if args.quick:
        return {"results": results, "teacher_bits": teacher_bits}
    load = os.getloadavg()
    command = "PYTHONPATH=. TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 python benchmarks/lm_distillation.py"
    doc = [
        "# Language-model distillation on real text (keras-hub GPT-2, Python source)",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().isoformat(timespec='minutes')}; wall time "
        f"{wall / 60:.1f} min; load average at the end {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} (1/5/15 min; the machine's 2 cores are shared); "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, keras-hub "
        f"{keras_hub.__version__}, one thread per op.",
        "",
        f"Corpus: the Python standard library's own `.py` files under `{lm.STDLIB}` (no "
        "site-packages, no test suites), split by a hash of each file's path: "
        + ", ".join(f"{k} {len(v):,} bytes" for k, v in corpus.items())
        + f". Tokens are bytes (vocabulary 256, as `keras_hub.tokenizers.ByteTokenizer`): "
        "no tokenizer to train, no whitespace lost (Python's indentation is syntax), and "
        "bits per token are bits per byte. Test: the first "
        f"{len(runner.test[1]):,} non-overlapping windows of {lm.SEQUENCE_LENGTH} bytes "
        "of the test split.",
        "",
        f"Teacher: `GPT2CausalLM` {lm.TEACHER_CONFIG}, {args.teacher_steps} steps of "
        f"{TEACHER_BATCH_SIZE} x {lm.SEQUENCE_LENGTH} bytes, Adam {TEACHER_LEARNING_RATE:g} with "
        "warm-up and cosine decay (not tuned), cached under `benchmarks/.cache/`. Student: "
        f"{lm.STUDENT_CONFIG} ({teacher.count_params() / student_params:.1f}x fewer "
        f"parameters). Every student run: {args.student_steps} steps of {args.batch_size} x "
        f"{lm.SEQUENCE_LENGTH} = {tokens:,} token positions, the same batches for every "
        "method at a given seed, Adam with warm-up and cosine decay, temperature 1.",
        "",
        "How the settings were chosen (validation split, seed 0, never the test split): "
        f"learning rate of the student alone from {LEARNING_RATES} -> {learning_rate:g} "
        f"(validation bits/byte {', '.join(f'{k:g}: {v:.4f}' for k, v in by_lr.items())}); "
        f"alpha (weight of the hard loss) for forward KL from {ALPHAS} -> {alpha:g} "
        f"({', '.join(f'{k:g}: {v:.4f}' for k, v in by_alpha.items())}), used for every "
        f"divergence; jsd_beta {JSD_BETA:g} (GKD's default, not tuned); the on-policy run "
        f"uses the off-policy divergence best on validation at seed 0 "
        f"({', '.join(f'{k}: {v:.4f}' for k, v in by_divergence.items())}) -> "
        f"{on_policy_divergence}. The distilled students use the learning rate chosen for "
        "the student alone. Each run at a chosen setting is also seed 0's test run.",
        "",
        "Baseline: the same student trained alone on the same batches with the same "
        "optimizer, schedule and seeds.",
        "",
        "On-policy (GKD): `keras_kd.OnPolicyBatches(..., lmbda=0.5, prompt_length=64, "
        "max_new_tokens=64, sampler='random')`: half of the batches (chosen per batch by "
        "the seed) keep the first 64 bytes of each window and replace the rest by 64 bytes "
        "that the current student samples (temperature 1); the teacher scores them in the "
        "step; their loss covers the 64 generated positions only (labels -1, so only the "
        "divergence term). Same steps and token positions through the student as the "
        f"others, but fewer of them are real text: {100 * (1 - LMBDA / 2):.0f}% of the "
        "positions (and of the real-text targets) of an off-policy run.",
        "",
        "## Held-out bits per byte",
        "",
        *table,
        "",
        "## Throughput",
        "",
        *speed,
        "",
        "The target is distillation at most 1.15x the time per token of a student step plus "
        "a teacher forward pass measured separately (the cost of the models themselves); "
        "above 1.00x is the Distiller's own overhead.",
        "",
        "## Samples (seed 0, temperature 1; each begins with the prompt "
        f"`{PROMPT.decode()}`)",
        "",
    ]
    for label, text in samples.items():
        doc += [f"**{label}**", "", "```", PROMPT.decode() + text, "```", ""]
    doc += ["## Log", "", "```", *lines, "```", ""]
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("\n".join(doc))
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
