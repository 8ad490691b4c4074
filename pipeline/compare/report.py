"""The comparison as files people read: a self-contained HTML report with inline SVG plots, and CSV tables.

No plotting library and no network: the plots are plain SVG written here (bars for agreement per
code and coverage per participant, a heatmap of machine themes against human codes), so the report
opens anywhere, offline, and can be mailed as one file.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from pipeline import csvsafe
from pipeline.compare.compare import MACHINE, MAPPING_RULE, Comparison, fmt

PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C",
           "#CCB974", "#64B5CD")

SELECTION_RULE = (
    "Human selections are put on segments by character overlap: a segment carries a code for a coder "
    "when that coder's selections of the code cover at least half of the segment's characters "
    "(overlapping selections counted once)."
)

GLOSSARY = (
    ("Unit", "The segment: 1-3 sentences of one participant turn, as the run cut them. Every coder, "
             "human or machine, is compared on the same segments: those the run clustered (participant "
             "text of at least a few words). Each code is its own yes/no variable per segment."),
    ("Percent agreement", "(both coded + neither coded) / segments. Inflated by the many segments "
                          "nobody coded with a given code; read kappa or alpha beside it."),
    ("Cohen's kappa", "(po - pe) / (1 - pe): agreement beyond chance for two coders, from the 2x2 table "
                      "(pe = pA(yes)pB(yes) + pA(no)pB(no)). 0 = chance, 1 = perfect; 0.61-0.80 is "
                      "usually called substantial, above 0.80 almost perfect."),
    ("Krippendorff's alpha", "Nominal alpha on the same yes/no variable; works for two or more coders "
                             "(the 'all coders' rows). Close to kappa for two coders on many units."),
    ("Too rare", "Fewer segments than the threshold carry the code for one of the coders: "
                 "kappa and alpha on it say little."),
    ("Exact-set agreement", "Share of segments where the coders' sets of codes are identical "
                            "(nothing coded counts as a set too)."),
    ("Theme-to-code mapping", MAPPING_RULE),
    ("ARI / NMI", "Adjusted Rand index and normalised mutual information between the machine's "
                  "partition (outlier queue as one group) and the human codes (first code of a "
                  "multi-coded segment; uncoded as one group). 0 = chance-level, 1 = identical grouping."),
    ("Best-match F1, recovered", "For each human code, the theme with the highest segment-overlap F1; "
                                 "a code counts as recovered when that F1 is at least 0.5."),
    ("Top-k precision", "Share of the k best-ranked themes whose segments mostly (>= 60%) carry one "
                        "same human code: themes a coder could use as they are."),
)

REPORT_PARTICIPANTS = 100  # participants charted in the HTML report; its coverage CSV has every one


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(value: Any) -> Any:
    """NaN -> None for CSV and JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# SVG plots
# ---------------------------------------------------------------------------------------------


def svg_grouped_bars(
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    title: str,
    lo: float = 0.0,
    hi: float = 1.0,
    reference: float | None = None,
    reference_label: str = "",
    value_format: str = "{:.2f}",
) -> str:
    """Horizontal grouped bars: one group per category, one bar per series (None/NaN: no bar)."""
    values = [v for _, vs in series for v in vs if v is not None and not math.isnan(v)]
    lo = min([lo] + [math.floor(v * 5) / 5 for v in values])
    label_w, plot_w, right = 230, 430, 60
    bar_h, gap = 11, 9
    group_h = bar_h * max(1, len(series)) + gap
    top = 46 + 18 * ((len(series) + 2) // 3)
    height = top + group_h * len(categories) + 34
    width = label_w + plot_w + right

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}" class="plot">',
             f'<text x="10" y="20" font-size="15" font-weight="bold">{_e(title)}</text>']
    for i, (name, _) in enumerate(series):
        lx, ly = 10 + (i % 3) * 230, 38 + 18 * (i // 3)
        parts.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{PALETTE[i % len(PALETTE)]}"/>'
                     f'<text x="{lx + 17}" y="{ly}" font-size="12">{_e(name)}</text>')
    bottom = top + group_h * len(categories)
    steps = int(round((hi - lo) / 0.2))
    for k in range(steps + 1):
        v = lo + k * 0.2
        parts.append(f'<line x1="{x(v):.1f}" y1="{top - 4}" x2="{x(v):.1f}" y2="{bottom}" stroke="#ddd"/>'
                     f'<text x="{x(v):.1f}" y="{bottom + 14}" font-size="11" text-anchor="middle">{v:.1f}</text>')
    if lo < 0 < hi:
        parts.append(f'<line x1="{x(0):.1f}" y1="{top - 4}" x2="{x(0):.1f}" y2="{bottom}" stroke="#888"/>')
    if reference is not None:
        parts.append(f'<line x1="{x(reference):.1f}" y1="{top - 4}" x2="{x(reference):.1f}" y2="{bottom}" '
                     f'stroke="#C44E52" stroke-dasharray="4 3"/>'
                     f'<text x="{x(reference) + 3:.1f}" y="{bottom + 28}" font-size="11" fill="#C44E52">'
                     f'{_e(reference_label)}</text>')
    for ci, cat in enumerate(categories):
        gy = top + ci * group_h
        parts.append(f'<text x="{label_w - 8}" y="{gy + group_h / 2:.1f}" font-size="12" text-anchor="end" '
                     f'dominant-baseline="middle">{_e(cat)}</text>')
        for si, (name, vals) in enumerate(series):
            v = vals[ci]
            if v is None or math.isnan(v):
                continue
            y = gy + si * bar_h
            x0, x1 = sorted((x(max(lo, 0.0) if lo < 0 else lo), x(v)))
            parts.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.8):.1f}" height="{bar_h - 2}" '
                         f'fill="{PALETTE[si % len(PALETTE)]}"><title>{_e(cat)}, {_e(name)}: '
                         f'{value_format.format(v)}</title></rect>'
                         f'<text x="{max(x1, x(0) if lo < 0 else x1) + 3:.1f}" y="{y + bar_h - 3:.1f}" '
                         f'font-size="9" fill="#444">{value_format.format(v)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _heat(v: float) -> str:
    """White to dark blue."""
    v = min(max(v, 0.0), 1.0)
    r, g, b = (int(255 - (255 - c) * v) for c in (33, 76, 140))
    return f"rgb({r},{g},{b})"


