"""A griffe extension: doctest blocks in the docstrings render as code.

keras-kd's docstrings write their examples as doctest blocks after an
`Example:` line, unindented, as `tests/test_docstrings.py` runs them. In
Markdown those lines are plain text (`[a]` on one line and `[b]` on the next
even reads as a reference link), so for the site each doctest block (from a
`>>>` line to the next blank line, docutils' rule) is wrapped in a `pycon`
code fence. Only the rendered docstring changes; the source is untouched.
"""

from __future__ import annotations

import re

import griffe

_PROMPT = re.compile(r"^(\s*)>>>(\s|$)")


def fence_doctests(text: str) -> str:
    """`text` with every doctest block wrapped in a ```` ```pycon ```` fence."""
    lines = text.split("\n")
    out, index = [], 0
    while index < len(lines):
        prompt = _PROMPT.match(lines[index])
        if not prompt:
            out.append(lines[index])
            index += 1
            continue
        indent = prompt.group(1)
        if out and out[-1].strip():
            out.append("")
        out.append(f"{indent}```pycon")
        while index < len(lines) and lines[index].strip():
            line = lines[index]
            out.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
            out[-1] = indent + out[-1]
            index += 1
        out.append(f"{indent}```")  # the blank line that ended the block follows
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fences the doctest blocks of every docstring griffe loads."""

    def on_instance(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
