"""Offline-first data loading.

`load_fashion_mnist` looks for the four original Fashion-MNIST files in local
directories before it downloads anything, so it works on machines without
internet access once the files are there (for example from Debian's
`dataset-fashion-mnist` package).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from keras_kd.src.utils import optional

FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FASHION_MNIST_FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)

#: Environment variable naming one more directory to search.
DATA_DIR_ENV = "KERAS_KD_DATA_DIR"

#: System directories searched last (Debian's `dataset-fashion-mnist`).
SYSTEM_DATA_DIRS = ("/usr/share/datasets/fashion-mnist",)

ArrayPair = Tuple[np.ndarray, np.ndarray]


def fashion_mnist_search_paths(data_dir: Optional[str] = None) -> list:
    """Directories searched for Fashion-MNIST, in order.

    The user's `data_dir`, `$KERAS_KD_DATA_DIR`, the Keras cache
    (`~/.keras/datasets/fashion-mnist`) and Debian's package directory.
    """
    candidates = []
    if data_dir:
        candidates.append(Path(data_dir).expanduser())
    if os.environ.get(DATA_DIR_ENV):
        candidates.append(Path(os.environ[DATA_DIR_ENV]).expanduser())
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    candidates.append(keras_home / "datasets" / "fashion-mnist")
    candidates.extend(Path(directory) for directory in SYSTEM_DATA_DIRS)
    return candidates


def find_fashion_mnist(data_dir: Optional[str] = None) -> Optional[Path]:
    """The first search path that holds all four files, or `None`."""
    for directory in fashion_mnist_search_paths(data_dir):
        if all((directory / name).is_file() for name in FASHION_MNIST_FILES):
            return directory
    return None


def _read_idx(path: Path, offset: int, shape: Sequence[int] = ()) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = np.frombuffer(handle.read(), np.uint8, offset=offset)
    return data.reshape((-1, *shape)) if shape else data


def _read_fashion_mnist(directory: Path) -> Tuple[ArrayPair, ArrayPair]:
    train_labels, train_images, test_labels, test_images = (
        directory / name for name in FASHION_MNIST_FILES
    )
    x_train = _read_idx(train_images, 16, (28, 28))
    y_train = _read_idx(train_labels, 8)
    x_test = _read_idx(test_images, 16, (28, 28))
    y_test = _read_idx(test_labels, 8)
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(
            f"The Fashion-MNIST files in {directory} are inconsistent: "
            f"{len(x_train)} train images for {len(y_train)} labels, "
            f"{len(x_test)} test images for {len(y_test)} labels."
        )
    return (x_train, y_train), (x_test, y_test)


def load_fashion_mnist(
    data_dir: Optional[str] = None,
    normalize: bool = True,
    channels: bool = True,
    download: bool = True,
) -> Tuple[ArrayPair, ArrayPair]:
    """Loads Fashion-MNIST, from a local copy when there is one.

    Searches `fashion_mnist_search_paths(data_dir)` and reads the original
    `.gz` files there; otherwise downloads them with
    `keras.datasets.fashion_mnist.load_data()` (into the Keras cache).

    Args:
        data_dir: A directory holding the four original `.gz` files, searched
            first.
        normalize: Scale pixels to float32 in `[0, 1]`. Otherwise `uint8`.
        channels: Add a trailing channel axis: images of shape `(28, 28, 1)`.
        download: Download when no local copy exists.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: 60,000 and 10,000 examples,
        labels as `uint8` class indices.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()
    >>> x_train.shape, x_test.shape
    ((60000, 28, 28, 1), (10000, 28, 28, 1))
    """
    directory = find_fashion_mnist(data_dir)
    if directory is not None:
        (x_train, y_train), (x_test, y_test) = _read_fashion_mnist(directory)
    elif download:
        import keras

        try:
            (x_train, y_train), (x_test, y_test) = (
                keras.datasets.fashion_mnist.load_data()
            )
        except Exception as error:  # network errors come in many types
            searched = ", ".join(str(p) for p in fashion_mnist_search_paths(data_dir))
            raise RuntimeError(
                "Fashion-MNIST is not available: no local copy was found "
                f"(searched {searched}) and the download failed ({error}). "
                "Offline, install Debian's `dataset-fashion-mnist` package "
                "(`apt-get install -y dataset-fashion-mnist`) or pass "
                "`data_dir` pointing at the four original .gz files."
            ) from error
    else:
        searched = ", ".join(str(p) for p in fashion_mnist_search_paths(data_dir))
        raise FileNotFoundError(
            f"No local copy of Fashion-MNIST was found (searched {searched}) "
            "and `download=False`."
        )
    if normalize:
        x_train = x_train.astype("float32") / 255.0
        x_test = x_test.astype("float32") / 255.0
    if channels:
        x_train = x_train[..., None]
        x_test = x_test[..., None]
    return (x_train, y_train), (x_test, y_test)


def load_fashion_mnist_tfds(
    split: str = "train",
    batch_size: Optional[int] = None,
    shuffle_files: bool = False,
    data_dir: Optional[str] = None,
):
    """Fashion-MNIST through `tensorflow-datasets` as `(image, label)` pairs.

    Images are float32 in `[0, 1]` with shape `(28, 28, 1)`, as from
    `load_fashion_mnist`, so models and distillers accept either source.

    Args:
        split: A TFDS split, e.g. `"train"`, `"test"` or `"train[:10%]"`.
        batch_size: Batch the dataset when given.
        shuffle_files: Passed to `tfds.load`.
        data_dir: Passed to `tfds.load`.

    Example:

    >>> ds = load_fashion_mnist_tfds("test", batch_size=32)  # doctest: +SKIP
    """
    import tensorflow as tf
    tfds = optional.require("tensorflow_datasets")

    dataset = tfds.load(
        "fashion_mnist",
        split=split,
        as_supervised=True,
        shuffle_files=shuffle_files,
        data_dir=data_dir,
    )

    def to_float(image, label):
        return tf.cast(image, tf.float32) / 255.0, label

    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if batch_size:
        dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)
