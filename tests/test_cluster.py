"""Reduce and cluster: the exact neighbour graph, and reproducible reduced spaces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from pipeline.themes.cluster import ThemeClusterer, cosine_knn

ROOT = Path(__file__).resolve().parent.parent
#: A fresh process reducing a small matrix, then saying how many kernels of ``umap.umap_`` (none of them
#: declared ``cache=True`` there) it loaded from numba's disk cache, and the coordinates.
_REDUCE_IN_A_NEW_PROCESS = """
import json
import numpy as np
from numba.core.registry import CPUDispatcher
from pipeline.themes.cluster import ThemeClusterer
X = np.random.default_rng(5).standard_normal((80, 16)).astype(np.float32)
Y = ThemeClusterer(min_cluster_size=5).reduce(X)
from umap import umap_
kernels = [k for k in vars(umap_).values() if isinstance(k, CPUDispatcher)]  # none declared cache=True
hits = sum(sum(k.stats.cache_hits.values()) for k in kernels)
print(json.dumps({"hits": hits, "reduced": Y.tolist()}))
"""


def test_exact_knn_matches_sklearn_and_puts_each_point_first():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1500, 24)).astype(np.float32)
    X[10] = X[11]  # an exact duplicate must not push a point out of first place in its own list
    indices, distances = cosine_knn(X, 12, block=400)
    expected_d, expected_i = NearestNeighbors(n_neighbors=12, metric="cosine").fit(X).kneighbors(X)
    assert (indices[:, 0] == np.arange(len(X))).all() and (distances[:, 0] == 0).all()
    np.testing.assert_allclose(np.sort(distances, axis=1), expected_d, atol=1e-5)
    assert np.mean(indices[:, 1:] == expected_i[:, 1:]) > 0.99  # ties aside
    assert indices[10, 1] == 11 and distances[10, 1] == 0


def test_reduce_is_repeatable_and_exact_and_approximate_graphs_agree():
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((4, 32))
    X = np.vstack([c + 0.2 * rng.standard_normal((60, 32)) for c in centres]).astype(np.float32)
    exact = ThemeClusterer(min_cluster_size=10)
    approximate = ThemeClusterer(min_cluster_size=10, exact_knn_max=0)  # UMAP's own neighbour search
    np.testing.assert_array_equal(exact.reduce(X), exact.reduce(X))
    a, b = exact.fit(X).labels_, approximate.fit(X).labels_
    truth = np.repeat(np.arange(4), 60)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, a) > 0.95 and adjusted_rand_score(truth, b) > 0.95
    reused = ThemeClusterer(min_cluster_size=10).fit(X, reduced=exact.reduced_)
    np.testing.assert_array_equal(reused.labels_, a)


def test_a_new_process_loads_umaps_compiled_kernels_instead_of_compiling_them():
    """A reduce in this process leaves UMAP's compiled kernels on disk (or finds them there); a new process
    loads them instead of compiling them again, and lays the points out exactly as this one did."""
    X = np.random.default_rng(5).standard_normal((80, 16)).astype(np.float32)
    here = ThemeClusterer(min_cluster_size=5).reduce(X)
    done = subprocess.run([sys.executable, "-c", _REDUCE_IN_A_NEW_PROCESS], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    there = json.loads(done.stdout.splitlines()[-1])
    assert there["hits"] > 0  # a kernel without a disk cache never counts a hit
    np.testing.assert_array_equal(np.asarray(there["reduced"]), here)


def _broad_themes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two broad themes in the reduced space, each two adjacent parts of 40 segments, too small apart
    for a cluster size of 50. The first theme's parts are unlike topics in the model's space
    (orthogonal directions); the second's parts are one topic (the same direction)."""
    centres = [(0.0, 0.0), (3.0, 0.0), (30.0, 0.0), (33.0, 0.0)]
    reduced = np.vstack([c + 0.4 * rng.standard_normal((40, 2)) for c in centres])
    directions = np.eye(16)[[0, 1, 2, 2]]
    X = np.vstack([d + 0.05 * rng.standard_normal((40, 16)) for d in directions])
    return X, reduced, np.repeat(np.arange(4), 40)


def test_a_broad_theme_of_unlike_parts_is_split_and_one_of_a_single_topic_stays_whole():
    X, reduced, part = _broad_themes(np.random.default_rng(5))
    whole = ThemeClusterer(min_cluster_size=50).fit(X, reduced=reduced)
    assert len(set(whole.labels_.tolist()) - {-1}) == 2 and whole.split_from_ == {}
    split = ThemeClusterer(min_cluster_size=50, split_min_size=60, split_min_cluster_size=10,
                           split_max_similarity=0.7).fit(X, reduced=reduced)
    first, second = (np.bincount(split.labels_[part == p][split.labels_[part == p] >= 0]).argmax() for p in (0, 1))
    assert first != second and split.split_from_ == {max(first, second): min(first, second)}
    assert np.mean(split.labels_[part == 0] == first) > 0.9 and np.mean(split.labels_[part == 1] == second) > 0.9
    one_topic = split.labels_[part >= 2]
    assert len(set(one_topic.tolist()) - {-1}) == 1  # its parts are alike: it stays whole
    # parts count as alike at any similarity above -1, so nothing splits
    alike = ThemeClusterer(min_cluster_size=50, split_min_size=60, split_min_cluster_size=10,
                           split_max_similarity=-1.0).fit(X, reduced=reduced)
    np.testing.assert_array_equal(alike.labels_, whole.labels_)
    # themes smaller than split_min_size are never looked at
    small = ThemeClusterer(min_cluster_size=50, split_min_size=81, split_min_cluster_size=10).fit(X, reduced=reduced)
    assert small.split_from_ == {}


def test_a_split_theme_is_found_again_at_the_grain_that_found_it():
    """At the first pass's grain each resample finds the broad theme whole, so the part split off it
    overlaps the resample's cluster by half at best; its stability is measured at the split's grain."""
    X, reduced, part = _broad_themes(np.random.default_rng(5))
    split = ThemeClusterer(min_cluster_size=50, split_min_size=60, split_min_cluster_size=10,
                           split_max_similarity=0.7).fit(X, reduced=reduced)
    (child, parent), = split.split_from_.items()
    coarse = split._resampled_overlap(5, 0.8, 0.5)
    assert coarse[child][0] < 0.6  # what it read before: about half
    stability = split.stability(5, 0.8, 0.5)
    assert stability[child] == (pytest.approx(1.0), 5)
    assert stability[parent] == coarse[parent]  # the theme that kept the largest part: first-pass grain
    assert split.stability(5, 0.8, 0.5) == stability  # seeded


def test_split_settings_come_from_the_config_and_null_never_splits():
    from pipeline.config import load_config

    cfg = load_config()["cluster"]
    clusterer = ThemeClusterer.from_config(cfg, 10_000)  # min_cluster_size 20
    assert clusterer.min_cluster_size == 20
    assert clusterer.split_min_size == round(cfg["split_broad"]["size_factor"] * 20)
    assert clusterer.split_min_cluster_size == max(cfg["split_broad"]["min_cluster_size"],
                                                   round(20 / cfg["split_broad"]["size_divisor"]))
    never = load_config(overrides={"cluster": {"split_broad": {"size_factor": None}}})["cluster"]
    assert ThemeClusterer.from_config(never, 10_000).split_min_size is None
