"""Shared pieces of the result benchmarks: data, consistent augmentation,
cached teachers and their outputs, and the metrics of the results table.

Used by `results_table.py`, `methods_table.py` and `sweeps.py`; not part of the
`keras_kd` API.

Consistency (Beyer et al. 2022): every epoch `e` of every run trains on the
same deterministic augmented view `e` of the training set, so a live teacher
and the student see the same images at each step, and the teacher's outputs on
view `e` can be computed once and reused by every student and seed (a cached
teacher that is still consistent with the student's augmentation).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE_DIR = HERE / ".cache"
DEFAULT_RESULTS_DIR = HERE / "results"

#: Views are shared by all seeds and rows, so they get their own seed.
VIEW_SEED = 20260
SUBSET_SEED = 7
SHIFT = 2


@dataclass
class Budget:
    """What every row of a run shares: data, schedule and seeds.

    Students train on `train_size` labelled images. Teachers train on the
    first `teacher_train_size` images of the same fixed random order (a
    superset of the students' images; `None` means the students' set), as
    when a large model was trained on more data than the user has labels for.
    Adam's learning rate starts at `teacher_learning_rate` for teachers and
    `student_learning_rate` for students (a small student fits its data
    better with a larger step; the value was tuned for the student trained
    alone) and follows `lr_schedule` (`"cosine"` decay to zero over the run,
    or `"constant"`). With `shared_teacher_seed`, every student seed
    learns from the one teacher of that seed (teachers are the expensive part
    on a CPU); otherwise each seed has its own teacher.
    """

    train_size: int = 10000
    test_size: int = 10000
    teacher_epochs: int = 12
    student_epochs: int = 30
    batch_size: int = 128
    augment: bool = False
    teacher_learning_rate: float = 1e-3
    student_learning_rate: float = 3e-3
    teacher_width: int = 16
    student_width: int = 12
    teacher_train_size: Optional[int] = 60000
    lr_schedule: str = "cosine"
    shared_teacher_seed: Optional[int] = 0
    cache_dir: Path = DEFAULT_CACHE_DIR

    @property
    def teacher_size(self) -> int:
        return self.teacher_train_size or self.train_size

    def teacher_key(self) -> str:
        """Names what a trained teacher depends on (its data and schedule)."""
        schedule = "" if self.lr_schedule == "constant" else f"-{self.lr_schedule}"
        rate = "" if self.teacher_learning_rate == 1e-3 else f"-lr{self.teacher_learning_rate:g}"
        return (f"n{self.teacher_size}-t{self.test_size}-aug{int(self.augment)}"
                f"-e{self.teacher_epochs}{schedule}{rate}")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------- data

def load_data(budget: Budget, size: Optional[int] = None):
    """The first `size` (default `budget.train_size`) images of a fixed random
    order of Fashion-MNIST's training set, and the start of its test set.
    Smaller subsets are nested in larger ones.
    """
    from keras_kd.datasets import load_fashion_mnist

    (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    rng = np.random.default_rng(SUBSET_SEED)
    order = rng.permutation(len(x_train))[: size or budget.train_size]
    test_order = np.arange(min(budget.test_size, len(x_test)))
    return (
        (x_train[order], y_train[order].astype("int32")),
        (x_test[test_order], y_test[test_order].astype("int32")),
    )


def augment(images: np.ndarray, view: int) -> np.ndarray:
    """View `view` of `images`: a random horizontal flip and a shift of up to
    `SHIFT` pixels per image, the same for every caller that asks for `view`.
    """
    rng = np.random.default_rng([VIEW_SEED, view])
    count, height, width = images.shape[:3]
    flip = rng.random(count) < 0.5
    flipped = np.where(flip[:, None, None, None], images[:, :, ::-1, :], images)
    padded = np.pad(flipped, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT), (0, 0)))
    dy = rng.integers(0, 2 * SHIFT + 1, count)
    dx = rng.integers(0, 2 * SHIFT + 1, count)
    rows = (dy[:, None] + np.arange(height))[:, :, None]
    cols = (dx[:, None] + np.arange(width))[:, None, :]
    return padded[np.arange(count)[:, None, None], rows, cols, :]


def view(images: np.ndarray, epoch: int, budget: Budget) -> np.ndarray:
    return augment(images, epoch) if budget.augment else images


# ------------------------------------------------------------------- teachers

TEACHER_KINDS = ("cnn", "mlp")


def build_teacher(kind: str, budget: Budget):
    from keras_kd import models

    if kind == "cnn":
        return models.cnn_teacher(width=budget.teacher_width)
    if kind == "mlp":
        # Hinton et al. (2015)'s MNIST teacher: 2x1200 with dropout.
        return models.mlp((1200, 1200), dropout=0.3, name="mlp_teacher")
    raise ValueError(f"`kind` must be one of {TEACHER_KINDS}. Received: kind={kind!r}.")


def teacher_key(kind: str, seed: int, budget: Budget) -> str:
    width = f"-w{budget.teacher_width}" if kind == "cnn" else ""
    return f"{kind}{width}-{budget.teacher_key()}-s{seed}"


def optimizer(budget: Budget, epochs: int, examples: int, learning_rate: float):
    """Adam from `learning_rate` with the budget's schedule for `epochs` epochs."""
    import keras

    if budget.lr_schedule == "constant":
        return keras.optimizers.Adam(learning_rate)
    if budget.lr_schedule == "cosine":
        steps = epochs * -(-examples // budget.batch_size)
        return keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(learning_rate, steps)
        )
    raise ValueError("`lr_schedule` must be 'constant' or 'cosine'. "
                     f"Received: lr_schedule={budget.lr_schedule!r}.")


