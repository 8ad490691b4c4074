"""What a coder's decisions teach the machine, against the baselines an expert would try first
(``python -m bench review``).

In memory and on the same vectors, for each decision budget:

* **review**: the scripted coder of :mod:`bench.coder` (its rules and constants) reviews the run's
  suggestions in rank order: confirms a theme under the human code carried by >= 60% of its members,
  moves up to 3 misplaced members out, rejects the rest. Confirmed members are positives of that code,
  moved members its negatives, members of rejected themes negatives of every confirmed code. Only the
  moved members were judged one by one (``CodeLearner.fit``'s ``judged``: the rows a theme's share of
  the study is read from); Teach answers are judged one by one too.
* **review, no moves**: the same coder who confirms or rejects each suggestion and moves nobody: a
  move buys one label, a confirm a whole theme of them, so where suggestions are pure a coder who
  leaves the strays (to Teach's questions or a later pass) teaches more per decision.
* **review + teach**: half the budget on the review, the rest on Teach questions, asked 10 at a time
  as the page asks them (``review.teach_unsure`` / ``teach_far``: by default segments typical of a
  region nobody has labelled), each shown with the theme the learner proposes.
* **following the hint**: the review without moves in rank order until the theme list's hint says to turn
  to Teach (fewer than ``review.teach_hint_share`` of the last ``teach_hint_window`` themes reviewed became
  codes of their own), then Teach questions: the workflow the page guides a coder along.
* **teach**: the whole budget on Teach questions, no review. The coder answers from the human codes:
  yes; no (a negative of the proposed theme) and, where the segment carries codes, "another theme"
  (positives of the kept ones) or "new theme" (a new code with its first example).
* the **old rule**: ``pipeline.learn.apply.code_with_codebook`` (one centroid and threshold per
  confirmed theme, the run's other themes competing) on the review's decisions;
* **random labels**: :class:`pipeline.learn.learner.CodeLearner` trained on as many random segments
  with their human codes as there were decisions (mean of three draws);
* **random labels, plain logistic regression**: the baseline an expert would try first, on the same random
  segments: scikit-learn's ``LogisticRegression`` with its defaults on the model's unit vectors (no
  neighbours, no thresholds), one class per code plus one for "no code", each segment given the likeliest
  class (a segment of several codes trains once per code); what the learner's own design adds shows
  against it;
* the **ceiling**: the same learner trained on every other segment (5-fold);
* **prototypes (codes known)**: a reference, not a method: as many single segments as there were
  decisions, chosen by someone who knew the human codes (each code's most central segments in turn, the
  commonest code first) and labelled with their codes: what choosing questions with the answers in hand
  gives. It is no upper bound (typical segments show little of where a broad code stops), but where
  Teach comes near it, better question choice alone has little left to give.

Every arm but the plain one and the old rule trains the learner as ``themesift apply`` does
(``pipeline.learn.apply.train_learner``), each code's name among its examples (``review.learner_names``):
the coder of the simulation names a code by the human code's name, underscores as spaces.

Scoring as the simulated review: per human code, Cohen's kappa of "the machine gave this code" against
"a human gave it" on the segments the coder never touched, macro over the human codes those segments
carry (a code never reached counts 0; a code whose every segment the coder touched has no kappa left to
score and is left out, :func:`bench.coder.mean_kappa`). One decision = one confirm, reject, move or Teach answer.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from bench.coder import MIN_PURITY, MOVES_PER_THEME, QUOTES_SEEN, mean_kappa
from bench.datasets import Corpus
from bench.harness import embed_corpus, run_themesift
from pipeline.embed.encoder import Embedder
from pipeline.learn.apply import code_with_codebook, learner_matrix, teach_batch, train_learner
from pipeline.learn.learner import CodeLearner, theme_labels
from pipeline.learn.teach import teach_hint
from pipeline.themes.join import unit_vectors

BUDGETS = (20, 50, 100, 200, 400)


class _Study:
    """One corpus, its vectors and one run's suggestions, with the scoring every arm shares."""

    def __init__(self, corpus: Corpus, vectors: np.ndarray, config: dict, embedder: Embedder):
        self.vectors = np.asarray(vectors, dtype=np.float64)
        self.texts = corpus.texts
        self.X = learner_matrix(self.vectors, corpus.texts, config["review"])  # what the learner reads
        self.unit = unit_vectors(self.vectors)  # what plain logistic regression reads
        # each code's name as a coder would type it, an example of the code (review.learner_names)
        self.names = dict(zip(corpus.codes, zip(map(code_name, corpus.codes),
                                                embedder.encode([code_name(c) for c in corpus.codes]))))
        self.review_cfg = config["review"]
        self.n = len(self.X)
        self.codes = corpus.codes
        self.human = {u: corpus.human.get(u, frozenset()) for u in corpus.units}
        run = run_themesift(corpus, vectors, config, embedder)
        self.ranking = run.ranking
        self.members: dict[str, list[int]] = {}
        for unit, theme in run.partition.items():
            if theme is not None:
                self.members.setdefault(theme, []).append(unit)

    def kappa(self, coded: dict[int, frozenset[str]], units: list[int]) -> float:
        return mean_kappa(coded, self.human, units)

    def learned(self, pos: dict[str, list[int]], neg: dict[str, list[int]], units: list[int],
                judged: set[int] | None = None) -> float:
        """``judged``: the rows decided one by one (moves, Teach answers); None: every labelled row."""
        labels = theme_labels(pos, neg)
        if not labels:
            return 0.0
        learner, proba, _ = train_learner(self.vectors, self.texts, labels, self.review_cfg,
                                          judged=None if judged is None else sorted(judged), names=self.names)
        hits = proba[units] >= learner.thresholds_
        return self.kappa({u: frozenset(learner.themes_[j] for j in np.flatnonzero(h)) for u, h in zip(units, hits)},
                          units)


