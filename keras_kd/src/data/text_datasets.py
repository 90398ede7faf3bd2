"""Real text classification data, offline-first.

Two corpora of real, human-written labelled text:

- `load_imdb_text`: the IMDB movie reviews (positive / negative) through
  `keras.datasets.imdb`; needs a download the first time.
- `load_debian_descriptions`: the one-line descriptions of Debian packages,
  labelled by their archive section (`games`, `science`, `sound`, ...), read
  from apt's package lists (`/var/lib/apt/lists/*_Packages*`, present on any
  Debian or Ubuntu machine after `apt-get update`). No network needed.

`load_text_classification(name)` picks one by name (`"auto"` tries IMDB,
then falls back to the Debian corpus). All loaders return Python strings, so
the same `keras.layers.TextVectorization` preprocessing serves them all.

For language modelling, `load_python_source` returns the Python standard
library's own source files (real code and docstrings, on every machine with
Python), split by file into train, validation and test bytes.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import hashlib
import lzma
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from keras_kd.src.utils import arguments

#: Frequent Debian sections whose descriptions are about different topics.
DEBIAN_SECTIONS = ("admin", "fonts", "games", "graphics", "net", "science", "sound", "text")

APT_LISTS_DIR = "/var/lib/apt/lists"

IMDB_CLASS_NAMES = ("negative", "positive")

TEXT_DATASETS = ("auto", "imdb", "debian_packages")

ArrayPair = Tuple[np.ndarray, np.ndarray]


def find_apt_package_lists(lists_dir: str = APT_LISTS_DIR) -> List[Path]:
    """The binary package lists apt keeps in `lists_dir` (any compression)."""
    directory = Path(lists_dir)
    if not directory.is_dir():
        return []
    return sorted(
        path for path in directory.iterdir()
        if path.is_file() and "_Packages" in path.name and not path.name.endswith(".diff_Index")
    )


def _read_list(path: Path) -> str:
    """The text of one package list, decompressed."""
    suffix = path.suffix
    openers = {".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open, ".bz2": bz2.open}
    if suffix in openers:
        with openers[suffix](path, "rt", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    if suffix in (".lz4", ".zst"):
        # apt's own helper reads every compression apt writes; Python's
        # standard library has no lz4 or zstd.
        commands = [["/usr/lib/apt/apt-helper", "cat-file", str(path)]]
        tool = {".lz4": "lz4cat", ".zst": "zstdcat"}[suffix]
        if shutil.which(tool):
            commands.append([tool, str(path)])
        for command in commands:
            if Path(command[0]).exists() or shutil.which(command[0]):
                result = subprocess.run(command, capture_output=True, check=False)
                if result.returncode == 0:
                    return result.stdout.decode("utf-8", errors="replace")
        raise RuntimeError(
            f"Cannot decompress the apt package list {path}: neither "
            f"`apt-helper cat-file` nor `{tool}` is available."
        )
    return path.read_text(encoding="utf-8", errors="replace")


def parse_apt_packages(text: str) -> Iterator[Dict[str, str]]:
    """Yields `{"package", "section", "description"}` for each stanza of a
    Debian `Packages` file.

    The section loses its archive area (`contrib/games` is `games`); the
    description is the one-line synopsis.

    Example:

    >>> list(parse_apt_packages("Package: hello\\nSection: devel\\nDescription: example program\\n"))
    [{'package': 'hello', 'section': 'devel', 'description': 'example program'}]
    """
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if not line or line[0] in " \t" or ":" not in line:
                continue
            key, value = line.split(":", 1)
            if key in ("Package", "Section", "Description"):
                fields[key.lower()] = value.strip()
        if {"package", "section", "description"} <= fields.keys():
            fields["section"] = fields["section"].rsplit("/", 1)[-1]
            yield fields


@functools.lru_cache(maxsize=4)
def _descriptions(lists: Tuple[Tuple[str, int, int], ...]) -> Tuple[Tuple[str, str], ...]:
    """`(section, description)` of each package, once per package name.

    Cached on the lists' paths, modification times and sizes: reading the
    main list means decompressing ~50 MB.
    """
    seen, result = set(), []
    for path, _, _ in lists:
        for fields in parse_apt_packages(_read_list(Path(path))):
            if fields["package"] not in seen:
                seen.add(fields["package"])
                result.append((fields["section"], " ".join(fields["description"].split())))
    return tuple(result)


def _all_descriptions(lists_dir: str) -> Tuple[Tuple[str, str], ...]:
    """`_descriptions` of every package list in `lists_dir`, or a clear
    error when there is none."""
    paths = find_apt_package_lists(lists_dir)
    if not paths:
        raise FileNotFoundError(
            f"No apt package lists were found in {lists_dir!r}. On Debian or "
            "Ubuntu run `apt-get update` first (it needs access to a mirror)."
        )
    return _descriptions(tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths))


def _stable_fraction(text: str) -> float:
    """A number in [0, 1) fixed by `text` alone, for a reproducible split."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


