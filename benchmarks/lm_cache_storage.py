"""LM teacher caches: storage at LM scale, measured throughput, top-k KL gap.

Three parts, written to benchmarks/results/lm_cache_storage.md:

1. Storage for 1B tokens at vocabularies 32,000 (Llama 2 / Mistral),
   128,256 (Llama 3) and 256,000 (Gemma), full float16 logits vs top-8/32/128,
   from `keras_kd.lm_cache_storage_bytes` (the file's own record layout),
   plus the replayed token batches.
2. Measured on this CPU: a tiny GPT-2 teacher (keras-hub, built from a config)
   trained for `--steps` steps on byte tokens of the Python standard library's
   sources (`/usr/lib/python3.11/*.py`, every 10th file held out), then cached
   over held-out sequences: write throughput (teacher pass + top-k + disk) vs the
   teacher's forward pass alone, and read throughput of `load_lm_cache`. A
   second row builds the same GPT-2 with a 32,000-entry output (untrained: the
   cost of a forward pass and of top-k does not depend on the weights) to show
   what extracting top-k costs at a real LM vocabulary.
3. Distillation throughput on the same text: a GPT-2 student (1 layer, width
   64) trained one epoch alone, distilled from the live teacher, and distilled
   by `Distiller(student, teacher=None)` from a top-32 cache of the teacher.
4. The KL gap of the top-k approximation on the trained teacher's held-out
   outputs: KL(softmax(z/T) || softmax(rebuilt/T)) per token, k = 1..128, at
   T = 1 and T = 2, and the probability mass the top-k tokens hold.

    python benchmarks/lm_cache_storage.py            # writes the results file
    python benchmarks/lm_cache_storage.py --quick    # a smoke run, prints only
"""

import argparse
import glob
import os
import platform
import resource
import tempfile
import time
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "lm_cache_storage.md")
SOURCES = "/usr/lib/python3.11/*.py"
VOCABULARIES = [(32_000, "Llama 2, Mistral"), (128_256, "Llama 3"), (256_000, "Gemma")]
TOP_KS = (8, 32, 128)
KL_KS = (1, 2, 4, 8, 16, 32, 64, 128)
BYTE_VOCAB = 257  # 0 = padding, byte b = b + 1
LENGTH = 128


def human(n):
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def storage_table(tokens=10**9):
    import keras_kd
    from keras_kd.src.data.lm_cache import _sequence_layout

    lines = [
        f"| vocabulary | full float16 | " + " | ".join(f"top-{k}" for k in TOP_KS) + " |",
        "|---|---:|" + "---:|" * len(TOP_KS),
    ]
    for vocab, models in VOCABULARIES:
        full = keras_kd.lm_cache_storage_bytes(tokens, vocab)
        cells = []
        for k in TOP_KS:
            size = keras_kd.lm_cache_storage_bytes(tokens, vocab, top_k=k)
            cells.append(f"{human(size)} ({size // tokens} B/token, {full / size:,.0f}x smaller)")
        lines.append(f"| {vocab:,} ({models}) | {human(full)} ({full // tokens:,} B/token) | " + " | ".join(cells) + " |")
    inputs = _sequence_layout(1, ["token_ids", "padding_mask", "labels", "sample_weight"]).itemsize
    return lines, inputs


def byte_sequences():
    """Byte tokens of the stdlib sources, cut into LENGTH + 1 windows;
    (train, held-out) split by file (every 10th file, by CRC of its name)."""
    files = sorted(glob.glob(SOURCES))
    if not files:
        raise SystemExit(f"No Python sources at {SOURCES}.")
    train, held = [], []
    for name in files:
        with open(name, "rb") as file:
            data = np.frombuffer(file.read(), np.uint8).astype(np.int32) + 1
        windows = len(data) // (LENGTH + 1)
        if windows:
            rows = data[: windows * (LENGTH + 1)].reshape(windows, LENGTH + 1)
            (held if zlib.crc32(os.path.basename(name).encode()) % 10 == 0 else train).append(rows)
    return np.concatenate(train), np.concatenate(held), len(files)


def batches(rows, batch_size):
    import tensorflow as tf

    x = {"token_ids": rows[:, :-1], "padding_mask": np.ones_like(rows[:, :-1], bool)}
    weight = np.ones_like(rows[:, 1:], np.float32)
    return tf.data.Dataset.from_tensor_slices((x, rows[:, 1:], weight)).batch(batch_size)


def gpt2(vocab, seed=0):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab, num_layers=2, num_heads=4, hidden_dim=128,
        intermediate_dim=512, max_sequence_length=LENGTH,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn):
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - wall, cpu_seconds() - cpu


def forward_only(teacher, data):
    import tensorflow as tf

    step = tf.function(lambda x: tf.reduce_sum(teacher(x, training=False)[..., :1]))
    for x, _, _ in data.take(1):
        step(x)  # trace outside the timing
    return lambda: [step(x).numpy() for x, _, _ in data]