def code_name(code: str) -> str:
    """A human code's name as a coder would write it in the page: "card_payment_fee" -> "card payment fee"."""
    return code.replace("_", " ").strip()


def _verdict(s: _Study, members: list[int]) -> str | None:
    """The code the scripted coder confirms a theme of ``members`` under: the one carried by at least
    :data:`MIN_PURITY` of them; None: they reject it as mixed."""
    counts = Counter(c for m in members for c in s.human[m])
    code, k = counts.most_common(1)[0] if counts else (None, 0)
    return code if code is not None and k / len(members) >= MIN_PURITY - 1e-9 else None


def _coder() -> dict[str, Any]:
    """A coder's state before any decision, as :func:`_teach` and :func:`_hinted` go on from it."""
    return {"decisions": 0, "touched": set(), "judged": set(), "pos": {}, "neg": {}, "rejected": []}


def _scored(s: _Study, state: dict[str, Any]) -> float:
    """The learner trained on a coder's decisions, scored on the segments they never touched."""
    return s.learned(state["pos"], state["neg"], sorted(set(range(s.n)) - state["touched"]), state["judged"])


def _review(s: _Study, budget: float, moves: int = MOVES_PER_THEME) -> dict[str, Any]:
    """The scripted coder's review in rank order until ``budget`` decisions, moving up to ``moves``
    misplaced members out of each confirmed theme. ``s``: anything with ``ranking``, ``members`` and
    ``human`` as :class:`_Study` has them."""
    decisions, touched, judged, pos, neg, rejected, reviewed, confirmed = 0, set(), set(), {}, {}, [], [], []
    for theme in s.ranking:
        if decisions >= budget:
            break
        members = s.members[theme]
        reviewed.append(theme)
        code = _verdict(s, members)
        decisions += 1
        touched.update(members[:QUOTES_SEEN])
        if code is not None:
            moved = [m for m in members if code not in s.human[m]][:moves]
            decisions += len(moved)
            touched.update(moved)
            judged.update(moved)
            pos.setdefault(code, []).extend(m for m in members if m not in moved)
            neg.setdefault(code, []).extend(moved)
            confirmed.append(theme)
        else:
            rejected.extend(members)
    for code in pos:
        neg[code] = neg.get(code, []) + rejected
    return {"decisions": decisions, "touched": touched, "judged": judged, "pos": pos, "neg": neg, "rejected": rejected,
            "reviewed": reviewed, "confirmed": confirmed}