_check_fraction = arguments.fraction


def load_debian_descriptions(
    sections: Sequence[str] = DEBIAN_SECTIONS,
    test_fraction: float = 0.2,
    lists_dir: str = APT_LISTS_DIR,
    max_per_class: Optional[int] = None,
) -> Tuple[ArrayPair, ArrayPair]:
    """Debian package descriptions labelled by archive section.

    Reads apt's package lists, keeps the packages of `sections`, and returns
    their one-line descriptions (not the package names, which often give the
    section away, e.g. `fonts-*`). Packages listed in several lists count
    once; a description shared by several packages is kept once, and one
    that appears under two of the chosen sections is dropped as ambiguous.
    The train/test split is fixed by a hash of each description, so it does
    not depend on the order of the lists or on which mirrors are configured.

    Args:
        sections: The sections to keep; the label of an example is the index
            of its section here.
        test_fraction: Fraction of descriptions in the test split.
        lists_dir: apt's list directory.
        max_per_class: Keep at most this many descriptions per section
            (chosen by the same hash), for quick runs.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: arrays of Python strings and
        `int32` labels.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_debian_descriptions()  # doctest: +SKIP
    >>> x_train[0], DEBIAN_SECTIONS[y_train[0]]  # doctest: +SKIP
    ('real-time strategy game of ancient warfare', 'games')
    """
    sections = list(sections)
    if len(sections) < 2 or len(set(sections)) != len(sections) or not all(
        isinstance(s, str) and s for s in sections
    ):
        raise ValueError(
            "`sections` must name at least two distinct Debian sections. "
            f"Received: sections={sections!r}."
        )
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    if max_per_class is not None and (isinstance(max_per_class, bool) or not isinstance(max_per_class, int) or max_per_class < 1):
        raise ValueError(
            f"`max_per_class` must be a positive integer or None. Received: max_per_class={max_per_class!r}."
        )
    wanted = set(sections)
    labels_of: Dict[str, set] = {}
    for section, text in _all_descriptions(lists_dir):
        if section in wanted:
            labels_of.setdefault(text, set()).add(section)
    examples = sorted(
        ((_stable_fraction(text), text, sections.index(next(iter(found))))
         for text, found in labels_of.items() if len(found) == 1),
    )
    missing = wanted - {sections[label] for _, _, label in examples}
    if missing:
        raise ValueError(
            f"`sections` names sections with no package in the lists in {lists_dir!r}: "
            f"{sorted(missing)}. Received: sections={sections!r}."
        )
    if max_per_class is not None:
        # A second hash chooses the subset, so it spans both splits.
        counts = dict.fromkeys(range(len(sections)), 0)
        kept = []
        for example in sorted(examples, key=lambda e: _stable_fraction("subset " + e[1])):
            if counts[example[2]] < max_per_class:
                counts[example[2]] += 1
                kept.append(example)
        examples = sorted(kept)
    # The hash orders the examples too, which leaves them shuffled but fixed.
    train = [(text, label) for fraction, text, label in examples if fraction >= test_fraction]
    test = [(text, label) for fraction, text, label in examples if fraction < test_fraction]
    return _as_arrays(train), _as_arrays(test)


def _as_arrays(pairs: Iterable[Tuple[str, int]]) -> ArrayPair:
    pairs = list(pairs)
    texts = np.array([text for text, _ in pairs], dtype=object)
    labels = np.array([label for _, label in pairs], dtype=np.int32)
    return texts, labels


def load_imdb_text(num_words: Optional[int] = None) -> Tuple[ArrayPair, ArrayPair]:
    """IMDB movie reviews as text, through `keras.datasets.imdb` (downloads).

    Keras stores the reviews as word indices; they are mapped back to words
    with `keras.datasets.imdb.get_word_index()` (unknown words become `[UNK]`).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: 25,000 reviews each, as
        strings, with `int32` labels (0 negative, 1 positive).
    """
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.imdb.load_data(num_words=num_words)
    # Indices 0-2 are padding, start and unknown; words start at 3.
    words = {index + 3: word for word, index in keras.datasets.imdb.get_word_index().items()}

    def decode(sequences):
        return np.array(
            [" ".join(words.get(i, "[UNK]") for i in sequence[1:]) for sequence in sequences],
            dtype=object,
        )

    return (decode(x_train), y_train.astype(np.int32)), (decode(x_test), y_test.astype(np.int32))