def throughput_rows(teacher, data, tokens, directory, label, configs):
    import keras_kd

    forward = forward_only(teacher, data)
    forward()  # warm-up
    _, forward_wall, forward_cpu = timed(forward)
    rows = []
    for top_k, subset in configs:
        part = data.take(subset) if subset else data
        part_tokens = tokens if not subset else subset * tokens // int(data.cardinality())
        path = os.path.join(directory, f"{label}-{top_k}.kdcache")
        # The fixed cost of a call (tracing the teacher, header, fsync): one batch.
        _, fixed_wall, _ = timed(
            lambda: keras_kd.cache_lm_teacher_outputs(teacher, part.take(1), path, top_k=top_k, verbose=0))
        header, write_wall, write_cpu = timed(
            lambda: keras_kd.cache_lm_teacher_outputs(teacher, part, path, top_k=top_k, verbose=0))
        size = os.path.getsize(path)
        train = keras_kd.load_lm_cache(path, batch_size=16, seed=0, verify=False)
        _, load_wall, _ = timed(lambda: keras_kd.load_lm_cache(path, batch_size=16, seed=0))
        _, read_wall, read_cpu = timed(lambda: sum(1 for _ in train))
        scale = part_tokens / tokens
        rows.append({
            "label": label, "top_k": top_k, "tokens": header["token_count"], "size": size,
            "write_tps": header["token_count"] / write_wall, "write_cpu": write_cpu / header["token_count"],
            "forward_tps": tokens / forward_wall, "forward_cpu": forward_cpu / tokens,
            "write_vs_forward": write_wall / (forward_wall * scale),
            "read_tps": header["token_count"] / read_wall, "open_s": load_wall, "fixed_s": fixed_wall,
        })
        os.remove(path)
    return rows


def student_model(seed=3):
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=BYTE_VOCAB, num_layers=1, num_heads=2, hidden_dim=64,
        intermediate_dim=256, max_sequence_length=LENGTH,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def distillation_rows(teacher, rows, batch_size, directory):
    """One epoch each after a warm-up epoch: student alone, live teacher,
    top-32 cache (the cache written beforehand, its time reported apart)."""
    import keras
    import keras_kd

    data = batches(rows, batch_size)
    path = os.path.join(directory, "train-top32.kdcache")
    _, cache_wall, _ = timed(lambda: keras_kd.cache_lm_teacher_outputs(teacher, data, path, top_k=32, verbose=0))
    tokens = rows.shape[0] * LENGTH
    results = []
    for name in ("student alone", "live teacher", "top-32 cache"):
        student = student_model()
        if name == "student alone":
            model, train = student, data
            model.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          weighted_metrics=[])
        else:
            model = keras_kd.Distiller(student, teacher=teacher if name == "live teacher" else None)
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
            train = data if name == "live teacher" else keras_kd.load_lm_cache(path, batch_size=batch_size, seed=0)
        model.fit(train, epochs=1, verbose=0)  # warm-up: tracing
        history, wall, cpu = timed(lambda: model.fit(train, epochs=1, verbose=0))
        results.append({"name": name, "wall": wall, "cpu": cpu, "tps": tokens / wall,
                        "loss": history.history["loss"][-1]})
    os.remove(path)
    return results, cache_wall, tokens


def break_even(distilled, cache_wall):
    """How many epochs the cache takes to pay for its writing, by wall-clock
    and by process CPU time (the steadier measure on a loaded machine)."""
    parts = []
    for key, what in (("wall", "wall-clock"), ("cpu", "CPU time")):
        live, cached = distilled[1][key], distilled[2][key]
        if live <= cached:
            parts.append(f"by {what}, a cached epoch ({cached:.2f} s) was not cheaper than a live one "
                         f"({live:.2f} s)")
        else:
            parts.append(f"by {what}, a cached epoch saves {live - cached:.2f} s of {live:.2f} s")
    return ("Per epoch, " + "; ".join(parts) + f". Writing the cache took {cache_wall:.1f} s wall-clock. "
            "This teacher is tiny (its forward pass is cheap next to the student's step); the "
            "saving grows with the teacher's size.")


def train_teacher(train_rows, steps, batch_size):
    import keras

    teacher = gpt2(BYTE_VOCAB, seed=0)
    teacher.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[],
    )
    rng = np.random.default_rng(0)
    chosen = train_rows[rng.choice(len(train_rows), size=min(len(train_rows), steps * batch_size), replace=False)]
    data = batches(chosen, batch_size)
    history, wall, _ = timed(lambda: teacher.fit(data, epochs=1, verbose=0))
    return teacher, history.history["loss"][-1], wall


