"""Results a skeptic accepts: distillation on Fashion-MNIST, every setting
chosen on a validation split, the test set read once at the end.

Data. Fashion-MNIST's 60,000 training images in a fixed random order
(`kd_bench.load_data`): the last `val_size` are the validation split, the
others the training split. The 10,000 test images are read once, in the last
phase, by the models whose rows are in the table.

Settings.
- (a) `all-labels`: every training-split image with its label, no extra data.
- (b) `transfer`: the first `labelled` training-split images with labels; the
  rest of the training split without them (a transfer set that only the
  teacher's outputs describe). Rows that use only labels train on the
  labelled images for as many optimizer steps as (a)'s rows.

Teacher. One `cnn_teacher(width=16)` trained once on the training split
(no augmentation, `kd_bench.get_teacher`), shared by every row,
seed and setting: the student seeds vary the student's initial weights and
batch order, not the teacher, so the teacher row has one value.

Rows, per student (an MLP 64-64, `cnn_student(width=4)` and, with
`--students mlp-small`, an MLP with one hidden layer of 32 units: a student
the teacher is far enough ahead of for the target's condition) and setting:
- `teacher`;
- `alone`: the student alone, `short` epochs, learning rate the best of
  `keras_kd.tune`'s student-alone grid on validation;
- `best-alone`: the strongest student-alone variant on validation among
  {alone at `short` epochs, alone at `long` epochs, alone with MixUp on its
  inputs and labels at `long` epochs}, the last on exactly the mixed inputs
  function matching sees;
- `kd`: Hinton KD at `Distiller.compile()`'s defaults (alpha=0.5, T=1),
  `short` or `long` epochs (picked on validation), the teacher's logits on
  the unaugmented training images cached (identical to a live teacher
  without augmentation);
- `kd-tuned`: the same, with T and alpha the best on validation of a grid
  (`KD_GRID`, at `short` epochs, seed 0), then `short` or `long` epochs
  picked on validation: Hinton KD at its strongest, as `best-alone` is the
  student alone at its strongest;
- `fm`: function matching (Beyer et al. 2022): teacher and student see the
  same MixUp-ed input (`keras_kd.augment.MixUp`, lambda ~ U[0, 1]), T=1,
  alpha=0 (the teacher's output the only target), `long` epochs. Labels are
  not used, so (a) and (b) are the same run. Every epoch is a fresh mixed view
  of the training split; the teacher's logits on view `e` are computed once
  and replayed to every seed and student (the outputs a live teacher would
  give on those inputs; on a shared 2-core CPU the live teacher costs 5x the
  MLP's own step);
- `tune`: `keras_kd.tune`'s pick (KerasTuner, validation data), searched once
  (seed 0) on the `labelled` labelled images with `tune_epochs` epochs, then
  retrained with 3 seeds in each setting at `short` epochs.

    PYTHONPATH=. python benchmarks/results_table.py                  # every row
    PYTHONPATH=. python benchmarks/results_table.py --quick          # smoke test (minutes)
    PYTHONPATH=. python benchmarks/results_table.py --students cnn --settings all-labels \
        --rows teacher alone kd                                      # a subset
    PYTHONPATH=. python benchmarks/results_table.py --report-only    # score finished runs

The committed file lists the commands that produced it.

Every training run is kept under `--cache-dir` as it finishes (validation
accuracy and weights), so an interrupted run resumes where it stopped, and
the report is rewritten after every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import kd_bench  # noqa: E402
from kd_bench import log  # noqa: E402

COMMAND = "PYTHONPATH=. python benchmarks/results_table.py"
SETTINGS = ("all-labels", "transfer")
SETTING_LABELS = {
    "all-labels": "(a) all training-split labels, no extra data",
    "transfer": "(b) labelled subset + unlabelled transfer set",
}
ROWS = ("teacher", "alone", "best-alone", "kd", "kd-tuned", "fm", "fm-live", "tune")
ROW_LABELS = {
    "teacher": "teacher (CNN, one teacher for every seed)",
    "alone": "student alone",
    "best-alone": "strongest student alone (picked on validation)",
    "kd": "Hinton KD at compile()'s defaults (alpha=0.5, T=1), schedule picked on validation",
    "kd-tuned": "Hinton KD, T, alpha and schedule picked on validation",
    "fm": "function matching (MixUp, T=1, alpha=0, long schedule)",
    "fm-live": "function matching with the live teacher, `Distiller(augmentation=MixUp())`",
    "tune": "`keras_kd.tune`'s pick",
}
DISTILLED = ("kd", "kd-tuned", "fm", "fm-live", "tune")
#: The `kd-tuned` row's (temperature, alpha) grid, searched at `short` epochs
#: on validation (seed 0); `--quick` searches two points.
KD_GRID = tuple((t, a) for t in (1.0, 2.0, 4.0, 8.0) for a in (0.1, 0.5, 0.9))
QUICK_KD_GRID = ((1.0, 0.5), (4.0, 0.5))
VIEW_SEED = 14_4


@dataclasses.dataclass(frozen=True)
class Plan:
    """What every run shares."""

    val_size: int = 10000
    labelled: int = 10000
    test_size: int = 10000
    batch_size: int = 256
    short: int = 10
    long: int = 30
    teacher_width: int = 16
    teacher_epochs: int = 10
    cnn_width: int = 4
    tune_epochs: int = 5
    tune_trials: int = 3
    seeds: tuple = (0, 1, 2)

    @property
    def train_size(self) -> int:
        return 60000 - self.val_size


QUICK = Plan(val_size=500, labelled=300, test_size=500, batch_size=128, short=1, long=2,
             teacher_width=4, teacher_epochs=1, cnn_width=2, tune_epochs=1, tune_trials=1,
             seeds=(0, 1))
QUICK_TRAIN = 1500


def build_student(kind: str, plan: Plan):
    from keras_kd import models

    if kind == "mlp":
        return models.mlp((64, 64), name="mlp_64_64")
    if kind == "mlp-small":
        # A student far enough below the teacher (>= 3 points) for the
        # target's condition, which the 64-64 MLP and the CNN are not.
        return models.mlp((32,), name="mlp_32")
    if kind == "cnn":
        return models.cnn_student(width=plan.cnn_width)
    raise ValueError(f"`student` must be one of {list(STUDENT_LABELS)}. Received: {kind!r}.")


STUDENT_LABELS = {"mlp": "MLP 64-64", "cnn": "CNN student", "mlp-small": "MLP 32"}


# --------------------------------------------------------------------- data

class Data:
    """Training and validation splits, the teacher and its cached outputs."""

    def __init__(self, plan: Plan, cache: Path, quick: bool):
        self.plan, self.cache = plan, cache
        total = QUICK_TRAIN + plan.val_size if quick else 60000
        self.budget = kd_bench.Budget(
            train_size=total - plan.val_size, test_size=plan.test_size,
            teacher_epochs=plan.teacher_epochs, batch_size=128, augment=False,
            teacher_learning_rate=1e-3, teacher_width=plan.teacher_width,
            teacher_train_size=total - plan.val_size, lr_schedule="cosine",
            shared_teacher_seed=0, cache_dir=cache)
        (x, y), test = kd_bench.load_data(self.budget, total)
        n = total - plan.val_size
        self.x, self.y = x[:n], y[:n]
        self.x_val, self.y_val = x[n:], y[n:]
        self._test = test
        self.teacher, self.teacher_info = kd_bench.get_teacher(
            "cnn", 0, self.budget, ((self.x, self.y), test))
        self._views: Dict[tuple, tuple] = {}
        # Everything trained or cached below depends on this teacher.
        self.root = cache / kd_bench.teacher_key("cnn", 0, self.budget)

    def test(self):
        """The test set: only the final phase calls this."""
        return self._test

    def teacher_logits(self, name: str, images_fn) -> np.ndarray:
        path = self.root / "logits" / f"{name}.npy"
        if path.exists():
            return np.load(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        logits = kd_bench.predict_logits(self.teacher, images_fn())
        np.save(path, logits)
        return logits

    def train_logits(self) -> np.ndarray:
        return self.teacher_logits("train", lambda: self.x)

    def mixup_plan(self, count: int, view: int):
        """Epoch `view`'s batch order and MixUp draws over the first `count`
        training images: `keras_kd.augment.MixUp` on each batch, as a
        `Distiller(augmentation=MixUp())` would draw them in its step."""
        key = (count, view)
        path = self.root / "views" / f"n{count}-v{view}.npz"
        if key not in self._views and path.exists():
            with np.load(path) as saved:
                self._views = {key: (saved["order"], saved["partner"], saved["weight"])}
        if key not in self._views:
            import tensorflow as tf

            from keras_kd import augment

            rng = np.random.default_rng([VIEW_SEED, count, view])
            order = rng.permutation(count)
            mixer = augment.MixUp(alpha=1.0, seed=int(rng.integers(2 ** 31)))
            # The same draws as eager calls (checked), faster.
            mix = tf.function(mixer.mix)
            partners, weights = [], []
            for start in range(0, count, self.plan.batch_size):
                batch = order[start:start + self.plan.batch_size]
                # MixUp's draws depend only on the batch size.
                _, partner, weight = mix(np.zeros((len(batch), 1), "float32"))
                partners.append(batch[np.asarray(partner)])
                weights.append(np.asarray(weight, "float32"))
            self._views = {key: (order, np.concatenate(partners), np.concatenate(weights))}
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, order=order, partner=self._views[key][1], weight=self._views[key][2])
        return self._views[key]

    def mixed(self, count: int, view: int):
        order, partner, weight = self.mixup_plan(count, view)
        w = weight[:, None, None, None]
        return (w * self.x[order] + (1 - w) * self.x[partner]).astype("float32"), order, partner, weight

    def view_logits(self, view: int) -> np.ndarray:
        n = len(self.x)
        return self.teacher_logits(f"mixup-n{n}-v{view}", lambda: self.mixed(n, view)[0])


# ----------------------------------------------------------------- training

def _optimizer(learning_rate: float, steps: int):
    import keras

    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps))


def _steps(count: int, epochs: int, batch_size: int) -> int:
    return epochs * -(-count // batch_size)


def train(data: Data, spec: dict):
    """Trains the run `spec` describes; returns the student and fit seconds.

    `spec`: student, method (`alone`, `mixup`, `kd`, `fm`, `live`), setting,
    epochs (counted over (a)'s training split; runs on fewer images take as
    many steps), learning_rate, seed, and for `kd`/`live` alpha and
    temperature (None: compile()'s defaults) and `augmentation`.
    """
    import keras

    import keras_kd

    plan = data.plan
    keras.utils.set_random_seed(spec["seed"])
    student = build_student(spec["student"], plan)
    n, labelled = len(data.x), plan.labelled
    method, setting = spec["method"], spec["setting"]
    steps = _steps(n, spec["epochs"], plan.batch_size)
    optimizer = _optimizer(spec["learning_rate"], steps)
    start = time.perf_counter()
    uses_labels_only = method in ("alone", "mixup")
    count = labelled if setting == "transfer" and uses_labels_only else n
    epochs = -(-steps // -(-count // plan.batch_size))
    y = data.y[:count].copy()
    if setting == "transfer" and not uses_labels_only:
        y[labelled:] = keras_kd.UNLABELED
    if method == "alone":
        student.compile(optimizer=optimizer, metrics=["accuracy"],
                        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        student.fit(data.x[:count], y, batch_size=plan.batch_size, epochs=epochs, verbose=0)
    elif method == "mixup":
        student.compile(optimizer=optimizer,
                        loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        one_hot = np.eye(10, dtype="float32")[y]
        for epoch in range(epochs):
            images, order, partner, weight = data.mixed(count, epoch)
            w = weight[:, None]
            labels = w * one_hot[order] + (1 - w) * one_hot[partner]
            student.fit(images, labels, batch_size=plan.batch_size, shuffle=False, verbose=0)
    elif method in ("kd", "fm"):
        distiller = keras_kd.Distiller(student=student, teacher=None)
        options = {k: spec[k] for k in ("alpha", "temperature") if spec.get(k) is not None}
        distiller.compile(optimizer=optimizer, **options)
        key, inputs = keras_kd.INPUTS_KEY, keras_kd.TEACHER_LOGITS_KEY
        if method == "kd":
            distiller.fit({key: data.x, inputs: data.train_logits()}, y,
                          batch_size=plan.batch_size, epochs=epochs, verbose=0)
        else:
            unlabelled = np.full(n, keras_kd.UNLABELED, "int32")
            for epoch in range(epochs):
                logits = data.view_logits(epoch)
                images = data.mixed(n, epoch)[0]
                distiller.fit({key: images, inputs: logits}, unlabelled,
                              batch_size=plan.batch_size, shuffle=False, verbose=0)
    elif method == "live":
        augmentation = (keras_kd.augment.MixUp(alpha=1.0, seed=spec["seed"])
                        if spec.get("augmentation") == "mixup" else None)
        distiller = keras_kd.Distiller(student=student, teacher=data.teacher,
                                       augmentation=augmentation)
        distiller.compile(optimizer=optimizer, alpha=spec["alpha"],
                          temperature=spec["temperature"])
        distiller.fit(data.x, y, batch_size=plan.batch_size, epochs=epochs, verbose=0)
    else:
        raise ValueError(f"Unknown method {method!r}.")
    return student, time.perf_counter() - start


def _accuracy(model, x, y) -> float:
    return float((kd_bench.predict_logits(model, x).argmax(-1) == y).mean())


class Runs:
    """Finished runs on disk: validation accuracy, time and weights."""

    def __init__(self, data: Data, directory: Path):
        self.data, self.directory = data, directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, spec: dict) -> Path:
        fields = "-".join(str(spec[k]) for k in ("student", "method", "setting", "epochs", "seed"))
        return self.directory / f"{fields}-{kd_bench.fingerprint(spec)}"

    def get(self, spec: dict) -> dict:
        path = self._path(spec)
        record_path = path.with_suffix(".json")
        if record_path.exists():
            return json.loads(record_path.read_text())
        log(f"training {json.dumps(spec)}")
        student, seconds = train(self.data, spec)
        student.save_weights(str(path) + ".weights.h5")
        record = dict(spec, val_accuracy=_accuracy(student, self.data.x_val, self.data.y_val),
                      train_seconds=seconds, params=int(student.count_params()),
                      weights=str(path) + ".weights.h5")
        record_path.write_text(json.dumps(record, indent=1))
        log(f"  val accuracy {record['val_accuracy']:.4f}, {seconds:.0f}s")
        return record


# ---------------------------------------------------------------- selection

def tune_pick(data: Data, student: str, directory: Path) -> dict:
    """`keras_kd.tune` once (seed 0) on the labelled images; its choice."""
    path = directory / f"tune-{student}.json"
    if path.exists():
        return json.loads(path.read_text())
    import keras_kd

    plan = data.plan
    start = time.perf_counter()
    result = keras_kd.tune(
        lambda: build_student(student, plan), data.teacher,
        data.x[:plan.labelled], data.y[:plan.labelled],
        validation_data=(data.x_val, data.y_val), epochs=plan.tune_epochs,
        batch_size=plan.batch_size, max_trials=plan.tune_trials, seed=0,
        directory=str(directory / f"tune-{student}"), verbose=0)
    pick = {"distilled": result.distilled, "settings": result.settings,
            "baseline_settings": result.baseline_settings,
            "validation_accuracy": result.validation_accuracy,
            "baseline_validation_accuracy": result.baseline_validation_accuracy,
            "trials": result.trials, "seconds": time.perf_counter() - start}
    path.write_text(json.dumps(pick, indent=1))
    log(f"tune ({student}): {result.verdict} settings {result.settings}")
    return pick


def row_specs(runs: Runs, student: str, setting: str, lr: float, choices: dict,
              rows=ROWS, kd_grid=KD_GRID) -> Dict[str, dict]:
    """The seed-0 spec of every row. Picks, on validation (seed 0), the
    strongest student alone, Hinton KD's schedule and the `kd-tuned` row's
    temperature, alpha (over `kd_grid`) and schedule: their candidates train
    here when their row is asked for. Choices already made are kept."""
    plan = runs.data.plan
    base = {"student": student, "setting": setting, "seed": plan.seeds[0], "learning_rate": lr}
    short_alone = f"alone, {plan.short} epochs"
    candidates = {
        short_alone: dict(base, method="alone", epochs=plan.short),
        f"alone, {plan.long} epochs": dict(base, method="alone", epochs=plan.long),
        f"alone + MixUp on inputs and labels, {plan.long} epochs": dict(
            base, method="mixup", epochs=plan.long),
    }
    kd_candidates = {
        f"{epochs} epochs": dict(base, method="kd", epochs=epochs, alpha=None, temperature=None)
        for epochs in (plan.short, plan.long)}
    choice = choices.setdefault(student, {}).setdefault(setting, {})
    if set(rows) - {"teacher", "tune"}:
        # The rate the other rows train with (the tune row uses its pick's).
        choice["chosen_learning_rate"] = lr

    def pick(name, options):
        scores = {label: runs.get(spec)["val_accuracy"] for label, spec in options.items()}
        best = max(scores, key=scores.get)
        choice[f"{name}_candidates"], choice[name] = scores, best
        return options[best]

    best_alone = (pick("best_alone", candidates) if "best-alone" in rows
                  else candidates.get(choice.get("best_alone"), candidates[short_alone]))
    # Hinton KD gets the same choice of schedule as the baseline, so neither
    # row wins by a longer schedule the other did not have.
    kd = (pick("kd_schedule", kd_candidates) if "kd" in rows
          else kd_candidates.get(choice.get("kd_schedule"), kd_candidates[f"{plan.short} epochs"]))
    # The strongest Hinton KD: its settings searched on validation as the
    # baseline's variants are, then its schedule picked the same way.
    from keras_kd.src.distiller.distiller import DEFAULT_ALPHA, DEFAULT_TEMPERATURE

    # The grid's point at compile()'s defaults is the `kd` row's short run:
    # the same spec, so it is trained once.
    grid = {f"T={t:g}, alpha={a:g}": (
        kd_candidates[f"{plan.short} epochs"] if (t, a) == (DEFAULT_TEMPERATURE, DEFAULT_ALPHA)
        else dict(base, method="kd", epochs=plan.short, alpha=a, temperature=t))
        for t, a in kd_grid}
    kd_tuned = None
    if "kd-tuned" in rows:
        best = pick("kd_grid", grid)
        kd_tuned = pick("kd_tuned_schedule", {f"{plan.short} epochs": best,
                                              f"{plan.long} epochs": dict(best, epochs=plan.long)})
    return {
        "alone": candidates[short_alone],
        "best-alone": best_alone,
        "kd": kd,
        "kd-tuned": kd_tuned,
        # Labels are not used: the same run in both settings.
        "fm": dict(base, method="fm", setting="all-labels", epochs=plan.long,
                   alpha=0.0, temperature=1.0),
        # The same objective through the product's own path: the teacher
        # runs in the step on the view MixUp draws there (other draws than
        # the replayed views'). alpha=0: the labels get no weight.
        "fm-live": dict(base, method="live", setting="all-labels", epochs=plan.long,
                        augmentation="mixup", alpha=0.0, temperature=1.0),
    }


def tune_spec(pick: dict, student: str, setting: str, seed: int, plan: Plan) -> dict:
    settings = pick["settings"]
    base = {"student": student, "setting": setting, "seed": seed, "epochs": plan.short,
            "learning_rate": settings["learning_rate"]}
    if not pick["distilled"]:
        method = "mixup" if settings["augmentation"] == "mixup" else "alone"
        return dict(base, method=method)
    if settings["augmentation"] == "none":
        return dict(base, method="kd", alpha=settings["alpha"],
                    temperature=settings["temperature"])
    return dict(base, method="live", augmentation="mixup", alpha=settings["alpha"],
                temperature=settings["temperature"])


# ------------------------------------------------------------------ report

def evaluate(data: Data, record: dict) -> dict:
    """Test metrics of a finished run (the final phase only)."""
    x_test, y_test = data.test()
    model = build_student(record["student"], data.plan)
    model.load_weights(record["weights"])
    reference = data.teacher_logits("test", lambda: x_test).argmax(-1)
    return kd_bench.evaluate_logits(kd_bench.predict_logits(model, x_test), y_test, reference)


def _stat(values) -> Optional[tuple]:
    mean, std = kd_bench.mean_std(values)
    return None if mean is None else (100 * mean, 100 * std)


def summarize(table: dict) -> dict:
    summary = {}
    for key, records in table.items():
        summary[key] = {
            "test": _stat([r["test"]["accuracy"] for r in records if "test" in r]),
            "val": _stat([r.get("val_accuracy") for r in records]),
            "agreement": _stat([r["test"].get("agreement") for r in records if "test" in r]),
            "seeds": [r["seed"] for r in records],
            "params": records[0]["params"],
            "train_seconds": float(np.mean([r["train_seconds"] for r in records])),
            "spec": {k: v for k, v in records[0].items()
                     if k not in ("test", "weights", "seed", "val_accuracy", "train_seconds")},
        }
    return summary


def verdicts(summary: dict, student: str, setting: str) -> List[str]:
    """The issue's target, per distilled row, on test accuracy."""
    get = lambda row: summary.get(f"{student}/{setting}/{row}")  # noqa: E731
    teacher, base, name = get("teacher"), get("best-alone"), "the strongest student alone"
    if not base:
        # Not the target's baseline: said in every line below.
        base, name = get("alone"), "the student alone (the strongest-baseline row was not run)"
    if not teacher or not base or not base["test"] or not teacher["test"]:
        return ["- not judged: the teacher or the student-alone rows are missing."]
    gap = teacher["test"][0] - base["test"][0]
    lines = [f"- gap teacher - {name}: {gap:.2f} points "
             f"({'>= 3: a gap worth closing' if gap >= 3 else '< 3: the student is too close to the teacher for the target'})."]
    for row in DISTILLED:
        entry = get(row)
        if not entry or not entry["test"]:
            lines.append(f"- {ROW_LABELS[row]}: not run.")
            continue
        gain = entry["test"][0] - base["test"][0]
        noise = 2 * max(entry["test"][1], base["test"][1])
        closed = gain / gap if gap > 0 else None
        met = (gain > noise and closed is not None and closed >= 0.5 and gap >= 3
               and len(entry["seeds"]) >= 3 and name.startswith("the strongest"))
        lines.append(
            f"- {ROW_LABELS[row]}: {gain:+.2f} points vs {name} "
            f"(2 std = {noise:.2f}; {'beats it beyond noise' if gain > noise else 'not beyond noise' if gain > 0 else 'worse or equal'}), "
            f"closes {'n/a' if closed is None else f'{100 * closed:.0f}%'} of the gap, "
            f"{len(entry['seeds'])} seed(s): "
            f"**{'target met' if met else 'target not met'}**.")
    fm, kd = get("fm"), get("kd")
    if fm and fm["test"] and fm["test"][0] <= base["test"][0]:
        lines.append(
            f"- Why function matching did not pay: at {fm['spec']['epochs']} epochs it is not "
            "above the strongest student alone. Beyer et al. (2022) report its gains with "
            "very long schedules (the issue's held-out task: 180 epochs), growing long after "
            "the student alone stops improving; this budget "
            f"({kd_bench.threads_label()} on a 2-core CPU machine) did not allow one that long.")
    tuned = get("tune")
    if tuned and tuned["spec"].get("method") in ("alone", "mixup"):
        lines.append(
            "- `keras_kd.tune` found no distilled candidate better than the student alone on "
            "validation and returned the student alone (as it should), so its row is a "
            "student-alone row, not a distilled one.")
    if kd and kd["test"] and kd["test"][0] - base["test"][0] <= 2 * max(kd["test"][1], base["test"][1]):
        longer = base["spec"].get("epochs", 0) > kd["spec"].get("epochs", 0)
        lines.append(
            "- Why Hinton KD did not pay beyond noise: "
            + ("with every label available and no extra images, soft targets at T=1 on the "
               "same images add little to what the labels say" if setting == "all-labels" else
               "the teacher's soft targets on the unlabelled images were not enough at this "
               "schedule")
            + ("; and the strongest student alone had the longer schedule, which KD's row "
               "did not." if longer else "."))
    if kd and gap < 3:
        lines.append(
            "- Why the target cannot be met here: the strongest student alone is within 3 "
            "points of the teacher, so there is little to close; a stronger teacher or a "
            "smaller student is needed for the target's condition.")
    return lines


def write_report(path: Path, summary: dict, choices: dict, picks: dict, plan: Plan,
                 data: Data, notes: List[str], started: str, loads: tuple,
                 commands: List[str], kd_grid=KD_GRID) -> None:
    def cell(entry, key):
        stat = entry[key] if entry else None
        return "" if not stat else (f"{stat[0]:.2f}" if stat[1] == 0 and len(entry["seeds"]) == 1
                                     else f"{stat[0]:.2f} ± {stat[1]:.2f}")

    lines = [
        "# Results a skeptic accepts: distillation on Fashion-MNIST",
        "",
        "Produced by " + " then ".join(f"`{c}`" for c in commands)
        + f" (last invocation started {started}, report written "
        f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; {platform.machine()}, "
        f"{os.cpu_count()} CPU cores shared with other jobs, {kd_bench.threads_label()} "
        f"per process; load average {loads[0]:.1f} at the start of this invocation, "
        f"{os.getloadavg()[0]:.1f} at the end). Every number below comes from the script's "
        "own output (raw per-seed records in `results_table.json`).",
        "",
        "## How the settings were chosen",
        "",
        f"- Validation split: the last {plan.val_size:,} of {len(data.x) + plan.val_size:,} "
        "Fashion-MNIST training images in a fixed random order; the other "
        f"{len(data.x):,} are the training split. Every choice below was made by the script "
        f"on validation accuracy; the test set ({plan.test_size:,} images) "
        "is read once, after all training, to score the rows of the table (before that the "
        "report shows validation accuracy only); no choice reads it.",
        f"- Setting (a): all {len(data.x):,} training-split images with labels. Setting (b): "
        f"the first {plan.labelled:,} with labels and the other {len(data.x) - plan.labelled:,} "
        "without (only the teacher's outputs describe them); rows that use labels only train "
        "on the labelled images for as many optimizer steps as in (a).",
        f"- Teacher: `cnn_teacher(width={plan.teacher_width})` ({data.teacher_info['params']:,} "
        f"parameters), {plan.teacher_epochs} epochs on the training split, no augmentation, "
        "Adam 1e-3 with cosine decay, batch 128 (a first teacher, 8 epochs with flips and "
        "shifts, was weaker on validation and was discarded before any student trained on "
        "it); **one teacher for every seed, row and setting** "
        "(training one per seed did not fit the budget), so its row has no std. In (b) the "
        "teacher was trained on all training-split labels (a teacher trained on more data "
        "than the student has labels for, as in the earlier transfer-set table).",
        f"- Students: `mlp((64, 64))`, `cnn_student(width={plan.cnn_width})` and, added after "
        "both were found within 3 points of the teacher (the target's condition), the smaller "
        "`mlp((32,))`, its width fixed before any of its runs; Adam with "
        f"cosine decay, batch {plan.batch_size}; `short` = {plan.short} epochs, `long` = "
        f"{plan.long} epochs (over (a)'s training split; fixed by the compute budget: the "
        "long schedule is the most this shared 2-core machine allowed for function matching). "
        "Learning rate: per student, the best on validation of "
        "`keras_kd.tune`'s student-alone grid (below), and used by every row of that "
        "student (distilled rows get the baseline's step, not one tuned for them).",
        "- The baseline, `strongest student alone`: the best on validation (seed 0) of the "
        f"student alone at {plan.short} epochs, alone at {plan.long} epochs, and alone with "
        f"MixUp on inputs and labels at {plan.long} epochs, the last on exactly the mixed "
        "batches function matching sees (same views, same lambda). So the baseline has the "
        "distilled rows' longest schedule and their augmentation available to it.",
        "- Hinton KD: `Distiller.compile()`'s defaults (alpha=0.5, T=1; chosen on validation "
        "splits of four tasks, `defaults.md`), cached teacher logits on the unaugmented images "
        "(identical to a live teacher there); its schedule, `short` or `long` epochs, is the "
        "better on validation (seed 0), the same choice of schedule the baseline has.",
        "- Tuned Hinton KD: the same, with T and alpha the best on validation (seed 0, "
        f"`short` epochs) of the grid T in {{{', '.join(sorted({f'{t:g}' for t, _ in kd_grid}, key=float))}}} x "
        f"alpha in {{{', '.join(sorted({f'{a:g}' for _, a in kd_grid}, key=float))}}}, searched in each setting "
        "on its own training data, then its schedule picked as above: distillation at its "
        "strongest, as the baseline is the student alone at its strongest.",
        "- Function matching: T=1 and alpha=0 by the method's definition (Beyer et al. 2022); "
        "`long` epochs; every epoch a fresh MixUp view (`keras_kd.augment.MixUp`, lambda "
        "uniform, partners within the batch) of the training split; the teacher's logits "
        "on view `e` were computed once and replayed to every seed and student: the outputs "
        "the live teacher gives on those exact inputs, so teacher and student see the same "
        "mixed input. Labels are not used, so the (a) and (b) rows are one run. The row "
        "`function matching with the live teacher` is the same objective through the "
        "package's own path, `Distiller(teacher, augmentation=MixUp())` with alpha=0: the "
        "teacher runs inside the step on the view MixUp draws there (other draws than the "
        "replayed views'); seed 0 only unless `--live-all-seeds` (the teacher's forward pass "
        "costs ~5x the MLP's step on this CPU).",
        f"- `keras_kd.tune`: one search (seed 0) over its default space (T, alpha, MixUp "
        f"on/off, learning rate; the student alone over every learning rate x augmentation "
        f"in the race) with {plan.tune_trials} distilled trials of {plan.tune_epochs} epochs "
        f"on the {plan.labelled:,} labelled images (a search on all images did not fit the "
        "budget; `tune` takes no unlabelled transfer set, so in (b) it never sees the "
        "unlabelled images), validation data the validation split; its pick was then "
        "retrained with every seed in each setting at `short` epochs.",
        "- Target check: a distilled row beats a baseline *beyond noise* when the mean "
        "difference exceeds 2 x the larger of the two rows' seed std; it closes the gap by "
        "(distilled - baseline) / (teacher - baseline); the target needs both, 3 seeds, a "
        "gap of at least 3 points and the strongest student alone as the baseline.",
        f"- Seeds {', '.join(map(str, plan.seeds))} (student initial weights and batch order); "
        "mean ± sample std. Seed 0's runs are the selection runs.",
        "",
    ]
    for setting in SETTINGS:
        lines += [f"## {SETTING_LABELS[setting]}", "",
                  "| row | " + " | ".join(
                      f"{STUDENT_LABELS[s]} test % | val %" for s in STUDENT_LABELS)
                  + " |",
                  "|---|" + "---:|---:|" * len(STUDENT_LABELS)]
        for row in ROWS:
            cells = []
            for student in STUDENT_LABELS:
                entry = summary.get(f"{student}/{setting}/{row}")
                cells += [cell(entry, "test") or ("pending" if entry else "not run"),
                          cell(entry, "val")]
            lines.append(f"| {ROW_LABELS[row]} | " + " | ".join(cells) + " |")
        lines.append("")
        for student in choices:
            choice = choices[student].get(setting, {})
            if not choice:
                continue
            grid = choices[student].get("learning_rate_grid")
            lines += [f"**{STUDENT_LABELS[student]}, {SETTING_LABELS[setting]}**: learning rate "
                      f"{choice.get('chosen_learning_rate', 'n/a')}"
                      + (" (the student alone at `short` epochs, validation, seed 0: "
                         + ", ".join(f"{k}: {100 * v:.2f}%" for k, v in grid.items()) + ")"
                         if grid else " (`keras_kd.tune`'s student-alone grid)")
                      + ("; strongest student alone: "
                         f"{choice.get('best_alone')} (validation, seed 0: "
                         + ", ".join(f"{k}: {100 * v:.2f}%" for k, v in
                                     choice.get("best_alone_candidates", {}).items()) + ")."
                         if f"{student}/{setting}/best-alone" in summary else
                         "; the strongest-baseline candidates were not run.")
                      + (f" Hinton KD's schedule: {choice['kd_schedule']} (validation, seed 0: "
                         + ", ".join(f"{k}: {100 * v:.2f}%" for k, v in
                                     choice["kd_schedule_candidates"].items()) + ")."
                         if "kd_schedule" in choice else "")
                      + (f" Tuned Hinton KD: {choice['kd_grid']}, {choice['kd_tuned_schedule']} "
                         f"(validation, seed 0, at {plan.short} epochs: "
                         + ", ".join(f"{k}: {100 * v:.2f}%" for k, v in
                                     choice["kd_grid_candidates"].items())
                         + "; then " + ", ".join(f"{k}: {100 * v:.2f}%" for k, v in
                                                 choice["kd_tuned_schedule_candidates"].items())
                         + ")." if "kd_grid" in choice else ""), ""]
            if setting == "all-labels":
                lines += [f"Target check (test accuracy, {len(plan.seeds)} seeds):", "",
                          *verdicts(summary, student, setting), ""]
            else:
                lines += ["Against the strongest student alone (the target is set for (a) "
                          "only):", "", *verdicts(summary, student, setting), ""]
    lines += ["## `keras_kd.tune`'s searches", ""]
    for student, pick in picks.items():
        lines += [f"- {STUDENT_LABELS[student]}: {'a distilled candidate' if pick['distilled'] else 'the student alone'} "
                  f"won on validation ({100 * pick['validation_accuracy']:.2f}% against "
                  f"{100 * pick['baseline_validation_accuracy']:.2f}% for the best student "
                  f"alone), settings {pick['settings']}; {len(pick['trials'])} trials in "
                  f"{pick['seconds']:.0f} s."]
    lines += ["", "## What was left out", "", *(notes or ["- nothing."]), ""]
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1,500 training images, 2 seeds, 1-2 epochs")
    parser.add_argument("--students", nargs="+", choices=tuple(STUDENT_LABELS),
                        default=["mlp", "cnn"])
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--short", type=int, default=None)
    parser.add_argument("--long", type=int, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--live-all-seeds", action="store_true",
                        help="train a live-teacher tune pick for every seed, not only the first")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs already finished")
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    started = f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC"
    loads = os.getloadavg()
    plan = QUICK if args.quick else Plan()
    overrides = {k: v for k, v in (("short", args.short), ("long", args.long),
                                   ("seeds", tuple(args.seeds) if args.seeds else None))
                 if v is not None}
    plan = dataclasses.replace(plan, **overrides)
    kd_grid = QUICK_KD_GRID if args.quick else KD_GRID
    cache = args.cache_dir or (kd_bench.DEFAULT_CACHE_DIR / ("skeptic-quick" if args.quick else "skeptic"))
    output = args.output_dir or (cache / "results" if args.quick else kd_bench.DEFAULT_RESULTS_DIR)
    output.mkdir(parents=True, exist_ok=True)
    kd_bench.threads_from_env()
    data = Data(plan, cache, args.quick)
    runs = Runs(data, data.root / "runs")
    json_path = output / "results_table.json"
    kept = json.loads(json_path.read_text()) if json_path.exists() else {}
    if kept.get("plan") != json.loads(json.dumps(dataclasses.asdict(plan))):
        kept = {}
    table: Dict[str, list] = kept.get("table", {})
    choices, picks = kept.get("choices", {}), kept.get("picks", {})
    notes: List[str] = []
    commands = kept.get("commands", [])
    this = " ".join([COMMAND, *sys.argv[1:]])
    if this not in commands:
        commands.append(this)

    def finish(final: bool = False):
        if final:
            # The test set, read once, after all training, for the table's rows.
            x_test, y_test = data.test()
            for records in table.values():
                for record in records:
                    if "test" not in record:
                        record["test"] = evaluate(data, record)
            teacher_test = kd_bench.evaluate_logits(
                data.teacher_logits("test", lambda: x_test), y_test, None)
            students = [s for s in STUDENT_LABELS if s in args.students
                        or any(key.startswith(f"{s}/") for key in table)]
            for student in students:
                for setting in SETTINGS:
                    table[f"{student}/{setting}/teacher"] = [dict(
                        seed=0, params=data.teacher_info["params"],
                        train_seconds=data.teacher_info["train_seconds"],
                        val_accuracy=_accuracy(data.teacher, data.x_val, data.y_val),
                        test=teacher_test)]
        notes.clear()
        for student in STUDENT_LABELS:
            for setting in SETTINGS:
                for row in ROWS:
                    records = table.get(f"{student}/{setting}/{row}")
                    where = f"- {STUDENT_LABELS[student]}, {SETTING_LABELS[setting]}, {ROW_LABELS[row]}"
                    if not records:
                        notes.append(f"{where}: not run (budget).")
                    elif row != "teacher" and len(records) < len(plan.seeds):
                        live = records[0].get("method") == "live"
                        notes.append(f"{where}: seeds {[r['seed'] for r in records]} only ("
                                     + ("a live teacher with in-step MixUp; `--live-all-seeds` runs "
                                        "the others" if live else "budget") + ").")
        summary = summarize(table)
        json_path.write_text(json.dumps(
            {"commands": commands, "plan": dataclasses.asdict(plan),
             "choices": choices, "picks": picks, "table": table, "summary": summary,
             "notes": notes}, indent=1))
        write_report(output / "results_table.md", summary, choices, picks, plan, data, notes,
                     started, loads, commands, kd_grid)

    # Seed 0 of every row first (its runs make the choices), then the other
    # seeds, so an interrupted run leaves every row with as many seeds as it
    # could. The test set is read once, at the end (`--report-only` does it
    # for an interrupted run).
    plans = {}
    for student in [] if args.report_only else args.students:
        if "tune" in args.rows:
            # The learning rate: the best of tune's student-alone grid (validation).
            pick = picks[student] = tune_pick(data, student, data.root)
            lr = pick["baseline_settings"]["learning_rate"]
        else:
            # Without the search: the student alone at `short` epochs over
            # tune's learning rates, seed 0, on validation.
            from keras_kd.src.tuning.tuning import DEFAULT_SPACE

            pick, scores = None, {}
            for rate in DEFAULT_SPACE["learning_rate"]:
                scores[rate] = runs.get({"student": student, "setting": args.settings[0],
                                         "seed": plan.seeds[0], "learning_rate": rate,
                                         "method": "alone", "epochs": plan.short})["val_accuracy"]
            lr = max(scores, key=scores.get)
            choices.setdefault(student, {})["learning_rate_grid"] = {
                f"{k:g}": v for k, v in scores.items()}
        plans[student] = (pick, lr, {})
    for seed in [] if args.report_only else plan.seeds:
        for student in args.students:
            pick, lr, specs = plans[student]
            for setting in args.settings:
                for row in ROWS[1:]:
                    if row not in args.rows:
                        continue
                    if setting not in specs:
                        specs[setting] = row_specs(
                            runs, student, setting, lr, choices, args.rows, kd_grid)
                    spec = (tune_spec(pick, student, setting, seed, plan) if row == "tune"
                            else dict(specs[setting][row], seed=seed))
                    if spec["method"] == "live" and seed != plan.seeds[0] and not args.live_all_seeds:
                        # A live teacher with in-step MixUp costs ~5x the
                        # MLP's step here: first seed only, unless asked.
                        continue
                    record = runs.get(spec)
                    key = f"{student}/{setting}/{row}"
                    table[key] = [r for r in table.get(key, []) if r["seed"] != seed] + [record]
                    finish()
            log(f"seed {seed} of {student} done")
    finish(final=True)
    log(f"wrote {output / 'results_table.md'}")
    return output / "results_table.md"


if __name__ == "__main__":
    main()