def load_text_classification(
    name: str = "auto", **kwargs
) -> Tuple[Tuple[ArrayPair, ArrayPair], List[str], str]:
    """A real text classification corpus by name.

    Args:
        name: `"imdb"`, `"debian_packages"` or `"auto"` (IMDB when it can be
            downloaded, otherwise the Debian corpus).
        **kwargs: Passed to the loader.

    Returns:
        `(((x_train, y_train), (x_test, y_test)), class_names, name)` where
        `name` is the corpus actually loaded.
    """
    if name not in TEXT_DATASETS:
        raise ValueError(f"`name` must be one of {TEXT_DATASETS}. Received: name={name!r}.")
    if name in ("auto", "imdb"):
        try:
            return load_imdb_text(**kwargs), list(IMDB_CLASS_NAMES), "imdb"
        except Exception as error:  # network errors come in many types
            if name == "imdb":
                raise RuntimeError(
                    f"IMDB could not be loaded through keras.datasets.imdb ({error}). "
                    "Offline, use name='debian_packages'."
                ) from error
    sections = kwargs.get("sections", DEBIAN_SECTIONS)
    return load_debian_descriptions(**kwargs), list(sections), "debian_packages"


#: Folders of the standard library that hold no standard-library source:
#: installed packages, and the test suite (mostly generated data and fixtures).
_NOT_STDLIB = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test"})

PYTHON_SOURCE_SPLITS = ("train", "validation", "test")


def python_source_files(root: Optional[str] = None) -> List[Path]:
    """The `.py` files of the Python standard library under `root`.

    Installed packages (`site-packages`, `dist-packages`) and the test
    suites are left out, so the corpus is the standard library's own code.
    `root` defaults to `sysconfig.get_paths()["stdlib"]`.
    """
    base = Path(root or sysconfig.get_paths()["stdlib"])
    if not base.is_dir():
        raise FileNotFoundError(f"No Python standard library found at {str(base)!r}.")
    return sorted(
        path for path in base.rglob("*.py")
        if path.is_file() and not _NOT_STDLIB & set(path.relative_to(base).parts[:-1])
    )


def load_python_source(
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    root: Optional[str] = None,
) -> Dict[str, np.ndarray]:
    """The Python standard library's source as bytes, split by file.

    Every file goes whole to one split, chosen by a hash of its path relative
    to `root` (so the split does not depend on the Python installation's
    location or on file order). Files are joined with a NUL byte (`0`, which
    no source file contains) as the document separator.

    The values are byte-level token ids in `[0, 256)`: exactly what
    `keras_hub.tokenizers.ByteTokenizer()` gives for the UTF-8 text, so a
    `GPT2Backbone(vocabulary_size=256, ...)` models it with no tokenizer to
    train, and bits per token are bits per byte.

    Args:
        validation_fraction: Fraction of the files in the validation split.
        test_fraction: Fraction of the files in the test split.
        root: The standard library's folder; defaults to the running
            Python's (`sysconfig.get_paths()["stdlib"]`).

    Returns:
        `{"train": ..., "validation": ..., "test": ...}`, `uint8` arrays.

    Example:

    >>> splits = load_python_source()
    >>> sorted(splits), splits["train"].dtype.name
    (['test', 'train', 'validation'], 'uint8')
    >>> len(splits["train"]) > 5 * len(splits["test"]) > 0, 0 in splits["train"][:-1]
    (True, True)
    """
    validation_fraction = _check_fraction(validation_fraction, "validation_fraction")
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "`validation_fraction + test_fraction` must be below 1. Received: "
            f"validation_fraction={validation_fraction!r}, test_fraction={test_fraction!r}."
        )
    files = python_source_files(root)
    base = Path(root or sysconfig.get_paths()["stdlib"])
    parts: Dict[str, list] = {name: [] for name in PYTHON_SOURCE_SPLITS}
    for path in files:
        fraction = _stable_fraction(path.relative_to(base).as_posix())
        name = ("test" if fraction < test_fraction else
                "validation" if fraction < test_fraction + validation_fraction else "train")
        data = path.read_bytes().replace(b"\0", b"")
        parts[name].append(data)
    return {
        name: np.frombuffer(b"\0".join(chunks), dtype=np.uint8).copy()
        for name, chunks in parts.items()
    }


