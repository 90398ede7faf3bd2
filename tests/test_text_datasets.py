"""The text corpora, on the real apt package lists of this machine."""

import collections

import numpy as np
import pytest

from keras_kd.src.data import text_datasets
from keras_kd.src.data.text_datasets import DEBIAN_SECTIONS


@pytest.fixture(scope="module")
def debian():
    return text_datasets.load_debian_descriptions()


def test_parse_apt_packages_reads_stanzas():
    text = (
        "Package: fonts-dejavu\nVersion: 2.37\nSection: fonts\n"
        "Description: metapackage to pull in fonts-dejavu-core\n"
        " a long description line that is ignored\n\n"
        "Package: frotz\nSection: contrib/games\nDescription: interpreter of Z-code games\n\n"
        "Package: no-section\nDescription: dropped\n"
    )
    assert list(text_datasets.parse_apt_packages(text)) == [
        {"package": "fonts-dejavu", "section": "fonts",
         "description": "metapackage to pull in fonts-dejavu-core"},
        {"package": "frotz", "section": "games", "description": "interpreter of Z-code games"},
    ]


def test_debian_descriptions_are_real_labelled_text(debian):
    (x_train, y_train), (x_test, y_test) = debian
    # Thousands of real descriptions (Debian main has ~60k packages).
    assert len(x_train) > 2000 and len(x_test) > 500
    assert len(x_test) / (len(x_train) + len(x_test)) == pytest.approx(0.2, abs=0.03)
    assert y_train.dtype == np.int32
    counts = collections.Counter(y_train.tolist())
    assert sorted(counts) == list(range(len(DEBIAN_SECTIONS)))
    assert min(counts.values()) > 100
    assert all(isinstance(text, str) and text for text in x_train[:100])
    # Deduplicated, and no description in both splits.
    assert len(set(x_train)) == len(x_train)
    assert not set(x_train) & set(x_test)
    # Labels follow the package lists: every font description is a font package's.
    fonts = x_train[y_train == DEBIAN_SECTIONS.index("fonts")]
    assert np.mean(["font" in text.lower() for text in fonts]) > 0.5


def test_debian_split_is_fixed_and_independent_of_the_sections_order(debian):
    (x_train, _), (x_test, _) = debian
    reordered = tuple(reversed(DEBIAN_SECTIONS))
    (x_train2, y_train2), (x_test2, y_test2) = text_datasets.load_debian_descriptions(reordered)
    assert list(x_train2) == list(x_train) and list(x_test2) == list(x_test)
    assert reordered[y_train2[0]] == DEBIAN_SECTIONS[debian[0][1][0]]


def test_debian_max_per_class(debian):
    (x_train, y_train), (x_test, y_test) = text_datasets.load_debian_descriptions(max_per_class=50)
    counts = collections.Counter(np.concatenate([y_train, y_test]).tolist())
    assert set(counts.values()) == {50}
    assert 0.1 < len(x_test) / 400 < 0.3  # the subset spans both splits
    assert set(x_train) <= set(debian[0][0])


def test_load_text_classification_falls_back_offline():
    # No internet on this machine: IMDB fails and "auto" falls back.
    (train, _), class_names, corpus = text_datasets.load_text_classification(
        "auto", sections=("games", "fonts"), max_per_class=20
    )
    if corpus == "imdb":  # pragma: no cover - only with network access
        assert class_names == ["negative", "positive"]
    else:
        assert class_names == ["games", "fonts"] and len(train[0]) > 20


def test_errors(tmp_path):
    with pytest.raises(ValueError, match=r"sections=\['games'\]"):
        text_datasets.load_debian_descriptions(sections=["games"])
    with pytest.raises(ValueError, match=r"test_fraction=1.5"):
        text_datasets.load_debian_descriptions(test_fraction=1.5)
    with pytest.raises(ValueError, match=r"max_per_class=0"):
        text_datasets.load_debian_descriptions(max_per_class=0)
    with pytest.raises(FileNotFoundError, match="apt-get update"):
        text_datasets.load_debian_descriptions(lists_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"no-such-section"):
        text_datasets.load_debian_descriptions(sections=("games", "no-such-section"))
    with pytest.raises(ValueError, match=r"name='mnist'"):
        text_datasets.load_text_classification("mnist")


def test_python_source_texts_reads_docstrings_and_comment_blocks():
    source = (
        '"""Module doc.\n\nSecond paragraph."""\n'
        "# first comment\n# continues here\nx = 1\n\n# ----------\n"
        "class A:\n    'Class doc.'\n    def f(self):\n        '''Method doc.'''\n"
        "        return 2  # trailing note\n"
    )
    texts = text_datasets.python_source_texts(source)
    assert texts[:4] == ["Module doc.", "Second paragraph.", "Class doc.", "Method doc."]
    assert "first comment continues here" in texts and "trailing note" in texts
    assert not any(set(t) <= set("- ") for t in texts)
    # A file that does not parse still gives its comments.
    assert text_datasets.python_source_texts("def broken(:\n    # still read\n") == ["still read"]


def test_load_python_docstrings_on_a_small_slice(tmp_path):
    (tmp_path / "a.py").write_text('"""Alpha module."""\n# a comment\n')
    (tmp_path / "site-packages").mkdir()
    (tmp_path / "site-packages" / "b.py").write_text('"""Not the standard library."""\n')
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "c.py").write_text('"""A test."""\n')
    assert text_datasets.load_python_docstrings(str(tmp_path)) == ["Alpha module.", "a comment"]
    assert "A test." in text_datasets.load_python_docstrings(str(tmp_path), include_tests=True)
    real = text_datasets.load_python_docstrings(max_files=3)
    assert len(real) > 10 and text_datasets.count_words(real) > 100
    with pytest.raises(ValueError, match="max_files"):
        text_datasets.load_python_docstrings(max_files=0)
    with pytest.raises(FileNotFoundError, match="stdlib_dir"):
        text_datasets.load_python_docstrings(str(tmp_path / "missing"))


def test_load_debian_unlabelled_excludes_the_held_out_texts(debian):
    (x_train, _), (x_test, _) = debian
    texts = text_datasets.load_debian_unlabelled(exclude=x_test)
    assert len(texts) > 5 * len(x_train)
    assert not set(texts) & set(x_test)
    assert set(x_train) <= set(texts)
    assert texts == text_datasets.load_debian_unlabelled(exclude=x_test)