def _hinted(s: _Study, state: dict[str, Any], budget: int, review_cfg: dict, seed: int) -> None:
    """The coder who follows the theme list's hint (``pipeline.learn.teach.teach_hint``): reviews the
    suggestions in rank order, confirming or rejecting and moving nobody, until fewer than
    ``review.teach_hint_share`` of the last ``review.teach_hint_window`` reviewed themes became codes of their
    own (a theme under a code already confirmed is merged into it) or the suggestions run out; then answers
    Teach questions (changes ``state``, which goes on where it stopped)."""
    pos, neg, own = state["pos"], state["neg"], state.setdefault("own", [])
    window, share = review_cfg["teach_hint_window"], review_cfg["teach_hint_share"]
    while not state.get("teaching") and state["decisions"] < budget:
        if len(own) >= len(s.ranking) or teach_hint(own, window, share) is not None:
            state["teaching"] = True
            break
        members = s.members[s.ranking[len(own)]]
        code = _verdict(s, members)
        state["decisions"] += 1
        state["touched"].update(members[:QUOTES_SEEN])
        if code is not None:
            own.append(code not in pos)
            if code not in pos:
                neg[code] = list(state["rejected"])
            pos.setdefault(code, []).extend(members)
        else:
            own.append(False)
            state["rejected"].extend(members)
            for c in pos:
                neg[c].extend(members)
    if state.get("teaching"):
        _teach(s, state, budget, review_cfg, seed)


def _teach(s: _Study, state: dict[str, Any], budget: int, review_cfg: dict, seed: int) -> None:
    """Teach questions, as the review page asks them (``pipeline.learn.apply.teach_batch``), answered from
    the human codes until ``budget`` decisions (changes ``state``). One answer is one decision, as on the
    page: the coder ticks every kept theme the segment carries (the others are left unticked: against);
    when it carries none of them but a code nobody has named yet, they make it a new theme instead."""
    pos, neg, touched = state["pos"], state["neg"], state["touched"]
    asked = state.get("asked", 0)  # a state taught before goes on where it stopped
    while state["decisions"] < budget:
        pool = sorted(set(range(s.n)) - touched)
        if len(pool) <= 10:  # nothing left to ask about that could still be scored
            break
        said = sorted(touched)
        batch = teach_batch(list(range(s.n)), s.vectors, pos, neg, review_cfg, seed=seed + asked, exclude=said,
                            judged=sorted(state["judged"]), texts=s.texts, names=s.names)
        if not batch:
            break
        for q in batch:
            if state["decisions"] >= budget:
                break
            state["decisions"] += 1
            asked += 1
            u = q.row
            touched.add(u)
            state["judged"].add(u)
            codes = s.human[u]
            kept = [c for c in pos if pos[c]]
            given = [c for c in kept if c in codes]
            for c in kept:
                (pos if c in given else neg).setdefault(c, []).append(u)
            new = sorted(c for c in codes if c not in pos)
            if not given and new:
                pos[new[0]] = [u]
                neg[new[0]] = list(state["rejected"])
    state["asked"] = asked


def _old_rule(s: _Study, state: dict[str, Any], review_cfg: dict, units: list[int]) -> float:
    pos = {c: v for c, v in state["pos"].items() if v}
    if not pos:
        return 0.0
    confirmed = set(state["confirmed"])  # every other theme, rejected or unreviewed, competes on its own
    V = s.vectors
    others = {t: V[s.members[t]] for t in s.ranking if t not in confirmed}
    result = code_with_codebook(units, V[units], {c: V[v] for c, v in pos.items()}, {c: c for c in pos},
                                others, review_cfg)
    return s.kappa({u: frozenset(result.assigned.get(u, ())) for u in units}, units)


