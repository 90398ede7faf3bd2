"""The BERT case (issue 17): pretrain a small BERT offline, fine-tune it on
Debian package sections, distil it into students >= 10x smaller.

Stages (each cached under `benchmarks/.cache/bert_case/`, so a rerun reuses
what is done):

1. `vocab`: a WordPiece vocabulary trained offline on the unlabelled corpus
   (Debian package descriptions, minus the labelled task's validation and
   test texts, plus the Python standard library's docstrings and comments).
2. `pretrain`: a small `keras_hub.models.BertBackbone` (random init) trained
   as a `BertMaskedLM` for a fixed number of steps.
3. `finetune`: `BertTextClassifier` from the pretrained backbone, and the same
   architecture without pretraining; epochs chosen on the validation split.
4. `distill`: students alone and distilled (logits; + transfer text; +
   intermediate terms), settings chosen on the validation split (the tiny
   BERT's learning rate on the student alone), test read once per final
   model. The seed-0 students are cached for the next stage.
5. `export`: the pretrained teacher and the distilled students exported
   with `keras_kd.export` (SavedModel; LiteRT float32, dynamic-range and,
   where the model allows it, int8): size, single-example latency, test
   accuracy and agreement with the Keras model (`benchmarks/bert_export.py`).

`--stage all` runs every stage and writes `benchmarks/results/bert_case.md`;
`--stage report` writes it again from the cached state of the last run,
running nothing.

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
        PYTHONPATH=. python benchmarks/bert_case.py --stage all
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "bert_case"
OUTPUT = ROOT / "benchmarks" / "results" / "bert_case.md"

import keras  # noqa: E402
import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_kd  # noqa: E402
from keras_kd import text_datasets as td  # noqa: E402
from keras_kd.src.models import text_models  # noqa: E402

SEQUENCE_LENGTH = 32
VOCABULARY_SIZE = 6000
TEACHER = dict(num_layers=2, num_heads=2, hidden_dim=128, intermediate_dim=256)
STUDENT = dict(num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)
PRETRAIN_BATCH = 128
QUICK = False  # --quick: a smoke run on slices, cached apart, report not written


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_state() -> dict:
    path = CACHE / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(state: dict) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "state.json").write_text(json.dumps(state, indent=1, default=float))


# ------------------------------------------------------------------ data

def labelled_splits():
    """Train / validation (last 15% of train, by the fixed hash order) / test."""
    (x_train, y_train), (x_test, y_test) = td.load_debian_descriptions(
        max_per_class=60 if QUICK else None)
    cut = int(0.85 * len(x_train))
    return (x_train[:cut], y_train[:cut]), (x_train[cut:], y_train[cut:]), (x_test, y_test)


def unlabelled_corpus(held_out):
    debian = td.load_debian_unlabelled(exclude=held_out)
    python = td.load_python_docstrings(max_files=20 if QUICK else None)
    if QUICK:
        debian = debian[:3000]
    return debian, python


def tokenizer_from(vocabulary):
    return keras_hub.tokenizers.BertTokenizer(vocabulary=vocabulary, lowercase=True)


def stage_vocab(state):
    if (CACHE / "vocab.txt").exists():
        return [line for line in (CACHE / "vocab.txt").read_text().split("\n") if line]
    train, val, test = labelled_splits()
    debian, python = unlabelled_corpus(set(val[0]) | set(test[0]))
    started = time.time()
    vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(list(debian) + list(python)).batch(1000),
        VOCABULARY_SIZE, lowercase=True,
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "vocab.txt").write_text("\n".join(vocabulary) + "\n")
    state["corpus"] = dict(
        debian_texts=len(debian), debian_words=td.count_words(debian),
        python_texts=len(python), python_words=td.count_words(python),
        vocabulary=len(vocabulary), vocab_seconds=time.time() - started,
    )
    save_state(state)
    return vocabulary


def encode(preprocessor, texts, batch=2048):
    """`{"token_ids", "segment_ids", "padding_mask"}` numpy arrays."""
    parts = [preprocessor(tf.constant(list(texts[i:i + batch]))) for i in range(0, len(texts), batch)]
    return {k: np.concatenate([keras.ops.convert_to_numpy(p[k]) for p in parts]) for k in parts[0]}


def take(inputs, index):
    return {k: v[index] for k, v in inputs.items()}


# ------------------------------------------------------------- pretrain

def backbone(vocabulary_size, config, seed):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size, max_sequence_length=SEQUENCE_LENGTH, dropout=0.1, **config
    )


def stage_pretrain(state, vocabulary, steps):
    path = CACHE / "teacher_backbone_pretrained.weights.h5"
    if path.exists():
        return path
    tokenizer = tokenizer_from(vocabulary)
    train, val, test = labelled_splits()
    debian, python = unlabelled_corpus(set(val[0]) | set(test[0]))
    rng = np.random.default_rng(0)
    # In-domain text first: the Debian descriptions, plus the docstrings.
    texts = np.array(list(debian) + list(python), dtype=object)
    texts = texts[rng.permutation(len(texts))]
    held = texts[:256 if QUICK else 2048]
    texts = texts[len(held):]
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH, mask_selection_length=8,
    )
    bb = backbone(len(vocabulary), TEACHER, seed=0)
    model = keras_hub.models.BertMaskedLM(bb, preprocessor=None)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps, alpha=0.05, warmup_target=1e-3,
                                                      warmup_steps=max(1, steps // 20))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    data = (tf.data.Dataset.from_tensor_slices(texts).repeat().batch(PRETRAIN_BATCH)
            .map(preprocessor, num_parallel_calls=1).prefetch(2))
    held_data = tf.data.Dataset.from_tensor_slices(held).batch(256).map(preprocessor).cache()
    before = model.evaluate(held_data, verbose=0, return_dict=True)
    started = time.time()
    loads = []  # the machine's 1-minute load average, sampled while pretraining
    sample_load = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: loads.append(os.getloadavg()[0]))
    history = model.fit(data, steps_per_epoch=max(1, steps // 4), epochs=4, verbose=2,
                        callbacks=[sample_load])
    seconds = time.time() - started
    after = model.evaluate(held_data, verbose=0, return_dict=True)
    bb.save_weights(str(path))
    state["pretrain"] = dict(
        steps=steps, batch=PRETRAIN_BATCH, sequence_length=SEQUENCE_LENGTH,
        token_slots=steps * PRETRAIN_BATCH * SEQUENCE_LENGTH, texts_seen=steps * PRETRAIN_BATCH,
        corpus_texts=len(texts), seconds=seconds, held_out_before=before, held_out_after=after,
        loss=[float(v) for v in history.history["loss"]], parameters=bb.count_params(),
        load_average=loads,
    )
    save_state(state)
    log(f"pretrained {steps} steps in {seconds:.0f} s: held-out MLM {before} -> {after}")
    return path


# ------------------------------------------------------------- finetune

def classifier(vocabulary_size, config, num_classes, seed, weights=None):
    bb = backbone(vocabulary_size, config, seed)
    if weights is not None:
        bb.load_weights(str(weights))
    return keras_hub.models.BertTextClassifier(bb, num_classes=num_classes, preprocessor=None,
                                               dropout=0.1)


def accuracy(model, inputs, labels):
    logits = model.predict(inputs, batch_size=512, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == labels))


def fit_choosing_epoch(model, train, val, epochs, learning_rate, batch=64, seed=0, fit=None):
    """Trains `epochs` epochs, keeps the weights of the best validation epoch."""
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    best, best_weights, curve = -1.0, None, []
    for epoch in range(epochs):
        keras.utils.set_random_seed(seed * 1000 + epoch)
        model.fit(train[0], train[1], batch_size=batch, epochs=1, verbose=0, shuffle=True)
        value = accuracy(model, *val)
        curve.append(value)
        if value > best:
            best, best_weights = value, model.get_weights()
    model.set_weights(best_weights)
    return best, curve


def stage_finetune(state, vocabulary, inputs):
    results = state.setdefault("finetune", {})
    paths = {}
    for name, pretrained in (("pretrained", True), ("scratch", False)):
        path = CACHE / f"teacher_{name}.weights.h5"
        paths[name] = path
        if path.exists():
            continue
        weights = CACHE / "teacher_backbone_pretrained.weights.h5" if pretrained else None
        model = classifier(len(vocabulary), TEACHER, inputs["classes"], seed=0, weights=weights)
        started = time.time()
        # 2e-4 x 4 epochs was tried first: 76.7% validation, still rising
        # (state["finetune_tried"]); both teachers use 1e-3 x 6 epochs.
        lr = 1e-3
        best, curve = fit_choosing_epoch(model, inputs["train"], inputs["val"], 1 if QUICK else 6, lr)
        model.save_weights(str(path))
        results[name] = dict(val=best, curve=curve, learning_rate=lr, seconds=time.time() - started,
                             parameters=model.count_params())
        save_state(state)
        log(f"teacher {name}: validation {best:.4f} (curve {curve})")
    return paths


# -------------------------------------------------------------- main

STAGES = ("vocab", "pretrain", "finetune", "distill", "export", "all", "report")


def learning_rates(text):
    """`"1e-3,3e-3"` -> `[0.001, 0.003]`, for `--tiny-lrs`."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"--tiny-lrs must be comma-separated positive learning rates, e.g. '1e-3,3e-3,1e-2'. "
            f"Received: {text!r}.")
    return values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="all", choices=STAGES,
                        help="Run the stages up to this one (each cached); 'all' runs every stage.")
    parser.add_argument("--pretrain-steps", type=int, default=480)
    parser.add_argument("--seeds", type=int, default=3, help="Seeds of the embedding-bag runs.")
    parser.add_argument("--tiny-seeds", type=int, default=1, help="Seeds of the tiny-BERT runs.")
    parser.add_argument("--tiny-lrs", type=learning_rates, default=[1e-3, 3e-3, 1e-2, 3e-2],
                        help="Learning rates tried for the tiny BERT alone (seed 0, validation); "
                             "every tiny-BERT run uses the best.")
    parser.add_argument("--student-epochs", type=int, default=5)
    parser.add_argument("--transfer", type=int, default=8000, help="Unlabelled transfer texts.")
    parser.add_argument("--intermediate-transfer", type=int, default=3000,
                        help="Transfer texts in the live-teacher intermediate-terms run.")
    parser.add_argument("--no-intermediate", dest="intermediate", action="store_false")
    parser.add_argument("--latency-runs", type=int, default=200,
                        help="Timed single-example calls per exported artifact (after a warm-up).")
    parser.add_argument("--quick", action="store_true", help="Smoke run on slices (own cache).")
    args = parser.parse_args(argv)
    if args.latency_runs < 10:
        parser.error(f"--latency-runs must be at least 10 (a p90 needs them). Received: {args.latency_runs}.")
    if args.quick:
        global QUICK, CACHE, OUTPUT
        QUICK, CACHE, OUTPUT = True, CACHE.parent / "bert_case_quick", Path("/tmp/bert_case_quick.md")
        args.pretrain_steps, args.student_epochs, args.seeds, args.tiny_seeds = 4, 1, 2, 1
        args.transfer, args.intermediate_transfer, args.latency_runs = 300, 100, 20
    state = load_state()
    if args.stage == "report":
        if "export" not in state or "finished" not in state:
            parser.error(f"--stage report rewrites the results file from a finished run's state, "
                         f"but {CACHE / 'state.json'} holds no finished run: run --stage all first.")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import bert_report

        state["report_command"] = " ".join(["python benchmarks/bert_case.py", *sys.argv[1:]])
        bert_report.write(state, args)
        return
    state.setdefault("started", datetime.datetime.now(datetime.timezone.utc).isoformat())
    state.setdefault("load_start", list(os.getloadavg()))
    vocabulary = stage_vocab(state)
    log(f"vocabulary {len(vocabulary)}; corpus {state.get('corpus')}")
    if args.stage == "vocab":
        return
    stage_pretrain(state, vocabulary, args.pretrain_steps)
    if args.stage == "pretrain":
        return
    inputs = prepare_inputs(vocabulary)
    stage_finetune(state, vocabulary, inputs)
    if args.stage == "finetune":
        return
    import bert_distill  # stages 4 and 5 live next to this file
    import bert_export
    import bert_report

    state["command"] = "TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 PYTHONPATH=. python benchmarks/bert_case.py " + " ".join(sys.argv[1:])
    bert_distill.run(state, vocabulary, inputs, args)
    if args.stage in ("export", "all"):
        bert_export.run(state, vocabulary, inputs, args)
    state["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    state["load_end"] = list(os.getloadavg())
    save_state(state)
    bert_report.write(state, args)


def prepare_inputs(vocabulary):
    path = CACHE / "inputs.npz"
    if path.exists():
        data = np.load(path, allow_pickle=True)
        unpack = lambda p: {k[len(p) + 1:]: data[k] for k in data.files if k.startswith(p + "/")}
        return dict(train=(unpack("train"), data["y_train"]), val=(unpack("val"), data["y_val"]),
                    test=(unpack("test"), data["y_test"]), transfer=unpack("transfer"),
                    classes=int(data["classes"]))
    tokenizer = tokenizer_from(vocabulary)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=SEQUENCE_LENGTH)
    train, val, test = labelled_splits()
    labelled = set(train[0]) | set(val[0]) | set(test[0])
    transfer_texts = [t for t in td.load_debian_unlabelled(exclude=set(val[0]) | set(test[0]))
                      if t not in labelled][: 2000 if QUICK else None]
    arrays = {}
    for split, (x, y) in (("train", train), ("val", val), ("test", test)):
        for k, v in encode(preprocessor, x).items():
            arrays[f"{split}/{k}"] = v
        arrays[f"y_{split}"] = y
    for k, v in encode(preprocessor, transfer_texts).items():
        arrays[f"transfer/{k}"] = v
    arrays["classes"] = np.array(len(td.DEBIAN_SECTIONS))
    np.savez(path, **arrays)
    return prepare_inputs(vocabulary)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.modules["bert_case"] = sys.modules[__name__]  # one module for bert_distill too
    main()
