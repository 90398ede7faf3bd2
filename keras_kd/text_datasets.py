"""Real text classification data, offline-first.

The public namespace `keras_kd.text_datasets`; the implementation is in
`keras_kd.src.data.text_datasets`.
"""

from keras_kd.src.data.text_datasets import APT_LISTS_DIR
from keras_kd.src.data.text_datasets import count_words
from keras_kd.src.data.text_datasets import DEBIAN_SECTIONS
from keras_kd.src.data.text_datasets import find_apt_package_lists
from keras_kd.src.data.text_datasets import IMDB_CLASS_NAMES
from keras_kd.src.data.text_datasets import load_debian_descriptions
from keras_kd.src.data.text_datasets import load_debian_unlabelled
from keras_kd.src.data.text_datasets import load_imdb_text
from keras_kd.src.data.text_datasets import load_python_docstrings
from keras_kd.src.data.text_datasets import load_python_source
from keras_kd.src.data.text_datasets import load_text_classification
from keras_kd.src.data.text_datasets import parse_apt_packages
from keras_kd.src.data.text_datasets import python_source_files
from keras_kd.src.data.text_datasets import PYTHON_SOURCE_SPLITS
from keras_kd.src.data.text_datasets import python_source_texts
from keras_kd.src.data.text_datasets import TEXT_DATASETS

__all__ = [
    "APT_LISTS_DIR",
    "count_words",
    "DEBIAN_SECTIONS",
    "find_apt_package_lists",
    "IMDB_CLASS_NAMES",
    "load_debian_descriptions",
    "load_debian_unlabelled",
    "load_imdb_text",
    "load_python_docstrings",
    "load_python_source",
    "load_text_classification",
    "parse_apt_packages",
    "python_source_files",
    "PYTHON_SOURCE_SPLITS",
    "python_source_texts",
    "TEXT_DATASETS",
]
