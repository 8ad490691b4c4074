"""docs/benchmarks.md, rebuilt from every JSON result in docs/bench/ (``python -m bench report``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"

QUALITY_ROWS = [
    ("mean_best_f1", "mean best-match F1 per human code", True),
    ("recovered_share", "share of codes recovered (best F1 >= 0.5)", True),
    ("top5_precision", "top-5 precision (usable: purity >= 0.6)", True),
    ("top10_precision", "top-10 precision (usable: purity >= 0.6)", True),
    ("top5_strict_precision", "top-5 precision, strict (usable and best F1 >= 0.5)", True),
    ("top10_strict_precision", "top-10 precision, strict (usable and best F1 >= 0.5)", True),
    ("ari_all", "ARI, outliers as their own group", True),
    ("nmi_all", "NMI, outliers as their own group", True),
    ("ari_assigned", "ARI, assigned units only", True),
    ("nmi_assigned", "NMI, assigned units only", True),
    ("coverage", "coverage (share of units assigned a theme)", None),
    ("outlier_share", "share of units in the outlier queue", None),
    ("n_themes", "number of themes", None),
    ("seconds", "seconds (clustering onwards, same vectors)", None),
]

HEADER = """# Benchmarks

Every table below is rebuilt by `python -m bench report` from the JSON results in
[`docs/bench/`](bench/); each result names the exact command that produced it, the machine, the
package versions, the code version and the date. Install the peer and memory tools first:
`pip install -e '.[bench]'` (BERTopic, psutil). The harness is `bench/` (`python -m bench --help`).

**Read the speed figures as ratios.** They were measured on a shared 2-core machine where other
processes ran at the same time (the load average is given with each result), so absolute times vary
from run to run; every comparison was therefore measured side by side in one process, interleaved
where possible, and only the ratios are meant to carry over to another machine.

Reproduce everything (about 40 minutes on 2 cores):

```bash
python -m bench quality --preset nhs-fft-label --backend onnx        # also: nhs-fft-subcategory, banking77, example-study
python -m bench quality --data FILE.csv --text-col C --label-col C [--case-col C] [--multi-label-sep ";"]
python -m bench embed-speed                                           # ONNX vs sentence-transformers
python -m bench flow-speed --backend onnx                             # whole flow cold/warm, BERTopic end to end
python -m bench growth --backend onnx                                 # 1k/3k/10k/30k segments
python -m bench review --preset nhs-fft-label --backend onnx          # simulated review curve
```

