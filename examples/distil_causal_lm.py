"""Distil a keras-hub GPT-2 causal LM into a smaller one, on real Python code.

The corpus is the Python standard library's own source files (present on
every machine with Python; `keras_kd.text_datasets.load_python_source`, here
from `/usr/lib/python3.11` where it exists), split
by file into train, validation and test. Tokens are bytes (a vocabulary of
256; `keras_hub.tokenizers.ByteTokenizer` gives the same ids): nothing to
train, nothing lost (indentation is syntax in Python, and a WordPiece
vocabulary drops whitespace), and bits per token are bits per byte.

The teacher is a 4-layer, 128-wide `GPT2CausalLM`; the student a 2-layer,
64-wide one (~7x fewer parameters), both built from configs with random
weights (no download). The student is trained alone and distilled from the
teacher with the same batches, optimizer, schedule and seed, and scored by
held-out bits per byte.

    python examples/distil_causal_lm.py              # ~6 min on one core
    python examples/distil_causal_lm.py --quick      # a smoke test (~1 min)
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Dict, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd import text_datasets  # noqa: E402

VOCABULARY_SIZE = 256  # bytes
SEQUENCE_LENGTH = 128
TEACHER_CONFIG = dict(num_layers=4, num_heads=4, hidden_dim=128, intermediate_dim=512)
STUDENT_CONFIG = dict(num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=256)
#: The system Python's standard library (Debian's python3.11), where present;
#: else the running Python's.
STDLIB = "/usr/lib/python3.11" if os.path.isdir("/usr/lib/python3.11") else None


def causal_lm(config: dict, seed: int, name: str) -> keras_hub.models.GPT2CausalLM:
    """A `GPT2CausalLM` over bytes, with random weights from `seed`."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY_SIZE, max_sequence_length=SEQUENCE_LENGTH,
        dropout=0.0, name=f"{name}_backbone", **config,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None, name=name)


def training_windows(stream: np.ndarray, steps: int, batch_size: int, seed: int):
    """`steps * batch_size` random windows of the train stream, as the
    `(x, y, sample_weight)` arrays a `CausalLMPreprocessor` yields."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(stream) - SEQUENCE_LENGTH - 1, steps * batch_size)
    windows = stream[starts[:, None] + np.arange(SEQUENCE_LENGTH + 1)].astype("int32")
    return as_causal_lm_batch(windows)


def evaluation_windows(stream: np.ndarray, max_windows: Optional[int] = None):
    """Non-overlapping windows of a held-out stream, as `(x, y, sample_weight)`."""
    count = (len(stream) - 1) // SEQUENCE_LENGTH
    if max_windows is not None:
        count = min(count, max_windows)
    starts = np.arange(count) * SEQUENCE_LENGTH
    windows = stream[starts[:, None] + np.arange(SEQUENCE_LENGTH + 1)].astype("int32")
    return as_causal_lm_batch(windows)


def as_causal_lm_batch(windows: np.ndarray):
    """Windows of `SEQUENCE_LENGTH + 1` tokens -> `(x, y, sample_weight)`."""
    x = {
        "token_ids": windows[:, :-1],
        "padding_mask": np.ones(windows[:, :-1].shape, dtype=bool),
    }
    return x, windows[:, 1:], np.ones(windows[:, 1:].shape, dtype="float32")


def dataset(batch, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(batch).batch(batch_size, drop_remainder=True)


def schedule(learning_rate: float, steps: int):
    """Linear warm-up over 5% of the steps, then cosine decay to 0."""
    warmup = max(1, steps // 20)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, steps - warmup), warmup_target=learning_rate,
        warmup_steps=warmup,
    )


def bits_per_token(model: keras.Model, batch, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy of `model` on `(x, y, sample_weight)`, in bits."""
    x, y, weight = batch
    forward = tf.function(lambda inputs: model(inputs, training=False))
    total, count = 0.0, 0.0
    for start in range(0, len(y), batch_size):
        inputs = {k: v[start : start + batch_size] for k, v in x.items()}
        logits = forward(inputs)
        nll = keras.losses.sparse_categorical_crossentropy(
            y[start : start + batch_size], logits, from_logits=True
        )
        w = weight[start : start + batch_size]
        total += float(np.sum(np.asarray(nll) * w))
        count += float(np.sum(w))
    return total / count / math.log(2.0)


class StepTimer(keras.callbacks.Callback):
    """Tokens/s of the training steps after the first `skip` (which trace)."""

    def __init__(self, tokens_per_step: int, skip: int = 2):
        super().__init__()
        self.tokens_per_step, self.skip = tokens_per_step, skip
        self.start, self.steps, self.end = None, 0, None

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.skip - 1:
            self.start = time.perf_counter()
        elif batch >= self.skip:
            self.steps, self.end = self.steps + 1, time.perf_counter()

    def tokens_per_second(self) -> float:
        if not self.steps:
            return float("nan")
        return self.steps * self.tokens_per_step / (self.end - self.start)


