"""Text as XML 1.0 can hold it: the one rule for every XML file Themesift writes (REFI-QDA, .xlsx).

Why: a transcript may hold control characters (Word's manual line break pasted as text is U+000B). XML 1.0
forbids them, so one such quote made a whole .qdpx unreadable to every tool and `themesift matrix`'s
workbook fail (openpyxl refuses them).
"""

from __future__ import annotations

import re

# C0 controls but tab, LF and CR; lone surrogates; U+FFFE/FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: str) -> str:
    """``value`` as XML 1.0 can hold it: vertical tab and form feed (line and page breaks) become spaces,
    other forbidden characters are dropped."""
    return _NOT_XML.sub(lambda m: " " if m.group() in "\x0b\x0c" else "", value)
