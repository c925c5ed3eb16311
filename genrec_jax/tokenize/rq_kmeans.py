"""RQ-KMeans semantic IDs: k-means on the residual at each level.

With z = x (or its PCA projection, see below) and r^(1) = z, level l = 1..L computes

  c^(l) = argmin_n ||r^(l) - mu_n^(l)||^2,    r^(l+1) = r^(l) - mu_{c^(l)}^(l),

so an item's semantic ID is (c^(1), ..., c^(L)) and z ~ sum_l mu_{c^(l)}^(l). Each codebook
mu^(l) [K_l, D'] is fitted by `kmeans.kmeans` on the level's residuals of all items.

Options:
  pca_dim: z = (x - mean) V^T with V [pca_dim, D] the top right-singular vectors of the
    centred data (via SVD); codebooks then live in the pca_dim space. `reconstruct` maps
    back: x ~ (sum_l mu) V + mean.
  normalize_residuals: every level's residual (r^(1) included) is L2-normalised before it is
    clustered, r^(l) <- r^(l) / ||r^(l)||, and `encode` does the same. Codes then carry
    directions only; `reconstruct` returns the sum of codewords, which is not an estimate of
    x (the per-level norms are not stored).
  balanced_last_level: the last level is clustered with Sinkhorn-balanced k-means, and
    `encode` assigns that level with the same balanced rule over the points it is given, so
    encoding the whole catalogue reproduces the equal-size last level. Pass
    balanced_last_level=False to `encode` for a plain nearest-codeword last level (e.g. a few
    new items).

The codes of the fitted items are `encode(model, x)`: fitting steps from level to level with
the same jitted function `encode` uses, so the two agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.tokenize import kmeans as kmeans_lib
from genrec_jax.tokenize import sinkhorn as sinkhorn_lib

# Norm floor for normalize_residuals: a zero residual stays zero instead of dividing by 0.
_MIN_NORM = 1e-12


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=['codebooks', 'level_inertia', 'level_num_iters', 'pca_mean', 'pca_components'],
    meta_fields=['normalize_residuals', 'balanced_last_level'])
@dataclasses.dataclass(frozen=True)
class RQKMeans:
  """A fitted residual quantiser (a pytree; the two flags are static)."""
  codebooks: tuple[jax.Array, ...]  # L x [K_l, D'] (D' = pca_dim, or D without PCA)
  level_inertia: jax.Array  # [L] sum of squared residual norms after each level (fit data)
  level_num_iters: jax.Array  # [L] int32 k-means iterations run per level (diagnostic)
  pca_mean: jax.Array | None  # [D], or None without PCA
  pca_components: jax.Array | None  # [D', D] orthonormal rows, or None without PCA
  normalize_residuals: bool
  balanced_last_level: bool

  @property
  def num_levels(self) -> int:
    return len(self.codebooks)


class CodebookUsage(NamedTuple):
  fraction_used: np.ndarray  # [L] distinct codes used / K_l
  perplexity: np.ndarray  # [L] exp(-sum_k p_k ln p_k), p_k = frequency of code k


def fit_pca(x: jax.Array, pca_dim: int) -> tuple[jax.Array, jax.Array]:
  """(mean [D], components [pca_dim, D]) of x [N, D]: top right-singular vectors, centred."""
  num_points, dim = x.shape
  if not 1 <= pca_dim <= min(num_points, dim):
    raise ValueError(f'pca_dim must be in [1, min(N, D)] = [1, {min(num_points, dim)}], got '
                     f'{pca_dim}')
  mean = jnp.mean(x, axis=0)
  _, _, right_vectors = jnp.linalg.svd(x - mean, full_matrices=False)  # [min(N, D), D]
  return mean, right_vectors[:pca_dim]


def project(model: RQKMeans, x: jax.Array) -> jax.Array:
  """x [N, D] in the space the codebooks live in [N, D'] (PCA applied, if any)."""
  x = jnp.asarray(x, jnp.float32)
  if model.pca_components is None:
    return x
  return (x - model.pca_mean) @ model.pca_components.T


def _normalize(residual: jax.Array) -> jax.Array:
  norm = jnp.linalg.norm(residual, axis=1, keepdims=True)  # [N, 1]
  return residual / jnp.maximum(norm, _MIN_NORM)


def _assign_level(residual: jax.Array, codebook: jax.Array, balanced: bool) -> jax.Array:
  """Codes [N] int32 of one level: nearest codeword, or Sinkhorn-balanced (exact sizes)."""
  if balanced:
    cost = kmeans_lib.squared_distances(residual, codebook)  # [N, K]
    return sinkhorn_lib.balanced_assign(cost, exact_sizes=True)
  return kmeans_lib.nearest_centroid(residual, codebook)[0]


# Jitted because fit calls it eagerly: op by op, the chunked lax.map retraced and recompiled on
# every call (~0.4 s each at 10k x 256).
@functools.partial(jax.jit, static_argnames=('normalize', 'balanced'))
def _quantize_level(residual: jax.Array, codebook: jax.Array, normalize: bool,
                    balanced: bool) -> tuple[jax.Array, jax.Array]:
  """(codes [N] int32, next residual [N, D']) for one level."""
  if normalize:
    residual = _normalize(residual)
  codes = _assign_level(residual, codebook, balanced)
  return codes, residual - codebook[codes]


@functools.partial(jax.jit, static_argnames=('balanced_last_level',))
def _encode(model: RQKMeans, x: jax.Array,
            balanced_last_level: bool) -> tuple[jax.Array, jax.Array]:
  residual = project(model, x)
  codes = []
  for level, codebook in enumerate(model.codebooks):
    balanced = balanced_last_level and level == model.num_levels - 1
    level_codes, residual = _quantize_level(residual, codebook,
                                            normalize=model.normalize_residuals,
                                            balanced=balanced)
    codes.append(level_codes)
  return jnp.stack(codes, axis=1), residual


def encode(model: RQKMeans, x: jax.Array, *,
           balanced_last_level: bool | None = None) -> tuple[jax.Array, jax.Array]:
  """(codes [N, L] int32, final residuals [N, D']) of points x [N, D], fitted or new.

  The residual is in the codebook space (after PCA), so it can be quantised further, e.g.
  with more levels fitted on it. balanced_last_level defaults to the model's setting.
  """
  if balanced_last_level is None:
    balanced_last_level = model.balanced_last_level
  return _encode(model, x, balanced_last_level=balanced_last_level)


@jax.jit
def reconstruct(model: RQKMeans, codes: jax.Array) -> jax.Array:
  """x estimate [N, D] from codes [N, L'] (L' <= L: the first L' levels are used)."""
  num_points, num_used_levels = codes.shape
  if num_used_levels > model.num_levels:
    raise ValueError(f'codes have {num_used_levels} levels, the model {model.num_levels}')
  dim = model.codebooks[0].shape[1]
  total = jnp.zeros((num_points, dim), jnp.float32)  # [N, D']
  for level in range(num_used_levels):
    total = total + model.codebooks[level][codes[:, level]]
  if model.pca_components is None:
    return total
  return total @ model.pca_components + model.pca_mean


def _level_sizes(codes_per_level: int | Sequence[int], num_levels: int) -> tuple[int, ...]:
  if isinstance(codes_per_level, int):
    return (codes_per_level,) * num_levels
  sizes = tuple(int(k) for k in codes_per_level)
  if len(sizes) != num_levels:
    raise ValueError(f'codes_per_level has {len(sizes)} entries for {num_levels} levels')
  return sizes


def fit_rq_kmeans(x: jax.Array, num_levels: int, codes_per_level: int | Sequence[int],
                  key: jax.Array, *, num_iters: int = 100, tol: float = 1e-4,
                  pca_dim: int | None = None, normalize_residuals: bool = False,
                  balanced_last_level: bool = False, batch_size: int | None = None,
                  init: str | Sequence[jax.Array] = 'kmeans++') -> RQKMeans:
  """Fits RQ-KMeans on x [N, D] (see module doc); one k-means per level, keys split per level.

  Args:
    x: [N, D] item embeddings.
    num_levels: L >= 1.
    codes_per_level: K for every level, or one K_l per level (each <= N).
    key: PRNG key; the model is a deterministic function of (x, key, arguments).
    num_iters, tol, batch_size: passed to `kmeans.kmeans` at every level.
    pca_dim: project onto this many principal components first (None: no PCA).
    normalize_residuals: L2-normalise each level's residual before clustering it.
    balanced_last_level: equal-size clusters at the last level (Sinkhorn).
    init: 'kmeans++' or 'random' for every level, or one [K_l, D'] array per level.
  """
  if num_levels < 1:
    raise ValueError(f'num_levels must be >= 1, got {num_levels}')
  sizes = _level_sizes(codes_per_level, num_levels)
  inits = [init] * num_levels if isinstance(init, str) else list(init)
  if len(inits) != num_levels:
    raise ValueError(f'init has {len(inits)} arrays for {num_levels} levels')
  x = jnp.asarray(x, jnp.float32)
  pca_mean = pca_components = None
  if pca_dim is not None:
    pca_mean, pca_components = fit_pca(x, pca_dim)
    x = (x - pca_mean) @ pca_components.T  # [N, pca_dim]

  residual = x
  codebooks, level_inertia, level_num_iters = [], [], []
  for level, (num_codes, level_key) in enumerate(zip(sizes, jax.random.split(key, num_levels))):
    balanced = balanced_last_level and level == num_levels - 1
    level_input = _normalize(residual) if normalize_residuals else residual
    result = kmeans_lib.kmeans(level_input, num_codes, level_key, num_iters=num_iters, tol=tol,
                               init=inits[level], balanced=balanced, batch_size=batch_size)
    # Re-assigned by encode's own jitted step (not kmeans' labels), so encode(model, x)
    # reproduces these residuals exactly.
    _, residual = _quantize_level(residual, result.centroids, normalize=normalize_residuals,
                                  balanced=balanced)
    codebooks.append(result.centroids)
    level_inertia.append(jnp.sum(residual * residual))
    level_num_iters.append(result.num_iters_run)
  return RQKMeans(codebooks=tuple(codebooks), level_inertia=jnp.stack(level_inertia),
                  level_num_iters=jnp.stack(level_num_iters),
                  pca_mean=pca_mean, pca_components=pca_components,
                  normalize_residuals=normalize_residuals,
                  balanced_last_level=balanced_last_level)


def codebook_usage(codes: jax.Array | np.ndarray,
                   codes_per_level: int | Sequence[int]) -> CodebookUsage:
  """Per-level fraction of codes used and perplexity of codes [N, L] (host-side numpy).

  Perplexity exp(H) is K_l for perfectly uniform use and 1 when one code takes everything.
  """
  codes = np.asarray(codes)
  sizes = _level_sizes(codes_per_level, codes.shape[1])
  fraction_used, perplexity = [], []
  for level, num_codes in enumerate(sizes):
    counts = np.bincount(codes[:, level], minlength=num_codes)
    frequencies = counts[counts > 0] / codes.shape[0]
    fraction_used.append(np.count_nonzero(counts) / num_codes)
    perplexity.append(np.exp(-np.sum(frequencies * np.log(frequencies))))
  return CodebookUsage(np.asarray(fraction_used), np.asarray(perplexity))
