"""The offline-first Fashion-MNIST loaders, on the real files present here."""

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from keras_kd.src.data import datasets

SYSTEM_DIR = datasets.SYSTEM_DATA_DIRS[0]


@pytest.fixture(scope="module")
def local_copy(tmp_path_factory):
    """A user directory holding the four original files."""
    directory = tmp_path_factory.mktemp("fmnist")
    for name in datasets.FASHION_MNIST_FILES:
        shutil.copy(f"{SYSTEM_DIR}/{name}", directory / name)
    return directory


def test_loads_the_real_data_from_the_system_directory():
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(download=False)
    assert x_train.shape == (60000, 28, 28, 1) and x_test.shape == (10000, 28, 28, 1)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert y_train.shape == (60000,) and set(np.unique(y_train)) == set(range(10))
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images a class.
    assert np.all(np.bincount(y_train) == 6000) and np.all(np.bincount(y_test) == 1000)


def test_user_directory_is_searched_first(local_copy, monkeypatch):
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    assert datasets.find_fashion_mnist(str(local_copy)) == local_copy
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(local_copy))
    assert datasets.fashion_mnist_search_paths()[0] == local_copy
    (x, y), _ = datasets.load_fashion_mnist(data_dir=str(local_copy), normalize=False, channels=False)
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8


def test_keras_download_path_and_clear_error_when_it_fails(tmp_path, local_copy):
    """Runs the real `keras.datasets` path in fresh processes: once with the
    files in the Keras cache (no download needed), once with nothing anywhere,
    where the real download fails offline and the error says what to do."""
    script = textwrap.dedent(
        """
        import sys
        from keras_kd.src.data import datasets
        datasets.SYSTEM_DATA_DIRS = ()
        datasets.find_fashion_mnist = lambda data_dir=None: None  # force the download path
        try:
            (x, y), _ = datasets.load_fashion_mnist()
            print("loaded", x.shape)
        except RuntimeError as error:
            print("error:", error)
        """
    )
    cache = tmp_path / "with_cache"
    (cache / "datasets" / "fashion-mnist").mkdir(parents=True)
    for name in datasets.FASHION_MNIST_FILES:
        shutil.copy(local_copy / name, cache / "datasets" / "fashion-mnist" / name)
    empty = tmp_path / "empty"
    empty.mkdir()
    outputs = {}
    for label, home in (("cache", cache), ("empty", empty)):
        result = subprocess.run(
            [sys.executable, "-c", script],
            env={"KERAS_HOME": str(home), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3",
                 "HOME": str(home)},
            capture_output=True, text=True, timeout=300,
        )
        outputs[label] = result.stdout
    assert "loaded (60000, 28, 28, 1)" in outputs["cache"], outputs
    assert "error: Fashion-MNIST is not available" in outputs["empty"], outputs
    assert "apt-get install -y dataset-fashion-mnist" in outputs["empty"]


def test_no_local_copy_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", ())
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="download=False"):
        datasets.load_fashion_mnist(data_dir=str(tmp_path), download=False)


def test_inconsistent_files_are_reported(tmp_path, local_copy):
    for name in datasets.FASHION_MNIST_FILES:
        shutil.copy(local_copy / name, tmp_path / name)
    shutil.copy(local_copy / "t10k-labels-idx1-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz")
    with pytest.raises(ValueError, match="inconsistent"):
        datasets.load_fashion_mnist(data_dir=str(tmp_path))


def test_tensorflow_datasets_pipeline_offline():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        dataset = datasets.load_fashion_mnist_tfds("train", batch_size=8)
        images, labels = next(iter(dataset))
    assert images.shape == (8, 28, 28, 1)
    assert images.dtype.name == "float32"
    assert float(images.numpy().max()) <= 1.0
    assert labels.shape == (8,)
