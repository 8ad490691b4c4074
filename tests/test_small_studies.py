"""Small studies (issue 24): one survey question of 20-100 answers runs end to end with the real model and
flow, gets themes at the grain coders use (a theme can be raised by three people), and a theme too small
for its stability figure to mean anything says so on the CLI instead of showing it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from flows.cli import main
from pipeline.config import load_config, settings
from pipeline.themes.cluster import ThemeClusterer
from pipeline.themes.rank import WEAK_STABILITY, stability_is_weak

from conftest import fft_comments


def answers_of(folder: Path, n: int) -> tuple[Path, list[dict]]:
    """The first ``n`` NHS FFT comments of 5-40 words (one segment each) as a survey question of its own."""
    return fft_comments(folder, n, words=(5, 40), stem="answers")


@pytest.mark.parametrize("n, size, neighbors", [(20, 3, 4), (50, 3, 4), (100, 3, 5), (200, 4, 7)])
def test_sizes_scale_down_below_the_small_corpus_size(n, size, neighbors):
    clusterer = ThemeClusterer.from_config(settings(load_config()).cluster, n)
    assert (clusterer.min_cluster_size, clusterer.n_neighbors) == (size, neighbors)
    assert clusterer.max_cluster_size == n // 2  # cluster.small_corpus_largest_share


def test_the_example_study_keeps_its_settings():
    """292 segments are above cluster.small_corpus_segments: the rules for larger corpora, unchanged."""
    clusterer = ThemeClusterer.from_config(settings(load_config()).cluster, 292)
    assert (clusterer.min_cluster_size, clusterer.n_neighbors) == (5, 15)
    assert clusterer.max_cluster_size == 0  # no limit


@pytest.mark.parametrize("n, least_themes", [(20, 2), (50, 5), (100, 10)])
def test_a_survey_question_of_n_answers(prefect_harness, tmp_path, capsys, n, least_themes):
    answers, rows = answers_of(tmp_path, n)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"workspace": str(tmp_path / "ws")}}), encoding="utf-8")
    assert main(["suggest", str(answers), "--study", "q", "--config", str(cfg), "--text-col", "feedback",
                 "--row-id-col", "row_index"]) == 0
    table = capsys.readouterr().out
    out_file = tmp_path / "q.json"
    assert main(["export", "suggestions", "--study", "q", "--config", str(cfg), "--format", "json",
                 "-o", str(out_file)]) == 0
    themes = json.loads(out_file.read_text(encoding="utf-8"))["themes"]
    label = {r["row_index"]: r["label"] for r in rows}
    purity = [Counter(label[m["row_id"]] for m in t["members"]).most_common(1)[0][1] / len(t["members"])
              for t in themes]
    print(n, len(themes), [len(t["members"]) for t in themes], [round(p, 2) for p in purity])
    assert len(themes) >= least_themes
    # each theme holds mostly one human code: more so than the answers as a whole do
    base = Counter(r["label"] for r in rows).most_common(1)[0][1] / n
    print("base", round(base, 2), "mean purity", round(sum(purity) / len(purity), 2))
    assert sum(purity) / len(purity) > base + 0.1
    # themes at a coder's grain: no single theme swallows most of the answers
    assert max(len(t["members"]) for t in themes) <= 0.5 * n
    # the weak-figure message stands for exactly the themes under rank.stability.min_segments clustered members
    for t in themes:
        clustered = sum(1 for m in t["members"] if m.get("joined_similarity") is None)
        assert stability_is_weak(t["reasons"]) == (clustered < 8), t["reasons"]
    if any(stability_is_weak(t["reasons"]) for t in themes):
        assert " weak " in table and WEAK_STABILITY not in "".join(t["label"] for t in themes)


def test_twenty_answers_get_themes_at_a_coders_grain_under_any_layout(tmp_path):
    """The grain of a 20-answer question must not hang on the layout's last bits (they differ between
    CPUs): under five UMAP seeds no theme holds more than half the answers and there are at least two."""
    from pipeline.embed.encoder import Embedder

    _, rows = answers_of(tmp_path, 20)
    s = settings(load_config())
    X = Embedder.from_config(s.embed).encode([r["feedback"] for r in rows])
    for seed in range(5):
        clusterer = ThemeClusterer.from_config(replace(s.cluster, seed=seed), len(X)).fit(X)
        sizes = Counter(t for t in clusterer.labels_.tolist() if t != -1)
        assert len(sizes) >= 2 and max(sizes.values()) <= 10, (seed, sizes)