def kl_gap(logits, temperatures=(1.0, 2.0)):
    """Rows of (k, top-k mass, KL at each T) for float64 logits (tokens, V)."""
    z = logits.astype(np.float64)
    vocab = z.shape[-1]
    order = np.argsort(-z, axis=-1)

    def log_softmax(a):
        top = a.max(-1, keepdims=True)
        return a - top - np.log(np.exp(a - top).sum(-1, keepdims=True))

    out = []
    for k in KL_KS:
        top = order[:, :k]
        rest = z.copy()
        np.put_along_axis(rest, top, -np.inf, -1)
        m = rest.max(-1, keepdims=True)
        tail = (m[:, 0] + np.log(np.exp(rest - m).sum(-1))) - np.log(vocab - k)
        rebuilt = np.repeat(tail[:, None], vocab, axis=1)
        np.put_along_axis(rebuilt, top, np.take_along_axis(z, top, -1), -1)
        mass = np.take_along_axis(np.exp(log_softmax(z)), top, -1).sum(-1).mean()
        kls = []
        for t in temperatures:
            p = log_softmax(z / t)
            q = log_softmax(rebuilt / t)
            kls.append(float((np.exp(p) * (p - q)).sum(-1).mean()))
        out.append((k, float(mass), kls))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="teacher training steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-sequences", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="a smoke run; prints, writes nothing")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.eval_sequences = 20, 64

    import keras
    import tensorflow as tf

    load_start = os.getloadavg()[0]
    table, input_bytes = storage_table()
    train_rows, held_rows, file_count = byte_sequences()
    held = held_rows[np.random.default_rng(1).choice(len(held_rows), size=min(len(held_rows), args.eval_sequences), replace=False)]
    held_tokens = held.shape[0] * LENGTH
    teacher, train_loss, train_wall = train_teacher(train_rows, args.steps, args.batch_size)
    eval_data = batches(held, args.batch_size)
    held_logits = np.concatenate([
        keras.ops.convert_to_numpy(teacher(x, training=False)).reshape(-1, BYTE_VOCAB) for x, _, _ in eval_data
    ])
    labels = held[:, 1:].reshape(-1)
    log_z = held_logits.astype(np.float64)
    log_p = log_z - log_z.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    bits = float(-log_p[np.arange(len(labels)), labels].mean() / np.log(2))
    entropy = float(-(np.exp(log_p) * log_p).sum(-1).mean() / np.log(2))
    gaps = kl_gap(held_logits)

    with tempfile.TemporaryDirectory() as directory:
        rows = throughput_rows(teacher, eval_data, held_tokens, directory, "byte",
                               [(None, 0), (32, 0)])
        rng = np.random.default_rng(2)
        distill_source = train_rows[rng.choice(len(train_rows), size=args.eval_sequences, replace=False)]
        distilled, distill_cache_wall, distill_tokens = distillation_rows(
            teacher, distill_source, args.batch_size, directory)
        large = gpt2(32_000, seed=0)
        full_batches = max(1, min(8, int(eval_data.cardinality())))
        rows += throughput_rows(large, eval_data, held_tokens, directory, "32k",
                                [(32, 0), (None, full_batches)])
    load_end = os.getloadavg()[0]

    teacher_params = teacher.count_params()
    out = [
        "# LM teacher caches: storage, throughput, top-k KL gap",
        "",
        "Written by `python benchmarks/lm_cache_storage.py`"
        + (" (`--quick`: smoke run)" if args.quick else "") + ". "
        "How the settings were chosen: not tuned. The teacher is the smallest GPT-2 that learns "
        "something in a few minutes on this CPU; the KL gap is measured on its outputs and is the "
        "number to read when choosing `top_k`; there is no baseline beyond full logits (`top_k=None`), "
        "which the gap is measured against.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU; "
        f"load average {load_start:.1f} at the start and {load_end:.1f} at the end (a shared machine: "
        "wall-clock throughput is noisy); TF_NUM_INTRAOP_THREADS="
        f"{os.environ.get('TF_NUM_INTRAOP_THREADS', 'unset')}.",
        "",
        "## Storage for 1B tokens (float16 logits)",
        "",
        "From `keras_kd.lm_cache_storage_bytes`, i.e. the file's own token record: full logits are "
        "2 bytes x vocabulary; top-k is k float16 values, k indices (uint16 up to a vocabulary of "
        "65,536, int32 above) and one float16 tail logit.",
        "",
        *table,
        "",
        f"The replayed token batches add {input_bytes} bytes per position (int32 token ids, a one-byte "
        f"padding mask, int32 labels, float32 sample weight): {human(input_bytes * 10**9)} for 1B "
        "positions, whatever the vocabulary. Only real tokens (padding mask or sample weight set) get a "
        "teacher record.",
        "",
        "## Measured on this CPU",
        "",
        f"Text: byte tokens (vocabulary {BYTE_VOCAB}: 256 bytes + padding) of the {file_count} files "
        f"`{SOURCES}`, windows of {LENGTH + 1} bytes, split by file (every 10th file held out). "
        f"Teacher: keras-hub GPT-2, 2 layers, width 128, {teacher_params:,} parameters, trained "
        f"{args.steps} steps of {args.batch_size} x {LENGTH} tokens ({train_wall:.0f} s, last training "
        f"loss {train_loss:.3f} nats); held-out: {bits:.3f} bits per byte, teacher entropy "
        f"{entropy:.3f} bits per token. The caches cover {len(held)} held-out sequences "
        f"({held_tokens:,} tokens), batch {args.batch_size}. The 32k rows use the same GPT-2 with a "
        "32,000-entry vocabulary, untrained (throughput only; the full 32k cache covers "
        f"{full_batches} batches, to keep the file small).",
        "",
        "| teacher | cache | tokens | file | write, tokens/s | teacher forward alone, tokens/s | write / forward time | one-batch call, s | read (`load_lm_cache`, one shuffled epoch), tokens/s | open + verify, s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cache = "full float16" if row["top_k"] is None else f"top-{row['top_k']} float16"
        vocab = BYTE_VOCAB if row["label"] == "byte" else 32_000
        out.append(
            f"| GPT-2 {'trained, ' if row['label'] == 'byte' else 'untrained, '}V = {vocab:,} | {cache} | "
            f"{row['tokens']:,} | {human(row['size'])} | {row['write_tps']:,.0f} | {row['forward_tps']:,.0f} | "
            f"{row['write_vs_forward']:.2f}x | {row['fixed_s']:.2f} | {row['read_tps']:,.0f} | {row['open_s']:.2f} |"
        )
    out += [
        "",
        "Write throughput includes the teacher's forward pass (traced once per call), the top-k and tail computation, the "
        "checks for non-finite outputs, hashing and the disk writes; the forward-alone column is the "
        "same teacher over the same batches in a `tf.function`, for what the cache adds on top of "
        "running the teacher once. The one-batch column is the time of a call on one batch: mostly "
        "tracing the teacher, a fixed cost per call that a long run amortizes.",
        "",
        "## Distilling from the cache",
        "",
        f"One epoch over {distill_tokens:,} training tokens ({args.eval_sequences} sequences, batch "
        f"{args.batch_size}), after a warm-up epoch, for a GPT-2 student (1 layer, width 64, "
        f"{student_model().count_params():,} parameters; the teacher has {teacher_params:,}): "
        "`fit` of the student alone (cross-entropy), `Distiller(student, teacher)` (live), and "
        "`Distiller(student, teacher=None)` on `load_lm_cache` of a top-32 cache written "
        f"beforehand in {distill_cache_wall:.1f} s. Default `compile()` (alpha 0.5, T = 1, forward KL).",
        "",
        "| run | epoch, wall s | tokens/s | vs student alone | epoch, CPU s | last loss |",
        "|---|---:|---:|---:|---:|---:|",
        *[
            f"| {r['name']} | {r['wall']:.2f} | {r['tps']:,.0f} | {r['wall'] / distilled[0]['wall']:.2f}x | "
            f"{r['cpu']:.2f} | {r['loss']:.3f} |"
            for r in distilled
        ],
        "",
        "The losses are not comparable across rows (the student alone logs cross-entropy, the "
        "distillers their weighted sum); this table is about time. "
        + break_even(distilled, distill_cache_wall),
        "",
        "## KL gap of the top-k approximation (trained byte-level teacher, held-out tokens)",
        "",
        "KL(teacher || rebuilt) per token in nats, the rebuilt logits being the top-k logits plus the "
        "tail logit everywhere else (`rebuild_top_k_logits`), both divided by T before the softmax; "
        "mass: the teacher's probability on its top-k tokens (T = 1).",
        "",
        "| k | top-k mass | KL at T = 1, nats | KL at T = 2, nats |",
        "|---:|---:|---:|---:|",
    ]
    for k, mass, (kl1, kl2) in gaps:
        out.append(f"| {k} | {mass:.4f} | {kl1:.2e} | {kl2:.2e} |")
    out += [
        "",
        f"For scale: the teacher's own entropy is {entropy * np.log(2):.3f} nats per token. This "
        f"vocabulary is tiny ({BYTE_VOCAB}); with a 32k-256k vocabulary the tail is much longer, so the "
        "same k covers less of the mass and the gap at a given k is larger: measure it on your teacher "
        "(the function `kl_gap` here takes any `(tokens, V)` logits).",
    ]
    text = "\n".join(out) + "\n"
    print(text)
    if not args.quick:
        with open(RESULTS, "w") as file:
            file.write(text)
        print(f"Wrote {RESULTS}")


if __name__ == "__main__":
    main()
