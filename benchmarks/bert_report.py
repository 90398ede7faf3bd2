"""Writes benchmarks/results/bert_case.md from the state of benchmarks/bert_case.py."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

import bert_case as bc

ROWS = (
    ("teacher/pretrained", "Teacher: BERT {t} pretrained (MLM) + fine-tuned"),
    ("teacher/scratch", "Same teacher, no pretraining (fine-tuned from random init)"),
    ("embedding_bag/alone", "Embedding bag (d=16) alone"),
    ("embedding_bag/kd_logits", "Embedding bag distilled: logits, labelled set"),
    ("embedding_bag/kd_logits_transfer", "Embedding bag distilled: logits + transfer text"),
    ("tiny_bert/alone", "Tiny BERT {s} alone"),
    ("tiny_bert/kd_logits", "Tiny BERT distilled: logits, labelled set"),
    ("tiny_bert/kd_logits_transfer", "Tiny BERT distilled: logits + transfer text"),
    ("tiny_bert/kd_logits_transfer_intermediate",
     "Tiny BERT distilled: logits + transfer + hidden/embedding/attention terms"),
)


def _stats(values):
    values = 100 * np.asarray(values, dtype=float)
    std = values.std(ddof=1) if len(values) > 1 else float("nan")
    return values.mean(), std


def _fmt(values):
    mean, std = _stats(values)
    return f"{mean:.2f}" if np.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def _config(c):
    return f"({c['num_layers']} layers, hidden {c['hidden_dim']}, {c['num_heads']} heads, ffn {c['intermediate_dim']})"


def write(state, args, path=None):
    path = bc.OUTPUT if path is None else path
    r = state["results"]
    corpus, pre = state["corpus"], state["pretrain"]
    lines = [
        "# The BERT case: pretrain offline, fine-tune, distil (issue 17)",
        "",
        f"Produced by `{state.get('command', 'python benchmarks/bert_case.py')}` "
        f"(stages cached under `benchmarks/.cache/bert_case/`), started {state['started'][:16]} UTC, "
        f"finished {state.get('finished', '?')[:16]} UTC; {platform.machine()}, {os.cpu_count()} CPU cores "
        "shared with other developers' jobs, no GPU, one intra-op and one inter-op thread. "
        f"Load average (1 min) {state.get('load_distill_start', float('nan')):.1f} when distillation began and "
        f"{os.getloadavg()[0]:.1f} at the end; about 7 (by `uptime`) during pretraining.",
        "",
        "## Corpus, vocabulary, pretraining",
        "",
        f"- Unlabelled text (offline): **{corpus['debian_texts']:,} Debian package descriptions** "
        f"({corpus['debian_words']:,} words; every package of apt's lists except the labelled task's "
        f"validation and test texts) and **{corpus['python_texts']:,} docstring paragraphs and comment "
        f"blocks of the Python standard library** ({corpus['python_words']:,} words; `ast` + `tokenize`, "
        "tests and site-packages excluded): `keras_kd.text_datasets.load_debian_unlabelled`, "
        "`load_python_docstrings`.",
        f"- WordPiece vocabulary trained on both with `keras_hub.tokenizers.compute_word_piece_vocabulary` "
        f"(lowercased, asked for {bc.VOCABULARY_SIZE:,}, got {corpus['vocabulary']:,}); `BertTokenizer`.",
        f"- Teacher backbone: `BertBackbone` {_config(bc.TEACHER)}, {pre['parameters']:,} parameters, random init, "
        f"trained as `BertMaskedLM` for {pre['steps']} steps of {pre['batch']} sequences of {pre['sequence_length']} "
        f"tokens ({pre['texts_seen']:,} texts, {pre['token_slots']:,} token slots with padding: "
        f"{pre['texts_seen'] / pre['corpus_texts']:.2f} passes over the corpus) in {pre['seconds'] / 60:.1f} min. "
        f"Held-out masked-token accuracy (2,048 texts not trained on) {100 * pre['held_out_before']['accuracy']:.1f}% before, "
        f"{100 * pre['held_out_after']['accuracy']:.1f}% after.",
        "",
        "## Task and protocol",
        "",
        f"Debian package sections (8 classes, `load_debian_descriptions`): training split "
        f"{len(bc.labelled_splits()[0][0]):,} texts, validation the last 15% of the training split "
        f"({len(bc.labelled_splits()[1][0]):,}), test {len(bc.labelled_splits()[2][0]):,} (fixed hash split). "
        f"Transfer text: {state['transfer_used']:,} unlabelled Debian descriptions of packages outside the labelled set "
        "(label `UNLABELED`, soft loss only).",
        "",
        "**How settings were chosen**: every run keeps the weights of its best validation epoch "
        f"(teachers 6 epochs, students {args.student_epochs}). T and alpha of logit KD were chosen on the "
        "validation split (seed 0, embedding bag with transfer text) from the grid below and reused for the tiny "
        "BERT (no budget for its own grid). The teachers' learning rate: 2e-4 for 4 epochs was tried first and "
        "reached only 76.7% validation, still rising, so both teachers use 1e-3 for 6 epochs. The students' "
        "learning rates (3e-3 embedding bag, 1e-3 tiny BERT) and the intermediate terms' weights (1 each, "
        "TinyBERT's) were fixed a priori, not tuned. The test split was read once per final model. "
        "**Baseline**: the same student alone, same epochs, optimizer, seed and epoch selection. Teacher logits "
        "for logit KD were computed once (teacher=None, cached logits); the intermediate terms ran the live "
        "teacher.",
        "",
        "| Validation (seed 0) | " + " | ".join(state["selection"]["embedding_bag/grid"]) + " |",
        "|---|" + "---:|" * len(state["selection"]["embedding_bag/grid"]),
    ]
    for kind in ("embedding_bag",):
        grid = state["selection"][f"{kind}/grid"]
        lines.append(f"| {kind} | " + " | ".join(f"{100 * v:.2f}" for v in grid.values()) + " |")
    lines += [
        "",
        "## Results (test accuracy, %)",
        "",
        "| Model | Parameters | Seeds | Validation | Test | Seconds per run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in ROWS:
        if key not in r:
            continue
        e = r[key]
        lines.append(
            f"| {label.format(t=_config(bc.TEACHER), s=_config(bc.STUDENT))} | {e['parameters']:,} | "
            f"{len(e['test'])} | {_fmt(e['val'])} | {_fmt(e['test'])} | {np.mean(e['seconds']):.0f} |"
        )
    check = state.get("tiny_bert_alone_lr")
    if check:
        vals = ", ".join(f"lr {k}: {100 * v:.2f}%" for k, v in check["val"].items())
        lines += ["", f"Baseline check: the tiny BERT alone at other learning rates (seed 0, validation): {vals} "
                  f"(1e-3, the protocol's: {100 * r['tiny_bert/alone']['val'][0]:.2f}%). The best, lr "
                  f"{check['chosen']}, reads {100 * check['test']:.2f}% on the test split."]
    if state.get("intermediate_error"):
        lines += ["", f"The intermediate-terms run failed: `{state['intermediate_error']}`."]
    lines += ["", "## Against the goal", ""]
    teacher = 100 * np.mean(r["teacher/pretrained"]["test"])
    for kind in ("embedding_bag", "tiny_bert"):
        alone = r.get(f"{kind}/alone")
        if not alone:
            continue
        a_mean, a_std = _stats(alone["test"])
        for key in (f"{kind}/kd_logits", f"{kind}/kd_logits_transfer",
                    f"{kind}/kd_logits_transfer_intermediate"):
            if key not in r:
                continue
            d_mean, d_std = _stats(r[key]["test"])
            gain = d_mean - a_mean
            gap = teacher - a_mean
            closed = gain / gap if gap > 0 else float("nan")
            n = min(len(r[key]["test"]), len(alone["test"]))
            if n > 1:
                diffs = 100 * (np.asarray(r[key]["test"][:n]) - np.asarray(alone["test"][:n]))
                spread = f"paired difference {diffs.mean():+.2f} ± {diffs.std(ddof=1):.2f} over {n} seeds"
                met_std = abs(diffs.mean()) > 2 * diffs.std(ddof=1)
            else:
                spread = "one seed: no spread, so the > 2 std part cannot be checked"
                met_std = False
            met = gain >= 2.0 and met_std and closed >= 0.5
            lines.append(
                f"- `{key}`: {gain:+.2f} points over alone ({spread}); closes "
                f"{100 * closed:.0f}% of the {gap:.2f}-point gap to the pretrained teacher. "
                f"Goal (>= 2 points, > 2 std, >= 50% of the gap): **{'met' if met else 'not met'}**."
            )
    check = state.get("tiny_bert_alone_lr")
    if check and "tiny_bert/kd_logits_transfer_intermediate" in r:
        tuned = 100 * check["test"]
        distilled = 100 * np.mean(r["tiny_bert/kd_logits_transfer_intermediate"]["test"])
        lines.append(
            f"- Against the stronger baseline of the check (tiny BERT alone at lr {check['chosen']}, chosen on "
            f"validation, one seed: {tuned:.2f}%), the intermediate-terms student is {distilled - tuned:+.2f} points "
            f"better and closes {100 * (distilled - tuned) / (teacher - tuned):.0f}% of the gap; with one seed for "
            "that baseline its > 2 std part is unchecked, and the distilled run was not retried at that lr. So "
            "the 'met' above is against the protocol's weak baseline; this line is the fairer reading."
        )
    t_pre, t_scr = (100 * np.mean(r[f"teacher/{n}"]["test"]) for n in ("pretrained", "scratch"))
    v_pre, v_scr = (100 * np.mean(r[f"teacher/{n}"]["val"]) for n in ("pretrained", "scratch"))
    lines += [
        "",
        "## Reading, and where it falls short",
        "",
        f"- **The teacher is weak, and pretraining barely shows.** {pre['steps']} MLM steps "
        f"({pre['texts_seen'] / pre['corpus_texts']:.2f} passes, held-out masked-token accuracy "
        f"{100 * pre['held_out_after']['accuracy']:.1f}%) is what fitted the budget on 2 shared cores. The pretrained "
        f"teacher reads {t_pre:.2f}% on test against {t_scr:.2f}% without pretraining, but {v_pre:.2f}% against "
        f"{v_scr:.2f}% on validation: one seed each, so no pretraining gain is shown beyond noise. Real BERT "
        "pretraining is orders of magnitude longer.",
        "- **The gap to close is about one point** for the embedding bag: alone it is nearly as good as the "
        "teacher on this short-text task (the finding of `text_classification.md`). A gain of 2 points then means "
        "beating the teacher, which only the transfer text does: soft labels on 8,000 unlabelled descriptions "
        "are more (pseudo-)labelled data. That gain is clear against the spread over seeds but smaller than 2 "
        "points.",
        "- **Logits on the labelled set alone hurt** both students (as in `text_classification.md`): the "
        "teacher's soft labels there are less accurate than the true labels they replace half of (alpha=0.5).",
        "- **The tiny BERT alone is badly undertrained** at the protocol's settings (lr 1e-3, 5 epochs, "
        "hidden 16): the baseline check above shows how much of its deficit is the learning rate. The "
        "intermediate terms (hidden states through projections, embeddings, last-layer attention) give it a dense "
        "per-token signal and bring it to the teacher's level within the same 5 epochs, on fewer transfer "
        "texts (3,000 with the live teacher).",
        f"- **Budget**: vocabulary {corpus['vocab_seconds'] / 60:.1f} min, pretraining {pre['seconds'] / 60:.1f} min, "
        f"fine-tuning {sum(r[f'teacher/{n}']['seconds'][0] for n in ('pretrained', 'scratch')) / 60:.1f} min, "
        f"distillation runs {sum(sum(e['seconds']) for k, e in r.items() if not k.startswith('teacher')) / 60:.1f} min "
        "(plus loading, encoding and teacher logits). Before it, a timing pilot (`benchmarks/bert_pilot.py`, "
        "7 min) and a first fine-tuning at lr 2e-4 (about 8 min, discarded, see above); a `--quick` smoke run "
        "overlapped. In all this overran the planned 45 minutes of wall time on the shared machine (load 5-9). "
        "Export (issue 17, item 4) is not done here.",
    ]
    path.write_text("\n".join(lines) + "\n")
    bc.log(f"wrote {path}")