# ------------------------------------------------------------ unlabelled text

def _stdlib_dir() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["stdlib"])


def python_source_texts(source: str) -> List[str]:
    """The docstrings and comments of one Python source file, as texts.

    Docstrings come from `ast` (modules, classes, functions), one text per
    paragraph; runs of consecutive comment lines (from `tokenize`) are joined
    into one text. Whitespace is collapsed; lines without a letter
    (separators such as `# ----`) and shebang or coding lines are dropped.
    A file that does not parse yields what `tokenize` could read, or nothing.

    Example:

    >>> src = "def f():\\n    'Add one.'\\n    # the sum\\n    return 1\\n"
    >>> python_source_texts(src)
    ['Add one.', 'the sum']
    """
    import ast
    import io
    import re
    import tokenize

    texts: List[str] = []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    texts.extend(p for p in re.split(r"\n\s*\n", doc))
    comments: List[str] = []
    last_line = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.COMMENT:
                continue
            text = token.string.lstrip("#").strip()
            if text.startswith("!") or "coding" in text[:20] and ":" in text[:20]:
                continue
            line = token.start[0]
            if comments and last_line is not None and line != last_line + 1:
                texts.append(" ".join(comments))
                comments = []
            comments.append(text)
            last_line = line
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    if comments:
        texts.append(" ".join(comments))
    cleaned = (" ".join(t.split()) for t in texts)
    return [t for t in cleaned if re.search(r"[A-Za-z]", t)]


def load_python_docstrings(
    stdlib_dir: Optional[str] = None,
    max_files: Optional[int] = None,
    include_tests: bool = False,
) -> List[str]:
    """Unlabelled English text: the Python standard library's docstrings and
    comments (see `python_source_texts`), offline.

    Reads the `.py` files under `stdlib_dir` (default: this interpreter's
    standard library, `sysconfig.get_paths()["stdlib"]`), in sorted order,
    skipping `site-packages` and `dist-packages` (the installed packages are
    not the standard library) and, unless `include_tests`, the `test` and
    `tests` directories and `idle_test`.

    Args:
        stdlib_dir: Directory to read.
        max_files: Read at most this many files (the first in sorted order),
            for quick runs and tests.
        include_tests: Also read the test suites.

    Returns:
        A list of texts (docstring paragraphs and comment blocks).

    Example:

    >>> texts = load_python_docstrings(max_files=5)
    >>> len(texts) > 10 and all(isinstance(t, str) for t in texts)
    True
    """
    directory = Path(stdlib_dir) if stdlib_dir is not None else _stdlib_dir()
    if not directory.is_dir():
        raise FileNotFoundError(f"`stdlib_dir` is not a directory. Received: stdlib_dir={str(directory)!r}.")
    if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1):
        raise ValueError(f"`max_files` must be a positive integer or None. Received: max_files={max_files!r}.")
    skipped = {"site-packages", "dist-packages", "__pycache__"}
    if not include_tests:
        skipped |= {"test", "tests", "idle_test"}
    paths = sorted(
        path for path in directory.rglob("*.py")
        if not skipped & set(path.relative_to(directory).parts[:-1])
    )
    if max_files is not None:
        paths = paths[:max_files]
    texts: List[str] = []
    for path in paths:
        texts.extend(python_source_texts(path.read_text(encoding="utf-8", errors="replace")))
    return texts


def load_debian_unlabelled(
    exclude: Iterable[str] = (),
    lists_dir: str = APT_LISTS_DIR,
) -> List[str]:
    """Every Debian package's one-line description, without labels.

    For pretraining and as distillation transfer text. Pass the texts of
    the labelled task's test split (and validation split) as `exclude`, so
    that the unlabelled text does not hold them.

    Returns:
        The distinct descriptions in a fixed (hash) order.

    Example:

    >>> (_, _), (x_test, _) = load_debian_descriptions()  # doctest: +SKIP
    >>> texts = load_debian_unlabelled(exclude=x_test)  # doctest: +SKIP
    """
    excluded = set(exclude)
    texts = {text for _, text in _all_descriptions(lists_dir) if text not in excluded}
    return sorted(texts, key=_stable_fraction)


def count_words(texts: Iterable[str]) -> int:
    """Whitespace-separated words in `texts` (a corpus size that does not
    depend on a tokenizer).

    Example:

    >>> count_words(["two words", "three more words"])
    5
    """
    return sum(len(text.split()) for text in texts)
