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

The current figures come first; every table on this page is rebuilt by `python -m bench report` from
the JSON results in [`docs/bench/`](bench/), each of which names the exact command that produced it,
the machine and its CPU flags, the package versions, the code version and the date. How the defaults
were chosen, pass by pass, is in [benchmark-history.md](benchmark-history.md).

**Read the speed figures as ratios.** They were measured on shared 2-core machines where other
processes ran at the same time (the load average is given with each result); every comparison was
measured side by side in one process, interleaved where possible, and only the ratios are meant to
carry over to another machine. CPUs differ: int8 figures depend on the CPU's integer kernels (VNNI or
not), so each int8 result names its CPU and flags.
"""

METHOD = """## How to reproduce

Reproduce everything (about two hours on 2 cores; `themesift bench ...` is the same as `python -m bench ...`):

```bash
python -m bench quality --preset nhs-fft-label                      # also: nhs-fft-subcategory, banking77, example-study
python -m bench quality --preset nhs-fft-v6                         # held out: nhs-fft-v6, banking77-train
python -m bench quality --preset nhs-fft-label --backend sentence-transformers   # the same with PyTorch's vectors
python -m bench quality --preset nhs-fft-label --backend onnx --precision int8   # the same with int8 vectors
python -m bench quality --preset nhs-fft-label --backend onnx --precision int8 --fp32-layers 6   # int8, fp32 down-projections
python -m bench quality --data FILE.csv --text-col C --label-col C [--case-col C] [--multi-label-sep ";"] [--seeds 42 43]
python -m bench quality --data FILE.csv --text-col C --indicator-col CODE1 --indicator-col CODE2 ...   # a column per code
# --data: read as `themesift suggest` reads a CSV (UTF-8, UTF-16 or Windows-1252; , ; tab or | between fields); an
# indicator cell sets its code unless empty, 0 (0.0), false, no, n, n/a, none, null, nan or -
python -m bench names --preset nhs-fft-label --seeds 42                # theme names vs human code names; also the other presets and --data
python -m bench names --preset example-study --seeds 42 --config local-model.yaml   # names by a local generative model (docs/naming.md)
python -m bench small                                               # small studies: 100/200/300-segment draws, 3/5/10 interviews (--draws 5)
python -m bench small --data FILE.csv --text-col C --label-col C   # the same draws from any labelled CSV (--sizes 50 100)
python -m bench embed-speed --int8-fp32-layers 0 6                  # ONNX fp32 and int8 vs sentence-transformers
python -m bench int8-closeness                                      # int8 recipes vs fp32 on this CPU
qemu-x86_64 -cpu Haswell .venv/bin/python -m bench int8-closeness --step 330 --emulated   # the same on an emulated AVX2 CPU without VNNI
python -m bench flow-speed                                          # default path: whole flow cold/warm, BERTopic end to end
python -m bench flow-speed --precision int8                         # the same with int8 vectors
python -m bench growth --precision int8                             # 1k/3k/10k/30k segments
python -m bench review --preset nhs-fft-label --backend sentence-transformers   # simulated review curve, 5 seeds (also: example-study)
python -m bench review --preset nhs-fft-label                        # the same with ONNX's vectors
python -m bench repeat --data FILE.csv --text-col C [--warm 4096]   # same themes from a fresh store and a part-warm cache
# rows30k.csv below: the non-empty NHS FFT comments (feedback), v6 framework answers (FFT answer) and Banking77
# train and test queries (text), in that order, as one column `text` (30,817 rows)
nice python -m bench adapt --preset nhs-fft-label --limit 2000 --sizes 100 200 400 1800   # frozen vs adapted encoder, 2 draws
nice python -m bench adapt --preset banking77 --sizes 400; nice python -m bench adapt --preset example-study --sizes 100 200
nice python -m bench adapt --preset nhs-fft-v6 --limit 2000 --sizes 400 1700 --draws 1                   # held out
python -m bench qualcoder --qualcoder-src DIR --python PY          # optional: QualCoder's importer on our .qdpx (docs/compare.md)
```

How the quality figures are computed: both tools cluster the same units (the clusterable segments
Themesift makes of the corpus: segments under `segment.min_words` words are left out for both) from
the same vectors. Themesift runs its own stages with `configs/default.yaml` (a theme's units include
the segments that joined it from the outlier queue, `cluster.join_outliers`, and the themes of the
second pass over what is left, `cluster.second_pass`, and those split from a broad theme,
`cluster.split_broad`, are themes like any other); BERTopic runs with its
defaults and the same UMAP seed; every figure is the mean over five seeds (42 to 46). ARI/NMI use each unit's first human code; "outliers as their own
group" keeps every unit, "assigned only" drops the units a tool left unassigned (coverage says how many
it kept). Best-match F1 is per human code, the best segment-overlap F1 of any theme. Top-k precision
follows each tool's own order (Themesift's rank, second-pass themes last; BERTopic's topic order,
largest first).

