"""Learning curves as SVG, written by hand: no plotting library is needed for a few lines and points."""

from __future__ import annotations

from html import escape

ARMS = (("review", "review", "#1f5fa8"), ("review_no_moves", "review, no moves", "#5fb7d4"),
        ("review_teach", "review + teach", "#2a8a3e"), ("hinted", "following the hint", "#6b8e23"), ("teach", "teach", "#d08a00"),
        ("random_labels", "random labels", "#b23b3b"), ("plain_random_labels", "random labels, plain LR", "#e08080"),
        ("old_rule", "old rule (centroids)", "#888888"),
        ("prototypes", "prototypes (codes known)", "#7b3fa0"))


def curve_svg(result: dict, width: int = 600, height: int = 300) -> str:
    """Mean kappa against decisions (log scale) for each arm of a ``bench review`` result, with the ceiling."""
    points = result["points"]
    budgets = [p["budget"] for p in points]
    top = max([result["ceiling"]] + [p[a] for p in points for a, _, _ in ARMS if a in p] + [0.05]) * 1.1
    left, right, upper, lower = 50, 210, 20, 40  # room on the right for the legend
    w, h = width - left - right, height - upper - lower
    import math

    lo, hi = math.log(min(budgets)), math.log(max(budgets)) if len(budgets) > 1 else math.log(min(budgets)) + 1

    def x(b: float) -> float:
        return left + w * (math.log(b) - lo) / ((hi - lo) or 1)

    def y(v: float) -> float:
        return upper + h * (1 - v / top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="13" font-size="12">{escape(result["dataset"])}: mean kappa on untouched segments</text>',
           f'<line x1="{left}" y1="{upper + h}" x2="{left + w}" y2="{upper + h}" stroke="black"/>',
           f'<line x1="{left}" y1="{upper}" x2="{left}" y2="{upper + h}" stroke="black"/>']
    for b in budgets:
        out.append(f'<text x="{x(b):.1f}" y="{upper + h + 14}" text-anchor="middle">{b}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle">decisions (log scale)</text>')
    steps = 5
    for i in range(steps + 1):
        v = top * i / steps
        out.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    out.append(f'<line x1="{left}" y1="{y(result["ceiling"]):.1f}" x2="{left + w}" y2="{y(result["ceiling"]):.1f}" '
               'stroke="black" stroke-dasharray="4 3"/>')
    legend = [("ceiling (5-fold, all labels)", "black", True)]
    for arm, label, colour in ARMS:
        if arm not in points[0]:
            continue
        path = " ".join(f"{x(p['budget']):.1f},{y(p[arm]):.1f}" for p in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{x(p["budget"]):.1f}" cy="{y(p[arm]):.1f}" r="3" fill="{colour}"/>' for p in points]
        legend.append((label, colour, False))
    for i, (label, colour, dashed) in enumerate(legend):
        ly = upper + 10 + 16 * i
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        out.append(f'<line x1="{left + w + 10}" y1="{ly}" x2="{left + w + 30}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"{dash}/><text x="{left + w + 35}" y="{ly + 4}">{escape(label)}</text>')
    return "\n".join(out + ["</svg>", ""])