How the quality figures are computed: both tools cluster the same units (the clusterable segments
Themesift makes of the corpus: segments under `segment.min_words` words are left out for both) from
the same vectors. Themesift runs its own stages with `configs/default.yaml`; BERTopic runs with its
defaults and the same UMAP seed. ARI/NMI use each unit's first human code; "outliers as their own
group" keeps every unit, "assigned only" drops the units a tool left unassigned (coverage says how many
it kept). Best-match F1 is per human code, the best segment-overlap F1 of any theme. Top-k precision
follows each tool's own order (Themesift's rank; BERTopic's topic order, largest first).
"""


def _fmt(value: Any, key: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if key == "n_themes" or isinstance(value, int):
        return str(value)
    if key == "seconds":
        return f"{value:.1f}"
    return f"{value:.3f}"


def _provenance(r: dict) -> list[str]:
    m = r.get("machine", {})
    v = r.get("versions", {})
    keys = ("themesift", "torch", "sentence-transformers", "onnxruntime", "bertopic", "umap-learn", "hdbscan")
    return [
        f"- Command: `{r.get('command', '?')}`",
        f"- Machine: {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('memory_gib')} GiB; load average at start "
        f"{m.get('load_average_at_start')}; {r.get('date')}; code {r.get('code')}",
        "- Versions: " + ", ".join(f"{k} {v[k]}" for k in keys if k in v) + f", python {v.get('python')}",
    ]


def quality_section(r: dict) -> list[str]:
    methods = r["methods"]
    names = list(methods)
    lines = [f"### {r['dataset']}", ""]
    lines += [f"- {n}" for n in r.get("notes", [])]
    if r.get("config_file"):
        settings = " ".join(x.strip() for x in r["config_file"]["text"].splitlines() if x.strip() and not x.strip().startswith("#"))
        lines.append(f"- Themesift run with `{r['config_file']['path']}` over the defaults: `{settings}`")
    lines += [f"- {r['n_units']} units (clusterable segments), {r['n_codes']} human codes, "
              f"{r['n_coded_units']} units coded; embeddings: {r['embedding']['model_id']} "
              f"({r['embedding']['backend']})", ""]
    lines.append("| figure | " + " | ".join(names) + " | better |")
    lines.append("|---|" + "---:|" * len(names) + "---|")
    for key, label, higher in QUALITY_ROWS:
        values = [methods[n].get(key) for n in names]
        better = ""
        if higher is not None and len(names) == 2 and all(isinstance(x, (int, float)) for x in values):
            a, b = values
            better = names[0] if (a > b) == higher and a != b else (names[1] if a != b else "tie")
        lines.append(f"| {label} | " + " | ".join(_fmt(x, key) for x in values) + f" | {better} |")
    lines.append("")
    ts = methods.get("themesift", {})
    if ts.get("top10"):
        lines += ["Themesift's top 10 suggestions against the human codes:", "",
                  "| rank | label | segments | purity | dominant code | best F1 |", "|---:|---|---:|---:|---|---:|"]
        for t in ts["top10"]:
            lines.append(f"| {t['rank']} | {t['label']} | {t['size']} | {t['purity']:.2f} | {t['purity_code']} | "
                         f"{t['best_f1']:.2f} |")
        lines.append("")
    lines += _provenance(r) + [""]
    return lines


def verdicts(quality: list[dict]) -> list[str]:
    lines = []
    for r in quality:
        m = r["methods"]
        if "bertopic" not in m:
            continue
        for key, label in (("mean_best_f1", "mean best-match F1"), ("top10_precision", "top-10 precision")):
            a, b = m["themesift"][key], m["bertopic"][key]
            word = "beats" if a > b else ("ties with" if a == b else "does NOT beat")
            lines.append(f"- {r['dataset']}: Themesift {word} BERTopic on {label} ({_fmt(a)} vs {_fmt(b)}).")
    return lines


def embed_section(r: dict) -> list[str]:
    lines = ["## Embedding speed: ONNX Runtime vs sentence-transformers", "",
             f"- {r['description']}", ""]
    lines += ["| contender | segments | seconds | segments/s | ratio to the configured sentence-transformers |",
              "|---|---:|---:|---:|---:|"]
    for name, b in r["backends"].items():
        lines.append(f"| {name} | {b['segments']} | {b['seconds']:.1f} | {b['per_second']:.1f} | {b['ratio']:.2f} |")
    lines += ["", f"- ONNX vs the fastest sentence-transformers contender: {r['onnx_vs_best_sentence_transformers']:.2f}x "
              "over all rounds.",
              f"- Same ratio per round (interleaved chunks): median {r['round_ratio_median']:.2f}, "
              f"range {r['round_ratio_min']:.2f}-{r['round_ratio_max']:.2f} over {r['rounds']} rounds; "
              f"lowest cosine between the two backends' vectors: {r['min_cosine']:.6f}", ""]
    return lines + _provenance(r) + [""]


def flow_section(r: dict) -> list[str]:
    lines = ["## The whole flow: cold and warm runs, and BERTopic end to end", "", f"- {r['description']}", ""]
    runs = r["runs"]
    stages = list(dict.fromkeys(s for run in runs.values() for s in run.get("stages", {})))
    lines.append("| stage | " + " | ".join(f"{n} s | {n} peak MiB" for n in runs) + " |")
    lines.append("|---|" + "---:|---:|" * len(runs))
    for s in stages:
        cells = []
        for run in runs.values():
            st = run.get("stages", {}).get(s)
            peak = st["peak_mib"] if st else None
            cells += [f"{st['seconds']:.1f}", "" if peak is None or math.isnan(peak) else f"{peak:.0f}"] if st else ["", ""]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{run['seconds']:.1f}** | **{run['peak_mib']:.0f}**"
                                               for run in runs.values()) + " |")
    lines += [""] + [f"- {k}: **{v}**" for k, v in r.get("ratios", {}).items()]
    if r.get("warm_up_seconds"):
        lines.append("- Paid once per process before timing (not in the table): " +
                     ", ".join(f"{k} {v:.1f} s" for k, v in r["warm_up_seconds"].items()))
    lines.append("")
    return lines + _provenance(r) + [""]


def growth_section(r: dict) -> list[str]:
    lines = ["## Growth with corpus size", "", f"- {r['description']}", ""]
    lines += ["| segments | embed s (measured or linear) | cluster..rank s | total s | peak MiB | themes |",
              "|---:|---:|---:|---:|---:|---:|"]
    for p in r["points"]:
        lines.append(f"| {p['n']} | {p['embed_seconds']:.1f}{'' if p.get('embed_measured') else ' (est.)'} | "
                     f"{p['post_embed_seconds']:.1f} | {p['total_seconds']:.1f} | {p['peak_mib']:.0f} | {p['n_themes']} |")
    fit = r["fit"]
    lines += ["", f"- Fitted time ~ n^{fit['time_exponent']:.2f} (total), n^{fit['post_embed_exponent']:.2f} "
              f"(clustering onwards); memory ~ n^{fit['memory_exponent']:.2f} above the base process.",
              f"- **Extrapolation, not a measurement:** at 1,000,000 segments about "
              f"{fit['extrapolated_1m_hours']:.1f} hours and {fit['extrapolated_1m_gib']:.1f} GiB on this machine.", ""]
    return lines + _provenance(r) + [""]


def render(results: Path = RESULTS) -> str:
    data = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("*.json"))]
    quality = [r for r in data if r.get("kind") == "quality"]
    lines = HEADER.splitlines() + [""]
    if quality:
        lines += ["## Quality against human codes (Themesift vs BERTopic defaults, same embeddings)", ""]
        lines += ["Does Themesift beat BERTopic's defaults where the issue asks it to?", ""] + verdicts(quality) + [""]
        for r in quality:
            lines += quality_section(r)
    for kind, section in (("embed-speed", embed_section), ("flow-speed", flow_section), ("growth", growth_section)):
        for r in data:
            if r.get("kind") == kind:
                lines += section(r)
    review = [r for r in data if r.get("kind") == "review"]
    lines += ["## Simulated review: agreement bought per decision", ""]
    if not review:
        lines += ["Not measured yet (see issue 6).", ""]
    else:
        lines += ["A scripted coder who knows the human codes ([`bench/coder.py`](../bench/coder.py) holds all its rules) "
                  "reviews the top-k suggestions in rank order: confirms a suggestion under the human code that "
                  "covers >= 60% of its members, else rejects it, and moves up to 3 misplaced members out of each "
                  "confirmed theme; the decisions go through `themesift decisions import`, then `themesift apply` "
                  "codes the corpus. Scored on the segments the coder never touched (moved or shown as a quote).", ""]
    for r in review:
        lines += [f"### {r['dataset']}", "",
                  f"- {r['n_segments']} segments with human codes, {r['n_themes_suggested']} suggestions; "
                  f"embed backend {r.get('embed_backend')}", "",
                  "| suggestions reviewed (k) | decisions | confirmed | untouched segments | mean kappa | macro-F1 |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for p in r["points"]:
            lines.append(f"| {p['k']} | {p['decisions']} | {p['confirmed']} | {p['n_units']} | "
                         f"{_fmt(p['mean_kappa'])} | {_fmt(p['macro_f1'])} |")
        lines += [""] + _provenance(r) + [""]
    return "\n".join(lines).rstrip() + "\n"


def write(results: Path = RESULTS, doc: Path = DOC) -> Path:
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(results), encoding="utf-8")
    return doc