Theme names by a local generative model (`describe.name.model`, [naming.md](naming.md)) are not
measured: no model was available on the machines where these benchmarks ran (no network, no local
weights). Where one is, `python -m bench names --config` with that section scores its names beside the
extractive ones on the same themes.
"""



def _of_kind(data: list[dict], kind: str) -> list[dict]:
    return [r for r in data if r.get("kind") == kind]


def current(data: list[dict]) -> list[str]:
    """The page's opening: where each headline figure stands now, one line each, from the results."""
    lines = ["## Current figures", ""]
    quality = [r for r in _of_kind(data, "quality") if "bertopic" in r["methods"] and not r.get("config_file")
               and "(" not in r["dataset"]]
    if quality:
        lines += ["Themesift against BERTopic's defaults on the same vectors (the model's fp32 vectors through "
                  "ONNX Runtime, the default path), mean over five UMAP seeds; in brackets Themesift minus "
                  "BERTopic, mean ± standard error over the seeds:", ""] + verdict_table(quality) + [""]
    for r in _of_kind(data, "embed-speed"):
        cells = [f"{name.split(',')[0]} **{o['vs_best_sentence_transformers']:.2f}x** (cosine {o['mean_cosine']:.4f})"
                 for name, o in r["onnx"].items()]
        lines.append(f"- Embedding speed against the fastest sentence-transformers batch size, {_cpu_of(r)}, "
                     f"{r.get('date')}: " + "; ".join(cells))
    for r in _of_kind(data, "int8-closeness"):
        auto = next((name for name, row in r["recipes"].items() if row["auto_here"] and not row["fp32_layers"]), None)
        if auto:
            row = r["recipes"][auto]
            lines.append(f"- int8 on {r['cpu']['summary']}{_emulated(r)}: `{auto}` (auto here) mean cosine to fp32 "
                         f"{row['comments']['mean']:.4f} on NHS FFT comments, {row['check']['mean']:.4f} on the check "
                         f"sentences: {'used' if row['passes_check'] else 'refused'}")
    for r in _of_kind(data, "flow-speed"):
        ratios = "; ".join(f"{_target(k)} **{v}**" for k, v in r.get("ratios", {}).items())
        lines.append(f"- Whole flow on the NHS FFT comments ({_vectors_of(r)}), {_cpu_of(r)}: {ratios}")
    for r in _of_kind(data, "repeat"):
        c = r["comparison"]
        primer = "a run on them" if r.get("prime") == "run" else "the embedding step"
        lines.append(f"- Same input, same themes, {r['dataset']}{_config_text(r)} ({c['segments']} segments; "
                     f"{r.get('date')}): {c['n_themes']['cold']} themes from a fresh store, {c['n_themes']['warm']} "
                     f"with the first {r['warm_rows']} rows' vectors cached by {primer}; membership "
                     f"**{'identical' if c['membership_identical'] else 'differs'}**")
    for r in _of_kind(data, "learn"):
        cells = ", ".join(f"{p['budget']}: {_best_arm(p):.3f} vs {p['random_labels']:.3f}"
                          for p in r["points"])
        lines.append(f"- What decisions teach the learner, {r['dataset']} (kappa after N decisions, best arm vs "
                     f"random labels; ceiling {r['ceiling']:.3f}): {cells}")
    for r in _of_kind(data, "adapt"):
        cells = ", ".join(f"{p['labelled']}: {p['frozen']:.3f} vs " + " / ".join(
            f"{p[f'adapted_{k}']:.3f}" for k in r["epochs"]) for p in r["points"])
        lines.append(f"- Encoder adaptation, {r['dataset']} (kappa after N random labelled segments, frozen vs adapted "
                     f"at {' / '.join(map(str, r['epochs']))} epochs): {cells}")
    for r in _of_kind(data, "names"):
        m = r["methods"]
        ratio = f", {m['name']['hit1_vs_bertopic']:.2f}x BERTopic's" if "hit1_vs_bertopic" in m["name"] else ""
        lines.append(f"- Theme names, {r['dataset']}: hit@1 {m['name']['hit1']:.3f}{ratio} (old label "
                     f"{m['keyword_label']['hit1']:.3f}" + (f", BERTopic {m['bertopic']['hit1']:.3f}" if "bertopic" in m
                                                              else "") + ")")
    for r in _of_kind(data, "review"):
        points = ", ".join(f"k={p['k']}: {_fmt(p['mean_kappa'])}" for p in r["points"])
        rule = r.get("apply_rule", "centroid")  # results made before the learner record no rule
        lines.append(f"- Simulated review, {r['dataset']}, apply's {rule} rule: mean kappa on untouched segments {points}")
    return lines


