"""Methods table: Hinton KD, live and cached teachers, transfer sets, ensembles, hints, AT, DKD on Fashion-MNIST (the earlier results table).

Trains every row of `ROWS` (teacher, the student alone, the student distilled
with each method) on the same data, augmentation, schedule and seeds, and
writes mean and standard deviation over seeds to
`benchmarks/results/methods_table.md`, with the raw per-seed numbers in
`methods_table.json` and `methods_table.csv`.

    PYTHONPATH=. python benchmarks/methods_table.py            # the committed run
    PYTHONPATH=. python benchmarks/methods_table.py --quick    # a smoke test
    PYTHONPATH=. python benchmarks/methods_table.py --rows kd scratch

Teachers are trained once per seed and kept under `benchmarks/.cache/`, with
their logits on every augmented view, so a rerun (or another row) does not
train them again. Rows already in the JSON file for the same budget are kept,
so rows can be (re)run one at a time.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kd_bench  # noqa: E402
from kd_bench import Budget, log  # noqa: E402

COMMAND = "PYTHONPATH=. python benchmarks/methods_table.py"

#: What every methods table says about how its settings were chosen.
METHODS_SETTINGS_NOTE = (
    'How the settings were chosen: on the test set, not a validation split (the earlier '
    'protocol, kept for comparison): the student learning rate, width, T = 1 and alpha = '
    '0.1 of the CNN rows came from one-seed pilots read on these test images, and '
    '`sweeps.py` reads the test set for each point. The baseline is the student alone '
    'with the same data, epochs and (no) augmentation, not the strongest student alone. '
    '`results_table.py` (`results_table.md`) is the table with settings chosen on a '
    'validation split and the test set read once.'
)


# ------------------------------------------------------------- row registry

def _students(budget: Budget) -> Dict[str, Callable]:
    from keras_kd import models

    return {
        "cnn_student": lambda: models.cnn_student(width=budget.student_width),
        "mlp_800": lambda: models.mlp((800, 800), name="mlp_800"),
        "mlp_30": lambda: models.mlp((30, 30), name="mlp_30"),
    }


STUDENT_LABELS = {
    "cnn_student": "CNN student",
    "mlp_800": "MLP 2x800",
    "mlp_30": "MLP 2x30",
}
TEACHER_LABELS = {
    "cnn": "CNN teacher",
    "mlp": "MLP 2x1200 teacher (dropout)",
    "cnn_ensemble": "3 CNN teachers",
}


@dataclass(frozen=True)
class RowSpec:
    """One row of the table.

    `method` is `"teacher"` (evaluate the trained teacher), `"scratch"` (the
    student alone, plain `model.fit` on the labels) or `"distill"` (a
    `Distiller` with `temperature`, `alpha` and the extra terms that
    `terms(student, teachers)` returns). `source` says where the teacher's
    logits come from: `"cached"` (precomputed per augmented view) or
    `"live"` (the teacher runs inside every training step).
    With `transfer_size`, a distilled student trains on the first
    `transfer_size` training images: its own labelled ones and unlabelled
    ones (label `keras_kd.UNLABELED`) that only the teacher's outputs
    describe, for as many steps as the other students (fewer epochs).
    """

    id: str
    label: str
    method: str
    student: Optional[str] = None
    teacher: Optional[str] = None
    source: str = "cached"
    temperature: float = 4.0
    alpha: float = 0.1
    terms: Optional[Callable] = None
    baseline: str = "scratch"
    available: Callable[[], Optional[str]] = lambda: None
    note: str = ""
    transfer_size: Optional[int] = None


def _terms_module():
    import keras_kd

    return keras_kd


def _needs(*names: str) -> Callable[[], Optional[str]]:
    """An availability check: the reason a row cannot run, or None."""

    def check():
        module = _terms_module()
        missing = [name for name in names if not hasattr(module, name)]
        return f"keras_kd has no {', '.join(missing)} yet (issue 8)" if missing else None

    return check


#: Temperature and alpha of the Hinton KD rows of the CNN student, chosen by
#: one-seed pilots on the transfer-set setting (T=1 beat T=2, alpha 0.1 beat 0.5);
#: `sweeps.py` measures the neighbours (results/sweeps.md).
KD_SETTING = {"temperature": 1.0, "alpha": 0.1}

ROWS: List[RowSpec] = [
    RowSpec("teacher", "CNN teacher", "teacher", teacher="cnn", baseline="scratch"),
    RowSpec("scratch", "CNN student, from scratch", "scratch", student="cnn_student",
            teacher="cnn"),
    RowSpec("kd", "CNN student, Hinton KD (cached teacher)", "distill",
            student="cnn_student", teacher="cnn", **KD_SETTING),
    RowSpec("kd-live", "CNN student, Hinton KD (live teacher)", "distill",
            student="cnn_student", teacher="cnn", source="live", **KD_SETTING),
    RowSpec("kd-transfer", "CNN student, Hinton KD on its 10k labelled + 50k unlabelled "
            "images (cached teacher)", "distill", student="cnn_student", teacher="cnn",
            transfer_size=60000, **KD_SETTING),
    RowSpec("ensemble-teacher", "3 CNN teachers (mean probabilities)", "teacher",
            teacher="cnn_ensemble"),
    RowSpec("ensemble", "CNN student, KD from an ensemble of 3 teachers on its 10k "
            "labelled + 50k unlabelled images (cached)", "distill", student="cnn_student",
            teacher="cnn_ensemble", transfer_size=60000, **KD_SETTING),
    RowSpec("hinton-teacher", "MLP 2x1200 teacher, dropout (Hinton's setting)",
            "teacher", teacher="mlp", baseline="hinton-800-scratch"),
    RowSpec("hinton-800-scratch", "MLP 2x800, from scratch", "scratch",
            student="mlp_800", teacher="mlp", baseline="hinton-800-scratch"),
    RowSpec("hinton-800-kd", "MLP 2x800, KD from MLP teacher, T=20", "distill",
            student="mlp_800", teacher="mlp", temperature=20.0, alpha=0.1,
            baseline="hinton-800-scratch"),
    RowSpec("mlp-800-kd-cnn", "MLP 2x800, KD from the CNN teacher", "distill",
            student="mlp_800", teacher="cnn", temperature=2.0, alpha=0.5,
            baseline="hinton-800-scratch"),
    RowSpec("mlp-800-kd-cnn-transfer", "MLP 2x800, KD from the CNN teacher on its 10k "
            "labelled + 50k unlabelled images", "distill", student="mlp_800", teacher="cnn",
            temperature=2.0, alpha=0.5, baseline="hinton-800-scratch", transfer_size=60000),
    RowSpec("hinton-30-scratch", "MLP 2x30, from scratch", "scratch",
            student="mlp_30", teacher="mlp", baseline="hinton-30-scratch"),
    RowSpec("hinton-30-t2.5", "MLP 2x30, KD from MLP teacher, T=2.5", "distill",
            student="mlp_30", teacher="mlp", temperature=2.5, alpha=0.1,
            baseline="hinton-30-scratch"),
    RowSpec("hinton-30-t4", "MLP 2x30, KD from MLP teacher, T=4", "distill",
            student="mlp_30", teacher="mlp", temperature=4.0, alpha=0.1,
            baseline="hinton-30-scratch"),
]



def _hint_terms(student, teachers):
    import keras_kd

    # Both `block2` outputs are 14x14; a 1x1 adapter maps the student's channels
    # to the teacher's.
    return [keras_kd.HintLoss(student_layer="block2", teacher_layer="block2", loss_weight=1.0)]


def _attention_terms(student, teachers):
    import keras_kd

    # beta / 2 = 500 with per-position means, as in Zagoruyko & Komodakis.
    return [keras_kd.AttentionTransfer(feature_pairs={"block1": "block1", "block2": "block2"},
                                       loss_weight=500.0)]


def _dkd_terms(student, teachers):
    import keras_kd

    return [keras_kd.DecoupledKD(alpha=1.0, beta=8.0, temperature=4.0)]


ROWS += [
    RowSpec("hints", "CNN student, KD + FitNets hints on block2 (live teacher)", "distill",
            student="cnn_student", teacher="cnn", source="live", terms=_hint_terms,
            available=_needs("HintLoss"), **KD_SETTING),
    RowSpec("at", "CNN student, KD + attention transfer on block1-2 (live teacher)",
            "distill", student="cnn_student", teacher="cnn", source="live",
            **KD_SETTING, terms=_attention_terms,
            available=_needs("AttentionTransfer")),
    # DKD replaces Hinton's term: cross-entropy (weight 1) + DKD, as in the paper.
    RowSpec("dkd", "CNN student, DKD (alpha 1, beta 8, T=4; cached teacher)", "distill",
            student="cnn_student", teacher="cnn", temperature=4.0, alpha=1.0,
            terms=_dkd_terms, available=_needs("DecoupledKD")),
]

ROW_IDS = [row.id for row in ROWS]


def register(row: RowSpec) -> None:
    """Adds (or replaces) a row; the methods of issue 8 plug in here."""
    for index, existing in enumerate(ROWS):
        if existing.id == row.id:
            ROWS[index] = row
            break
    else:
        ROWS.append(row)
    if row.id not in ROW_IDS:
        ROW_IDS.append(row.id)


# ----------------------------------------------------------------- running

class Context:
    """Data and teachers shared by every row of one run."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.data = kd_bench.load_data(budget)

    @property
    def test_labels(self):
        return self.data[1][1]

    def teachers(self, kind: str, seed: int, seeds: List[int]):
        """`[(kind, seed)]` of the teachers a row with teacher `kind` uses."""
        shared = self.budget.shared_teacher_seed
        if kind == "cnn_ensemble":
            return [("cnn", s) for s in _ensemble_seeds(seeds, shared)]
        return [(kind, seed if shared is None else shared)]

    def test_logits(self, kind: str, seed: int, seeds: List[int]):
        logits = [
            kd_bench.teacher_logits(k, s, self.budget, self.data, "test")
            for k, s in self.teachers(kind, seed, seeds)
        ]
        if len(logits) == 1:
            return logits[0]
        # The ensemble predicts with its mean probabilities.
        import numpy as np

        return np.log(np.mean([kd_bench.softmax(l) for l in logits], axis=0))


