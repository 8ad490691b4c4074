"""Inter-coder agreement and clustering figures for segment codings.

Why this module exists: teams judge Themesift's suggestions by comparing them with human coding,
and human coders with each other. Those comparisons only mean something when the unit, the
mapping from machine themes to human codes and the handling of rare codes are stated, so every
figure here says what it was computed on.

Conventions used throughout:

* A *unit* is a hashable id, normally a segment id. The unit of analysis is therefore the segment
  (not the character, as in NVivo).
* A *coding* is ``Mapping[unit, frozenset[str]]``: multi-label; a unit missing from the mapping
  was coded with nothing. Only the units passed in ``units`` are looked at.
* Each code is treated as its own binary variable (coded / not coded) per unit.
* A *partition* is ``Mapping[unit, str | None]``: the machine's one theme per unit, ``None`` for an
  outlier (unassigned unit).
"""

from __future__ import annotations

import math
import re
import warnings
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Collection, Hashable, Iterable, Mapping, Sequence

import krippendorff
import numpy as np

Unit = Hashable
Coder = Hashable
Coding = Mapping[Unit, frozenset[str]]
Partition = Mapping[Unit, "str | None"]
Selection = tuple[Hashable, int, int, str, Hashable]  # (source_key, start, end, code, coder)
Segment = tuple[Hashable, Hashable, int, int]  # (segment_id, source_key, start, end)

_EMPTY: frozenset[str] = frozenset()
_EPS = 1e-12

UNIT_OF_ANALYSIS = "segment"


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _unique(units: Iterable[Unit]) -> list[Unit]:
    """Units in first-seen order without duplicates, so counts are not inflated by repeats."""
    return list(dict.fromkeys(units))


def _codes_at(coding: Coding, unit: Unit) -> frozenset[str]:
    return frozenset(coding.get(unit, _EMPTY))


