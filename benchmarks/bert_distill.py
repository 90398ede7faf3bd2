"""Stage 4 of benchmarks/bert_case.py: distil the fine-tuned BERT teacher.

Students (both >= 10x smaller than the teacher): an embedding bag
(fastText-style, the `text_models` design on the BERT token ids) and a tiny
keras-hub BERT. Each is trained alone and distilled (logits on the labelled
set; + unlabelled transfer text; + intermediate terms for the tiny BERT).
Logit distillation uses the teacher's logits computed once (teacher=None,
cached logits); the intermediate terms need the live teacher.

The tiny BERT's learning rate is chosen first, on the validation split, for
the student alone (seed 0, `--tiny-lrs`); every tiny-BERT run (alone and
distilled, all seeds) then uses it, so the distilled students are compared
with the strongest student-alone baseline of the grid. The embedding bag's
learning rate (3e-3) is fixed a priori.

The seed-0 students are saved under `CACHE/students/` (weights only) and the
teacher's logits in `CACHE/teacher_logits.npz`, for the export stage.
"""

from __future__ import annotations

import datetime
import os
import platform
import time

import numpy as np
import tensorflow as tf

import keras
import keras_hub

import keras_kd
from keras_kd.src.terms import transformer_terms as tt

import bert_case as bc

BATCH = 64
GRID = ((1.0, 0.5), (2.0, 0.5))
#: The embedding bag's learning rate, fixed a priori (not tuned).
EMBEDDING_BAG_LR = 3e-3


def embedding_bag(vocabulary_size, num_classes, dim=16, seed=0):
    """`text_models.embedding_bag_student` on keras-hub's inputs dict."""
    keras.utils.set_random_seed(seed)
    inputs = {k: keras.Input((bc.SEQUENCE_LENGTH,), dtype="int32", name=k)
              for k in ("token_ids", "segment_ids", "padding_mask")}
    x = keras.layers.Embedding(vocabulary_size, dim, mask_zero=True, name="embedding")(inputs["token_ids"])
    x = keras.layers.GlobalAveragePooling1D(name="features")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="embedding_bag")


def tiny_bert(vocabulary_size, num_classes, seed=0):
    return bc.classifier(vocabulary_size, bc.STUDENT, num_classes, seed)


def make_student(kind, vocabulary_size, num_classes, seed):
    return (embedding_bag if kind == "embedding_bag" else tiny_bert)(vocabulary_size, num_classes, seed=seed)


def student_path(row):
    """Where the seed-0 student of a results row is cached (weights only)."""
    return bc.CACHE / "students" / f"{row.replace('/', '.')}.weights.h5"


def train_alone(kind, inputs, vocabulary_size, seed, epochs, learning_rate):
    model = make_student(kind, vocabulary_size, inputs["classes"], seed)
    best, curve = bc.fit_choosing_epoch(model, inputs["train"], inputs["val"], epochs, learning_rate,
                                        seed=seed)
    return model, best, curve


