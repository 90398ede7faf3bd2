"""Real text classification data, offline-first.

The public namespace `keras_kd.text_datasets`; the implementation is in
`keras_kd.src.data.text_datasets`.
"""

from keras_kd.src.data.text_datasets import (
    APT_LISTS_DIR,
    DEBIAN_SECTIONS,
    IMDB_CLASS_NAMES,
    PYTHON_SOURCE_SPLITS,
    TEXT_DATASETS,
    count_words,
    find_apt_package_lists,
    load_debian_descriptions,
    load_debian_unlabelled,
    load_imdb_text,
    load_python_docstrings,
    load_python_source,
    load_text_classification,
    parse_apt_packages,
    python_source_files,
    python_source_texts,
)

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
