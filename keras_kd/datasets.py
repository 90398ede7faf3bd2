"""Offline-first data loading.

The public namespace `keras_kd.datasets`; the implementation is in
`keras_kd.src.data.datasets`.
"""

from keras_kd.src.data.datasets import (
    DATA_DIR_ENV,
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_FILES,
    SYSTEM_DATA_DIRS,
    fashion_mnist_search_paths,
    find_fashion_mnist,
    load_fashion_mnist,
    load_fashion_mnist_tfds,
)

__all__ = [
    "DATA_DIR_ENV",
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_FILES",
    "fashion_mnist_search_paths",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "load_fashion_mnist_tfds",
    "SYSTEM_DATA_DIRS",
]
