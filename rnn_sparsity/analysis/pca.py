"""Principal components of network states, by an SVD of the centred data (JAX)."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class PCA(NamedTuple):
    mean: np.ndarray  # (N,)
    components: np.ndarray  # (k, N), rows are unit principal directions, by decreasing variance
    variance: np.ndarray  # (k,) variance along each component
    variance_explained: np.ndarray  # (k,) fraction of the total variance

    def project(self, points) -> np.ndarray:
        """Coordinates of points (..., N) in PC space (..., k)."""
        return (np.asarray(points) - self.mean) @ self.components.T

    def project_directions(self, vectors) -> np.ndarray:
        """Directions (..., N) (e.g. eigenvectors, no centring) in PC space (..., k)."""
        return np.asarray(vectors) @ self.components.T


def fit_pca(states, n_components: int = 10) -> PCA:
    """PCA of states (..., N), all leading axes pooled as samples: X - mean = U S Vᵀ, variance S²/(n-1)."""
    x = jnp.asarray(states).reshape(-1, jnp.shape(states)[-1])
    mean = jnp.mean(x, axis=0)
    _, s, vt = jnp.linalg.svd(x - mean, full_matrices=False)
    variance = s ** 2 / (x.shape[0] - 1)
    k = min(n_components, vt.shape[0])
    return PCA(mean=np.asarray(mean), components=np.asarray(vt[:k]), variance=np.asarray(variance[:k]),
               variance_explained=np.asarray(variance[:k] / jnp.sum(variance)))