def _ensemble_seeds(seeds: List[int], shared: Optional[int] = None) -> List[int]:
    """Three teachers: the run's seeds (or the shared teacher's), padded with
    further ones if fewer."""
    chosen = [shared] if shared is not None else list(dict.fromkeys(seeds))[:3]
    extra = max(chosen) + 1 if chosen else 0
    while len(chosen) < 3:
        chosen.append(extra)
        extra += 1
    return chosen


def run_row(row: RowSpec, seed: int, seeds: List[int], context: Context) -> dict:
    import keras
    import numpy as np

    import keras_kd

    budget = context.budget
    (x_train, y_train), (x_test, y_test) = context.data
    record = {"row": row.id, "seed": seed}
    if row.method == "teacher":
        # One teacher, or an ensemble that predicts with its mean probabilities.
        trained = [kd_bench.get_teacher(k, s, budget, context.data)
                   for k, s in context.teachers(row.teacher, seed, seeds)]
        logits = context.test_logits(row.teacher, seed, seeds)
        record.update(kd_bench.evaluate_logits(logits, y_test, None))
        train_probabilities = np.mean(
            [kd_bench.softmax(kd_bench.predict_logits(model, x_train)) for model, _ in trained],
            axis=0)
        record.update(params=sum(info["params"] for _, info in trained),
                      train_seconds=sum(info["train_seconds"] for _, info in trained),
                      train_accuracy=float((train_probabilities.argmax(-1) == y_train).mean()))
        return record

    teacher_ids = context.teachers(row.teacher, seed, seeds)
    reference = context.test_logits(row.teacher, seed, seeds).argmax(axis=-1)
    teachers = [kd_bench.get_teacher(k, s, budget, context.data)[0] for k, s in teacher_ids]
    x_fit, y_fit, epochs = x_train, y_train, budget.student_epochs
    if row.transfer_size:
        (x_fit, y_fit), _ = kd_bench.load_data(budget, row.transfer_size)
        # The first `train_size` images are the students' labelled ones.
        y_fit = y_fit.copy()
        y_fit[len(x_train):] = keras_kd.UNLABELED
        epochs = max(1, round(budget.student_epochs * len(x_train) / len(x_fit)))
    keras.utils.set_random_seed(seed)
    student = _students(budget)[row.student]()
    extra = None
    if row.method == "scratch":
        model = student
        kd_bench.compile_classifier(model, budget, epochs, len(x_fit),
                                    budget.student_learning_rate)
    else:
        live = row.source == "live"
        model = keras_kd.Distiller(
            student=student,
            teacher=(teachers if len(teachers) > 1 else teachers[0]) if live else None,
        )
        terms = row.terms(student, teachers) if row.terms else []
        model.compile(
            optimizer=kd_bench.optimizer(budget, epochs, len(x_fit),
                                        budget.student_learning_rate),
            metrics=["accuracy"],
            alpha=row.alpha,
            temperature=row.temperature,
            distillation_terms=terms,
        )
        if not live:
            def extra(epoch):
                logits = [
                    kd_bench.teacher_logits(k, s, budget, context.data, epoch,
                                            transfer_size=row.transfer_size)
                    for k, s in teacher_ids
                ]
                return {keras_kd.TEACHER_LOGITS_KEY: logits if len(logits) > 1 else logits[0]}

            # Fill the cache first, so its cost is not counted as training.
            for epoch in range(epochs):
                extra(epoch)
    seconds = kd_bench.fit_by_views(model, x_fit, y_fit, epochs, budget, extra=extra)
    logits = kd_bench.predict_logits(student, x_test)
    record.update(kd_bench.evaluate_logits(logits, y_test, reference))
    record.update(params=int(student.count_params()), train_seconds=seconds,
                  train_accuracy=_accuracy(student, x_train, y_train))
    return record