def train_alone(model, batch, learning_rate: float, batch_size: int, seed: int) -> float:
    """Trains `model` on the labels (one pass over `batch`); returns tokens/s
    (of the steps after the first two, which trace)."""
    steps = len(batch[1]) // batch_size
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule(learning_rate, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    timer = StepTimer(batch_size * SEQUENCE_LENGTH)
    model.fit(dataset(batch, batch_size), epochs=1, verbose=0, callbacks=[timer])
    return timer.tokens_per_second()


def distil(student, teacher, batches, learning_rate: float, steps: int, seed: int,
           divergence: str = "forward_kl", alpha: float = 0.5, jsd_beta: float = 0.5):
    """Distils `teacher` into `student` on `batches` (a dataset of
    `(x, y, sample_weight)` or a `keras_kd.OnPolicyBatches`); returns the
    `Distiller` and tokens/s (after the first two steps)."""
    keras.utils.set_random_seed(seed)
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    kwargs = {"jsd_beta": jsd_beta} if divergence == "jsd" else {}
    distiller.compile(
        optimizer=keras.optimizers.Adam(schedule(learning_rate, steps)),
        alpha=alpha, temperature=1.0, divergence=divergence, **kwargs,
    )
    timer = StepTimer(_batch_tokens(batches))
    distiller.fit(batches, epochs=1, verbose=0, callbacks=[timer])
    return distiller, timer.tokens_per_second()


def _batch_tokens(batches) -> int:
    if isinstance(batches, tf.data.Dataset):
        spec = batches.element_spec[1]
        return int(spec.shape[0]) * int(spec.shape[1])
    x, y, _ = batches[0]
    return int(np.prod(np.shape(y)))


def sample(model, prompt: bytes, max_new_tokens: int = 80, seed: int = 0) -> str:
    """A continuation of `prompt` sampled from `model` (temperature 1)."""
    tokens = np.zeros((1, len(prompt) + max_new_tokens), "int32")
    tokens[0, : len(prompt)] = np.frombuffer(prompt, np.uint8)
    mask = np.zeros(tokens.shape, bool)
    mask[0, : len(prompt)] = True
    out = keras_kd.generate_tokens(
        model, tokens, mask, sampler=keras_hub.samplers.RandomSampler(seed=seed)
    )
    return bytes(out[0, len(prompt):].astype(np.uint8)).decode("utf-8", errors="replace")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A tiny budget, for tests.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-steps", type=int, default=600)
    parser.add_argument("--student-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32, help="The teacher's.")
    parser.add_argument("--student-batch-size", type=int, default=8)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    if args.quick:
        args.teacher_steps, args.student_steps, args.batch_size = 30, 20, 8
        args.student_batch_size = 8
    corpus = text_datasets.load_python_source(root=STDLIB)
    test = evaluation_windows(corpus["test"], max_windows=64 if args.quick else 1024)

    teacher = causal_lm(TEACHER_CONFIG, seed=args.seed, name="teacher")
    train = training_windows(corpus["train"], args.teacher_steps, args.batch_size, seed=1000)
    train_alone(teacher, train, 1e-3, args.batch_size, seed=args.seed)
    keras_kd.check_causal_lm_pair(causal_lm(STUDENT_CONFIG, 0, "probe"), teacher)

    # Both students: the same batches, optimizer, schedule and seed.
    size = args.student_batch_size
    batch = training_windows(corpus["train"], args.student_steps, size, seed=2000 + args.seed)
    alone = causal_lm(STUDENT_CONFIG, seed=args.seed, name="student_alone")
    # Learning rate and alpha as chosen on the validation split by
    # benchmarks/lm_distillation.py (benchmarks/results/lm_distillation.md).
    train_alone(alone, batch, 1e-3, size, seed=args.seed)
    student = causal_lm(STUDENT_CONFIG, seed=args.seed, name="student_distilled")
    distil(student, teacher, dataset(batch, size), 1e-3, args.student_steps, seed=args.seed,
           divergence="forward_kl", alpha=0.0)

    results = {
        "teacher_parameters": teacher.count_params(),
        "student_parameters": student.count_params(),
    }
    print(f"{'model':<22}{'parameters':>12}{'test bits/byte':>16}")
    for key, model in (("teacher", teacher), ("student_alone", alone), ("student_distilled", student)):
        bits = bits_per_token(model, test)
        results[f"{key}_bits_per_token"] = bits
        print(f"{key:<22}{model.count_params():>12,}{bits:>16.3f}")
    prompt = b"def __init__(self"
    for key, model in (("teacher", teacher), ("student_distilled", student)):
        print(f"\n{key}: {prompt.decode()}{sample(model, prompt, 60 if args.quick else 100)}")
    return results


if __name__ == "__main__":
    main()