def compile_classifier(model, budget: Budget, epochs: int, examples: int,
                       learning_rate: float) -> None:
    import keras

    model.compile(
        optimizer=optimizer(budget, epochs, examples, learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def fit_by_views(model, x, y, epochs: int, budget: Budget, extra=None) -> float:
    """Trains `epochs` epochs, epoch `e` on view `e`; returns the wall time.

    `extra(epoch)` may return a dict of arrays to put next to the images
    (the cached teacher logits of that view).
    """
    elapsed = 0.0
    for epoch in range(epochs):
        images = view(x, epoch, budget)
        inputs = images
        if extra is not None:
            from keras_kd import INPUTS_KEY

            inputs = {INPUTS_KEY: images, **extra(epoch)}
        start = time.perf_counter()
        model.fit(inputs, y, batch_size=budget.batch_size, epochs=1, shuffle=True, verbose=0)
        elapsed += time.perf_counter() - start
    return elapsed


def get_teacher(kind: str, seed: int, budget: Budget, data):
    """The trained teacher for `seed`, from the cache or trained now.

    Returns `(model, info)` where `info` holds the training time.
    """
    import keras

    directory = Path(budget.cache_dir) / "teachers"
    directory.mkdir(parents=True, exist_ok=True)
    key = teacher_key(kind, seed, budget)
    path, info_path = directory / f"{key}.keras", directory / f"{key}.json"
    marker = directory / f"{key}.training"
    while not info_path.exists():
        try:
            # Another process training the same teacher: wait for it.
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            break
        except FileExistsError:
            time.sleep(10)
    if path.exists() and info_path.exists():
        return keras.saving.load_model(path), json.loads(info_path.read_text())
    (x_train, y_train), _ = (
        data if budget.teacher_size == budget.train_size
        else load_data(budget, budget.teacher_size)
    )
    log(f"training teacher {key} on {len(x_train):,} images")
    keras.utils.set_random_seed(seed)
    model = build_teacher(kind, budget)
    compile_classifier(model, budget, budget.teacher_epochs, len(x_train),
                       budget.teacher_learning_rate)
    seconds = fit_by_views(model, x_train, y_train, budget.teacher_epochs, budget)
    recalibrate_batch_norm(model, x_train)
    model.save(path)
    info = {"train_seconds": seconds, "params": int(model.count_params())}
    info_path.write_text(json.dumps(info))
    marker.unlink(missing_ok=True)
    log(f"teacher {key} trained in {seconds:.0f}s")
    return model, info


def recalibrate_batch_norm(model, images: np.ndarray, count: int = 2000) -> None:
    """Sets BatchNormalization's moving statistics to those of `images`.

    With a short schedule, Adam moves the (scale-invariant) convolution
    weights faster than the moving averages follow, and a teacher that is
    accurate in training mode can be close to chance in inference mode.
    One pass with momentum 0 ("precise BN")
    makes the inference statistics those of the final weights.
    """
    import keras

    layers = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    # Dropout comes after the last BatchNormalization, so it does not matter.
    model(images[:count], training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def predict_logits(model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=1000, verbose=0), dtype="float32")


def teacher_logits(kind: str, seed: int, budget: Budget, data, which,
                   transfer_size: Optional[int] = None) -> np.ndarray:
    """Logits of the teacher on view `which` of the training set (an int) or
    on the test set (`"test"`), cached on disk. With `transfer_size`, view
    `which` of the first `transfer_size` training images instead (a transfer
    set that contains the students' labelled images and more).
    """
    if which != "test" and not budget.augment:
        which = 0  # Without augmentation every view is the same images.
    directory = Path(budget.cache_dir) / "logits"
    directory.mkdir(parents=True, exist_ok=True)
    images_name = "" if transfer_size is None else f"transfer{transfer_size}-"
    name = (f"{teacher_key(kind, seed, budget)}-"
            f"{which if which == 'test' else f'{images_name}v{which}'}")
    path = directory / f"{name}.npy"
    if path.exists():
        return np.load(path)
    model, _ = get_teacher(kind, seed, budget, data)
    (x_train, _), (x_test, _) = data
    if transfer_size is not None:
        x_train = _transfer_images(budget, transfer_size)
    images = x_test if which == "test" else view(x_train, which, budget)
    start = time.perf_counter()
    logits = predict_logits(model, images)
    _add_cache_seconds(budget, time.perf_counter() - start)
    # Written aside then renamed, as other processes may read the cache.
    partial = path.with_suffix(f".{os.getpid()}.npy")
    np.save(partial, logits)
    os.replace(partial, path)
    return logits


_TRANSFER_IMAGES: Dict[int, np.ndarray] = {}


def _transfer_images(budget: Budget, size: int) -> np.ndarray:
    """The first `size` training images, loaded once per process (every view
    of every teacher of a transfer-set row needs them)."""
    if size not in _TRANSFER_IMAGES:
        _TRANSFER_IMAGES.clear()
        (_TRANSFER_IMAGES[size], _), _ = load_data(budget, size)
    return _TRANSFER_IMAGES[size]


def _cache_seconds_path(budget: Budget) -> Path:
    return Path(budget.cache_dir) / "logit_cache_seconds.json"


def cache_seconds(budget: Budget) -> float:
    """Seconds spent so far computing cached teacher logits."""
    path = _cache_seconds_path(budget)
    return json.loads(path.read_text())["seconds"] if path.exists() else 0.0


def _add_cache_seconds(budget: Budget, seconds: float) -> None:
    import fcntl

    with open(Path(budget.cache_dir) / ".seconds.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        total = cache_seconds(budget)
        _cache_seconds_path(budget).write_text(json.dumps({"seconds": total + seconds}))


# -------------------------------------------------------------------- metrics

def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Confidence-binned |accuracy - confidence|, weighted by bin size."""
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def evaluate_logits(logits: np.ndarray, labels: np.ndarray, reference: Optional[np.ndarray]) -> Dict[str, float]:
    """Accuracy, errors, ECE and agreement with `reference` predictions."""
    predictions = logits.argmax(axis=-1)
    result = {
        "accuracy": float((predictions == labels).mean()),
        "errors": int((predictions != labels).sum()),
        "ece": expected_calibration_error(softmax(logits), labels),
    }
    result["agreement"] = (
        None if reference is None else float((predictions == reference).mean())
    )
    return result


def mean_std(values: Sequence[float]):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    array = np.asarray(values, dtype="float64")
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def fingerprint(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


def threads_from_env() -> None:
    """Honours KD_BENCH_THREADS, to share a busy machine politely."""
    threads = os.environ.get("KD_BENCH_THREADS")
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)


def threads_label() -> str:
    """The TensorFlow threads `threads_from_env` gives a process, in words."""
    threads = os.environ.get("KD_BENCH_THREADS")
    if not threads:
        return "TensorFlow's default threads"
    return "one thread" if threads == "1" else f"{threads} threads"


def ensure_list(values) -> List:
    return list(values) if isinstance(values, (list, tuple)) else [values]
