"""Read a stored run back as plain rows: for the terminal, CSV and JSON exports (written by
``pipeline.exchange.suggestions_export``), and artifacts."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from models.decisions import run_theme_keys
from models.records import Membership, Run, Segment, Source


def memberships(session: Session, run: Run) -> list[Membership]:
    """The run's memberships with their segments and the sources' names: each source once, without its text
    (joined to every row, a 10,000-answer CSV's 800,000 characters came back 10,000 times: 24 GB)."""
    return list(session.scalars(
        select(Membership).where(Membership.run_id == run.id)
        .options(joinedload(Membership.segment).selectinload(Segment.source).load_only(Source.name, Source.sha256),
                 joinedload(Membership.suggested_theme))
        .order_by(Membership.theme_id.is_(None), Membership.theme_id, Membership.strength.desc(), Membership.segment_id)
    ))


def theme_summaries(session: Session, run: Run) -> list[dict[str, Any]]:
    """One dict per theme, best first, with its first representative quote."""
    total = _total_cases(session, run)
    out = []
    for theme in run.themes:
        quote = session.get(Segment, theme.quotes[0]) if theme.quotes else None
        out.append({
            "theme_id": theme.id, "rank": theme.rank, "label": theme.label, "description": theme.description or "",
            "score": theme.score, "parts": theme.parts, "keywords": theme.keywords, "reasons": theme.reasons,
            "n_cases": len(theme.cases), "total_cases": total, "n_segments": theme.n_segments,
            "second_pass": theme.second_pass,
            "quote": quote.text if quote else "", "quote_case": quote.case if quote else None,
        })
    return out


def _total_cases(session: Session, run: Run) -> int:
    cases = session.scalars(select(Segment.case).join(Membership, Membership.segment_id == Segment.id)
                            .where(Membership.run_id == run.id).distinct())
    return len([c for c in cases if c is not None])


def suggestion_export(session: Session, run: Run) -> dict[str, Any]:
    """Every theme with its members (ids, offsets, strength), the outlier queue and the run's manifest."""
    def member(m: Membership) -> dict[str, Any]:
        s = m.segment
        return {"segment_id": s.id, "source": s.source.name, "source_sha256": s.source.sha256, "case": s.case,
                "speaker": s.speaker, "row_id": s.row_id, "start": s.start, "end": s.end,
                "strength": round(m.strength, 6), "text": s.text, "attributes": dict(s.attributes or {})}

    rows = memberships(session, run)
    keys = run_theme_keys(session, run.id)  # what decisions (the page, a decision CSV) name the theme by
    by_theme: dict[int | None, list[Membership]] = {}
    for m in rows:
        by_theme.setdefault(m.theme_id, []).append(m)
    themes = []
    for theme in run.themes:
        themes.append({
            "theme_id": theme.id, "theme_key": keys[theme.id], "rank": theme.rank, "label": theme.label,
            "description": theme.description or "", "keywords": theme.keywords,
            "score": theme.score, "parts": theme.parts, "reasons": theme.reasons, "cases": theme.cases,
            "quotes": theme.quotes, "n_segments": theme.n_segments, "second_pass": theme.second_pass,
            "members": [{**member(m), "joined_similarity": None if m.joined_similarity is None
                         else round(m.joined_similarity, 6)} for m in by_theme.get(theme.id, ())],
        })
    outliers = [{**member(m), "suggested_rank": m.suggested_theme.rank if m.suggested_theme else None,
                 "suggested_similarity": round(m.suggested_similarity, 6)} for m in by_theme.get(None, ())]
    return {
        "study": run.study.name, "run_id": run.id, "status": run.status,
        "started_at": _utc(run.started_at).isoformat(), "finished_at": _utc(run.finished_at).isoformat(),
        "skipped": run.skipped, "manifest": run.manifest, "themes": themes, "outliers": outliers,
    }


def _utc(when: datetime) -> datetime:
    """A stored time with its zone: SQLite gives back the UTC times it was given without one, PostgreSQL with it."""
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
