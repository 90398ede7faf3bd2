"""MkDocs hooks for the keras-kd site (listed under `hooks:` in mkdocs.yml).

1. Before the build, `check_api()` fails it (a `PluginError`) when a public
   name has no docstring, or is on no reference page. mkdocstrings alone
   renders an undocumented object without a word of warning.
   Public means: every name in `keras_kd.__all__`; every class, function
   and constant a public namespace (`keras_kd.augment`, `keras_kd.callbacks`,
   `keras_kd.schedules`) exports from `keras_kd.src`; and every public method or
   property a public class defines that its base classes do not (overrides
   of Keras's own `call`, `get_config`, ... keep Keras's documentation).
2. The guide pages include README sections with `pymdownx.snippets`; the
   README's links are relative to the repository root. A Markdown
   preprocessor, run after the snippets are expanded, points them at the
   site: `docs/...` becomes a link within the site, `#anchor` a link to the
   guide page that holds that README heading, and a link to a repository
   file outside `docs/` becomes `repo_url/blob/main/...` when mkdocs.yml
   sets `repo_url`, plain code text otherwise. mkdocs then validates every
   link (strict mode turns a broken one into a failed build).

`python docs/hooks.py` runs the API check alone.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PACKAGE = "keras_kd"

# ----------------------------------------------------------------- API check


def _runtime_path(value) -> Optional[str]:
    if inspect.ismodule(value):
        return value.__name__
    if inspect.isclass(value) or inspect.isfunction(value):
        return f"{value.__module__}.{value.__qualname__}"
    return None  # a constant: griffe knows where it was defined


def _directives() -> List[str]:
    """The objects named by `::: path` lines on the reference pages."""
    found = []
    for page in sorted((DOCS / "reference").glob("*.md")):
        found += re.findall(r"^:::\s+(\S+)", page.read_text(), flags=re.MULTILINE)
    return found


def check_api() -> List[str]:
    """The problems with the public API's documentation (empty when none)."""
    import griffe

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    package = importlib.import_module(PACKAGE)
    loader = griffe.GriffeLoader(search_paths=[str(ROOT)])
    loader.load(PACKAGE)
    loader.resolve_aliases(implicit=False, external=False)
    collection = loader.modules_collection

    def static(path: str):
        obj = collection[path]
        return obj.final_target if obj.is_alias else obj

    def documented(obj) -> bool:
        return obj.docstring is not None and bool(obj.docstring.value.strip())

    problems = []
    documented_paths = set()
    for directive in _directives():
        try:
            target = static(directive)
        except (KeyError, griffe.AliasResolutionError):
            problems.append(f"docs/reference: `::: {directive}` names no object")
            continue
        documented_paths.add(target.path)
        if target.is_module:
            # A public namespace (`keras_kd.augment`) re-exports what
            # `keras_kd.src` defines: its page renders those objects.
            for member in target.members.values():
                if member.is_alias and member.name in (target.exports or ()):
                    documented_paths.add(member.final_target.path)

    public = []  # (name shown to the user, griffe path)
    for name in package.__all__:
        value = getattr(package, name)
        path = _runtime_path(value)
        if path is None:
            path = static(f"{PACKAGE}.{name}").path
        public.append((f"{PACKAGE}.{name}", path))
        if inspect.ismodule(value):
            for member, item in vars(value).items():
                if member.startswith("_") or inspect.ismodule(item):
                    continue
                item_path = f"{value.__name__}.{member}"
                if item_path in collection:
                    public.append((item_path, static(item_path).path))

    classes = []
    for shown, path in public:
        obj = static(path)
        if not documented(obj):
            problems.append(f"{shown} has no docstring")
        parent = path.rsplit(".", 1)[0]
        if path not in documented_paths and parent not in documented_paths:
            problems.append(f"{shown} is on no page of docs/reference (`::: {path}`)")
        if obj.is_class:
            classes.append((shown, path))

    for shown, path in classes:
        module_name, qualname = path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), qualname)
        for member, value in vars(cls).items():
            if member.startswith("_"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if not (inspect.isfunction(value) or isinstance(value, property)):
                continue
            if any(member in vars(base) for base in cls.__mro__[1:]):
                continue  # an override: the base class documents it
            if not documented(static(f"{path}.{member}")):
                problems.append(f"{shown}.{member} has no docstring")
    return sorted(set(problems))


# ------------------------------------------------------ README links on the site

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_MARKER = re.compile(r"--8<-- \[(start|end):([\w-]+)\]")
_INCLUDE = re.compile(r'^--8<-- "README\.md:([\w-]+)"\s*$', flags=re.MULTILINE)


def _slugify(text: str) -> str:
    from markdown.extensions.toc import slugify

    return slugify(text, "-")


def readme_anchors() -> Dict[str, str]:
    """`{README heading slug: site page (from docs/) that holds it}`.

    A heading belongs to the README section (snippet markers) it is in, or
    starts when the marker follows it directly; a section to the guide page
    that includes it.
    """
    page_of_section = {}
    for page in sorted(DOCS.rglob("*.md")):
        for section in _INCLUDE.findall(page.read_text()):
            page_of_section.setdefault(section, page.relative_to(DOCS).as_posix())
    anchors, section, last_heading = {}, None, None
    for line in README.read_text().splitlines():
        marker = _MARKER.search(line)
        if marker:
            kind, name = marker.groups()
            section = name if kind == "start" else None
            if kind == "start" and last_heading and name in page_of_section:
                anchors.setdefault(last_heading, page_of_section[name])
            last_heading = None
            continue
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            last_heading = _slugify(heading.group(1))
            if section in page_of_section:
                anchors.setdefault(last_heading, page_of_section[section])
        elif line.strip():
            last_heading = None
    return anchors


def rewrite_links(text: str, anchors: Dict[str, str], repo_url: Optional[str]) -> str:
    """README-relative links of `text`, pointed at the site (see the module
    docstring). Links relative to a docs page are left alone."""

    def replace(match):
        bang, label, target = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return match.group(0)
        if target.startswith("#"):
            page = anchors.get(target[1:])
            return f"{bang}[{label}](/{page}{target})" if page else match.group(0)
        path = target.split("#", 1)[0]
        if not path or not (ROOT / path).exists() or (DOCS / path).exists():
            return match.group(0)  # not a repository path: mkdocs checks it
        if path.startswith("docs/"):
            return f"{bang}[{label}](/{target[len('docs/'):]})"
        if repo_url:
            return f"{bang}[{label}]({repo_url.rstrip('/')}/blob/main/{target})"
        shown = label.strip("`").rstrip("/")
        if shown in (path.rstrip("/"), Path(path).name, Path(path).parent.name):
            return f"`{path}`"  # the label names the file: the path says more
        return f"{label} (`{path}`)"

    out, fence = [], None
    for line in text.split("\n"):
        opening = re.match(r"^\s*(`{3,}|~{3,})", line)
        if opening:
            if fence is None:
                fence = opening.group(1)
            elif opening.group(1).startswith(fence):
                fence = None
            out.append(line)
            continue
        out.append(line if fence is not None else _LINK.sub(replace, line))
    return "\n".join(out)


class _ReadmeLinks:
    """A Markdown extension whose preprocessor runs `rewrite_links` after
    `pymdownx.snippets` (priority 32) has included the README."""

    def __init__(self, repo_url: Optional[str]):
        self.repo_url = repo_url

    def extension(self):
        from markdown import Extension
        from markdown.preprocessors import Preprocessor

        repo_url = self.repo_url

        class Links(Preprocessor):
            def run(self, lines):
                return rewrite_links("\n".join(lines), readme_anchors(), repo_url).split("\n")

        class LinksExtension(Extension):
            def extendMarkdown(self, md):
                md.preprocessors.register(Links(md), "keras_kd_readme_links", 31)

        return LinksExtension()


# --------------------------------------------------------------- mkdocs hooks


def on_config(config):
    """Registers the README link rewriter."""
    config.markdown_extensions.append(_ReadmeLinks(config.repo_url).extension())
    return config


def on_pre_build(config):
    """Fails the build when the public API is not fully documented."""
    from mkdocs.exceptions import PluginError

    problems = check_api()
    if problems:
        raise PluginError(
            "The public API is not fully documented:\n  " + "\n  ".join(problems)
        )


if __name__ == "__main__":
    found = check_api()
    print("\n".join(found) if found else "Every public name is documented.")
    sys.exit(1 if found else 0)
