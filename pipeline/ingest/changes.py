"""What changed among a study's files since its last run: new, changed, renamed and gone, by name and content.

Why: a run that reads a changed folder says so in one line, so a researcher sees that the file they added
was read and the one they deleted left the study, before reading what happened to the themes.
"""

from __future__ import annotations

from typing import Sequence


def file_changes(before: Sequence[tuple[str, str]], now: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """``(name, sha256)`` of the files of the last run and of this one -> ``new``, ``changed`` (same name,
    other content), ``renamed`` (same content, other name: ``old -> new``) and ``gone``, each sorted."""
    old_sha, new_sha = dict(before), dict(now)
    old_by_sha = {sha: name for name, sha in before}
    out: dict[str, list[str]] = {"new": [], "changed": [], "renamed": [], "gone": []}
    for name, sha in now:
        if name in old_sha:
            if old_sha[name] != sha:
                out["changed"].append(name)
        elif sha in old_by_sha and old_by_sha[sha] not in new_sha:
            out["renamed"].append(f"{old_by_sha[sha]} -> {name}")
        else:
            out["new"].append(name)
    seen = set(new_sha.values())
    out["gone"] = [name for name, sha in before if name not in new_sha and sha not in seen]
    return {kind: sorted(names) for kind, names in out.items()}


def changes_line(run_id: int, changes: dict[str, list[str]], shown: int = 5) -> str:
    """One line, ``files since run 12: 1 new (P11.txt), 1 gone (P10.vtt)``; "" when nothing changed."""
    parts = []
    for kind, names in changes.items():
        if names:
            listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
            parts.append(f"{len(names)} {kind} ({listed})")
    return f"files since run {run_id}: " + "; ".join(parts) if parts else ""
