"""MkDocs hook: render fences whose info string carries test options.

pytest-markdown-docs reads options after the language (```` ```python notest ````,
```` ```python fixture:caplog ````), but Python-Markdown's fenced_code does not
recognise such an opening line, so the block would render as broken text. This
keeps only the language for rendering; the file on disk, which the tests read,
is unchanged.
"""

from __future__ import annotations

import re
from typing import Any

_OPENING = re.compile(r"^([ \t]*)(`{3,}|~{3,})([\w#.+-]+)[ \t]+[^`\n{][^\n]*$", re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Drop the words after the language on fence opening lines."""
    return _OPENING.sub(r"\1\2\3", markdown)
