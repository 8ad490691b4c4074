"""Reduce and cluster: the exact neighbour graph, and reproducible reduced spaces."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from pipeline.cluster import ThemeClusterer, cosine_knn


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
