import numpy as np
import pytest

from pipeline.themes.describe import ThemeDescription
from pipeline.themes.rank import score_themes

WEIGHTS = {"coverage": 0.35, "cohesion": 0.15, "distinctiveness": 0.15, "stability": 0.25, "size": 0.10}


def _description(theme: int, members: list[int], centrality: float) -> ThemeDescription:
    return ThemeDescription(theme, f"theme {theme}", (), (), tuple(members), (1.0,) * len(members),
                            (centrality,) * len(members), ())


def _survey(big: int = 300, small: int = 30, n: int = 8000):
    """A survey: every answer its own case; a broad theme and a small, tight, stable one."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.full(n, -1)
    labels[:big] = 0
    labels[big:big + small] = 1
    cases = [f"R{i}" for i in range(n)]
    descriptions = [_description(0, list(range(big)), 0.60), _description(1, list(range(big, big + small)), 0.95)]
    stability = {0: (0.95, 5), 1: (1.0, 5)}
    return descriptions, vectors, labels, cases, stability


def test_coverage_is_measured_against_the_widest_theme():
    descriptions, vectors, labels, cases, stability = _survey()
    scores = {s.theme: s for s in score_themes(descriptions, vectors, labels, cases, stability, WEIGHTS, 5)}
    assert scores[0].parts["coverage"] == 1.0
    assert scores[1].parts["coverage"] == pytest.approx(30 / 300)
    assert scores[0].total_cases == len(cases)  # the reasons still count all participants
    assert "raised by 300 of 8000 participants" in scores[0].reasons()[0]


def test_a_survey_theme_many_respondents_raised_outranks_a_small_tight_one():
    """With coverage as a share of all 8,000 respondents both themes would score ~0 on it, and the
    small cluster's cohesion and stability would put it first."""
    descriptions, vectors, labels, cases, stability = _survey()
    ranked = score_themes(descriptions, vectors, labels, cases, stability, WEIGHTS, 5)
    assert [s.theme for s in ranked] == [0, 1]
    assert ranked[0].score == pytest.approx(sum(WEIGHTS[p] * v for p, v in ranked[0].parts.items()), abs=1e-5)


def test_interview_coverage_keeps_its_meaning_when_one_theme_reaches_everyone():
    vectors = np.eye(6, dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1, -1])
    cases = ["P1", "P2", "P3", "P1", "P1", "P2"]
    descriptions = [_description(0, [0, 1, 2], 0.8), _description(1, [3, 4], 0.8)]
    scores = {s.theme: s for s in score_themes(descriptions, vectors, labels, cases, {}, WEIGHTS, 5)}
    assert scores[0].parts["coverage"] == 1.0
    assert scores[1].parts["coverage"] == pytest.approx(1 / 3)
