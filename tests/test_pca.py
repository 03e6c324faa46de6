"""PCA against a data set with a known covariance."""

import numpy as np

from rnn_sparsity.analysis.pca import fit_pca


def test_pca_recovers_known_axes_and_variances():
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    scales = np.array([3.0, 2.0, 1.0, 0.5, 0.1])
    data = (rng.normal(size=(20000, 5)) * scales) @ rotation.T + 7.0
    pca = fit_pca(data.reshape(100, 200, 5), n_components=3)
    np.testing.assert_allclose(pca.variance, scales[:3] ** 2, rtol=0.03)
    np.testing.assert_allclose(pca.variance_explained, scales[:3] ** 2 / np.sum(scales ** 2), rtol=0.03)
    for k in range(3):
        assert abs(abs(pca.components[k] @ rotation[:, k]) - 1) < 1e-3
    np.testing.assert_allclose(pca.mean, 7.0, atol=0.05)
    coords = pca.project(data)
    np.testing.assert_allclose(coords.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(coords.var(axis=0, ddof=1), pca.variance, rtol=1e-3)