def _emulated(r: dict) -> str:
    """Said of a result measured under an emulated CPU (the kernels real, the timings meaningless)."""
    return ", emulated by `qemu-x86_64 -cpu Haswell`" if "--emulated" in r.get("command", "") else ""


def _target(key: str) -> str:
    """A flow-speed ratio's name with issue 17's target (results made before kept the older targets in the key)."""
    from bench.speed import FLOW_TARGETS

    name = key.split(" (target")[0]
    return f"{name} (target <= {FLOW_TARGETS[name]})" if name in FLOW_TARGETS else name


def _cpu_of(r: dict) -> str:
    """The CPU a result was measured on, with its widest integer SIMD flag where recorded."""
    from pipeline.embed.cpu import CpuFeatures

    m = r.get("machine", {})
    cpu = m.get("cpu", "CPU not recorded")
    return f"{cpu} ({CpuFeatures(cpu, tuple(m['cpu_flags'])).widest})" if m.get("cpu_flags") else cpu


def _vectors_of(r: dict) -> str:
    d = r.get("description", "")
    return "int8 vectors" if "precision int8" in d else "fp32 vectors"


def _fmt(value: Any, key: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if key in ("seconds", "n_themes"):  # n_themes: a mean over seeds
        return f"{value:.1f}"
    return f"{value:.3f}"


def _short(code: str | None) -> str:
    """A commit as the findings quote it: 7 hex digits, and whether the checkout had local changes."""
    if not code:
        return "unknown"
    commit, dirty = code.split("+")[0].split(" ")[0], "+dirty" in code or "uncommitted" in code
    return commit[:7] + (" (uncommitted changes)" if dirty else "")


def _provenance(r: dict) -> list[str]:
    m = r.get("machine", {})
    v = r.get("versions", {})
    keys = ("themesift", "torch", "sentence-transformers", "onnxruntime", "bertopic", "umap-learn", "hdbscan")
    return [
        f"- Command: `{r.get('command', '?')}`",
        f"- Machine: {m.get('nproc')} CPUs ({m.get('cpu')}"
        + (f"; flags {' '.join(m['cpu_flags'])}" if m.get("cpu_flags") is not None else "; flags not recorded")
        + f"), {m.get('memory_gib')} GiB; load average at start "
        f"{m.get('load_average_at_start')}; {r.get('date')}; code {_short(r.get('code'))}",
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
              f"({r['embedding']['backend']})"]
    if r.get("seeds"):
        lines.append(f"- Every figure is the mean over UMAP seeds {', '.join(map(str, r['seeds']))} (the same seeds "
                     "for both tools); the top-10 table is seed " + str(r["seeds"][0]) + "'s")
        for key, label in (("mean_best_f1", "mean best-match F1"), ("top10_precision", "top-10 precision")):
            lines.append(f"- {label} per seed: " + "; ".join(
                f"{n} " + ", ".join(_fmt(v, key) for v in methods[n]["per_seed"][key]) for n in names))
    lines.append("")
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


def held_out(r: dict) -> bool:
    """Whether a result's corpus was left out when the defaults were chosen."""
    from bench.datasets import TUNED_ON

    return r["dataset"].split(" ")[0] not in TUNED_ON


def _paired(methods: dict, key: str) -> str:
    """Themesift minus BERTopic seed by seed: mean and standard error, so a gap can be told from seed noise."""
    a, b = (methods[m].get("per_seed", {}).get(key) for m in ("themesift", "bertopic"))
    if not a or not b or len(a) != len(b) or len(a) < 2:
        return ""
    mean, se = _mean_se([x - y for x, y in zip(a, b)])
    return f" ({mean:+.3f} ± {se:.3f})"


def _mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (at least two values)."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in values) / (len(values) - 1) / len(values))


def verdicts(quality: list[dict]) -> list[str]:
    """How to read the gaps, then :func:`verdict_table`."""
    return ["In brackets: Themesift minus BERTopic seed by seed, mean ± standard error over the seeds; a gap",
            "smaller than about twice its standard error could be seed noise. Rows marked \"(config ...)\" ran",
            "with that study config instead of the defaults (the findings say why it is not the default).", "",
            *verdict_table(quality)]


def verdict_table(quality: list[dict]) -> list[str]:
    """One row per corpus: each figure as Themesift vs BERTopic, and whether Themesift is ahead."""
    lines = ["| corpus | mean best-match F1, Themesift vs BERTopic | top-10 precision, Themesift vs BERTopic |",
             "|---|---|---|"]
    for r in sorted(quality, key=held_out):
        m = r["methods"]
        if "bertopic" not in m:
            continue
        cells = []
        for key in ("mean_best_f1", "top10_precision"):
            a, b = m["themesift"][key], m["bertopic"][key]
            diff = round(a - b, 9)
            word = "**better**" if diff > 0 else ("level" if diff == 0 else "**NOT better**")
            cells.append(f"{_fmt(a)} vs {_fmt(b)}: {word}{_paired(m, key)}")
        lines.append(f"| {r['dataset']}{' (held out)' if held_out(r) else ''} | " + " | ".join(cells) + " |")
    return lines


def vector_sensitivity(quality: list[dict]) -> list[str]:
    """Each corpus under every set of vectors it was run with (default settings only): how far the figures
    and the gap between the tools move when the vectors move a little, i.e. what a difference must exceed
    to mean more than the vectors it was measured on."""
    groups: dict[str, list[tuple[str, dict]]] = {}
    for r in quality:
        if r.get("config_file") or "bertopic" not in r["methods"]:
            continue
        name, _, variant = r["dataset"].partition(" (")
        groups.setdefault(name, []).append((variant.rstrip(")") or "ONNX fp32", r["methods"]))
    groups = {k: sorted(v, key=lambda x: x[0] != "ONNX fp32") for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    lines = ["The same corpus and seeds with vectors a little different (cosine to the fp32 vectors: "
             "sentence-transformers 0.9999999, int8 with fp32 down-projections about 0.999, int8 about 0.996). "
             "A gap between the tools smaller than the spread of its own column is within what such changes move.", "",
             "| corpus | vectors | mean best-match F1, Themesift vs BERTopic (gap) | top-10 precision, Themesift vs BERTopic (gap) |",
             "|---|---|---|---|"]
    for name in sorted(groups, key=lambda n: held_out({"dataset": n})):
        for variant, m in groups[name]:
            cells = [f"{_fmt(m['themesift'][k])} vs {_fmt(m['bertopic'][k])} ({m['themesift'][k] - m['bertopic'][k]:+.3f})"
                     for k in ("mean_best_f1", "top10_precision")]
            lines.append(f"| {name} | {variant} | " + " | ".join(cells) + " |")
        fp32 = [m for variant, m in groups[name] if variant in FP32_VECTORS]
        if len(fp32) > 1:
            gaps = {k: [a - b for m in fp32 for a, b in zip(m["themesift"]["per_seed"][k], m["bertopic"]["per_seed"][k])]
                    for k in ("mean_best_f1", "top10_precision")}
            cells = ["gap {:+.3f} ± {:.3f}".format(*_mean_se(g)) for g in gaps.values()]
            lines.append(f"| {name} | **fp32, both backends pooled ({len(gaps['top10_precision'])} layouts)** | "
                         + " | ".join(cells) + " |")
    return lines


#: Vector variants that are the model's own fp32 vectors (they differ by about 1e-7).
FP32_VECTORS = ("ONNX fp32", "sentence-transformers vectors")


def embed_section(r: dict) -> list[str]:
    lines = [f"## Embedding speed: ONNX Runtime vs sentence-transformers on {_cpu_of(r)}", "",
             f"- {r['description']}", ""]
    lines += ["| contender | segments | seconds | segments/s | ratio to the configured sentence-transformers |",
              "|---|---:|---:|---:|---:|"]
    for name, b in r["backends"].items():
        lines.append(f"| {name} | {b['segments']} | {b['seconds']:.1f} | {b['per_second']:.1f} | {b['ratio']:.2f} |")
    lines.append("")
    for name, o in r["onnx"].items():
        lines.append(f"- **{name}** vs the fastest sentence-transformers contender: "
                     f"**{o['vs_best_sentence_transformers']:.2f}x** over all rounds; per round (interleaved "
                     f"chunks) median {o['round_ratio_median']:.2f}, range {o['round_ratio_min']:.2f}-"
                     f"{o['round_ratio_max']:.2f} over {r['rounds']} rounds; cosine to sentence-transformers' "
                     f"vectors: lowest {o['min_cosine']:.4f}, mean {o['mean_cosine']:.5f}")
    lines.append("")
    return lines + _provenance(r) + [""]


def closeness_section(r: dict) -> list[str]:
    cpu = r["cpu"]
    lines = [f"## int8 vectors against fp32 on {cpu['summary']}{_emulated(r)}", "", f"- {r['description']}",
             f"- CPU flags: {', '.join(cpu['flags']) or 'none known'}; `int8_weights: auto` takes **{cpu['auto_weights']}** here",
             "", "| recipe | comments: mean cosine | comments: 5th percentile | comments: least | check sentences: mean | "
             "passes the bar | auto here |", "|---|---:|---:|---:|---:|---|---|"]
    for name, row in r["recipes"].items():
        c, k = row["comments"], row["check"]
        lines.append(f"| {name} | {c['mean']:.4f} | {c['p05']:.4f} | {c['min']:.4f} | {k['mean']:.4f} | "
                     f"{'yes' if row['passes_check'] else '**refused**'} | {'yes' if row['auto_here'] else ''} |")
    return lines + [""] + _provenance(r) + [""]


def _best_arm(p: dict) -> float:
    """The best of the arms a coder could choose (review with or without moves, review + teach, following
    the hint, teach) at one budget."""
    return max(p[a] for a in ("review", "review_no_moves", "review_teach", "hinted", "teach") if a in p)


def learn_section(r: dict, results: Path = RESULTS) -> list[str]:
    """The curve as a table, and as an SVG written beside the results (``results``)."""
    from bench.plot import ARMS, curve_svg

    svg = f"learn-{_slug_of(r['dataset'])}.svg"
    (results / svg).write_text(curve_svg(r), encoding="utf-8")
    lines = [f"## What decisions teach the learner: {r['dataset']}", "", f"![learning curve]({results.name}/{svg})", "",
             f"- {r['n_units']} segments, {r['n_codes']} human codes; UMAP seeds {', '.join(map(str, r['seeds']))} "
             f"(each point the mean over them); ceiling (the same learner on every other segment, 5-fold): "
             f"**{r['ceiling']:.3f}**; rules in [`bench/learning.py`](../bench/learning.py)", "",
             "| decisions | review | review, no moves | review + teach | following the hint | teach | old rule (centroids) "
             "| random labels | best / random | random labels, plain LR | best / plain LR | best / ceiling "
             "| prototypes (codes known) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in r["points"]:
        best = _best_arm(p)
        ratio = f"{best / p['random_labels']:.2f}" if p["random_labels"] > 0 else "n/a"
        cell = {a: f"{p[a]:.3f}" if a in p else "-" for a, _, _ in ARMS}  # results made before an arm have none of it
        plain = p.get("plain_random_labels")
        plain_ratio = "-" if plain is None else f"{best / plain:.2f}" if plain > 0 else "n/a"
        lines.append(f"| {p['budget']} | {cell['review']} | {cell['review_no_moves']} | {cell['review_teach']} | "
                     f"{cell['hinted']} | {cell['teach']} | {cell['old_rule']} | {cell['random_labels']} | {ratio} | "
                     f"{cell['plain_random_labels']} | {plain_ratio} | {best / r['ceiling']:.2f} | "
                     f"{cell['prototypes']} |")
    verdicts = []
    for p in r["points"]:
        best = _best_arm(p)
        if p["budget"] in (20, 50, 100):
            ok = best >= 2 * p["random_labels"]
            reach = " (unreachable: above the ceiling)" if 2 * p["random_labels"] > r["ceiling"] else ""
            verdicts.append(f"{p['budget']}: {'met' if ok else 'not met'} ({best:.3f} vs 2 x {p['random_labels']:.3f})"
                            + reach)
        if p["budget"] == 400:
            ok = best >= 0.9 * r["ceiling"]
            verdicts.append(f"400: {'met' if ok else 'not met'} ({best:.3f} vs 0.9 x {r['ceiling']:.3f})")
    if verdicts:
        lines += ["", "Targets (issue 20: at least 2x random labels at 20, 50 and 100 decisions; 0.9 of the ceiling "
                      "at 400): " + "; ".join(verdicts) + "."]
    return lines + [""] + _provenance(r) + [""]


def adapt_section(r: dict) -> list[str]:
    """Frozen against adapted vectors at each number of labelled segments, with what adapting cost."""
    epochs = [str(k) for k in r["epochs"]]
    lines = [f"## Encoder adaptation: {r['dataset']}", "",
             f"- {r['n_units']} segments, {r['n_codes']} human codes; {r['draws']} random draws of labelled segments per "
             f"row (each point the mean, range in brackets); the learner on the frozen vectors against the same learner "
             f"on the vectors of the encoder fine-tuned on the same labelled segments (with a linear head giving each "
             f"segment its codes, binary cross-entropy; batch {r['settings']['adapt_batch_size']}, learning rate "
             f"{r['settings']['adapt_learning_rate']}, head {r['settings']['adapt_head_learning_rate']}); kappa on the "
             "segments not labelled; rules in [`bench/adapt.py`](../bench/adapt.py)", "",
             "| labelled segments | frozen | " + " | ".join(f"adapted, {k} epochs | train + re-embed s" for k in epochs) + " |",
             "|---:|---:|" + "---:|---:|" * len(epochs)]

    def spread(p: dict, key: str) -> str:
        values = p[f"{key}_per_draw"]
        return f"{p[key]:.3f} ({min(values):.3f}-{max(values):.3f})"

    for p in r["points"]:
        cells = [f"{spread(p, f'adapted_{k}')} | {p[f'train_seconds_{k}']:.0f} + {p[f'embed_seconds_{k}']:.0f}"
                 for k in epochs]
        lines.append(f"| {p['labelled']} | {spread(p, 'frozen')} | " + " | ".join(cells) + " |")
    return lines + [""] + _provenance(r) + [""]


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def names_section(r: dict) -> list[str]:
    """``python -m bench names``: hit@1 / hit@3 of each naming, and the first 15 ranked themes to judge by eye."""
    model = r.get("name_model")  # results made before the model namer have none
    names = {"name": "Themesift's name", "keyword_label": "old keyword-pair label", "bertopic": "BERTopic's top words",
             "extractive_name": "Themesift's extractive name"}
    lines = [f"## Theme names against the human codes: {r['dataset']}", "",
             f"- {r['n_units']} segments, {r['n_codes']} human codes; UMAP seeds {', '.join(map(str, r['seeds']))}; "
             f"themes with purity >= {r['min_purity']}; rules in [`bench/names.py`](../bench/names.py)"]
    if model:
        about = model.get("model") or {}
        which = about.get("folder") or f"{about.get('model')} on {about.get('server')} (version {about.get('server_version')})"
        names["name"] = "Themesift's name by the local model"
        lines.append(f"- Names by the local model {which}, prompt sha256 {model['prompt']['sha256'][:12]}; "
                     f"{model['named']} of {model['themes']} themes named by it (seed {r['seeds'][0]}), the rest extractive")
    lines += ["", "| naming | themes scored | hit@1 | hit@3 |", "|---|---:|---:|---:|"]
    for key, m in r["methods"].items():
        lines.append(f"| {names.get(key, key)} | {m['n_usable']:.0f} | {m['hit1']:.3f} | {m['hit3']:.3f} |")
    if "hit1_vs_bertopic" in r["methods"]["name"]:
        ratio = r["methods"]["name"]["hit1_vs_bertopic"]
        lines += ["", f"hit@1 is **{ratio:.2f}x** BERTopic's (target 1.5x: {'met' if ratio >= 1.5 else 'not met'})."]
    lines += ["", f"The first {len(r['table'])} ranked themes (seed {r['seeds'][0]}); human code = the code most of "
                  "the theme's segments carry, with that share:", "",
              "| # | old label | name | description | human code (share) |", "|---:|---|---|---|---|"]
    for t in r["table"]:
        lines.append(f"| {t['rank']} | {_cell(t['keyword_label'])} | {_cell(t['name'])} | {_cell(t['description'])} | "
                     f"{_cell(t['human_code'])} ({t['purity']:.2f}) |")
    return lines + [""] + _provenance(r) + [""]


def flow_section(r: dict) -> list[str]:
    lines = [f"## The whole flow: cold and warm runs, and BERTopic end to end, on {_cpu_of(r)}", "",
             f"- {r['description']}", ""]
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
    lines += [""] + [f"- {_target(k)}: **{v}**" for k, v in r.get("ratios", {}).items()]
    if r.get("rounds"):
        for key in r["ratios"]:
            lines.append(f"  - {_target(key).split(' (')[0]}, round by round: " + ", ".join(f"{x[key]:.3f}" for x in r["rounds"]))
        lines.append(f"  - the stage table is round {r['table_round']} (the median warm / cold ratio)")
    if r.get("warm_up_seconds"):
        lines.append("- Paid once per process before timing (not in the table): " +
                     ", ".join(f"{k} {v:.1f} s" for k, v in r["warm_up_seconds"].items()))
    lines.append("")
    return lines + _provenance(r) + [""]


def _config_text(r: dict) -> str:
    """A result's ``--config`` file, inline (``embed: backend: sentence-transformers``); empty for the defaults."""
    config = r.get("config_file")
    return f" [`{' '.join(config['text'].split())}`]" if config else ""


def repeat_section(r: dict) -> list[str]:
    """``python -m bench repeat``: the same CSV from a fresh store and from a part-warm embedding cache."""
    c = r["comparison"]
    primer = "a suggest run on them alone" if r.get("prime") == "run" else "the embedding step alone"
    lines = [f"## Same input, same themes: {r['dataset']} from a fresh store, and with its first {r['warm_rows']} "
             f"rows' vectors cached by {primer}{_config_text(r)}", "",
             f"- {r['description']}", "",
             "| run | seconds | themes | outlier queue | texts embedded by the run |", "|---|---:|---:|---:|---:|"]
    for name, run in r["runs"].items():
        embedded = (run.get("embedding") or {}).get("newly_embedded", "")
        lines.append(f"| {name} | {run['seconds']:.1f} | {run['n_themes']} | {c['n_outliers'][name]} | {embedded} |")
    lines += ["", f"- Membership (every segment with the same other segments, or in the queue in both): "
              f"**{'identical' if c['membership_identical'] else 'differs'}** ({c['segments_with_same_group']} of "
              f"{c['segments']} segments; adjusted Rand index {c['adjusted_rand_index']:.4f}); names and order "
              f"{'identical' if c['themes_identical'] else 'differ'}.",
              f"- Vectors of the same texts in the two stores: {c['vectors_differing']} of {c['vectors_compared']} "
              f"differ (largest difference {c['vectors_max_abs_difference']:.2g}).",
              f"- The warm store was primed in {r['prime_seconds']:.1f} s (not in the warm run's seconds).", ""]
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
              f"{fit['extrapolated_1m_hours']:.1f} hours on this machine "
              f"({fit.get('extrapolated_1m_embed_hours', float('nan')):.1f} h embedding, linear at the measured rate; "
              f"{fit.get('extrapolated_1m_post_embed_hours', float('nan')):.1f} h clustering onwards, by the fitted power law) "
              f"and about {fit['extrapolated_1m_gib']:.1f} GiB peak memory by the fitted memory law. UMAP's "
              "neighbour graph and the 1M x 384 float32 vectors (1.5 GiB) alone make the memory figure a lower bound.", ""]
    return lines + _provenance(r) + [""]


def _slug_of(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def small_section(r: dict) -> list[str]:
    """The small-studies table (``python -m bench small``, issue 24) with the targets said met or not."""
    from bench.small import f1_target_met, ratio

    def f(x: float) -> str:
        return "-" if x is None or x != x else f"{x:.2f}"  # nan (null in JSON): no theme to take a top 10 from

    rows = r["rows"]
    counted = bool(rows) and "codes_counted" in rows[0]  # results before 2026-12-07 lack it
    title = "## Small studies: random subsets (issue 24)" + (f" of {', '.join(r['data'])}" if r.get("data") else "")
    if not rows:
        return [title, "", f"`{r.get('command')}`: no row; the corpus has fewer segments than every size asked.", ""]
    lines = [title, "",
             f"`{r.get('command', 'python -m bench small')}`: random subsets of each preset ({rows[0]['draws']} draws a row, "
             "draw d = subset seed d, UMAP seed 42); for the example study whole participants. Themesift beside "
             "BERTopic's defaults on the same vectors. *matched*: share of the human codes with at least "
             f"{r['min_code_segments']} segments in the subset that some theme matches at F1 >= {r['match_f1']}. "
             "Targets: F1 >= 1.2x BERTopic's and matched >= 0.5. A top-10 of '-': in some draw the tool found no "
             "theme at all. Ten of the ten example participants is the whole study, the same in every draw."
             + (" Two references (neither a method): *any cluster*, the matched share when every node of a Ward "
                "tree over the subset's vectors may serve as a theme (no clustering of these vectors can pass it); "
                "*supervised*, the share the learner trained 5-fold on the subset's own codes gives at F1 >= "
                f"{r['match_f1']} (what the codes' labels teach)." if "matched_any_cluster" in rows[0] else ""), "",
             "| preset | size | segments | F1 Themesift | F1 BERTopic | ratio | top-10 T | top-10 B | themes T | themes B "
             "| matched T | matched B |" + (" codes counted |" if counted else "") + " any cluster | supervised |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if counted else "") + "---:|---:|"]
    for x in rows:
        t, b = x["themesift"], x["bertopic"]
        size = f"{x['size']} {'participants' if x['by'] == 'participants' else ''}".strip()
        lines.append(f"| {x['preset']} | {size} | {x['n_units']:.0f} | {f(t['mean_best_f1'])} | {f(b['mean_best_f1'])} | "
                     f"{ratio(x)} | {f(t['top10_precision'])} | {f(b['top10_precision'])} | "
                     f"{t['n_themes']:.1f} | {b['n_themes']:.1f} | {f(t['matched_share'])} | {f(b['matched_share'])} | "
                     + (f"{x['codes_counted']:.1f} | " if counted else "") +
                     f"{f(x.get('matched_any_cluster', float('nan')))} | {f(x.get('matched_supervised', float('nan')))} |")
    f1_met = sum(f1_target_met(x) for x in rows)
    matched_met = sum(x["themesift"]["matched_share"] >= 0.5 for x in rows)
    whole = "met as a whole" if f1_met == matched_met == len(rows) else "not met as a whole"
    lines += ["", f"F1 >= 1.2x BERTopic's: met in {f1_met} of {len(rows)} rows. At least half the codes matched: met in "
              f"{matched_met} of {len(rows)} rows ({whole})."]
    if "matched_any_cluster" in rows[0]:
        within = sum(x["matched_any_cluster"] >= 0.5 for x in rows)
        lines.append(f"Any cluster of these vectors could match half the codes in {within} of {len(rows)} rows: "
                     "where it cannot, the target asks for more than clustering these vectors can give.")
    lines += [""] + _provenance(r) + [""]
    return lines


def render(results: Path = RESULTS) -> str:
    data = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results.glob("*.json"))]
    quality = [r for r in data if r.get("kind") == "quality"]
    lines = HEADER.splitlines() + [""] + current(data) + [""] + METHOD.splitlines() + [""]
    if quality:
        lines += ["## Quality against human codes (Themesift vs BERTopic defaults, same embeddings)", ""]
        lines += ["Does Themesift beat BERTopic's defaults where the issue asks it to?", ""] + verdicts(quality) + [""]
        sensitivity = vector_sensitivity(quality)
        if sensitivity:
            lines += ["### How much the figures move with the vectors", ""] + sensitivity + [""]
        for r in quality:
            lines += quality_section(r)
    for kind, section in (("names", names_section), ("learn", lambda r: learn_section(r, results)),
                          ("embed-speed", embed_section), ("int8-closeness", closeness_section),
                          ("adapt", adapt_section), ("flow-speed", flow_section), ("repeat", repeat_section),
                          ("growth", growth_section), ("small", small_section)):
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
        seeds = r.get("seeds", [])
        lines += [f"### {r['dataset']}", "",
                  f"- {r['n_segments']} segments with human codes; {_fmt(r['n_themes_suggested'], 'n_themes')} suggestions on "
                  f"average; one review per UMAP seed ({', '.join(map(str, seeds))}), each on its own run and store, "
                  f"every figure the mean over the seeds (range in brackets); embed backend {r.get('embed_backend')}", "",
                  "| suggestions reviewed (k) | decisions | confirmed | untouched segments | mean kappa | macro-F1 |",
                  "|---:|---:|---:|---:|---:|---:|"]

        def spread(p: dict, key: str) -> str:
            values = p.get(f"{key}_per_seed")
            return f"{_fmt(p[key])} ({_fmt(min(values))}-{_fmt(max(values))})" if values else _fmt(p[key])

        for p in r["points"]:
            lines.append(f"| {p['k']} | {p['decisions']:.1f} | {p['confirmed']:.1f} | {p['n_units']:.0f} | "
                         f"{spread(p, 'mean_kappa')} | {spread(p, 'macro_f1')} |")
        lines += [""] + _provenance(r) + [""]
    return "\n".join(lines).rstrip() + "\n"


def write(results: Path = RESULTS, doc: Path = DOC) -> Path:
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(results), encoding="utf-8")
    return doc