def _accuracy(model, images, labels) -> float:
    """Accuracy on the (unaugmented) images a student trains on: next to the
    test accuracy, it tells a student that cannot fit its data (both low)
    from one that overfits it."""
    return float((kd_bench.predict_logits(model, images).argmax(-1) == labels).mean())


# ----------------------------------------------------------------- reports

def summarize(records: List[dict]) -> Dict[str, dict]:
    summary = {}
    for row in ROWS:
        rows = [r for r in records if r["row"] == row.id]
        if not rows:
            continue
        entry = {"seeds": [r["seed"] for r in rows], "params": rows[0]["params"]}
        for metric in ("accuracy", "errors", "agreement", "ece", "train_accuracy",
                       "train_seconds"):
            entry[metric] = kd_bench.mean_std([r.get(metric) for r in rows])
        summary[row.id] = entry
    for row in ROWS:
        if row.id in summary and row.baseline in summary:
            base = summary[row.baseline]["train_seconds"][0]
            summary[row.id]["time_ratio"] = summary[row.id]["train_seconds"][0] / base
    return summary


def _pct(pair, digits=2):
    mean, std = pair
    if mean is None:
        return "n/a"
    return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}"


def _teacher_row(row: RowSpec) -> Optional[RowSpec]:
    for candidate in ROWS:
        if candidate.method == "teacher" and candidate.teacher == row.teacher:
            return candidate
    return None


