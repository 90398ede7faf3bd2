"""The documentation's own checks (docs/hooks.py, docs/griffe_doctests.py)
and the README's promises about the test command and the docs.

The full site is built by `.ci/run` (`mkdocs build --strict`); these tests are
the fast part: every public name has a docstring and a reference page, the
README links the site rewrites land where they should, and the commands the
README gives are the ones CI runs.
"""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load(name):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring_and_a_reference_page():
    pytest.importorskip("griffe", reason="the docs extra is not installed")
    assert load("hooks").check_api() == []


def test_readme_test_command_is_the_one_ci_runs():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^# 2\..*\n(.+)$", readme, flags=re.MULTILINE).group(1)
    assert "python -m pytest" in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines(), (command, ci)
    assert "mkdocs build --strict" in ci


def test_readme_links_to_the_report_and_the_docs():
    readme = (ROOT / "README.md").read_text()
    for target in ("docs/report/report.md", "docs/report/disagreements.png", "CHANGELOG.md"):
        assert f"]({target})" in readme
        assert (ROOT / target).exists()
    documentation = readme[readme.index("## Documentation"):readme.index("## Development")]
    assert "mkdocs serve" in documentation


def test_every_readme_section_a_guide_includes_exists():
    readme = (ROOT / "README.md").read_text()
    starts = re.findall(r"--8<-- \[start:([\w-]+)\]", readme)
    ends = re.findall(r"--8<-- \[end:([\w-]+)\]", readme)
    assert starts == ends and len(set(starts)) == len(starts)
    included = []
    for page in (ROOT / "docs").rglob("*.md"):
        included += re.findall(r'^--8<-- "README\.md:([\w-]+)"', page.read_text(), flags=re.MULTILINE)
    assert set(included) <= set(starts)
    for section in ("quickstart", "methods", "teachers-and-caches", "augmentation-and-tuning",
                    "distributed", "export", "report"):
        assert section in included


def test_doctest_blocks_become_code_fences():
    pytest.importorskip("griffe", reason="the docs extra is not installed")
    fence = load("griffe_doctests").fence_doctests
    text = "Example:\n\n>>> [1, 2]\n[1, 2]\n\nAfter.\n    >>> x = 1\n    text"
    assert fence(text) == (
        "Example:\n\n```pycon\n>>> [1, 2]\n[1, 2]\n```\n\nAfter.\n\n"
        "    ```pycon\n    >>> x = 1\n    text\n    ```"
    )
    assert fence("No examples.") == "No examples."


def test_readme_links_are_pointed_at_the_site():
    pytest.importorskip("markdown", reason="the docs extra is not installed")
    hooks = load("hooks")
    anchors = hooks.readme_anchors()
    assert anchors["results"] == "guides/results.md"
    assert anchors["inputs-the-distiller-accepts"] == "guides/quickstart.md"
    rewrite = hooks.rewrite_links
    text = "\n".join([
        "see [Results](#results) and [x](https://keras.io)",
        "![plot](docs/report/disagreements.png) [report](docs/report/report.md)",
        "[`examples/cached_teacher.py`](examples/cached_teacher.py)",
        "([cache_fingerprint.md](benchmarks/results/cache_fingerprint.md))",
        "[the demo](benchmarks/results/demo.md) [page](../report/report.md)",
        "```python",
        "[not](a/link.md)",
        "```",
    ])
    assert rewrite(text, anchors, None).split("\n") == [
        "see [Results](/guides/results.md#results) and [x](https://keras.io)",
        "![plot](/report/disagreements.png) [report](/report/report.md)",
        "`examples/cached_teacher.py`",
        "(`benchmarks/results/cache_fingerprint.md`)",
        "the demo (`benchmarks/results/demo.md`) [page](../report/report.md)",
        "```python",
        "[not](a/link.md)",
        "```",
    ]
    assert rewrite("[demo](benchmarks/results/demo.md)", anchors, "https://example.org/kd/") == (
        "[demo](https://example.org/kd/blob/main/benchmarks/results/demo.md)"
    )
