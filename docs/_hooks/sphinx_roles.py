"""MkDocs hook: show Sphinx cross-reference roles in docstrings as plain code.

The docstrings say :class:`Report` and :func:`configure`, which Sphinx would
turn into links; mkdocstrings renders them as the literal text ``:class:``
followed by the code. This drops the role and keeps the code.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):(?=<code>)")


def on_page_content(html: str, **kwargs: Any) -> str:
    """Remove the role prefix in front of inline code."""
    return _ROLE.sub("", html)