def _trained_on(s: _Study, rows: list[int]) -> float:
    """The learner trained on ``rows`` with their human codes, scored on every other segment."""
    units = sorted(set(range(s.n)) - set(rows))
    pos = {c: [u for u in rows if c in s.human[u]] for c in s.codes}
    neg = {c: [u for u in rows if c not in s.human[u]] for c in s.codes}
    return s.learned(pos, neg, units)


def _random_labels(s: _Study, m: int, draw: int) -> float:
    rng = np.random.default_rng(draw)
    return _trained_on(s, rng.choice(s.n, min(m, s.n - 1), replace=False).tolist())


def plain_logistic_coding(X: np.ndarray, codes: list[frozenset[str]], Z: np.ndarray) -> list[frozenset[str]]:
    """Rows of ``Z`` coded by plain logistic regression trained on ``X`` with ``codes`` (the baseline an expert
    would try first): scikit-learn's ``LogisticRegression`` with its defaults, one class per code plus one
    for "no code", each row given the likeliest class; a row of several codes trains once per code."""
    from sklearn.linear_model import LogisticRegression

    train = [(i, c) for i, row in enumerate(codes) for c in (sorted(row) or [None])]
    classes = sorted({c for _, c in train}, key=lambda c: (c is not None, c or ""))
    if len(classes) < 2:  # one class alone: every row gets it
        return [frozenset(c for c in classes if c is not None)] * len(Z)
    model = LogisticRegression(max_iter=1000).fit(X[[i for i, _ in train]], [classes.index(c) for _, c in train])
    return [frozenset() if classes[k] is None else frozenset([classes[k]]) for k in model.predict(Z)]


def _plain_random_labels(s: _Study, m: int, draw: int) -> float:
    """:func:`_random_labels`' segments (the same draw) through :func:`plain_logistic_coding` on unit vectors."""
    rows = np.random.default_rng(draw).choice(s.n, min(m, s.n - 1), replace=False).tolist()
    units = sorted(set(range(s.n)) - set(rows))
    coded = plain_logistic_coding(s.unit[rows], [s.human[u] for u in rows], s.unit[units])
    return s.kappa(dict(zip(units, coded)), units)


def prototype_rows(X: np.ndarray, human: dict[int, frozenset[str]], m: int) -> list[int]:
    """``m`` rows of ``X``, taken in turn from each human code (commonest first, then by name), each the
    code's most central member (cosine to its mean vector) not taken yet: the questions someone who knew
    the codes would ask (the reference arm of the module docstring)."""
    U = unit_vectors(X)
    freq = Counter(c for codes in human.values() for c in codes)
    queues = []
    for code, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0])):
        members = np.asarray(sorted(u for u, codes in human.items() if code in codes))
        queues.append(iter(members[np.argsort(-(U[members] @ U[members].mean(axis=0)), kind="stable")].tolist()))
    picked: list[int] = []
    taken: set[int] = set()
    while len(picked) < m and queues:
        for q in list(queues):
            row = next((u for u in q if u not in taken), None)
            if row is None:
                queues.remove(q)
                continue
            picked.append(row)
            taken.add(row)
            if len(picked) >= m:
                break
    return picked


def _prototypes(s: _Study, m: int) -> float:
    return _trained_on(s, prototype_rows(s.X, s.human, min(m, s.n - 1)))


def cross_validated_codes(X: np.ndarray, human: dict[int, frozenset[str]], review_cfg: dict,
                          folds: int = 5) -> dict[int, frozenset[str]]:
    """Each row of ``X`` coded by the learner trained on every other fold's rows with their human codes
    (``human``: row -> codes): what supervised learning on the study's own labels reaches."""
    n = len(X)
    codes = sorted({c for row in human.values() for c in row})
    fold = np.random.default_rng(0).permutation(n) % folds
    coded: dict[int, frozenset[str]] = {}
    for f in range(folds):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        labels = theme_labels({c: [u for u in train if c in human[u]] for c in codes},
                              {c: [u for u in train if c not in human[u]] for c in codes})
        learner = CodeLearner.from_config(review_cfg)
        learner.unlabelled_weight = 0.0  # every row is labelled
        coded.update(zip(test.tolist(), learner.fit(X, labels).predict(X[test])) if labels
                     else ((u, frozenset()) for u in test.tolist()))
    return coded


