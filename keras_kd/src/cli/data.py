"""The one data loader of the `keras-kd` subcommands.

Data come either from a built-in dataset by name (`--data fashion_mnist`,
optionally `--data-dir`), or from array files: `.npy` (an array) or `.npz`
(arrays `x` and, optionally, `y`). Every subcommand reads them here, so they
accept the same files and say the same things when one is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

#: Datasets `--data` accepts.
BUILTIN_DATA = ("fashion_mnist",)


def load_array_file(filename: str, argument: str):
    """`x` or `(x, y)` from a `.npy` file (inputs) or a `.npz` file (`x`, `y`)."""
    import numpy as np

    path = Path(filename)
    if not path.is_file():
        raise FileNotFoundError(f"{argument}: no such file '{filename}'.")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays:
                raise ValueError(
                    f"{argument}: the .npz file '{filename}' must hold an array "
                    f"named 'x' (and optionally 'y'). Found: {sorted(arrays)}."
                )
            return (arrays["x"], arrays["y"]) if "y" in arrays else arrays["x"]
    raise ValueError(f"{argument} must be a .npy or .npz file. Received: '{filename}'.")


def load_builtin(name: str, data_dir: Optional[str] = None):
    """`((x_train, y_train), (x_test, y_test), class_names)` of a built-in dataset."""
    if name not in BUILTIN_DATA:
        raise ValueError(
            f"`--data` must be one of {BUILTIN_DATA}. Received: --data {name!r}. "
            "For other data pass array files (.npy, or .npz with 'x' and 'y')."
        )
    from keras_kd.src.data.datasets import FASHION_MNIST_CLASS_NAMES, load_fashion_mnist

    train, test = load_fashion_mnist(data_dir=data_dir)
    return train, test, list(FASHION_MNIST_CLASS_NAMES)


def limit_examples(arrays: tuple, limit: Optional[int]) -> tuple:
    """The first `limit` examples of each array (all when `limit` is None)."""
    if limit is None:
        return arrays
    if limit < 1:
        raise ValueError(f"`--limit` must be a positive integer. Received: --limit {limit}.")
    return tuple(a[:limit] for a in arrays)


def labelled_test_data(data: Optional[str], x_file: Optional[str], y_file: Optional[str],
                       data_dir: Optional[str] = None,
                       ) -> Tuple[tuple, Optional[List[str]]]:
    """`((x, y), class_names)` to evaluate on: a built-in test split, or the
    inputs and labels of array files (`--x` and `--y`, or one `.npz`)."""
    if data is not None:
        _, test, names = load_builtin(data, data_dir)
        return test, names
    if x_file is None or (y_file is None and not x_file.endswith(".npz")):
        raise ValueError(
            "Give the evaluation data: `--data fashion_mnist`, or both `--x X.npy` and "
            "`--y Y.npy`, or `--x XY.npz` holding 'x' and 'y'."
        )
    loaded = load_array_file(x_file, "--x")
    if isinstance(loaded, tuple):
        if y_file is not None:
            raise ValueError(f"--x '{x_file}' holds labels 'y' already; drop --y.")
        return loaded, None
    if y_file is None:
        raise ValueError(f"--x '{x_file}' holds inputs only: give the labels with --y.")
    labels = load_array_file(y_file, "--y")
    if isinstance(labels, tuple):
        raise ValueError(f"--y '{y_file}' must hold labels only (a .npy file).")
    return (loaded, labels), None