def distil(kind, inputs, vocabulary_size, seed, epochs, temperature, alpha, logits, learning_rate,
           transfer=None, teacher=None, terms=(), transfer_limit=None):
    """Distils with cached teacher logits (teacher=None) or a live teacher
    (when `terms` need its features); keeps the best validation epoch."""
    student = make_student(kind, vocabulary_size, inputs["classes"], seed)
    x, y = inputs["train"]
    x_all, logits_all, y_all = x, logits["train"], y
    if transfer is not None:
        count = len(transfer["token_ids"]) if transfer_limit is None else transfer_limit
        x_all = {k: np.concatenate([x[k], transfer[k][:count]]) for k in x}
        logits_all = np.concatenate([logits["train"], logits["transfer"][:count]])
        y_all = np.concatenate([y, np.full(count, keras_kd.UNLABELED, "int32")])
    distiller = keras_kd.Distiller(student=student, teacher=teacher)
    distiller.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=0.01),
                      alpha=alpha, temperature=temperature, distillation_terms=list(terms))
    order_rng = np.random.default_rng(seed)
    best, best_weights, curve = -1.0, None, []
    for epoch in range(epochs):
        keras.utils.set_random_seed(seed * 1000 + epoch)
        order = order_rng.permutation(len(y_all))
        xs = {k: v[order] for k, v in x_all.items()}
        if teacher is None:
            data = {keras_kd.INPUTS_KEY: xs, keras_kd.TEACHER_LOGITS_KEY: logits_all[order]}
        else:
            data = xs
        distiller.fit(data, y_all[order], batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
        value = bc.accuracy(student, *inputs["val"])
        curve.append(value)
        if value > best:
            best, best_weights = value, student.get_weights()
    student.set_weights(best_weights)
    return student, best, curve


def teacher_logits(teacher, inputs, transfer_limit):
    out = {}
    for split in ("train", "val", "test"):
        out[split] = teacher.predict(inputs[split][0], batch_size=512, verbose=0)
    transfer = {k: v[:transfer_limit] for k, v in inputs["transfer"].items()}
    out["transfer"] = teacher.predict(transfer, batch_size=512, verbose=0)
    return out


def run(state, vocabulary, inputs, args):
    tokenizer = bc.tokenizer_from(vocabulary)
    V, C = len(vocabulary), inputs["classes"]
    teachers = {}
    for name in ("pretrained", "scratch"):
        model = bc.classifier(V, bc.TEACHER, C, seed=0)
        model.load_weights(str(bc.CACHE / f"teacher_{name}.weights.h5"))
        tt.check_vocabulary(tokenizer, model)
        teachers[name] = model
    teacher = teachers["pretrained"]
    state.setdefault("load_distill_start", os.getloadavg()[0])
    state["settings"] = {name: getattr(args, name) for name in (
        "seeds", "tiny_seeds", "tiny_lrs", "student_epochs", "transfer", "intermediate_transfer",
        "intermediate", "latency_runs", "pretrain_steps")}
    transfer_limit = min(args.transfer, len(inputs["transfer"]["token_ids"]))
    started = time.time()
    logits = teacher_logits(teacher, inputs, transfer_limit)
    state["teacher_logits_seconds"] = time.time() - started
    np.savez(bc.CACHE / "teacher_logits.npz", **logits)
    epochs = {"embedding_bag": args.student_epochs, "tiny_bert": args.student_epochs}
    selection, results = state.setdefault("selection", {}), state.setdefault("results", {})

    def record(row, model, val, seed, seconds):
        entry = results.setdefault(row, {"test": [], "val": [], "seconds": [], "parameters": model.count_params()})
        entry["test"].append(bc.accuracy(model, *inputs["test"]))
        entry["val"].append(val)
        entry["seconds"].append(seconds)
        if seed == 0:
            student_path(row).parent.mkdir(parents=True, exist_ok=True)
            model.save_weights(str(student_path(row)))
        bc.save_state(state)
        bc.log(f"{row} seed {seed}: val {val:.4f} test {entry['test'][-1]:.4f} ({seconds:.0f} s)")

    def done(row, seed):
        return len(results.get(row, {}).get("test", [])) > seed

    # 1. Settings on the validation split (seed 0): T and alpha for logit KD,
    #    per student kind; the epoch is chosen on validation in every run.
    for kind in ("embedding_bag",):  # the tiny BERT reuses its choice (budget)
        key = f"{kind}/grid"
        if key in selection:
            continue
        grid = {}
        for temperature, alpha in GRID:
            _, best, _ = distil(kind, inputs, V, 0, epochs[kind], temperature, alpha, logits,
                                EMBEDDING_BAG_LR, transfer=inputs["transfer"],
                                transfer_limit=transfer_limit)
            grid[f"T={temperature:g}, alpha={alpha:g}"] = best
            bc.log(f"{kind} validation T={temperature} alpha={alpha}: {best:.4f}")
        selection[key] = grid
        bc.save_state(state)

    # The tiny BERT's learning rate, for the student alone (seed 0): the run
    # at the chosen rate is the alone row's seed 0 (the same run), its test
    # split read once there.
    if "tiny_bert/lr" not in selection:
        grid, runs = {}, {}
        for lr in args.tiny_lrs:
            t0 = time.time()
            runs[lr] = train_alone("tiny_bert", inputs, V, 0, epochs["tiny_bert"], lr)[:2]
            runs[lr] += (time.time() - t0,)
            grid[f"{lr:g}"] = runs[lr][1]
            bc.log(f"tiny_bert alone lr={lr:g}: validation {runs[lr][1]:.4f}")
        best_lr = max(runs, key=lambda lr: runs[lr][1])
        selection["tiny_bert/lr"] = {"grid": grid, "chosen": best_lr}
        results.pop("tiny_bert/alone", None)  # runs at another learning rate
        model, val, seconds = runs[best_lr]
        record("tiny_bert/alone", model, val, 0, seconds)
        del runs

    def chosen(kind):
        """T and alpha of logit KD: the embedding bag's choice, for both kinds."""
        kind = "embedding_bag"
        name = max(selection[f"{kind}/grid"], key=selection[f"{kind}/grid"].get)
        T, a = [float(part.split("=")[1]) for part in name.split(", ")]
        return T, a

    learning_rate = {"embedding_bag": EMBEDDING_BAG_LR, "tiny_bert": selection["tiny_bert/lr"]["chosen"]}

    # 2. The runs, test read once per final model.
    for name, model in teachers.items():
        row = f"teacher/{name}"
        if row not in results:
            record(row, model, state["finetune"][name]["val"], 0, state["finetune"][name]["seconds"])

    seeds = {"embedding_bag": args.seeds, "tiny_bert": args.tiny_seeds}
    for kind in ("embedding_bag", "tiny_bert"):
        T, a = chosen(kind)
        lr = learning_rate[kind]
        for seed in range(seeds[kind]):
            plan = [
                (f"{kind}/alone", lambda: train_alone(kind, inputs, V, seed, epochs[kind], lr)),
                (f"{kind}/kd_logits", lambda: distil(kind, inputs, V, seed, epochs[kind], T, a, logits, lr)),
                (f"{kind}/kd_logits_transfer", lambda: distil(
                    kind, inputs, V, seed, epochs[kind], T, a, logits, lr,
                    transfer=inputs["transfer"], transfer_limit=transfer_limit)),
            ]
            for row, job in plan:
                if done(row, seed):
                    continue
                t0 = time.time()
                model, val, _ = job()
                record(row, model, val, seed, time.time() - t0)

    state["transfer_used"] = transfer_limit
    write_report(state, args)  # written now too, in case the next part fails

    # 3. Intermediate terms (tiny BERT, live teacher), on labelled + a part
    #    of the transfer text; weights fixed a priori (TinyBERT uses 1).
    T, a = chosen("tiny_bert")
    for seed in range(args.tiny_seeds if args.intermediate else 0):
        row = "tiny_bert/kd_logits_transfer_intermediate"
        if done(row, seed):
            continue
        terms = [tt.HiddenStateDistillation(layer_map="uniform"), tt.EmbeddingDistillation(),
                 tt.AttentionDistillation(layer_map="last_k", k=1)]
        t0 = time.time()
        try:
            model, val, _ = distil("tiny_bert", inputs, V, seed, epochs["tiny_bert"], T, a, logits,
                                   learning_rate["tiny_bert"], transfer=inputs["transfer"],
                                   teacher=teacher, terms=terms,
                                   transfer_limit=min(transfer_limit, args.intermediate_transfer))
        except Exception as error:  # recorded in the report, not hidden
            state["intermediate_error"] = f"{type(error).__name__}: {error}"[:2000]
            bc.log(f"intermediate run failed: {state['intermediate_error']}")
            break
        # The exported student carries no projection weights.
        assert not any("projection" in w.path for w in model.weights)
        record(row, model, val, seed, time.time() - t0)
    state["transfer_used"] = transfer_limit
    bc.save_state(state)


def _mean_std(values):
    values = 100 * np.asarray(values)
    return values.mean(), (values.std(ddof=1) if len(values) > 1 else float("nan"))


def write_report(state, args):
    import bert_report

    bert_report.write(state, args)
