"""Reading ZIP-based files (.docx, .qdpx) with limits on what they unpack to.

A ZIP's compressed size says little about its content: a 180 KB .docx can hold 100 MB of XML, which
python-docx then parses for minutes into gigabytes. :class:`BoundedZip` reads members as streams and stops
as soon as the bytes unpacked so far pass a limit: the total over the members read (``max_unpacked_mb``) and,
for an XML member, its own size (``max_xml_mb``). The sizes in the ZIP's headers are checked first (a quick
refusal of an honest bomb) but not trusted: the count is of the bytes actually unpacked.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Mapping

from pipeline.config import IngestSettings

XML_SUFFIXES = {".xml", ".rels", ".qde", ".qdc"}
_CHUNK = 1 << 20


class UnpackLimitError(ValueError):
    """A ZIP member (or all of them together) unpacks to more than a limit; the message names the setting."""


@dataclass(frozen=True)
class ZipLimits:
    """The ``ingest`` section's limits on what a ZIP-based file may unpack to, in MB (10^6 bytes)."""

    max_unpacked_mb: float = 200
    max_xml_mb: float = 100

    @classmethod
    def from_config(cls, cfg: IngestSettings | Mapping) -> "ZipLimits":
        cfg = IngestSettings.of(cfg)
        return cls(max_unpacked_mb=cfg.max_unpacked_mb, max_xml_mb=cfg.max_xml_mb)


class BoundedZip:
    """Members of an open ``zipfile.ZipFile`` read within :class:`ZipLimits`; the total counts every read."""

    def __init__(self, zf: zipfile.ZipFile, limits: ZipLimits):
        self.zf = zf
        self.limits = limits
        self.unpacked = 0

    def read(self, name: str | zipfile.ZipInfo) -> bytes:
        """The member's bytes; :class:`UnpackLimitError` once a limit is passed (nothing more is unpacked)."""
        return b"".join(self._chunks(name))

    def check_all(self) -> None:
        """Unpack every member once, keeping nothing, to learn that the file is within the limits before a
        reader that trusts it (python-docx) opens it."""
        infos = [i for i in self.zf.infolist() if not i.is_dir()]
        declared = sum(i.file_size for i in infos)
        if declared > self.limits.max_unpacked_mb * 1e6:
            raise self._over_total()
        for info in infos:
            for _ in self._chunks(info):
                pass

    def _chunks(self, name: str | zipfile.ZipInfo):
        info = name if isinstance(name, zipfile.ZipInfo) else self.zf.getinfo(name)
        is_xml = PurePosixPath(info.filename).suffix.lower() in XML_SUFFIXES
        xml_cap = self.limits.max_xml_mb * 1e6
        if is_xml and info.file_size > xml_cap:
            raise self._over_xml(info.filename)
        if self.unpacked + info.file_size > self.limits.max_unpacked_mb * 1e6:
            raise self._over_total()
        size = 0
        with self.zf.open(info) as member:
            while chunk := member.read(_CHUNK):
                size += len(chunk)
                self.unpacked += len(chunk)
                if is_xml and size > xml_cap:
                    raise self._over_xml(info.filename)
                if self.unpacked > self.limits.max_unpacked_mb * 1e6:
                    raise self._over_total()
                yield chunk

    def _over_xml(self, member: str) -> UnpackLimitError:
        return UnpackLimitError(f"part {member} unpacks to more than the {self.limits.max_xml_mb:g} MB allowed "
                                "for one XML part (ingest.max_xml_mb): a ZIP bomb, or raise the limit")

    def _over_total(self) -> UnpackLimitError:
        return UnpackLimitError(f"its parts unpack to more than the {self.limits.max_unpacked_mb:g} MB "
                                "allowed in all (ingest.max_unpacked_mb): a ZIP bomb, or raise the limit")
