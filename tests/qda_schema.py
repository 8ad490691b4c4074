"""Every REFI-QDA file Themesift writes, checked against the QDA-XML 1.0 schema with lxml.

``project.qde`` is validated against ``../shared/datasets/refi-qda/Project-mrt2019.xsd`` (REFI's release of
18 March 2019). No codebook schema file is at hand, so a ``.qdc`` is checked by its own rules here: root
``CodeBook`` in ``urn:QDA-XML:codebook:1.0``, one ``Codes`` child, and those codes valid as the project
schema's ``CodeBookType`` (the codebook schema defines the same type), checked by moving them into a
minimal project document and validating that.
"""

from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import SHARED
from pipeline.exchange.refi_qda import CODEBOOK_NS, PROJECT_NS

XSD = SHARED / "refi-qda" / "Project-mrt2019.xsd"


@lru_cache(maxsize=1)
def _schema():
    etree = pytest.importorskip("lxml.etree")
    if not XSD.exists():
        pytest.skip("shared datasets not present (../shared/datasets/refi-qda)")
    return etree.XMLSchema(etree.parse(str(XSD)))


def assert_valid_qde(xml: bytes) -> None:
    """``xml`` is a project document the QDA-XML 1.0 schema accepts (the schema's own messages if not)."""
    from lxml import etree

    schema = _schema()
    doc = etree.fromstring(xml)
    assert schema.validate(doc), "\n".join(str(e) for e in schema.error_log)


def assert_valid_qdpx(path: Path) -> bytes:
    """The ``.qdpx`` holds a schema-valid ``project.qde`` and every source it points to; returns the XML."""
    with zipfile.ZipFile(path) as zf:
        xml = zf.read("project.qde")
        names = set(zf.namelist())
    assert_valid_qde(xml)
    from lxml import etree

    for src in etree.fromstring(xml).iter(f"{{{PROJECT_NS}}}TextSource"):
        path_ = src.get("plainTextPath") or ""
        assert path_.startswith("internal://") and f"sources/{path_.removeprefix('internal://')}" in names
    return xml


def assert_valid_qdc(xml: bytes) -> None:
    """A codebook file by the codebook schema's rules (see the module docstring)."""
    from lxml import etree

    root = etree.fromstring(xml)
    assert root.tag == f"{{{CODEBOOK_NS}}}CodeBook", root.tag
    children = [c for c in root if isinstance(c.tag, str)]
    assert [c.tag for c in children] == [f"{{{CODEBOOK_NS}}}Codes"], [c.tag for c in children]
    project = etree.Element(f"{{{PROJECT_NS}}}Project", nsmap={None: PROJECT_NS}, name="codebook check")
    book = etree.SubElement(project, f"{{{PROJECT_NS}}}CodeBook")
    book.append(_renamespaced(children[0]))
    assert_valid_qde(etree.tostring(project))


def _renamespaced(el):
    """A copy of ``el`` with every element in the project namespace (attributes as they are)."""
    from lxml import etree

    local = etree.QName(el).localname
    copy = etree.Element(f"{{{PROJECT_NS}}}{local}", dict(el.attrib))
    copy.text = el.text
    for child in el:
        if isinstance(child.tag, str):
            copy.append(_renamespaced(child))
    return copy
