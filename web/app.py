"""The review web page: FastAPI + Jinja2, server-rendered, usable without JavaScript.

Every page reads the study's current view (``web.views.load_view``: the latest run with the decision
log folded in); every change is one ``POST /decide`` that goes through ``models.review.decide`` (validated,
appended in one short transaction, or refused with nothing changed).

Safety: all text comes from transcripts and coders, so it is only ever rendered through Jinja2 with
autoescaping on (no ``|safe`` anywhere); every form carries a CSRF token bound to the browser's nonce
cookie; cookies are HMAC-signed with a secret kept in the database; the server binds 127.0.0.1 unless told
otherwise. Local mode: a coder types their name on first visit. Team mode: a coder signs in with the token
``themesift coders add NAME --study STUDY`` printed for them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, unquote, urlencode, urlsplit

import jinja2
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from models.codings import Coder
from models.decisions import coder_for_token, review_secret, set_team_setting, team_settings, token_stamp
from models.records import Source
from models.review import (decide, decide_many, representative_quotes, review_matrix, run_diff, search_segments,
                           segments_by_id, split_proposal, teach_questions, team_comparison)
from models.store import Store, StudyNotFoundError
from pipeline.config import CompareSettings, ReviewSettings
from pipeline.learn import codebook as cb
from pipeline.compare.compare import fmt
from pipeline.compare.matrix import row_of
from pipeline.compare.team import settlement
from pipeline.learn.codebook import DecisionError, differences
from pipeline.learn.teach import reviewed_own, teach_hint
from pipeline.textquery import highlight, parse_query
from web.views import load_view, segment_context, theme_colours, transcript_of

HERE = Path(__file__).resolve().parent
NONCE_COOKIE, CODER_COOKIE = "ts_nonce", "ts_coder"
PAGE_SIZE = 20
MATRIX_ROWS = 100  # participants (or values) per page of the matrix
_NAME = re.compile(r"^[^\x00-\x1f<>]{1,60}$")


@dataclass
class Visitor:
    nonce: str
    coder: str | None
    csrf: str
    new_nonce: bool


class SignInRequired(Exception):
    """Raised by the ``signed_in`` dependency; answered with a redirect to the sign-in page."""

    def __init__(self, visitor: Visitor):
        super().__init__("sign in first")
        self.visitor = visitor


def create_app(store: Store, study: str, team: bool = False,
               review: ReviewSettings | Mapping[str, Any] | None = None,
               compare: CompareSettings | Mapping[str, Any] | None = None) -> FastAPI:
    """The review app for one study of ``store``; ``team``: sign in with per-coder tokens; ``review`` and
    ``compare``: those sections of the configuration (default: configs/default.yaml's)."""
    review = ReviewSettings.of(review or {})  # checked before anything is read
    compare = CompareSettings.of(compare or {})
    with store.transaction() as session:
        secret = review_secret(session)
        load_view(session, study)  # fails early on an unknown study
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: f"{100 * float(v):.0f}%"
    env.filters["fig"] = fmt  # an agreement figure, '-' when undefined
    env.filters["short"] = lambda s, n=160: s if len(s) <= n else s[: n - 1].rsplit(" ", 1)[0] + "\u2026"
    env.filters["action_words"] = lambda a: cb.ACTION_WORDS.get(a, a)
    templates = Jinja2Templates(env=env)
    app = FastAPI(title="Themesift review", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    mode = "team" if team else "local"

    # -- visitors, cookies, CSRF -------------------------------------------------------------------
    def visitor(request: Request) -> Visitor:
        nonce = request.cookies.get(NONCE_COOKIE) or ""
        fresh = not re.fullmatch(r"[A-Za-z0-9_-]{20,64}", nonce)
        if fresh:
            nonce = secrets.token_urlsafe(24)
        coder = None
        raw = request.cookies.get(CODER_COOKIE) or ""
        if not fresh and raw.count(".") == 1:
            encoded, sig = raw.split(".")
            try:
                name = base64.urlsafe_b64decode(encoded.encode()).decode()
            except (ValueError, UnicodeDecodeError):
                name = ""
            if name and hmac.compare_digest(sig, sign(secret, f"coder|{mode}|{study}|{nonce}|{name}|{stamp(name)}")):
                coder = name
        return Visitor(nonce, coder, sign(secret, f"csrf|{nonce}"), fresh)

    def stamp(name: str) -> str:
        """Team mode: the coder's current token (its hash), so that a new or revoked token ends old sessions."""
        if not team:
            return ""
        with store.sessions() as session:
            return token_stamp(session, study, name) or secrets.token_hex(16)  # no token: matches nothing

    def coder_cookie(v: Visitor, name: str) -> str:
        encoded = base64.urlsafe_b64encode(name.encode()).decode()
        return f"{encoded}.{sign(secret, f'coder|{mode}|{study}|{v.nonce}|{name}|{stamp(name)}')}"

    def finish(response: Response, v: Visitor) -> Response:
        if v.new_nonce:
            response.set_cookie(NONCE_COOKIE, v.nonce, httponly=True, samesite="strict")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Content-Security-Policy"] = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                                       "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
        return response

    def page(request: Request, v: Visitor, name: str, status_code: int = 200, **context) -> Response:
        context.setdefault("view", None)
        base = {"request": request, "study": study, "coder": v.coder, "csrf": v.csrf, "team": team,
                "msg": _flash(request.query_params.get("msg", "")), "path": _here(request), "undo": None}
        view = context["view"]
        # the newest decision this page shows: a decision sent from it is refused if a colleague's newer one
        # changed the same theme or segment meanwhile (models.review.decide_many)
        base["seen"] = max((e.id or 0 for e in view.entries), default=0) if view is not None else None
        if view is not None and v.coder:
            last = view.state.last_of(v.coder)
            if last is not None:
                base["undo"] = {"uid": last.uid, "what": _summary(view, last)}
        response = templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)
        response.headers["Cache-Control"] = "no-store"  # Back shows the theme as it is now, not as it was
        return finish(response, v)

    def blind_coder(session, v: Visitor) -> str | None:
        """The coder whose own decisions alone they see (blind double coding), or None: the team's."""
        return v.coder if v.coder and team_settings(session, study).blind(team) else None

    def view_of(session, v: Visitor):
        """The study as visitor ``v`` may see it now: their own decisions while coding is blind."""
        return load_view(session, study, coder=blind_coder(session, v))

    def signed_in(request: Request) -> Visitor:
        """Dependency of every page that needs a coder: the visitor, or off to the sign-in page."""
        v = visitor(request)
        if not v.coder:
            raise SignInRequired(v)
        return v

    @app.exception_handler(RequestValidationError)
    async def bad_address(request: Request, exc: RequestValidationError) -> Response:
        fields = sorted({str(e.get("loc", ("", ""))[-1]) for e in exc.errors()})
        return page(request, visitor(request), "error.html", 400, title="Not a page",
                    errors=[f"This address has a value the page cannot use ({', '.join(fields)}); "
                            "use the links on the pages instead."], back="/themes")

    @app.exception_handler(SignInRequired)
    async def to_login(request: Request, exc: SignInRequired) -> Response:
        return finish(RedirectResponse("/login?" + urlencode({"next": _here(request)}), status_code=303), exc.visitor)

    async def form_of(request: Request, v: Visitor) -> tuple[Any, Response | None]:
        form = await request.form()
        token = str(form.get("csrf") or "")
        if v.new_nonce or not hmac.compare_digest(token, v.csrf):
            return form, page(request, v, "error.html", 403, title="Form expired",
                              errors=["This form is out of date or did not come from this page (CSRF check). "
                                      "Nothing was changed; reload the page and try again."], back="/themes")
        return form, None

    # -- sign in ------------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/themes"):
        v = visitor(request)
        return page(request, v, "login.html", next=_safe_next(next), error="")

    @app.post("/login")
    async def login(request: Request):
        v = visitor(request)
        form, refused = await form_of(request, v)
        if refused:
            return refused
        nxt = _safe_next(str(form.get("next") or "/themes"))
        if team:
            with store.sessions() as session:
                name = coder_for_token(session, study, str(form.get("token") or ""))
            if name is None:
                return page(request, v, "login.html", 400, next=nxt, error="That token is not valid for this study.")
        else:
            name = " ".join(str(form.get("name") or "").split())
            with store.sessions() as session:
                other = session.scalars(select(Coder).where(Coder.name == name)).first()
            if not _NAME.match(name):
                return page(request, v, "login.html", 400, next=nxt,
                            error="Type your name (1 to 60 characters, no angle brackets).")
            if other is not None and other.kind != "human":
                return page(request, v, "login.html", 400, next=nxt,
                            error=f"'{name}' is the name of a program; choose your own name.")
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(CODER_COOKIE, coder_cookie(v, name), httponly=True, samesite="lax")
        return finish(response, v)

    @app.post("/logout")
    async def logout(request: Request):
        v = visitor(request)
        _, refused = await form_of(request, v)
        if refused:
            return refused
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(CODER_COOKIE)
        return finish(response, v)

    # -- pages --------------------------------------------------------------------------------------
    @app.get("/")
    def home():
        return RedirectResponse("/themes", status_code=303)

    @app.get("/themes", response_class=HTMLResponse)
    def theme_list(request: Request, status: str = "all", v: Visitor = Depends(signed_in)):
        with store.sessions() as session:
            view = view_of(session, v)
            rows = view.rows()
            first = {r.key: (representative_quotes(store, view, r.key) or [None])[0] for r in rows}
            quotes = segments_by_id(session, [q for q in first.values() if q is not None])
            diffs = {d.ref for d in differences(view.entries) if d.kind == "theme"}
            counts = {s: sum(r.status == s for r in rows) for s in (cb.NEW, cb.CONFIRMED, cb.REJECTED, cb.MERGED,
                                                                    cb.SPLIT_UP)}
            shown = [r for r in rows if status == "all" or r.status == status]
            hint = teach_hint(reviewed_own(view.state.applied, view.status), review.teach_hint_window,
                              review.teach_hint_share)
            return page(request, v, "themes.html", view=view, rows=shown, quotes=quotes, first=first, diffs=diffs,
                        counts=counts, status=status, outliers=len(view.outliers()),
                        undecided=_next_undecided(view, None), to_teach=hint)

    @app.get("/themes/{key}", response_class=HTMLResponse)
    def theme_page(request: Request, key: str, page_no: int = 1, order: str = "strongest",
                   v: Visitor = Depends(signed_in)):
        with store.sessions() as session:
            view = view_of(session, v)
            row = view.row(key)
            if row is None:
                return page(request, v, "error.html", 404, view=view, title="No such theme",
                            errors=[f"There is no theme '{key}' in this study."], back="/themes")
            members = view.members(key) if row.status in cb.ACTIVE else (
                view.members_shown(key) if row.status == cb.REJECTED else [])  # re-read before reversing
            joined = [s for s in members if view.joined(s) is not None and view.base.get(s) == key]
            weakest = order == "weakest"
            members.sort(key=lambda s: (view.strength.get(s, -1.0) if weakest else -view.strength.get(s, -1.0), s))
            pages = max(1, math.ceil(len(members) / PAGE_SIZE))
            page_no = min(max(1, page_no), pages)
            shown = members[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]
            quote_ids = representative_quotes(store, view, key)
            segs = segments_by_id(session, shown + quote_ids)
            contexts = {s: segment_context(session, segs[s]) for s in segs}
            active = [r for r in view.rows() if r.status in cb.ACTIVE]
            order_keys = [r.key for r in view.rows()]  # every theme, whatever was decided: never a dead end
            i = order_keys.index(key)
            nav = {"prev": order_keys[i - 1] if i > 0 else None,
                   "next": order_keys[i + 1] if i < len(order_keys) - 1 else None,
                   "undecided": _next_undecided(view, key)}
            history = [e for e in view.entries if e.theme_key == key or key in (e.after.get("themes") or ())
                       or e.after.get("to") == key]
            return page(request, v, "theme.html", view=view, row=row, members=shown, segs=segs, contexts=contexts,
                        quote_ids=quote_ids,
                        page_no=page_no, pages=pages, order=order, n_members=len(members), active=active, nav=nav,
                        joined=joined,
                        history=[(e, _summary(view, e)) for e in reversed(history)],
                        diffs=[d for d in differences(view.entries) if d.kind == "theme" and d.ref == key])

    @app.get("/themes/{key}/split", response_class=HTMLResponse)
    def split_page(request: Request, key: str, k: int = 2, method: str = "kmeans", v: Visitor = Depends(signed_in)):
        with store.sessions() as session:
            view = view_of(session, v)
            row = view.row(key)
            if row is None or row.status not in cb.ACTIVE:
                return page(request, v, "error.html", 404, view=view, title="Cannot split",
                            errors=[f"Theme '{key}' is not open for splitting."], back="/themes")
            members = view.members(key)
            k = min(max(2, k), 6)
            try:
                proposal = split_proposal(store, view, key, k, method if method in ("kmeans", "agglomerative")
                                          else "kmeans")
            except DecisionError as exc:
                return page(request, v, "error.html", 400, view=view, title="Cannot split", errors=exc.errors,
                            back=f"/themes/{quote(key)}")
            parts = []
            segs = segments_by_id(session, members)
            for p, group in enumerate(proposal.central):  # every member, the most central first
                parts.append({"n": p + 1, "size": len(group), "cohesion": proposal.cohesion[p],
                              "quotes": [segs[members[i]] for i in group],
                              "cases": len(view.cases_of(members[i] for i in group)),
                              "name": f"{row.title} ({p + 1})"})
            return page(request, v, "split.html", view=view, row=row, parts=parts, k=k, method=proposal.method)

    @app.get("/outliers", response_class=HTMLResponse)
    def outliers(request: Request, page_no: int = 1, v: Visitor = Depends(signed_in)):
        with store.sessions() as session:
            view = view_of(session, v)
            hints = {s: h for s in view.outliers() if (h := _open_hint(view, s)) is not None}
            queue = sorted(view.outliers(), key=lambda s: (-(hints.get(s, (None, 0.0))[1]), s))
            pages = max(1, math.ceil(len(queue) / PAGE_SIZE))
            page_no = min(max(1, page_no), pages)
            shown = queue[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]
            segs = segments_by_id(session, shown)
            contexts = {s: segment_context(session, segs[s]) for s in segs}
            n_joined = sum(view.joined(s) is not None for s in view.base)
            return page(request, v, "outliers.html", view=view, queue=shown, n_queue=len(queue), segs=segs, hints=hints,
                        contexts=contexts, page_no=page_no, pages=pages, active=_active(view), n_joined=n_joined)

    @app.get("/search", response_class=HTMLResponse)
    def search(request: Request, q: str = "", page_no: int = 1, v: Visitor = Depends(signed_in)):
        q = q[:200]
        with store.sessions() as session:
            view = view_of(session, v)
            page_no = max(1, page_no)
            found, total = search_segments(session, view.study, q, PAGE_SIZE, (page_no - 1) * PAGE_SIZE)
            terms = parse_query(q)
            pieces = {s.id: highlight(s.text, terms) for s in found}
            contexts = {s.id: segment_context(session, s) for s in found}
            return page(request, v, "search.html", view=view, q=q, found=found, total=total, pieces=pieces,
                        contexts=contexts, page_no=page_no, pages=max(1, math.ceil(total / PAGE_SIZE)),
                        active=_active(view))

    @app.get("/teach", response_class=HTMLResponse)
    def teach(request: Request, skip: list[int] = Query(default=[]), v: Visitor = Depends(signed_in)):
        try:
            with store.sessions() as session:
                own = blind_coder(session, v)
            questions = teach_questions(store, study, review, skip=skip[:500], coder=own)
        except StudyNotFoundError as exc:
            questions, message = [], str(exc)
        else:
            message = ""
        with store.sessions() as session:
            view = view_of(session, v)
            segs = segments_by_id(session, [q.segment for q in questions])
            contexts = {s: segment_context(session, segs[s]) for s in segs}
            taught = [(t.key, t.title) for t in view.state.confirmed() if view.members(t.key)]
            return page(request, v, "teach.html", view=view, questions=questions, segs=segs, contexts=contexts,
                        active=_active(view), message=message, taught=taught,
                        unsure=review.teach_unsure > 0)

    @app.get("/undo-form", response_class=HTMLResponse)
    def undo_slot(request: Request, back: str = "/themes", v: Visitor = Depends(signed_in)):
        """The header's "Undo my last" as it stands now, its undo returning to ``back``: a decision posted in
        the background (a Teach answer) leaves the page's own button naming the decision before it."""
        with store.sessions() as session:
            return page(request, v, "undo_slot.html", view=view_of(session, v), path=_safe_next(back))

    @app.get("/decisions", response_class=HTMLResponse)
    def decision_log(request: Request, v: Visitor = Depends(signed_in)):
        with store.sessions() as session:
            view = view_of(session, v)
            undone = view.state.undone
            log = [(e, _summary(view, e), e.uid in undone) for e in reversed(view.entries)]
            coders = sorted({e.coder for e in view.entries})
            return page(request, v, "decisions.html", view=view, log=log, diffs=differences(view.entries),
                        coders=coders, ignored=view.state.ignored)

    @app.get("/changes", response_class=HTMLResponse)
    def changes(request: Request, v: Visitor = Depends(signed_in)):
        with store.sessions() as session:
            view = view_of(session, v)
            old, new, diff = run_diff(session, study, match_jaccard=review.diff_match_jaccard)
            return page(request, v, "changes.html", view=view, old=old, new=new, diff=diff)

    @app.get("/sources", response_class=HTMLResponse)
    def sources(request: Request, v: Visitor = Depends(signed_in)):
        with store.sessions() as session:
            view = view_of(session, v)
            counts: dict[int, int] = {}
            cases: dict[int, set[str]] = {}
            for row in view.segments.values():
                counts[row.source_id] = counts.get(row.source_id, 0) + 1
                if row.case and row.role == "participant":
                    cases.setdefault(row.source_id, set()).add(row.case)
            rows = session.execute(select(Source.id, Source.name, Source.retired_at)
                                   .where(Source.study_id == view.study.id).order_by(Source.name)).all()
            return page(request, v, "sources.html", view=view, rows=rows, counts=counts, cases=cases)

    @app.get("/sources/{source_id}", response_class=HTMLResponse)
    def transcript(request: Request, source_id: int, v: Visitor = Depends(signed_in)):
        """A whole source: rendered here once, every segment with its themes (no request per segment)."""
        with store.sessions() as session:
            view = view_of(session, v)
            source = session.get(Source, source_id)
            if source is None or source.study_id != view.study.id:
                return page(request, v, "error.html", 404, view=view, title="No such transcript",
                            errors=[f"There is no transcript {source_id} in this study."], back="/sources")
            shown = transcript_of(session, view, source)
            return page(request, v, "transcript.html", view=view, t=shown, active=_active(view),
                        back=f"/sources/{source_id}")

    @app.get("/matrix", response_class=HTMLResponse)
    def matrix(request: Request, themes: str = "confirmed", by: str | None = None, page_no: int = 1,
               v: Visitor = Depends(signed_in)):
        with store.sessions() as session:
            view = view_of(session, v)
            chart, which, options = review_matrix(session, view, compare.matrix_quotes, themes, by)
            sources = {s: view.segments[s].source_id for s in view.base if s in view.segments}
            # a survey's every answer is a row: 10,000 rows made a page of 34 MB; the totals stay the whole study's
            pages = max(1, math.ceil(len(chart.cases) / MATRIX_ROWS))
            page_no = min(max(1, page_no), pages)
            rows = chart.cases[(page_no - 1) * MATRIX_ROWS: page_no * MATRIX_ROWS]
            return page(request, v, "matrix.html", view=view, m=chart, which=which, sources=sources,
                        colours=theme_colours(view), options=options, rows=rows, page_no=page_no, pages=pages,
                        per_page=MATRIX_ROWS)

    @app.get("/matrix/cell", response_class=HTMLResponse)
    def matrix_cell(request: Request, case: str, theme: str, by: str | None = None,
                    v: Visitor = Depends(signed_in)):
        """Every segment of one cell of the matrix (the chart shows the best few), each linked to its place."""
        by = by or None  # "by=" from a link: rows by participant
        with store.sessions() as session:
            view = view_of(session, v)
            ids = [s for s in view.members(theme) if s in view.base and s in view.segments
                   and (by is not None or row_of(view.segments[s].case, (), None) == case)]
            segs = segments_by_id(session, ids)
            ids = [s for s in ids if row_of(segs[s].case, segs[s].attributes, by) == case]
            order = sorted(ids, key=lambda s: (segs[s].source.name, segs[s].start))
            return page(request, v, "matrix_cell.html", view=view, case=case, key=theme, title=view.title(theme),
                        ids=order, segs=segs, contexts={s: segment_context(session, segs[s]) for s in order},
                        by=by)

    # -- deciding -----------------------------------------------------------------------------------
    @app.post("/decide")
    async def decide_route(request: Request):
        v = visitor(request)
        form, refused = await form_of(request, v)
        if refused:
            return refused
        if not v.coder:
            return page(request, v, "error.html", 403, title="Sign in first",
                        errors=["Sign in before deciding; nothing was changed."], back="/login")
        back = _safe_next(str(form.get("back") or "/themes"))
        bulk = str(form.get("bulk") or "")
        if bulk == "enter":  # Enter in the list's bar: a reason typed means reject, otherwise merge
            bulk = cb.REJECT if str(form.get("reason") or "").strip() else ""
        if bulk in (cb.CONFIRM, cb.REJECT):
            return bulk_decide(request, v, form, bulk, back)
        intent: dict[str, Any] = {"action": str(form.get("action") or "")}
        for f in ("theme_key", "name", "definition", "reason", "into", "to", "from", "k", "method", "undoes", "answer",
                  "proposed", "probability"):
            if form.get(f) not in (None, ""):
                intent[f] = str(form.get(f))
        for f in ("themes", "segment_ids", "names") + (("to", "shown") if intent["action"] == cb.ANSWER else ()):
            values = [str(x) for x in form.getlist(f) if str(x).strip()]
            if values:
                intent[f] = values
        if intent["action"] == cb.MERGE and intent.get("theme_key") and "themes" in intent:
            intent["themes"] = list(dict.fromkeys([intent["theme_key"], *intent["themes"]]))
            intent.setdefault("into", intent["theme_key"])
        if intent["action"] == cb.MERGE and "into" not in intent and intent.get("themes"):
            intent["into"] = intent["themes"][0]
        if intent["action"] in (cb.MOVE, cb.ADD_SEGMENT) and not intent.get("to"):
            with store.sessions() as session:
                view = view_of(session, v)
            return page(request, v, "error.html", 400, view=view, title="Not recorded",
                        errors=["Choose where the segment goes (a theme, or no theme)."], back=back)
        if intent.get("to") == "__none__":
            intent["to"] = None
        if intent["action"] == cb.SETTLE:
            return page(request, v, "error.html", 400, title="Not recorded", back="/compare",
                        errors=["Differences are settled on the comparison page."])
        with store.sessions() as session:
            blind = blind_coder(session, v) is not None
        try:
            decision = decide(store, study, v.coder, intent, blind=blind, seen=_seen(form))
        except DecisionError as exc:
            with store.sessions() as session:
                view = view_of(session, v)
            return page(request, v, "error.html", 400, view=view, title="Not recorded", errors=exc.errors, back=back)
        where = back
        if form.get("go") == "next" and decision.action in (cb.CONFIRM, cb.REJECT):  # on to the next undecided
            with store.sessions() as session:
                following = _next_undecided(view_of(session, v), decision.theme_key)
            where = f"/themes/{quote(following)}" if following else "/themes"
        elif decision.action in (cb.ADD_THEME,):
            where = f"/themes/{quote(decision.theme_key or '')}"
        elif decision.action == cb.MERGE:
            where = f"/themes/{quote(decision.theme_key or '')}"
        elif decision.action == cb.SPLIT:
            where = "/themes"
        elif decision.action == cb.UNDO and urlsplit(where).path.startswith("/themes/"):
            with store.sessions() as session:  # undoing a split from one of its parts: that page is gone
                if view_of(session, v).row(unquote(urlsplit(where).path.split("/")[2])) is None:
                    where = "/themes"
        n = len((decision.payload.get("after") or {}).get("segment_ids") or ())
        msg = f"code.{n}" if decision.action == cb.CODE and n > 1 else decision.action
        return finish(RedirectResponse(_with_msg(where, msg), status_code=303), v)

    def bulk_decide(request: Request, v: Visitor, form, action: str, back: str) -> Response:
        """Confirm (under their names) or reject (for one reason) every ticked theme: all or none."""
        keys = list(dict.fromkeys(str(x) for x in form.getlist("themes") if str(x).strip()))
        with store.sessions() as session:
            view = view_of(session, v)
            blind = blind_coder(session, v) is not None
        if not keys:
            return page(request, v, "error.html", 400, view=view, title="Not recorded",
                        errors=["Tick the themes first."], back=back)
        reason = " ".join(str(form.get("reason") or "").split())
        items = [(v.coder, {"action": cb.CONFIRM, "theme_key": k, "name": view.title(k)} if action == cb.CONFIRM
                  else {"action": cb.REJECT, "theme_key": k, "reason": reason}) for k in keys]
        try:
            decide_many(store, study, items, blind=blind, seen=_seen(form))
        except DecisionError as exc:
            return page(request, v, "error.html", 400, view=view, title="Not recorded", errors=exc.errors, back=back)
        return finish(RedirectResponse(_with_msg(back, f"{action}.{len(keys)}"), status_code=303), v)

    # -- blind double coding: the comparison and its settlements ------------------------------------
    def may_compare(session, v: Visitor) -> tuple[Any, str]:
        """The team's settings, and why ``v`` may not open the comparison ("" when they may): in team mode
        only the study's lead compares and settles; in local mode anyone signed in."""
        settings = team_settings(session, study)
        if not v.coder:
            return settings, "Sign in first."
        if not team:
            return settings, ""
        if settings.lead is None:
            return settings, (f"The study has no lead yet: name one with themesift study set --study {study} "
                              "--lead NAME (or themesift coders add NAME --lead).")
        if settings.lead != v.coder:
            return settings, f"Only the study's lead, {settings.lead}, compares the coders and settles differences."
        return settings, ""

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(request: Request, v: Visitor = Depends(signed_in)):
        with store.sessions() as session:
            settings, refused = may_compare(session, v)
            if refused:
                return page(request, v, "error.html", 403, view=view_of(session, v), title="Not for you",
                            errors=[refused], back="/themes")
            if settings.blind(team):
                return page(request, v, "compare_open.html", view=view_of(session, v), settings=settings)
            view = load_view(session, study)
            result = team_comparison(view, compare.min_positive, compare.recovered_f1, settings.blind_until)
            segs = segments_by_id(session, [d.segment for d in result.segments])
            titles = {k: result.names.get(k, view.title(k)) for k in view.keys()}
            return page(request, v, "compare.html", view=view, result=result, settings=settings, segs=segs,
                        titles=titles, figures=_figures(result, titles),
                        confirmed=[k for k in view.keys() if view.status(k) == cb.CONFIRMED],
                        contexts={s: segment_context(session, segs[s]) for s in segs})

    @app.post("/compare/open")
    async def open_comparison(request: Request):
        v = visitor(request)
        form, refused = await form_of(request, v)
        if refused:
            return refused
        with store.transaction() as session:
            _, why = may_compare(session, v)
            if not why:
                if team_settings(session, study).opened_at is None:
                    set_team_setting(session, study, "opened_at", datetime.now(timezone.utc).isoformat(), v.coder)
        if why:
            return page(request, v, "error.html", 403, title="Not opened", errors=[why], back="/themes")
        return finish(RedirectResponse(_with_msg("/compare", "open"), status_code=303), v)

    @app.post("/settle")
    async def settle_route(request: Request):
        v = visitor(request)
        form, refused = await form_of(request, v)
        if refused:
            return refused
        with store.sessions() as session:
            settings, why = may_compare(session, v)
            if not why and settings.blind(team):
                why = "Open the comparison first."
            if why:
                return page(request, v, "error.html", 403, title="Not recorded", errors=[why], back="/compare")
            view = load_view(session, study)
            result = team_comparison(view, compare.min_positive, compare.recovered_f1, settings.blind_until)
        kind, ref = str(form.get("kind") or ""), str(form.get("ref") or "")
        took = str(form.get("took") or "") or None
        difference = (next((d for d in result.themes if d.key == ref), None) if kind == "theme" else
                      next((d for d in result.segments if str(d.segment) == ref), None))
        if difference is None or (took is not None and took not in result.coders):
            return page(request, v, "error.html", 400, view=view, title="Not recorded", back="/compare",
                        errors=["That difference is settled already, or there is no such difference."])
        given = {f: str(form.get(f) or "").strip() for f in ("status", "name", "definition", "reason", "into")}
        given["codes"] = [str(x) for x in form.getlist("codes") if str(x).strip()]
        try:
            decide(store, study, v.coder, settlement(difference, took, given))
        except DecisionError as exc:
            return page(request, v, "error.html", 400, view=view, title="Not recorded", errors=exc.errors,
                        back="/compare")
        where = f"/compare#{'theme' if kind == 'theme' else 'segments'}"
        return finish(RedirectResponse(_with_msg(where, "settle"), status_code=303), v)

    @app.get("/healthz")
    def health():
        return {"ok": True, "study": study}

    return app


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def sign(secret: bytes, value: str) -> str:
    """The signature of a cookie or CSRF token: HMAC-SHA256 under the study database's review secret."""
    return hmac.new(secret, value.encode(), hashlib.sha256).hexdigest()


def _active(view) -> list:
    return [r for r in view.rows() if r.status in cb.ACTIVE]


def _here(request: Request) -> str:
    query = request.url.query
    query = "&".join(p for p in query.split("&") if p and not p.startswith("msg=")) if query else ""
    return request.url.path + (f"?{query}" if query else "")


def _seen(form) -> int | None:
    """The newest decision id the page showed (its hidden ``seen`` field); None from a page without one."""
    value = str(form.get("seen") or "")
    return int(value) if value.isdigit() else None


def _safe_next(target: str) -> str:
    """Only same-site paths: never redirect to another host."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/themes"
    return target


def _with_msg(path: str, msg: str) -> str:
    """``path`` with the message code ``msg`` (see :func:`_flash`)."""
    path, hash_, fragment = path.partition("#")
    return path + ("&" if "?" in path else "?") + urlencode({"msg": msg}) + hash_ + fragment


DONE = {"confirm": "Confirmed.", "rename": "Renamed.", "reject": "Rejected.", "merge": "Merged.",
        "split": "Split.", "move": "Moved.", "add_segment": "Added.", "add_theme": "Theme added.",
        "undo": "Undone.", "code": "Code added.", "uncode": "Code taken off.", "answer": "Answer recorded.",
        "import_code": "Code imported.", "settle": "Settled.",
        "open": "Comparison opened: coders now see each other's decisions."}

def _flash(code: str) -> str:
    """The message of a redirect after a decision: only the page's own codes (``confirm``, ``reject.3``)
    show, so that a link cannot put words of its own in the page's system message."""
    action, _, n = code.partition(".")
    if action not in DONE:
        return ""
    if n.isdigit() and action in ("confirm", "reject"):
        return f"{DONE[action][:-1]} {int(n)} theme{'s' if int(n) != 1 else ''}."
    if n.isdigit() and action == "code":
        return f"Code added to {int(n)} segments."
    return DONE[action] if not n else ""


def _next_undecided(view, after: str | None) -> str | None:
    """The first theme nobody decided on yet after ``after`` in list order (then from the top)."""
    keys = [r.key for r in view.rows()]
    start = keys.index(after) + 1 if after in keys else 0
    return next((k for k in keys[start:] + keys[:start] if k != after and view.status(k) == cb.NEW), None)


def _open_hint(view, segment: int) -> tuple[str, float] | None:
    """An outlier's closest theme when it is still open (followed through merges); None when it was
    split, rejected, or is gone."""
    hint = view.suggested.get(segment)
    if hint is None:
        return None
    key, seen = hint[0], set()
    while view.status(key) == cb.MERGED and key not in seen:
        seen.add(key)
        key = view.state.themes[key].merged_into
    return (key, hint[1]) if view.status(key) in cb.ACTIVE else None


def _summary(view, e: cb.Entry) -> str:
    a = e.after
    title = view.title(e.theme_key) if e.theme_key else ""
    if e.action == cb.CONFIRM:
        return f"confirmed '{a.get('name')}'"
    if e.action == cb.RENAME:
        return f"renamed to '{a.get('name')}'"
    if e.action == cb.REJECT:
        return f"rejected '{e.before.get('label') or title}': {a.get('reason')}"
    if e.action == cb.MERGE:
        return f"merged {len(a.get('themes') or ())} themes into '{a.get('name') or view.title(a.get('into'))}'"
    if e.action == cb.SPLIT:
        return f"split '{e.before.get('label') or title}' into {len(a.get('parts') or ())} parts"
    if e.action in (cb.MOVE, cb.ADD_SEGMENT):
        n = len(a.get("segment_ids") or ())
        placed = any((e.before.get("from") or {}).values())  # adding a segment that was in a theme moves it
        verb = "moved" if e.action == cb.MOVE or placed else "added"
        return f"{verb} {n} segment{'s' if n != 1 else ''} to " + (f"'{view.title(a['to'])}'" if a.get("to")
                                                                    else "no theme")
    if e.action == cb.IMPORT_CODE:
        return f"imported code '{a.get('name')}'" + (f" from {a.get('origin')}" if a.get("origin") else "")
    if e.action == cb.ADD_THEME:
        return f"added own theme '{a.get('name')}' with {len(a.get('segment_ids') or ())} examples"
    if e.action in (cb.CODE, cb.UNCODE):
        n = len(a.get("segment_ids") or ())
        what = f"{n} segment{'s' if n != 1 else ''}"
        return (f"coded {what} also as '{view.title(a.get('to'))}'" if e.action == cb.CODE
                else f"took '{view.title(a.get('from'))}' off {what}")
    if e.action == cb.ANSWER:
        asked = f"'{view.title(a.get('proposed'))}'" if a.get("proposed") else "no theme"
        if a.get("answer") == "yes":
            return f"Teach: yes, it is {asked}"
        if a.get("answer") == "other":
            given = a.get("to") or []
            titles = ", ".join(f"'{view.title(k)}'" for k in ([given] if isinstance(given, str) else given))
            return f"Teach: in {titles}" + ("" if a.get("proposed") in given else f", not {asked}")
        if a.get("answer") == "new":
            return f"Teach: not {asked} but a new theme '{a.get('name')}'"
        return f"Teach: no, it is not {asked}"
    if e.action == cb.SETTLE:
        side = f"took {a.get('took')}'s" if a.get("took") else "a new decision"
        if a.get("kind") == "segment":
            codes = ", ".join(f"'{view.title(k)}'" for k in a.get("codes") or ()) or "no theme"
            return f"settled segment {', '.join(map(str, a.get('segment_ids') or ()))}: {side}, in {codes}"
        return f"settled '{title}': {side}, {a.get('status')}" + (f" as '{a['name']}'" if a.get("name") else "")
    if e.action == cb.UNDO:
        target = next((x for x in view.entries if x.uid == a.get("undoes")), None)
        return "undid: " + (_summary(view, target) if target else str(a.get("undoes")))
    return e.action


def _figures(result, titles: Mapping[str, str]) -> dict:
    """The comparison's figures as the page shows them: one table per pair (the coders, then the machine
    with each coder), a line per theme (by its title) and the overall line, straight from ``compare``."""
    out: dict[str, Any] = {"pairs": []}
    comparison = result.comparison
    if comparison is None:
        return out
    for pair in comparison.pairs():
        report = comparison.report_for(pair)
        rows = [{"key": c.code, "title": titles.get(c.code, c.code), "kappa": c.kappa, "alpha": c.alpha,
                 "percent": c.percent_agreement, "table": c.table, "too_rare": c.too_rare}
                for c in report.per_code if c.coders == tuple(pair)]
        overall = report.summary(tuple(pair))
        out["pairs"].append({"name": " vs ".join(pair), "first": pair[0], "second": pair[1],
                             "machine": pair[0] == "machine", "rows": rows, "overall": overall})
    return out