def _mean(values: Iterable[float | None]) -> float:
    """Mean ignoring None/NaN; NaN when nothing is left (an undefined figure, not zero)."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _f1(a: Collection[Unit], b: Collection[Unit]) -> float:
    """Segment-overlap F1 (Dice) of two unit sets: 2|a & b| / (|a| + |b|)."""
    a, b = set(a), set(b)
    total = len(a) + len(b)
    return 2 * len(a & b) / total if total else 0.0


def _units_with(coding: Coding, units: Sequence[Unit], code: str) -> set[Unit]:
    return {u for u in units if code in coding.get(u, _EMPTY)}


_NUM = re.compile(r"(\d+)")


def natural_key(text: str | None) -> tuple:
    """Sort key putting P2 before P10."""
    return tuple(int(p) if p.isdigit() else p.casefold() for p in _NUM.split(text or ""))


def all_codes(codings: Iterable[Coding], units: Iterable[Unit]) -> list[str]:
    """Sorted codes used on ``units`` in any of ``codings`` (the default code list)."""
    units = _unique(units)
    found: set[str] = set()
    for coding in codings:
        for u in units:
            found |= _codes_at(coding, u)
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# Two coders, one code: the 2x2 table, percent agreement, Cohen's kappa
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table2x2:
    """Counts of units for one code and two coders A and B."""

    both: int
    only_a: int
    only_b: int
    neither: int

    @property
    def n(self) -> int:
        return self.both + self.only_a + self.only_b + self.neither


def binary_table(a: Coding, b: Coding, units: Iterable[Unit], code: str) -> Table2x2:
    """Cross-tabulate whether coder A and coder B put ``code`` on each unit."""
    both = only_a = only_b = neither = 0
    for u in _unique(units):
        in_a = code in a.get(u, _EMPTY)
        in_b = code in b.get(u, _EMPTY)
        if in_a and in_b:
            both += 1
        elif in_a:
            only_a += 1
        elif in_b:
            only_b += 1
        else:
            neither += 1
    return Table2x2(both, only_a, only_b, neither)


def percent_agreement(table: Table2x2) -> float:
    """(both + neither) / n. Inflated by uncoded units, so always report kappa/alpha beside it.

    NaN for an empty table.
    """
    return (table.both + table.neither) / table.n if table.n else math.nan


def expected_agreement(table: Table2x2) -> float:
    """Chance agreement pe = pA(yes) pB(yes) + pA(no) pB(no) (Cohen's kappa)."""
    if not table.n:
        return math.nan
    pa = (table.both + table.only_a) / table.n
    pb = (table.both + table.only_b) / table.n
    return pa * pb + (1 - pa) * (1 - pb)


def kappa_is_degenerate(table: Table2x2) -> bool:
    """True when pe == 1 (both coders constant and equal): kappa is 0/0 and set by convention."""
    pe = expected_agreement(table)
    return not math.isnan(pe) and pe >= 1 - _EPS


def cohen_kappa(table: Table2x2) -> float:
    """Cohen's kappa (po - pe) / (1 - pe).

    When pe == 1 kappa is 0/0; by convention it is 1.0 if po == 1 else 0.0 (see
    :func:`kappa_is_degenerate`, reported as ``kappa_undefined``). NaN for an empty table.
    """
    po = percent_agreement(table)
    pe = expected_agreement(table)
    if math.isnan(po):
        return math.nan
    if pe >= 1 - _EPS:
        return 1.0 if po >= 1 - _EPS else 0.0
    return (po - pe) / (1 - pe)


# ---------------------------------------------------------------------------------------------
# Krippendorff's alpha (nominal) on the binary per-code variable, 2+ coders, missing data
# ---------------------------------------------------------------------------------------------


def _reliability_matrix(
    codings: Sequence[Coding],
    units: Sequence[Unit],
    code: str,
    seen: Sequence[Collection[Unit] | None] | None,
) -> np.ndarray:
    """coders x units matrix of 1.0 / 0.0, NaN where that coder did not see the unit."""
    data = np.zeros((len(codings), len(units)), dtype=float)
    for i, coding in enumerate(codings):
        saw = None if seen is None else seen[i]
        for j, u in enumerate(units):
            if saw is not None and u not in saw:
                data[i, j] = np.nan
            else:
                data[i, j] = 1.0 if code in coding.get(u, _EMPTY) else 0.0
    return data


def _alpha(data: np.ndarray) -> tuple[float, bool]:
    """Alpha and whether it was undefined (set by convention).

    Only units with 2+ values are pairable. No pairable unit: NaN. Pairable values all equal:
    alpha is 0/0; 1.0 by the same convention as kappa (perfect observed agreement).
    """
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    values = data[:, pairable]
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, True
    if np.all(values == values[0]):
        return 1.0, True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(
            krippendorff.alpha(
                reliability_data=data, level_of_measurement="nominal", value_domain=[0.0, 1.0]
            )
        )
    return value, False


def krippendorff_alpha(
    codings: Sequence[Coding],
    units: Iterable[Unit],
    code: str,
    seen: Sequence[Collection[Unit] | None] | None = None,
) -> float:
    """Krippendorff's alpha (nominal) for ``code`` as a yes/no variable over 2+ coders.

    ``seen[i]`` is the set of units coder ``i`` looked at (``None`` = all); unseen units are
    missing data (NaN), not "coded with nothing". Computed by the ``krippendorff`` package; when
    all pairable values are equal alpha is 0/0 and returned as 1.0 by convention.
    """
    units = _unique(units)
    return _alpha(_reliability_matrix(list(codings), units, code, seen))[0]


# ---------------------------------------------------------------------------------------------
# Report over coders and codes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeAgreement:
    """Agreement on one code for one group of coders (a pair, or all coders together).

    The 2x2 counts and kappa are filled in for pairs only (None for groups of 3+).
    ``percent_agreement`` for a group is the share of units where all coders agree.
    """

    coders: tuple[Coder, ...]
    code: str
    n_units: int
    positives: tuple[int, ...]
    percent_agreement: float
    alpha: float
    alpha_undefined: bool
    too_rare: bool
    table: Table2x2 | None = None
    kappa: float | None = None
    kappa_undefined: bool | None = None


@dataclass(frozen=True)
class OverallAgreement:
    """Figures over all codes for one group of coders.

    ``mean_kappa`` / ``mean_alpha`` average all codes (undefined NaN values skipped);
    ``mean_kappa_common`` leaves out the codes flagged ``too_rare``. ``exact_set_agreement`` is the
    share of units where every coder's set of (considered) codes is identical.
    """

    coders: tuple[Coder, ...]
    n_units: int
    n_codes: int
    n_too_rare: int
    mean_percent_agreement: float
    mean_alpha: float
    exact_set_agreement: float
    mean_kappa: float | None = None
    mean_kappa_common: float | None = None


_ROW_KEYS = (
    "level",
    "unit",
    "coders",
    "code",
    "n_units",
    "positives",
    "both",
    "only_a",
    "only_b",
    "neither",
    "percent_agreement",
    "kappa",
    "kappa_undefined",
    "alpha",
    "alpha_undefined",
    "too_rare",
    "n_codes",
    "n_too_rare",
    "mean_percent_agreement",
    "mean_kappa",
    "mean_kappa_common",
    "mean_alpha",
    "exact_set_agreement",
)


@dataclass(frozen=True)
class AgreementReport:
    """Per-code and overall agreement for every pair of coders and (3+ coders) all together."""

    unit: str
    codes: tuple[str, ...]
    min_positive: int
    per_code: tuple[CodeAgreement, ...]
    overall: tuple[OverallAgreement, ...]

    def to_rows(self) -> list[dict[str, Any]]:
        """Flat dicts with identical keys (CSV-ready); coders joined with ``|``.

        ``level`` is ``"code"`` for per-code rows and ``"overall"`` for the summary rows.
        """
        rows: list[dict[str, Any]] = []
        for c in self.per_code:
            row = dict.fromkeys(_ROW_KEYS)
            row.update(
                level="code",
                unit=self.unit,
                coders="|".join(map(str, c.coders)),
                code=c.code,
                n_units=c.n_units,
                positives="|".join(map(str, c.positives)),
                percent_agreement=c.percent_agreement,
                kappa=c.kappa,
                kappa_undefined=c.kappa_undefined,
                alpha=c.alpha,
                alpha_undefined=c.alpha_undefined,
                too_rare=c.too_rare,
            )
            if c.table is not None:
                row.update(
                    both=c.table.both,
                    only_a=c.table.only_a,
                    only_b=c.table.only_b,
                    neither=c.table.neither,
                )
            rows.append(row)
        for o in self.overall:
            row = dict.fromkeys(_ROW_KEYS)
            row.update(
                level="overall",
                unit=self.unit,
                coders="|".join(map(str, o.coders)),
                n_units=o.n_units,
                n_codes=o.n_codes,
                n_too_rare=o.n_too_rare,
                mean_percent_agreement=o.mean_percent_agreement,
                mean_kappa=o.mean_kappa,
                mean_kappa_common=o.mean_kappa_common,
                mean_alpha=o.mean_alpha,
                exact_set_agreement=o.exact_set_agreement,
            )
            rows.append(row)
        return rows

    def get(self, coders: Sequence[Coder], code: str) -> CodeAgreement:
        """The per-code entry for exactly this group of coders (in report order) and code."""
        key = tuple(coders)
        for c in self.per_code:
            if c.coders == key and c.code == code:
                return c
        raise KeyError((key, code))

    def summary(self, coders: Sequence[Coder]) -> OverallAgreement:
        """The overall entry for exactly this group of coders (in report order)."""
        key = tuple(coders)
        for o in self.overall:
            if o.coders == key:
                return o
        raise KeyError(key)


def _group_agreement(
    group: tuple[Coder, ...],
    codings: Mapping[Coder, Coding],
    units: list[Unit],
    codes: list[str],
    min_positive: int,
    seen: Mapping[Coder, Collection[Unit]] | None,
) -> tuple[list[CodeAgreement], OverallAgreement]:
    """Per-code rows and the summary for one group of coders."""
    group_codings = [codings[c] for c in group]
    group_seen = None if seen is None else [seen.get(c) for c in group]
    # Units every coder of the group saw: the base of the tables and percent agreement.
    shared = [
        u for u in units if group_seen is None or all(s is None or u in s for s in group_seen)
    ]
    code_set = frozenset(codes)
    rows: list[CodeAgreement] = []
    for code in codes:
        positives = tuple(len(_units_with(cd, shared, code)) for cd in group_codings)
        too_rare = min(positives) < min_positive
        alpha, alpha_undefined = _alpha(_reliability_matrix(group_codings, units, code, group_seen))
        if len(group) == 2:
            table = binary_table(group_codings[0], group_codings[1], shared, code)
            rows.append(
                CodeAgreement(
                    coders=group,
                    code=code,
                    n_units=len(shared),
                    positives=positives,
                    percent_agreement=percent_agreement(table),
                    alpha=alpha,
                    alpha_undefined=alpha_undefined,
                    too_rare=too_rare,
                    table=table,
                    kappa=cohen_kappa(table),
                    kappa_undefined=kappa_is_degenerate(table),
                )
            )
        else:
            agree = sum(
                1 for u in shared if len({code in cd.get(u, _EMPTY) for cd in group_codings}) == 1
            )
            rows.append(
                CodeAgreement(
                    coders=group,
                    code=code,
                    n_units=len(shared),
                    positives=positives,
                    percent_agreement=agree / len(shared) if shared else math.nan,
                    alpha=alpha,
                    alpha_undefined=alpha_undefined,
                    too_rare=too_rare,
                )
            )
    exact = sum(
        1
        for u in shared
        if len({_codes_at(cd, u) & code_set for cd in group_codings}) == 1
    )
    is_pair = len(group) == 2
    overall = OverallAgreement(
        coders=group,
        n_units=len(shared),
        n_codes=len(codes),
        n_too_rare=sum(r.too_rare for r in rows),
        mean_percent_agreement=_mean(r.percent_agreement for r in rows),
        mean_alpha=_mean(r.alpha for r in rows),
        exact_set_agreement=exact / len(shared) if shared else math.nan,
        mean_kappa=_mean(r.kappa for r in rows) if is_pair else None,
        mean_kappa_common=_mean(r.kappa for r in rows if not r.too_rare) if is_pair else None,
    )
    return rows, overall


def compare_codings(
    codings: Mapping[Coder, Coding],
    units: Iterable[Unit],
    codes: Iterable[str] | None = None,
    min_positive: int = 5,
    seen: Mapping[Coder, Collection[Unit]] | None = None,
) -> AgreementReport:
    """Agreement per code and overall for every pair of coders, and for all coders together.

    * ``codes``: the codes to compare (default: every code used on ``units``, sorted). Code sets
      are restricted to these codes for exact-set agreement.
    * ``too_rare`` flags a code fewer than ``min_positive`` units carry for at least one coder of
      the group: kappa/alpha on it say little.
    * ``seen``: optional coder -> units that coder looked at. Unseen units are missing data for
      alpha; tables, kappa, percent and exact-set agreement use the units every coder of the group
      saw. Without ``seen`` every coder saw every unit.
    * Pairs follow the order of ``codings``; the all-coders group is added only for 3+ coders
      (for two it is the pair itself).
    """
    coders = list(codings)
    if len(coders) < 2:
        raise ValueError("compare_codings needs at least two coders")
    units = _unique(units)
    code_list = sorted(set(codes)) if codes is not None else all_codes(codings.values(), units)
    groups: list[tuple[Coder, ...]] = list(combinations(coders, 2))
    if len(coders) > 2:
        groups.append(tuple(coders))
    per_code: list[CodeAgreement] = []
    overall: list[OverallAgreement] = []
    for group in groups:
        rows, summary = _group_agreement(group, codings, units, code_list, min_positive, seen)
        per_code.extend(rows)
        overall.append(summary)
    return AgreementReport(
        unit=UNIT_OF_ANALYSIS,
        codes=tuple(code_list),
        min_positive=min_positive,
        per_code=tuple(per_code),
        overall=tuple(overall),
    )


# ---------------------------------------------------------------------------------------------
# Mapping machine themes to human codes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchedPair:
    """One theme mapped to one code, with their segment-overlap F1 and shared unit count."""

    theme: str
    code: str
    f1: float
    overlap: int


@dataclass(frozen=True)
class ThemeMatch:
    """Result of mapping machine themes to human codes; ``method`` says which mapping was used."""

    method: str
    pairs: tuple[MatchedPair, ...]
    unmatched_themes: tuple[str, ...]
    unmatched_codes: tuple[str, ...]

    @property
    def mapping(self) -> dict[str, str]:
        """theme -> code, ready for :func:`relabel`."""
        return {p.theme: p.code for p in self.pairs}

    @property
    def mean_f1(self) -> float:
        """Mean F1 over matched pairs (NaN when nothing matched)."""
        return _mean(p.f1 for p in self.pairs)

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per matched pair and per unmatched theme or code (CSV-ready)."""
        rows = [
            {"method": self.method, "theme": p.theme, "code": p.code, "f1": p.f1,
             "overlap": p.overlap}
            for p in self.pairs
        ]
        rows += [
            {"method": self.method, "theme": t, "code": None, "f1": None, "overlap": None}
            for t in self.unmatched_themes
        ]
        rows += [
            {"method": self.method, "theme": None, "code": c, "f1": None, "overlap": None}
            for c in self.unmatched_codes
        ]
        return rows


def overlap_f1_matrix(
    machine: Coding, human: Coding, units: Iterable[Unit]
) -> tuple[list[str], list[str], np.ndarray]:
    """Sorted themes, sorted codes and the themes x codes matrix of segment-overlap F1."""
    units = _unique(units)
    themes = all_codes([machine], units)
    codes = all_codes([human], units)
    t_units = [_units_with(machine, units, t) for t in themes]
    c_units = [_units_with(human, units, c) for c in codes]
    f1 = np.array([[_f1(tu, cu) for cu in c_units] for tu in t_units], dtype=float)
    return themes, codes, f1.reshape(len(themes), len(codes))


def match_themes(
    machine: Coding,
    human: Coding,
    units: Iterable[Unit],
    method: str = "hungarian",
    min_f1: float = 0.0,
) -> ThemeMatch:
    """One-to-one mapping of machine themes to human codes by segment-overlap F1.

    ``method="hungarian"`` maximises the total F1 (scipy ``linear_sum_assignment``);
    ``method="greedy"`` repeatedly takes the best remaining pair (shown for comparison: it can
    lose total F1). Pairs with F1 == 0 or below ``min_f1`` are left unmatched.
    """
    if method not in ("hungarian", "greedy"):
        raise ValueError(f"unknown matching method {method!r}; use 'hungarian' or 'greedy'")
    units = _unique(units)
    themes, codes, f1 = overlap_f1_matrix(machine, human, units)
    chosen: list[tuple[int, int]] = []
    if f1.size:
        if method == "hungarian":
            from scipy.optimize import linear_sum_assignment  # here: every command imports this module

            rows, cols = linear_sum_assignment(f1, maximize=True)
            chosen = list(zip(rows.tolist(), cols.tolist()))
        else:
            order = sorted(
                ((i, j) for i in range(len(themes)) for j in range(len(codes))),
                key=lambda ij: (-f1[ij], themes[ij[0]], codes[ij[1]]),
            )
            used_t: set[int] = set()
            used_c: set[int] = set()
            for i, j in order:
                if i not in used_t and j not in used_c:
                    chosen.append((i, j))
                    used_t.add(i)
                    used_c.add(j)
    pairs = []
    for i, j in sorted(chosen):
        if f1[i, j] <= 0 or f1[i, j] < min_f1:
            continue
        overlap = len(_units_with(machine, units, themes[i]) & _units_with(human, units, codes[j]))
        pairs.append(MatchedPair(themes[i], codes[j], float(f1[i, j]), overlap))
    matched_t = {p.theme for p in pairs}
    matched_c = {p.code for p in pairs}
    return ThemeMatch(
        method=method,
        pairs=tuple(pairs),
        unmatched_themes=tuple(t for t in themes if t not in matched_t),
        unmatched_codes=tuple(c for c in codes if c not in matched_c),
    )


def relabel(coding: Coding, mapping: Mapping[str, str]) -> dict[Unit, frozenset[str]]:
    """Rename codes through ``mapping``; codes without an entry keep their own name.

    Keeping unmatched themes means they still count as machine-only codings when compared.
    """
    return {u: frozenset(mapping.get(c, c) for c in cs) for u, cs in coding.items()}


def partition_to_coding(partition: Partition) -> dict[Unit, frozenset[str]]:
    """A one-theme-per-unit partition as a coding (outliers carry nothing)."""
    return {u: frozenset([t]) for u, t in partition.items() if t is not None}


# ---------------------------------------------------------------------------------------------
# Clustering figures: a machine partition against a human coding
# ---------------------------------------------------------------------------------------------


def first_code(codes: Collection[str]) -> str | None:
    """The first code in sorted order (the single label used for ARI/NMI), or None."""
    return min(codes) if codes else None


def _encode(labels: Sequence[Hashable | None]) -> list[int]:
    """Integers for labels, with None as a group of its own (never merged with a real label)."""
    ids: dict[tuple[bool, Hashable], int] = {}
    return [ids.setdefault((lab is None, lab), len(ids)) for lab in labels]


@dataclass(frozen=True)
class CodeRecovery:
    """For one human code: the theme with the best segment-overlap F1."""

    code: str
    theme: str | None
    f1: float


@dataclass(frozen=True)
class ClusterScores:
    """ARI/NMI two ways, plus per-code recovery.

    * ``*_all``: every unit; outliers (None) form one group of their own.
    * ``*_assigned``: only units the machine assigned a theme (``coverage`` of all units).
    * Human side: multi-label units use their first code in sorted order; units with no human
      code form one group of their own (in both variants).
    * NMI uses sklearn's default arithmetic normalisation.
    """

    n_units: int
    n_assigned: int
    coverage: float
    ari_all: float
    nmi_all: float
    ari_assigned: float
    nmi_assigned: float
    recovery: tuple[CodeRecovery, ...]
    mean_best_f1: float
    recovered_share: float
    recovered_f1: float

    def to_row(self) -> dict[str, Any]:
        """The scalar figures as one CSV-ready dict."""
        return {
            "n_units": self.n_units,
            "n_assigned": self.n_assigned,
            "coverage": self.coverage,
            "ari_all": self.ari_all,
            "nmi_all": self.nmi_all,
            "ari_assigned": self.ari_assigned,
            "nmi_assigned": self.nmi_assigned,
            "mean_best_f1": self.mean_best_f1,
            "recovered_share": self.recovered_share,
            "recovered_f1": self.recovered_f1,
        }


def code_recovery(
    partition: Partition, human: Coding, units: Iterable[Unit]
) -> tuple[CodeRecovery, ...]:
    """Per human code (sorted), the best-matching theme by segment-overlap F1.

    Uses the full multi-label human coding. Ties go to the theme first in sorted order.
    """
    units = _unique(units)
    machine = partition_to_coding(partition)
    themes = all_codes([machine], units)
    t_units = {t: _units_with(machine, units, t) for t in themes}
    out = []
    for code in all_codes([human], units):
        c_units = _units_with(human, units, code)
        best_theme, best = None, 0.0
        for t in themes:
            f = _f1(t_units[t], c_units)
            if f > best:
                best_theme, best = t, f
        out.append(CodeRecovery(code, best_theme, best))
    return tuple(out)


def cluster_scores(
    partition: Partition,
    human: Coding,
    units: Iterable[Unit],
    recovered_f1: float = 0.5,
) -> ClusterScores:
    """Compare a machine partition with a human coding (see :class:`ClusterScores`).

    A code counts as recovered when its best theme's F1 >= ``recovered_f1``.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # here: as linear_sum_assignment

    units = _unique(units)
    if not units:
        raise ValueError("cluster_scores needs at least one unit")
    machine_labels = [partition.get(u) for u in units]
    human_labels = [first_code(_codes_at(human, u)) for u in units]
    m_all, h_all = _encode(machine_labels), _encode(human_labels)
    assigned = [i for i, t in enumerate(machine_labels) if t is not None]
    if assigned:
        m_as = [m_all[i] for i in assigned]
        h_as = [h_all[i] for i in assigned]
        ari_as = float(adjusted_rand_score(h_as, m_as))
        nmi_as = float(normalized_mutual_info_score(h_as, m_as))
    else:
        ari_as = nmi_as = math.nan
    recovery = code_recovery(partition, human, units)
    return ClusterScores(
        n_units=len(units),
        n_assigned=len(assigned),
        coverage=len(assigned) / len(units),
        ari_all=float(adjusted_rand_score(h_all, m_all)),
        nmi_all=float(normalized_mutual_info_score(h_all, m_all)),
        ari_assigned=ari_as,
        nmi_assigned=nmi_as,
        recovery=recovery,
        mean_best_f1=_mean(r.f1 for r in recovery),
        recovered_share=(
            sum(r.f1 >= recovered_f1 for r in recovery) / len(recovery) if recovery else math.nan
        ),
        recovered_f1=recovered_f1,
    )


@dataclass(frozen=True)
class ThemeQuality:
    """How one machine theme lines up with the human codes.

    ``purity``: largest share of the theme's units that carry one same human code
    (``purity_code``). ``best_code``/``best_f1``: the code with the best segment-overlap F1.
    """

    theme: str
    size: int
    purity_code: str | None
    purity: float
    best_code: str | None
    best_f1: float


def theme_quality(
    partition: Partition, human: Coding, units: Iterable[Unit]
) -> dict[str, ThemeQuality]:
    """Purity and best F1 for every theme in the partition (ties: first code in sorted order)."""
    units = _unique(units)
    machine = partition_to_coding(partition)
    codes = all_codes([human], units)
    c_units = {c: _units_with(human, units, c) for c in codes}
    out: dict[str, ThemeQuality] = {}
    for theme in all_codes([machine], units):
        t_units = _units_with(machine, units, theme)
        purity_code, purity, best_code, best_f1 = None, 0.0, None, 0.0
        for c in codes:
            share = len(t_units & c_units[c]) / len(t_units)
            if share > purity:
                purity_code, purity = c, share
            f = _f1(t_units, c_units[c])
            if f > best_f1:
                best_code, best_f1 = c, f
        out[theme] = ThemeQuality(theme, len(t_units), purity_code, purity, best_code, best_f1)
    return out


@dataclass(frozen=True)
class TopKPrecision:
    """Share of the top-k ranked themes a person could use.

    ``precision``: usable = purity >= ``min_purity``. ``strict_precision``: usable and the best
    matching code has F1 >= ``min_f1``. Divided by ``n_considered`` = min(k, themes ranked).
    """

    k: int
    n_considered: int
    precision: float
    strict_precision: float
    usable: tuple[str, ...]
    strict_usable: tuple[str, ...]
    min_purity: float
    min_f1: float


def top_k_precision(
    partition: Partition,
    human: Coding,
    units: Iterable[Unit],
    k: int,
    ranking: Sequence[str] | None = None,
    min_purity: float = 0.6,
    min_f1: float = 0.5,
) -> TopKPrecision:
    """Precision of the first ``k`` themes of ``ranking`` (see :class:`TopKPrecision`).

    ``ranking`` defaults to themes by size, largest first (ties by name). A ranked theme that
    has no unit among ``units`` counts as not usable.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    units = _unique(units)
    quality = theme_quality(partition, human, units)
    if ranking is None:
        ranking = sorted(quality, key=lambda t: (-quality[t].size, t))
    top = list(ranking)[:k]
    usable = tuple(t for t in top if t in quality and quality[t].purity >= min_purity - _EPS)
    strict = tuple(t for t in usable if quality[t].best_f1 >= min_f1 - _EPS)
    n = len(top)
    return TopKPrecision(
        k=k,
        n_considered=n,
        precision=len(usable) / n if n else math.nan,
        strict_precision=len(strict) / n if n else math.nan,
        usable=usable,
        strict_usable=strict,
        min_purity=min_purity,
        min_f1=min_f1,
    )


# ---------------------------------------------------------------------------------------------
# Character selections (QDA tools) -> segment codings
# ---------------------------------------------------------------------------------------------


def _merge_intervals(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of half-open [start, end) intervals as sorted, disjoint intervals."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def _covered(intervals: list[tuple[int, int]], starts: list[int], start: int, end: int) -> int:
    """Characters of [start, end) inside the disjoint sorted ``intervals``."""
    total = 0
    i = max(bisect_left(starts, start) - 1, 0)
    while i < len(intervals) and intervals[i][0] < end:
        s, e = intervals[i]
        total += max(0, min(e, end) - max(s, start))
        i += 1
    return total


def _mostly_inside(intervals: list[tuple[int, int]], starts: list[int], start: int, end: int,
                   share: float) -> bool:
    """Whether at least ``share`` of one interval lies within [start, end)."""
    i = max(bisect_right(starts, start) - 1, 0)
    while i < len(intervals) and intervals[i][0] < end:
        s, e = intervals[i]
        if e > s and min(e, end) - max(s, start) >= share * (e - s) - 1e-9:
            return True
        i += 1
    return False


def map_selections(
    selections: Iterable[Selection],
    segments: Iterable[Segment],
    min_cover: float = 0.5,
) -> dict[Coder, dict[Unit, frozenset[str]]]:
    """Turn character selections into segment codings, one coding per coder.

    Rule: offsets are half-open [start, end) character offsets into the same text the segments
    use. A segment carries ``code`` for ``coder`` when the union of that coder's selections of
    that code in the segment's source covers at least ``min_cover`` of the segment's characters
    (``covered / length >= min_cover``; overlapping selections are not double counted), or when
    at least ``min_cover`` of one (merged) selection lies inside the segment: a coder who marked one
    sentence of a three-sentence segment coded that segment.
    Zero-length segments never carry a code. A coder whose selections cover no segment still
    gets an (empty) coding. Selection: ``(source_key, start, end, code, coder)``; segment:
    ``(segment_id, source_key, start, end)``.
    """
    spans: dict[tuple[Hashable, Hashable, str], list[tuple[int, int]]] = defaultdict(list)
    coders: dict[Coder, None] = {}
    for source, start, end, code, coder in selections:
        spans[(coder, source, code)].append((int(start), int(end)))
        coders.setdefault(coder, None)
    by_source: dict[Hashable, list[tuple[Coder, str, list[tuple[int, int]], list[int]]]] = (
        defaultdict(list)
    )
    for (coder, source, code), raw in spans.items():
        merged = _merge_intervals(raw)
        by_source[source].append((coder, code, merged, [s for s, _ in merged]))
    result: dict[Coder, dict[Unit, set[str]]] = {c: {} for c in coders}
    for seg_id, source, start, end in segments:
        length = int(end) - int(start)
        if length <= 0:
            continue
        for coder, code, merged, starts in by_source.get(source, ()):
            covered = _covered(merged, starts, int(start), int(end))
            if covered > 0 and (covered >= min_cover * length - 1e-9
                                or _mostly_inside(merged, starts, int(start), int(end), min_cover)):
                result[coder].setdefault(seg_id, set()).add(code)
    return {c: {u: frozenset(cs) for u, cs in coding.items()} for c, coding in result.items()}