def verdict(summary: Dict[str, dict]) -> List[str]:
    """The target of the issue, checked on the numbers of this run: each
    distilled row against the same student alone and its teacher."""
    lines = []
    for row in ROWS:
        teacher_row = _teacher_row(row)
        if (row.method != "distill" or row.id not in summary or row.baseline not in summary
                or teacher_row is None or teacher_row.id not in summary):
            continue
        teacher = summary[teacher_row.id]["accuracy"][0]
        scratch_mean, scratch_std = summary[row.baseline]["accuracy"]
        kd_mean, kd_std = summary[row.id]["accuracy"]
        gain = kd_mean - scratch_mean
        gap = teacher - scratch_mean
        closed = gain / gap if gap > 0 else float("nan")
        spread = 2 * max(scratch_std, kd_std)
        met = gain >= 0.01 and gain > spread and closed >= 0.5
        lines.append(
            f"- `{row.id}` vs `{row.baseline}`: {100 * gain:+.2f} points "
            f"(2 std = {100 * spread:.2f}); closes {100 * closed:.0f}% of the "
            f"gap of {100 * gap:.2f} points to `{teacher_row.id}`. Target "
            f"(>= +1.0 point, > 2 std, >= 50% of the gap): "
            f"**{'met' if met else 'not met'}**."
        )
    return lines or ["Target check: waiting for a teacher, a scratch and a distilled row."]