def _ceiling(s: _Study, folds: int = 5) -> float:
    return s.kappa(cross_validated_codes(s.X, s.human, s.review_cfg, folds), list(range(s.n)))


def learning_curve(corpus: Corpus, config: dict, budgets: tuple[int, ...] = BUDGETS,
                   seeds: tuple[int, ...] = (42,)) -> dict[str, Any]:
    """Every arm at every budget, per UMAP seed (the run whose suggestions are reviewed), and the mean.
    Budgets above half the corpus are left out: too few untouched segments would be left to score."""
    kept = tuple(b for b in budgets if b <= len(corpus.segments) // 2)
    if not kept:
        raise SystemExit(f"{corpus.name}: every budget ({', '.join(map(str, budgets))}) is over half its "
                         f"{len(corpus.segments)} segments, which would leave too few untouched ones to score; "
                         f"give --budgets of {len(corpus.segments) // 2} or fewer")
    if len(kept) < len(budgets):
        print(f"{corpus.name}: budgets {', '.join(str(b) for b in budgets if b not in kept)} left out (over half "
              f"its {len(corpus.segments)} segments)", file=sys.stderr)
    budgets = kept
    embedder = Embedder.from_config({**config["embed"], "progress_min_texts": 10**9})
    vectors, _, _ = embed_corpus(corpus.texts, embedder)
    t0 = time.perf_counter()
    per_seed = []
    for seed in seeds:
        s = _Study(corpus, vectors, {**config, "cluster": {**config["cluster"], "seed": int(seed)}}, embedder)
        rows = []
        teach_only, hinted = _coder(), _coder()
        for b in budgets:  # Teach alone: one coder answering on, scored at each budget on the way
            review = _review(s, b)
            units = sorted(set(range(s.n)) - review["touched"])
            quick = _review(s, b, moves=0)
            taught = _review(s, b / 2)
            _teach(s, taught, b, config["review"], seed)
            _teach(s, teach_only, b, config["review"], seed)
            _hinted(s, hinted, b, config["review"], seed)
            rows.append({"budget": b, "review_decisions": review["decisions"],
                         "review": _scored(s, review),
                         "review_codes": len(review["pos"]),
                         "review_no_moves": _scored(s, quick),
                         "review_no_moves_codes": len(quick["pos"]),
                         "review_teach": _scored(s, taught),
                         "review_teach_codes": len(taught["pos"]),
                         "teach": _scored(s, teach_only),
                         "teach_codes": len(teach_only["pos"]),
                         "hinted": _scored(s, hinted),
                         "hinted_codes": len(hinted["pos"]), "hinted_reviewed": len(hinted.get("own", ())),
                         "old_rule": _old_rule(s, review, config["review"], units),
                         "random_labels": float(np.mean([_random_labels(s, b, d) for d in range(3)])),
                         "plain_random_labels": float(np.mean([_plain_random_labels(s, b, d) for d in range(3)])),
                         "prototypes": _prototypes(s, b)})
            print(f"learn {corpus.name} seed {seed} b={b}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in rows[-1].items() if isinstance(v, float)), flush=True)
        per_seed.append({"seed": int(seed), "ceiling": _ceiling(s), "points": rows})
    arms = ("review", "review_no_moves", "review_teach", "hinted", "teach", "old_rule", "random_labels",
            "plain_random_labels", "prototypes")
    points = [{"budget": b, **{a: float(np.mean([r["points"][i][a] for r in per_seed])) for a in arms},
               **{f"{a}_per_seed": [r["points"][i][a] for r in per_seed] for a in arms}}
              for i, b in enumerate(budgets)]
    return {"kind": "learn", "dataset": corpus.name, "n_units": len(corpus.segments), "n_codes": len(corpus.codes),
            "seeds": [int(x) for x in seeds], "ceiling": float(np.mean([r["ceiling"] for r in per_seed])),
            "points": points, "per_seed": per_seed, "seconds": round(time.perf_counter() - t0, 1),
            "embedding": {"model_id": embedder.model_id, "backend": embedder.backend}}