def svg_heatmap(rows: Sequence[str], cols: Sequence[str], counts, f1, title: str,
                outlined: Iterable[tuple[str, str]] = ()) -> str:
    """Rows x columns cells coloured by F1, labelled with counts; ``outlined`` pairs get a frame."""
    outlined = set(outlined)
    cell_w, cell_h, label_w = 44, 20, 250
    head_h = 150
    width = label_w + cell_w * len(cols) + 130  # room for the last rotated label
    height = 30 + head_h + cell_h * len(rows) + 40
    top = 30 + head_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}" class="plot">',
             f'<text x="10" y="20" font-size="15" font-weight="bold">{_e(title)}</text>']
    for j, c in enumerate(cols):
        cx = label_w + j * cell_w + cell_w / 2
        parts.append(f'<text transform="translate({cx:.1f},{top - 6}) rotate(-55)" font-size="11">{_e(c)}</text>')
    for i, r in enumerate(rows):
        y = top + i * cell_h
        short = r if len(r) <= 38 else r[:36] + "..."
        parts.append(f'<text x="{label_w - 6}" y="{y + cell_h / 2:.1f}" font-size="11" text-anchor="end" '
                     f'dominant-baseline="middle">{_e(short)}</text>')
        for j, c in enumerate(cols):
            x = label_w + j * cell_w
            v = float(f1[i][j])
            n = int(counts[i][j])
            frame = ' stroke="#C44E52" stroke-width="2.5"' if (r, c) in outlined else ' stroke="#fff"'
            parts.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{_heat(v)}"{frame}>'
                         f'<title>{_e(r)} x {_e(c)}: {n} shared segments, F1 {v:.2f}</title></rect>')
            if n:
                colour = "#fff" if v > 0.45 else "#222"
                parts.append(f'<text x="{x + cell_w / 2}" y="{y + cell_h / 2 + 4:.1f}" font-size="10" '
                             f'text-anchor="middle" fill="{colour}">{n}</text>')
    ly = top + cell_h * len(rows) + 22
    parts.append(f'<text x="10" y="{ly}" font-size="11">Colour: segment-overlap F1 (white 0, dark 1); '
                 f'number: segments both carry; red frame: the Hungarian match.</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:right;vertical-align:top}
th{background:#f4f4f4}td.l,th.l{text-align:left}
tr.rare td{color:#999}.warn{color:#a33}.note{color:#555;font-size:.9em}
svg.plot{display:block;margin:1em 0;max-width:100%;height:auto;font-family:inherit}
dt{font-weight:bold;margin-top:.5em}
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1,
           row_class: Sequence[str] | None = None) -> str:
    def cls(i: int) -> str:
        return ' class="l"' if i < left else ""

    out = ["<table><thead><tr>"]
    out += [f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for k, row in enumerate(rows):
        row_cls = f' class="{row_class[k]}"' if row_class and row_class[k] else ""
        out.append(f"<tr{row_cls}>" + "".join(f"<td{cls(i)}>{_e(v)}</td>" for i, v in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render_html(
    result: Comparison,
    study: str,
    run_label: str,
    coders: Sequence[dict[str, Any]] = (),
    notes: Sequence[str] = (),
    created: datetime | None = None,
) -> str:
    """The whole report as one HTML document (inline CSS and SVG, no scripts, no external files).

    ``coders``: one dict per coder (name, kind, origin, segments coded); ``notes``: what could not be
    mapped (selections outside the units, missing excerpts...).
    """
    created = created or datetime.now(timezone.utc)
    body: list[str] = [f"<h1>Coding comparison: study {_e(study)}</h1>",
                       f'<p class="note">{_e(run_label)}. Written {created:%Y-%m-%d %H:%M} UTC by Themesift.</p>']
    body.append(
        f"<p><b>Unit:</b> the segment. {len(result.units)} participant segments the run clustered, from "
        f"{len({c for c in result.cases.values() if c})} participants; every coder is compared on these. "
        f"{_e(SELECTION_RULE)}</p>")
    if result.has_machine:
        body.append(f"<p><b>The machine</b> codes a segment with the theme the run put it in; segments in "
                    f"the outlier queue carry nothing. {_e(MAPPING_RULE)}</p>")
    if coders:
        body.append("<h2>Coders</h2>")
        body.append(_table(["coder", "kind", "from", "segments coded", "codes used"],
                           [[c.get("name"), c.get("kind"), c.get("origin"), c.get("segments"), c.get("codes")]
                            for c in coders], left=3))

    pairs = result.pairs()
    if pairs:
        body.append("<h2>Agreement overall</h2>")
        rows = []
        for report, coders_ in result.groups():
            o = report.summary(coders_)
            rows.append([" vs ".join(coders_), o.n_units, o.n_codes, o.n_too_rare, fmt(o.mean_percent_agreement),
                         fmt(o.mean_kappa), fmt(o.mean_kappa_common), fmt(o.mean_alpha),
                         fmt(o.exact_set_agreement)])
        body.append(_table(["coders", "segments", "codes", "too rare", "mean % agreement", "mean kappa",
                            "mean kappa (common codes)", "mean alpha", "exact-set agreement"], rows))
        series = []
        for p in pairs:
            report = result.report_for(p)
            vals = [report.get(p, c).kappa if c in report.codes else None for c in result.human_codes]
            series.append((" vs ".join(p), vals))
        body.append(svg_grouped_bars(result.human_codes, series, "Cohen's kappa per code", lo=0.0, hi=1.0,
                                     reference=0.6, reference_label="0.6: substantial"))
        body.append("<h2>Agreement per code</h2>")
        body.append(f'<p class="note">Counts are segments. Greyed rows: too rare to judge (fewer than '
                    f"{result.min_positive} segments carry the code for one coder).</p>")
        for report, coders_ in result.groups():
            rows, classes = [], []
            for c in report.per_code:
                if c.coders != coders_:
                    continue
                t = c.table
                rows.append([c.code, *(["/".join(map(str, c.positives))]),
                             *([t.both, t.only_a, t.only_b, t.neither] if t else ["", "", "", ""]),
                             fmt(c.percent_agreement), fmt(c.kappa), fmt(c.alpha),
                             "too rare" if c.too_rare else ""])
                classes.append("rare" if c.too_rare else "")
            a, b = (coders_ + ("", ""))[:2]
            heads = ["code", "coded (" + "/".join(coders_) + ")", "both", f"only {a}", f"only {b}", "neither",
                     "% agreement", "kappa", "alpha", ""]
            body.append(f"<h3>{_e(' vs '.join(coders_))}</h3>")
            body.append(_table(heads, rows, row_class=classes))

    for m in result.machine:
        body.append(f"<h2>Machine themes against {_e(m.human)}'s codes</h2>")
        body.append(f"<p>Mapping: Hungarian assignment on segment-overlap F1 ({len(m.match.pairs)} pairs, "
                    f"mean F1 {fmt(m.match.mean_f1)}).</p>")
        body.append(_table(["theme", "mapped to code", "F1", "shared segments"],
                           [[p.theme, p.code, fmt(p.f1), p.overlap] for p in m.match.pairs], left=2))
        if m.match.unmatched_themes:
            body.append(f"<p><b>Unmatched themes</b> ({len(m.match.unmatched_themes)}): "
                        f"{_e('; '.join(m.match.unmatched_themes))}</p>")
        if m.match.unmatched_codes:
            body.append(f"<p><b>Unmatched codes</b> ({len(m.match.unmatched_codes)}): "
                        f"{_e('; '.join(m.match.unmatched_codes))}</p>")
        body.append(svg_heatmap(m.themes, m.codes, m.overlap, m.f1,
                                f"Machine themes x {m.human}'s codes",
                                outlined=[(p.theme, p.code) for p in m.match.pairs]))
        c = m.clusters
        body.append(_table(
            ["segments", "machine coded", "coverage", "ARI (all)", "NMI (all)", "ARI (themed only)",
             "NMI (themed only)", "mean best F1", "codes recovered", f"top-{m.top_k.k} precision",
             f"top-{m.top_k.k} strict"],
            [[c.n_units, c.n_assigned, fmt(c.coverage), fmt(c.ari_all), fmt(c.nmi_all), fmt(c.ari_assigned),
              fmt(c.nmi_assigned), fmt(c.mean_best_f1), fmt(c.recovered_share), fmt(m.top_k.precision),
              fmt(m.top_k.strict_precision)]], left=0))
        body.append(_table(["code", "best theme", "F1", "recovered"],
                           [[r.code, r.theme or "-", fmt(r.f1), "yes" if r.f1 >= c.recovered_f1 else "no"]
                            for r in c.recovery], left=2))
    if result.all_match is not None:
        body.append("<h2>All coders together</h2>")
        body.append("<p>For alpha over every coder the machine's themes were mapped onto the humans' pooled "
                    "coding (a segment carries a code when any human gave it), again by Hungarian assignment: "
                    + _e("; ".join(f"{p.theme} -> {p.code}" for p in result.all_match.pairs)) + "</p>")

    if result.coverage:
        body.append("<h2>Coverage per participant</h2>")
        names = [k[:-6] for k in result.coverage[0] if k.endswith("_share")]
        shown = result.coverage
        if len(shown) > REPORT_PARTICIPANTS:  # a survey's every respondent: 10,000 rows made a 10 MB page
            shown = sorted(shown, key=lambda r: -r["n_units"])[:REPORT_PARTICIPANTS]
            body.append(f"<p>{len(result.coverage)} participants: the {REPORT_PARTICIPANTS} with the most segments "
                        "are shown; the coverage table beside this report (<code>...-coverage.csv</code>) has them all."
                        "</p>")
        cats = [str(r["case"]) for r in shown]
        series = [(n if n != MACHINE else "machine (in a theme)", [r[f"{n}_share"] for r in shown])
                  for n in names]
        body.append(svg_grouped_bars(cats, series, "Share of each participant's segments coded", 0.0, 1.0,
                                     value_format="{:.0%}"))
        body.append(_table(["participant", "segments"] + [f"{n} coded" for n in names],
                           [[r["case"], r["n_units"]] + [f"{r[f'{n}_coded']} ({fmt(r[f'{n}_share'])})"
                                                         for n in names] for r in shown]))
    if notes:
        body.append("<h2>What could not be mapped</h2><ul>")
        body += [f"<li>{_e(n)}</li>" for n in notes]
        body.append("</ul>")
    body.append("<h2>What the figures mean</h2><dl>")
    body += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in GLOSSARY]
    body.append("</dl>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Coding comparison: {_e(study)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# ---------------------------------------------------------------------------------------------
# CSV tables
# ---------------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Path:
    columns = list(columns or (rows[0].keys() if rows else []))
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csvsafe.dict_writer(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: _num(v) for k, v in r.items()})
    tmp.replace(path)
    return path


def table_rows(result: Comparison) -> dict[str, list[dict[str, Any]]]:
    """The report's tables as CSV-ready rows, by table name."""
    mapping, clustering, recovery, confusion = [], [], [], []
    for m in result.machine:
        mapping += [{"human": m.human, **r} for r in m.match.to_rows()]
        clustering.append({"human": m.human, **m.clusters.to_row(), "top_k": m.top_k.k,
                           "top_k_precision": m.top_k.precision,
                           "top_k_strict_precision": m.top_k.strict_precision})
        recovery += [{"human": m.human, "code": r.code, "best_theme": r.theme, "f1": r.f1,
                      "recovered": r.f1 >= m.clusters.recovered_f1} for r in m.clusters.recovery]
        confusion += [{"human": m.human, "theme": t, "code": c, "shared_segments": int(m.overlap[i][j]),
                       "f1": float(m.f1[i][j])}
                      for i, t in enumerate(m.themes) for j, c in enumerate(m.codes)]
    if result.all_match is not None:
        mapping += [{"human": "(pooled humans)", **r} for r in result.all_match.to_rows()]
    return {"agreement": result.agreement_rows(), "mapping": mapping, "clustering": clustering,
            "recovery": recovery, "confusion": confusion, "coverage": result.coverage}


def write_tables(result: Comparison, folder: Path, stem: str) -> list[Path]:
    """``<stem>-<table>.csv`` for every non-empty table; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    return [_write_csv(folder / f"{stem}-{name}.csv", rows)
            for name, rows in table_rows(result).items() if rows]


def write_html(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