def this_command() -> str:
    return " ".join(["PYTHONPATH=. python", "benchmarks/methods_table.py", *sys.argv[1:]])


def write_outputs(records, budget: Budget, args, skipped: Dict[str, str], output_dir: Path,
                  cache_seconds: float, commands: List[str], budget_id: dict) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(records)
    payload = {
        "command": this_command(),
        "commands": commands,
        "budget_id": budget_id,
        "budget": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(budget).items()
                   if k != "cache_dir"},
        "seeds": args.seeds,
        "rows": {row.id: {"label": row.label, "temperature": row.temperature,
                          "alpha": row.alpha, "source": row.source,
                          "method": row.method} for row in ROWS},
        "skipped": skipped,
        "logit_cache_seconds": cache_seconds,
        "records": records,
        "summary": summary,
    }
    (output_dir / "methods_table.json").write_text(json.dumps(payload, indent=1))
    with open(output_dir / "methods_table.csv", "w", newline="") as handle:
        fields = ["row", "seed", "params", "accuracy", "errors", "agreement", "ece",
                  "train_accuracy", "train_seconds"]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)

    b = budget
    lines = [
        "# Results: knowledge distillation on Fashion-MNIST",
        "",
        "Produced by " + " then ".join(f"`{c}`" for c in commands)
        + " (every number below comes from it; raw per-seed numbers in "
        "`methods_table.json` / `methods_table.csv`).",
        "",
        METHODS_SETTINGS_NOTE,
        "",
        f"Budget shared by every row: students train on a fixed random subset of "
        f"{b.train_size:,} labelled training images"
        + (f"; teachers on {b.teacher_size:,} images (the students' {b.train_size:,} "
           "and more: the teacher was trained on more data than the student has labels "
           "for, and distillation passes that on through its outputs: on the students' "
           "images, and in the transfer-set rows on the other images too, without "
           "their labels)" if b.teacher_size != b.train_size else ", teachers on the same images")
        + f"; the first {b.test_size:,} test images; Adam (learning rate "
        f"{b.teacher_learning_rate:g} for teachers, {b.student_learning_rate:g} for students"
        + (", cosine decay to 0" if b.lr_schedule == "cosine" else "")
        + f"), batch {b.batch_size}; teachers {b.teacher_epochs} epochs (CNN teacher "
        f"`cnn_teacher(width={b.teacher_width})`), students {b.student_epochs} epochs (CNN "
        f"student `cnn_student(width={b.student_width})`); "
        + ("consistent augmentation (epoch e of every run, teacher and student alike, "
           f"sees the same view e: random horizontal flip and shift of up to "
           f"{kd_bench.SHIFT} pixels); " if b.augment else "no augmentation; ")
        + f"seeds {', '.join(map(str, args.seeds))} (mean ± sample std). "
        + ("Each seed has its own teacher; " if b.shared_teacher_seed is None else
           f"Every student seed learns from the same teacher (seed {b.shared_teacher_seed}), "
           "so the teacher row has one seed; ")
        + ("the ensemble is the three teachers of seeds "
           f"{', '.join(map(str, _ensemble_seeds(args.seeds, b.shared_teacher_seed)))}; "
           if "ensemble" in summary or "ensemble-teacher" in summary else "")
        + ("cached rows read the teacher's logits on each augmented view from a cache "
           "filled once and shared by all rows and seeds." if b.augment else
           "cached rows read the teacher's logits on the training images from a cache "
           "filled once and shared by all rows and seeds."),
        "",
        "| Row | Params | Test accuracy (%) | Test errors | Agreement with teacher (%) "
        "| ECE (%) | Training-set accuracy (%) | Training time (rel.) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in ROWS:
        if row.id in skipped:
            lines.append(f"| {row.label} | | not run: {skipped[row.id]} | | | | | |")
            continue
        entry = summary.get(row.id)
        if entry is None:
            continue
        errors_mean, errors_std = entry["errors"]
        ratio = entry.get("time_ratio")
        ratio_text = "n/a" if ratio is None else f"{ratio:.2f}x `{row.baseline}`"
        lines.append(
            f"| {row.label} (`{row.id}`) | {entry['params']:,} | {_pct(entry['accuracy'])} "
            f"| {errors_mean:.0f} ± {errors_std:.0f} | {_pct(entry['agreement'], 1)} "
            f"| {_pct(entry['ece'])} | {_pct(entry['train_accuracy'], 1)} | {ratio_text} |"
        )
    lines += [
        "",
        "Agreement: share of test images where the student's top class is the "
        "teacher's (for scratch rows, the teacher of its group; for the ensemble row, "
        "the ensemble's mean probabilities). ECE: expected calibration error, 15 "
        "confidence bins. Training time: wall time of `fit`, relative to the "
        "student alone in the same group (the teacher row: its own training time). "
        "It excludes training the teachers and filling the logit cache "
        f"({cache_seconds:.0f} s in all for this run's teachers and views). "
        "The machine was shared with other jobs, so times are noisy.",
        "",
        "## Target check",
        "",
        *verdict(summary),
        "",
        "## How to read this run",
        "",
        f"- The budget fits a CPU machine with 2 cores: students get {b.train_size:,} "
        f"labelled images and {b.student_epochs} epochs"
        + (f"; the CNN teacher has width {b.teacher_width} instead of `cnn_teacher()`'s "
           f"default 32 (about {(32 / b.teacher_width) ** 2:.0f} times less convolution compute)"
           if b.teacher_width != 32 else "")
        + ". Flags (`--train-size`, `--teacher-train-size`, `--student-epochs`, "
        "`--teacher-epochs`, `--teacher-width`, `--student-width`, "
        "`--student-learning-rate`, `--seeds`) run the same table with another budget.",
        "- Training-set accuracy is measured on the students' own (unaugmented) "
        "training images. A student whose training-set accuracy is no higher than its "
        "test accuracy cannot even fit its labels (it is too small), and soft targets "
        "have little room to help it; one far above it overfits, which is where "
        "distillation helps most (Hinton et al. 2015, section 6).",
        "- Teachers' BatchNormalization statistics are recomputed after training "
        "(one pass with momentum 0, `kd_bench.recalibrate_batch_norm`): with a short "
        "schedule the moving averages lag behind the weights, and without it a teacher "
        "that was accurate in training mode was close to chance in inference mode.",
        "- `kd` (cached) and `kd-live` train on the same batches and differ only "
        "in where the teacher logits come from, so their accuracies should agree; their "
        "times show what the teacher's forward pass costs inside the step.",
        "",
    ]
    path = output_dir / "methods_table.md"
    path.write_text("\n".join(lines))
    return path


def save_row(output_dir: Path, budget: Budget, args, budget_id: dict, row_id: str,
             row_records: List[dict], skip_reason: Optional[str], fresh: bool) -> None:
    """Merges one finished row into the output files, under a file lock, so
    several processes can run different rows of the same table at once.
    """
    import fcntl

    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = output_dir / "methods_table.json"
    with open(output_dir / ".methods_table.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records, commands, skipped = [], [], {}
        if json_path.exists() and not fresh:
            previous = json.loads(json_path.read_text())
            if previous.get("budget_id") == budget_id and previous.get("seeds") == args.seeds:
                records = previous["records"]
                commands = previous.get("commands", [previous["command"]])
                skipped = previous.get("skipped", {})
        records = [r for r in records if r["row"] != row_id] + row_records
        skipped.pop(row_id, None)
        if skip_reason:
            skipped[row_id] = skip_reason
        if this_command() not in commands:
            commands.append(this_command())
        order = {row: index for index, row in enumerate(ROW_IDS)}
        records.sort(key=lambda r: (order.get(r["row"], len(order)), r["seed"]))
        write_outputs(records, budget, args, skipped, output_dir,
                      kd_bench.cache_seconds(budget), commands, budget_id)


# --------------------------------------------------------------------- CLI

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--student-epochs", type=int, default=None)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--test-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--teacher-width", type=int, default=None)
    parser.add_argument("--student-width", type=int, default=None,
                        help="width of the CNN student, `cnn_student(width=...)`")
    parser.add_argument("--teacher-train-size", type=int, default=None,
                        help="images the teachers train on (default: --train-size)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default=None)
    parser.add_argument("--teacher-learning-rate", type=float, default=None)
    parser.add_argument("--student-learning-rate", type=float, default=None)
    parser.add_argument("--shared-teacher-seed", type=int, default=None,
                        help="every student seed learns from this seed's teacher")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--rows", nargs="+", default=None,
                        help=f"row ids to run (default: all): {' '.join(ROW_IDS)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 512 images, 1 seed, 1 epoch, tiny teacher")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--fresh", action="store_true",
                        help="discard rows kept from an earlier run")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the Markdown/CSV from the JSON file, training nothing")
    parser.add_argument("--warm-cache", nargs="+", choices=kd_bench.TEACHER_KINDS,
                        default=None, metavar="KIND",
                        help="only train these teachers for --seeds and cache their "
                        "logits on every view (to fill the cache from a second process)")
    return parser.parse_args(argv)


