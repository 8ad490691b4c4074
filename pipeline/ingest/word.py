"""The text of a Word .docx as Word shows it with every tracked change accepted.

Why: python-docx's ``Paragraph.text`` reads only the runs that are direct children of a paragraph (and
hyperlinks). A transcript corrected with Track Changes keeps its corrections in ``w:ins`` (and moved
text in ``w:moveTo``); templates wrap answers in content controls (``w:sdt``) and smart tags. Read with
``Paragraph.text`` alone, all of those words were silently lost. Here every run of a paragraph counts,
however deeply it is wrapped, except deleted and moved-away text (``w:del``, ``w:moveFrom``) and the
fallback copy of a drawing (``mc:Fallback``, a second copy of what ``mc:Choice`` holds); and the
paragraphs and tables inside block-level content controls and custom XML are read in their place.
"""

from __future__ import annotations

from typing import Iterator

from lxml import etree

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
_NS = {"w": W, "mc": MC}
#: A run's pieces and the text each stands for; ``w:t`` holds the words themselves.
_PIECES = {f"{{{W}}}tab": "\t", f"{{{W}}}ptab": "\t", f"{{{W}}}br": "\n", f"{{{W}}}cr": "\n",
           f"{{{W}}}noBreakHyphen": "-"}
_RUN_TEXT = etree.XPath(
    ".//w:r/*[self::w:t or self::w:tab or self::w:ptab or self::w:br or self::w:cr or self::w:noBreakHyphen]"
    "[not(ancestor::w:del) and not(ancestor::w:moveFrom) and not(ancestor::mc:Fallback)]",
    namespaces=_NS)


def paragraph_text(p: etree._Element) -> str:
    """A ``w:p``'s text with tracked insertions in and deletions out, in document order."""
    return "".join(node.text or "" if node.tag == f"{{{W}}}t" else _PIECES[node.tag] for node in _RUN_TEXT(p))


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def blocks(container: etree._Element) -> Iterator[etree._Element]:
    """The paragraphs and tables of a body or a table cell, in order, looking inside block-level content
    controls and custom XML."""
    for child in container.iterchildren():
        tag = _local(child.tag)
        if tag in ("p", "tbl"):
            yield child
        elif tag == "sdt":
            content = child.find(f"{{{W}}}sdtContent")
            if content is not None:
                yield from blocks(content)
        elif tag == "customXml":
            yield from blocks(child)


def cell_text(tc: etree._Element) -> str:
    """A table cell's text, its paragraphs (and any table nested in it) one per line."""
    lines = []
    for block in blocks(tc):
        if _local(block.tag) == "p":
            lines.append(paragraph_text(block))
        else:
            lines.extend(" ".join(cell_text(c) for c in row.iterchildren(f"{{{W}}}tc"))
                         for row in block.iterchildren(f"{{{W}}}tr"))
    return "\n".join(lines)
