"""The text corpora, on the real apt package lists of this machine."""

import collections

import numpy as np
import pytest

from keras_kd import text_datasets
from keras_kd.text_datasets import DEBIAN_SECTIONS


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