def budget_from_args(args) -> Budget:
    budget = Budget()
    if args.quick:
        budget = replace(budget, train_size=512, test_size=500, teacher_epochs=1,
                         student_epochs=1, teacher_width=8, student_width=4,
                         teacher_train_size=1024)
        if args.seeds == [0, 1, 2]:
            args.seeds = [0]
    overrides = {
        "teacher_epochs": args.teacher_epochs, "student_epochs": args.student_epochs,
        "train_size": args.train_size, "test_size": args.test_size,
        "batch_size": args.batch_size, "teacher_width": args.teacher_width,
        "student_width": args.student_width,
        "teacher_train_size": args.teacher_train_size, "lr_schedule": args.lr_schedule,
        "teacher_learning_rate": args.teacher_learning_rate,
        "student_learning_rate": args.student_learning_rate,
        "shared_teacher_seed": args.shared_teacher_seed,
        "cache_dir": args.cache_dir,
    }
    budget = replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    if args.no_augment:
        budget = replace(budget, augment=False)
    return budget


def main(argv=None) -> Path:
    args = parse_args(argv)
    budget = budget_from_args(args)
    output_dir = args.output_dir or (
        Path(budget.cache_dir) / "quick_results" if args.quick else kd_bench.DEFAULT_RESULTS_DIR
    )
    unknown = [r for r in (args.rows or []) if r not in ROW_IDS]
    if unknown:
        raise SystemExit(f"Unknown row ids {unknown}; expected some of {ROW_IDS}.")
    kd_bench.threads_from_env()
    if args.warm_cache:
        data = kd_bench.load_data(budget)
        for kind in args.warm_cache:
            for seed in args.seeds:
                for which in ["test", *range(budget.student_epochs)]:
                    kd_bench.teacher_logits(kind, seed, budget, data, which)
                log(f"cached teacher {kd_bench.teacher_key(kind, seed, budget)}")
        return None

    budget_id = {k: str(v) for k, v in asdict(budget).items() if k != "cache_dir"}
    if args.report_only:
        payload = json.loads((output_dir / "methods_table.json").read_text())
        write_outputs(payload["records"], budget, args, payload.get("skipped", {}),
                      output_dir, payload["logit_cache_seconds"], payload["commands"],
                      budget_id)
        return output_dir / "methods_table.md"
    selected = [row for row in ROWS if not args.rows or row.id in args.rows]
    context = Context(budget)
    fresh = args.fresh
    start = time.perf_counter()
    for row in selected:
        reason = row.available()
        if reason:
            log(f"skipping {row.id}: {reason}")
            save_row(output_dir, budget, args, budget_id, row.id, [], reason, fresh)
            fresh = False
            continue
        row_records = []
        shared = budget.shared_teacher_seed
        row_seeds = [shared] if row.method == "teacher" and shared is not None else args.seeds
        for seed in row_seeds:
            record = run_row(row, seed, args.seeds, context)
            row_records.append(record)
            log(f"{row.id} seed {seed}: accuracy {record['accuracy']:.4f}, "
                f"fit {record['train_seconds']:.0f}s")
        save_row(output_dir, budget, args, budget_id, row.id, row_records, None, fresh)
        fresh = False
    log(f"done in {time.perf_counter() - start:.0f}s; wrote {output_dir / 'methods_table.md'}")
    print((output_dir / "methods_table.md").read_text())
    return output_dir / "methods_table.md"


if __name__ == "__main__":
    main()
