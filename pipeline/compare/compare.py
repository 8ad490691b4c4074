"""Compare codings: humans with each other, and the machine as one more coder.

Pure logic over segment codings (see ``pipeline.compare.agreement`` for the figures themselves). The unit is
the segment; every coder is compared on the same units: the participant segments a run clustered.

* Human vs human: per code, the 2x2 table, percent agreement, Cohen's kappa and Krippendorff's alpha
  (nominal, each code its own yes/no variable), for each pair and (3+ humans) all together.
* Machine vs each human: the machine's themes are first mapped one-to-one onto that human's codes by
  Hungarian assignment on segment overlap (F1); unmatched themes keep their own names, so they count
  as codings the human did not make. Then the same per-code figures on the human's codes, plus
  clustering figures (ARI, NMI, best-match F1 per code, share of codes recovered) and the precision
  of the top-k ranked themes.
* All coders together (2+ humans and the machine): alpha with the machine mapped onto the humans'
  pooled coding (a segment carries a code when any human gave it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from pipeline.compare.agreement import (
    AgreementReport,
    ClusterScores,
    Coding,
    Partition,
    ThemeMatch,
    TopKPrecision,
    all_codes,
    cluster_scores,
    compare_codings,
    match_themes,
    natural_key,
    partition_to_coding,
    relabel,
    top_k_precision,
)

MACHINE = "machine"
MAPPING_RULE = (
    "Machine themes were mapped one-to-one onto each human coder's codes by Hungarian assignment "
    "(scipy linear_sum_assignment) maximising the summed segment-overlap F1; pairs with no shared "
    "segment stay unmatched, and unmatched themes keep their own names (they count as codings the "
    "human did not make). No confirmed codebook names the themes yet."
)


@dataclass
class MachineComparison:
    """The machine against one human coder."""

    human: str
    match: ThemeMatch
    report: AgreementReport
    clusters: ClusterScores
    top_k: TopKPrecision
    themes: list[str]
    codes: list[str]
    overlap: np.ndarray  # themes x codes: segments carrying both
    f1: np.ndarray  # themes x codes: segment-overlap F1


@dataclass
class Comparison:
    """Everything the compare command prints, tabulates and plots."""

    units: list[Hashable]
    cases: dict[Hashable, str | None]
    humans: list[str]
    human_codes: list[str]
    human_report: AgreementReport | None
    machine: list[MachineComparison] = field(default_factory=list)
    all_report: AgreementReport | None = None
    all_match: ThemeMatch | None = None
    has_machine: bool = False
    ranking: list[str] = field(default_factory=list)
    coverage: list[dict[str, Any]] = field(default_factory=list)
    min_positive: int = 5
    kinds: dict[str, str] = field(default_factory=dict)  # stored coder -> human | machine

    def pairs(self) -> list[tuple[str, ...]]:
        """The coder pairs compared, humans first, then machine vs each human."""
        out: list[tuple[str, ...]] = []
        if self.human_report:
            out += [o.coders for o in self.human_report.overall if len(o.coders) == 2]
        out += [(MACHINE, m.human) for m in self.machine]
        return out

    def report_for(self, pair: Sequence[str]) -> AgreementReport:
        pair = tuple(pair)
        if pair[0] == MACHINE:
            return next(m.report for m in self.machine if m.human == pair[1])
        assert self.human_report is not None
        return self.human_report

    def groups(self) -> list[tuple[AgreementReport, tuple[str, ...]]]:
        """(report, coders) for every group with figures: pairs, all humans (3+), all coders."""
        out = [(self.report_for(p), tuple(p)) for p in self.pairs()]
        if self.human_report:
            out += [(self.human_report, o.coders) for o in self.human_report.overall if len(o.coders) > 2]
        if self.all_report:
            out += [(self.all_report, self.all_report.overall[-1].coders)]
        return out

    def agreement_rows(self) -> list[dict[str, Any]]:
        """Per-code and overall rows of every group, with what was compared and how it was mapped."""
        rows: list[dict[str, Any]] = []
        for report, coders in self.groups():
            key = "|".join(coders)
            if MACHINE not in coders:
                by_name = [c for c in coders if self.kinds.get(c) == "machine"]
                mapping = ("none: codes compared by name" + (f" ({', '.join(by_name)} coded with the confirmed "
                                                             "codebook)" if by_name else ""))
            elif len(coders) == 2:
                mapping = f"hungarian on segment-overlap F1 against {coders[1]}"
            else:
                mapping = "hungarian on segment-overlap F1 against the humans' pooled coding"
            for row in report.to_rows():
                if row["coders"] == key:
                    rows.append({"comparison": " vs ".join(coders), "mapping": mapping, **row})
        return rows


def pooled(codings: Sequence[Coding]) -> dict[Hashable, frozenset[str]]:
    """A unit carries a code when any of ``codings`` gave it."""
    out: dict[Hashable, set[str]] = {}
    for coding in codings:
        for u, codes in coding.items():
            out.setdefault(u, set()).update(codes)
    return {u: frozenset(c) for u, c in out.items()}


def _overlap_matrix(machine: Coding, human: Coding, units: Sequence[Hashable], themes: list[str],
                    codes: list[str]) -> np.ndarray:
    t_idx = {t: i for i, t in enumerate(themes)}
    c_idx = {c: j for j, c in enumerate(codes)}
    counts = np.zeros((len(themes), len(codes)), dtype=int)
    for u in units:
        for t in machine.get(u, ()):
            for c in human.get(u, ()):
                if t in t_idx and c in c_idx:
                    counts[t_idx[t], c_idx[c]] += 1
    return counts


def coverage_by_case(units: Sequence[Hashable], cases: Mapping[Hashable, str | None],
                     codings: Mapping[str, Coding]) -> list[dict[str, Any]]:
    """Per participant: segments compared and the share each coder coded (machine: put in a theme)."""
    by_case: dict[str, list[Hashable]] = {}
    for u in units:
        by_case.setdefault(cases.get(u) or "(no case)", []).append(u)
    rows = []
    for case in sorted(by_case, key=natural_key):
        us = by_case[case]
        row: dict[str, Any] = {"case": case, "n_units": len(us)}
        for name, coding in codings.items():
            coded = sum(1 for u in us if coding.get(u))
            row[f"{name}_coded"] = coded
            row[f"{name}_share"] = coded / len(us) if us else math.nan
        rows.append(row)
    return rows


def compare_study(
    units: Sequence[Hashable],
    cases: Mapping[Hashable, str | None],
    humans: Mapping[str, Coding],
    partition: Partition | None = None,
    ranking: Sequence[str] | None = None,
    top_k: int = 10,
    min_positive: int = 5,
    kinds: Mapping[str, str] | None = None,
    recovered_f1: float = 0.5,
) -> Comparison:
    """All figures for one study: human pairs, machine vs each human, all together, coverage.

    ``units``: the segment ids compared; codings outside them are ignored. ``partition``: the
    machine's theme (code name) per unit, None for the outlier queue; leave out to compare humans
    only. ``ranking``: the machine's themes best first (for top-k precision). ``kinds``: stored coders
    of kind ``machine`` (the confirmed codebook applied by ``themesift apply``) are compared like the
    humans, by code name: their codes are the names the coders gave the themes, so no matching is needed.
    """
    units = list(dict.fromkeys(units))
    unit_set = set(units)
    humans = {h: {u: c for u, c in coding.items() if u in unit_set and c} for h, coding in humans.items()}
    if MACHINE in humans:
        raise ValueError(f"'{MACHINE}' is the machine's coder name; rename that human coder")
    names = list(humans)
    human_codes = all_codes(humans.values(), units)
    human_report = (compare_codings(humans, units, human_codes, min_positive=min_positive)
                    if len(names) >= 2 else None)
    result = Comparison(units=units, cases=dict(cases), humans=names, human_codes=human_codes,
                        human_report=human_report, min_positive=min_positive, kinds=dict(kinds or {}))
    coverage_codings: dict[str, Coding] = dict(humans)
    people = [h for h in names if result.kinds.get(h) != "machine"]
    if partition is not None:
        partition = {u: partition.get(u) for u in units}
        machine = partition_to_coding(partition)
        coverage_codings[MACHINE] = machine
        result.has_machine = True
        result.ranking = list(ranking) if ranking is not None else []
        for h in people:
            human = humans[h]
            codes = all_codes([human], units)
            match = match_themes(machine, human, units, method="hungarian")
            mapped = relabel(machine, match.mapping)
            report = compare_codings({MACHINE: mapped, h: human}, units, codes, min_positive=min_positive)
            themes = all_codes([machine], units)
            if result.ranking:
                order = {t: i for i, t in enumerate(result.ranking)}
                themes.sort(key=lambda t: (order.get(t, len(order)), t))
            overlap = _overlap_matrix(machine, human, units, themes, codes)
            sizes_t = np.array([sum(1 for u in units if t in machine.get(u, ())) for t in themes])
            sizes_c = np.array([sum(1 for u in units if c in human.get(u, ())) for c in codes])
            denom = sizes_t[:, None] + sizes_c[None, :]
            f1 = np.divide(2 * overlap, denom, out=np.zeros(overlap.shape, dtype=float), where=denom > 0)
            result.machine.append(MachineComparison(
                human=h, match=match, report=report,
                clusters=cluster_scores(partition, human, units, recovered_f1=recovered_f1),
                top_k=top_k_precision(partition, human, units, top_k, ranking=result.ranking or None),
                themes=themes, codes=codes, overlap=overlap, f1=f1,
            ))
        if len(names) >= 2 and people:
            together = pooled([humans[h] for h in people])
            result.all_match = match_themes(machine, together, units, method="hungarian")
            group = {**humans, MACHINE: relabel(machine, result.all_match.mapping)}
            result.all_report = compare_codings(group, units, human_codes, min_positive=min_positive)
    result.coverage = coverage_by_case(units, cases, coverage_codings)
    return result


def fmt(value: float | None, digits: int = 2) -> str:
    """A figure for people: '-' when undefined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def summary_lines(result: Comparison) -> list[str]:
    """The per-code table the CLI prints: kappa and alpha for each pair, then the means."""
    pairs = result.pairs()
    if not pairs:
        return ["nothing to compare: import at least one human coding (themesift import codings FILE)"]
    width = max([len(c) for c in result.human_codes] + [20])
    heads = [" vs ".join(p) for p in pairs]
    widths = [max(15, len(h) + 2) for h in heads]
    line1 = f"{'':<{width}}" + "".join(f"{h:>{w}}" for h, w in zip(heads, widths))
    line2 = f"{'code':<{width}}" + "".join(f"{'kappa  alpha':>{w - 1}} " for w in widths)
    lines = [line1, line2, "-" * len(line2)]
    rare_seen = False
    for code in result.human_codes:
        cells = []
        for p, w in zip(pairs, widths):
            report = result.report_for(p)
            if code not in report.codes:
                cells.append(f"{'(not used)':>{w - 1}} ")
                continue
            c = report.get(p, code)
            mark = "*" if c.too_rare else " "
            rare_seen |= c.too_rare
            cells.append(f"{fmt(c.kappa):>{w - 8}} {fmt(c.alpha):>6}{mark}")
        lines.append(f"{code:<{width}}" + "".join(cells))
    lines.append("-" * len(line2))
    for label, attr in (("mean", None), ("exact-set agreement", "exact_set_agreement"),
                        ("percent agreement", "mean_percent_agreement")):
        cells = []
        for p, w in zip(pairs, widths):
            o = result.report_for(p).summary(p)
            if attr is None:
                cells.append(f"{fmt(o.mean_kappa):>{w - 8}} {fmt(o.mean_alpha):>6} ")
            else:
                cells.append(f"{fmt(getattr(o, attr)):>{w - 1}} ")
        lines.append(f"{label:<{width}}" + "".join(cells))
    if result.all_report:
        o = result.all_report.overall[-1]
        lines.append(f"all coders together ({', '.join(o.coders)}): mean alpha {fmt(o.mean_alpha)}, "
                     f"exact-set agreement {fmt(o.exact_set_agreement)}")
    if result.human_report:
        for o in result.human_report.overall:
            if len(o.coders) > 2:
                who = ("all humans together" if not any(result.kinds.get(c) == "machine" for c in o.coders)
                       else "all stored coders together")
                lines.append(f"{who} ({', '.join(o.coders)}): mean alpha {fmt(o.mean_alpha)}")
    if rare_seen:
        lines.append(f"* too rare to judge: fewer than {result.min_positive} segments carry the code "
                     "for one of the coders")
    for m in result.machine:
        c = m.clusters
        lines.append(
            f"machine vs {m.human}: {len(m.match.pairs)} themes matched to codes (mean F1 {fmt(m.match.mean_f1)}), "
            f"{len(m.match.unmatched_themes)} themes and {len(m.match.unmatched_codes)} codes unmatched; "
            f"ARI {fmt(c.ari_all)}, NMI {fmt(c.nmi_all)}, codes recovered (best F1 >= {c.recovered_f1:g}) "
            f"{fmt(c.recovered_share)}, top-{m.top_k.k} precision {fmt(m.top_k.precision)}"
        )
    return lines
