"""Jitted k-means: greedy k-means++, Lloyd, mini-batch (Sculley 2010) and Sinkhorn-balanced.

For points x_n [D] and centroids mu_k [D], every variant minimises the inertia

  I = sum_n ||x_n - mu_{a_n}||^2,   a_n = argmin_k ||x_n - mu_k||^2,

with squared distances expanded as ||x||^2 - 2 x.mu + ||mu||^2 (one matmul per N-chunk; the
argmin ignores ||x||^2, which is added back, clamped at 0, for the distance itself).

Lloyd iteration t (a lax.while_loop):
  E-step   a_n = argmin_k d(x_n, mu_k)       (balanced: Sinkhorn plan, see below)
  reseed   each empty cluster takes the point farthest from its centroid (see
           `_fill_empty_clusters`), so all K clusters are used when N >= K
  M-step   mu_k = mean of its points
  stop     when (I_{t-1} - I_t) <= tol * I_{t-1} (I_t = E-step inertia, relative improvement
           below tol; an increase also stops) or after num_iters iterations.
A final E-step (and reseed) makes assignments and inertia consistent with the centroids.

Mini-batch (batch_size set): num_iters steps; each draws batch_size points (with replacement)
and moves every centre to the running mean of all points it ever received, i.e. Sculley's
per-centre learning rate 1 / count applied to the whole batch at once. tol is unused there (a
batch inertia is too noisy to stop on). One full E-step (and reseed) gives the assignments.

Balanced (balanced=True): the E-step assigns with `sinkhorn.balanced_assign(exact_sizes=True)`
on the squared-distance matrix [N, K], so every cluster has floor(N/K) or floor(N/K) + 1
points; the M-step is unchanged. Needs the full [N, K] matrix and ~50 Sinkhorn iterations per
E-step, so it is much slower than plain Lloyd.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from genrec_jax.tokenize import sinkhorn as sinkhorn_lib

# Rows per distance block: a [4096, K] float32 block stays in cache for K = 256 (4 MiB), so
# 100k x 256 never materialises the full 100 MB matrix.
_CHUNK_ROWS = 4096

_INIT_METHODS = ('kmeans++', 'random')


class KMeansResult(NamedTuple):
  centroids: jax.Array  # [K, D] float32
  assignments: jax.Array  # [N] int32
  inertia: jax.Array  # [] float32, sum of squared distances to the assigned centroid
  num_iters_run: jax.Array  # [] int32, Lloyd iterations (mini-batch: steps)


# ---------------------------------------------------------------------------
# Distances
# ---------------------------------------------------------------------------


def squared_distances(x: jax.Array, centroids: jax.Array) -> jax.Array:
  """||x_n - mu_k||^2 [N, K] for x [N, D], centroids [K, D], clamped at 0."""
  x_sq = jnp.sum(x * x, axis=1)  # [N]
  centroid_sq = jnp.sum(centroids * centroids, axis=1)  # [K]
  cross = x @ centroids.T  # [N, K]
  return jnp.maximum(x_sq[:, None] - 2.0 * cross + centroid_sq[None, :], 0.0)


def _first_argmin(values: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(first index of the row minimum [B] int32, row minimum [B]) of values [B, K].

  Same result as jnp.argmin, written as two plain min-reductions: XLA:CPU vectorises those
  but not argmin's (value, index) reduction, which made the E-step ~10x slower.
  """
  row_min = jnp.min(values, axis=1, keepdims=True)  # [B, 1]
  column = jax.lax.broadcasted_iota(jnp.int32, values.shape, 1)
  first = jnp.min(jnp.where(values <= row_min, column, values.shape[1]), axis=1)
  return first, row_min[:, 0]


def nearest_centroid(x: jax.Array, centroids: jax.Array,
                     chunk_rows: int = _CHUNK_ROWS) -> tuple[jax.Array, jax.Array]:
  """(index [N] int32, squared distance [N]) of each point's nearest centroid (first on ties)."""
  num_points = x.shape[0]
  centroid_sq = jnp.sum(centroids * centroids, axis=1)  # [K]

  def block(x_block):  # [B, D] -> ([B], [B])
    # ||x - mu||^2 - ||x||^2: the argmin does not need the per-row constant.
    partial = centroid_sq[None, :] - 2.0 * (x_block @ centroids.T)  # [B, K]
    index, best = _first_argmin(partial)
    return index, jnp.maximum(best + jnp.sum(x_block * x_block, axis=1), 0.0)

  if num_points <= chunk_rows:
    return block(x)
  num_chunks = -(-num_points // chunk_rows)
  padded = jnp.pad(x, ((0, num_chunks * chunk_rows - num_points), (0, 0)))
  index, sq_dist = jax.lax.map(block, padded.reshape(num_chunks, chunk_rows, -1))
  return index.reshape(-1)[:num_points], sq_dist.reshape(-1)[:num_points]


# ---------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=('num_clusters', 'num_local_trials'))
def kmeans_plus_plus(x: jax.Array, num_clusters: int, key: jax.Array,
                     num_local_trials: int | None = None) -> jax.Array:
  """Greedy k-means++ seeds [K, D], all distinct data points while distinct points remain.

  The first seed is uniform. Each next one: draw num_local_trials candidates with probability
  proportional to D(x)^2 (squared distance to the nearest seed so far) and keep the candidate
  that most lowers the total D^2 (the greedy variant of Arthur & Vassilvitskii 2007, as in
  scikit-learn; default 2 + floor(ln K) trials; num_local_trials=1 is plain k-means++).
  """
  num_points = x.shape[0]
  if num_local_trials is None:
    num_local_trials = 2 + int(math.log(num_clusters))
  x_sq = jnp.sum(x * x, axis=1)  # [N]
  # All randomness in one draw, outside the loop: each RNG call costs ~0.4 s of compile time.
  # u in (0, 1], so a drawn target below is > 0 and searchsorted lands on a point with mass.
  uniforms = 1.0 - jax.random.uniform(key, (num_clusters, num_local_trials))  # [K, L]
  first = (jnp.ceil(uniforms[0, 0] * num_points) - 1).astype(jnp.int32)  # uniform in [0, N)
  first = jnp.clip(first, 0, num_points - 1)
  # The chosen point's own distance is set to exactly 0 (the expansion may leave ~1e-6), so
  # it can never be drawn again.
  closest_sq = squared_distances(x, x[first][None, :])[:, 0].at[first].set(0.0)  # [N]
  seeds = jnp.zeros((num_clusters, x.shape[1]), x.dtype).at[0].set(x[first])

  def add_seed(c, state):
    seeds, closest_sq = state
    cumulative = jnp.cumsum(closest_sq)  # [N]
    targets = uniforms[c] * cumulative[-1]  # [L]
    candidates = jnp.minimum(jnp.searchsorted(cumulative, targets), num_points - 1)  # [L]
    candidate_x = x[candidates]  # [L, D]
    # [L, N] directly (not [N, L] transposed): the skinny matmul is ~1.5x faster this way.
    candidate_sq = jnp.maximum(
        x_sq[None, :] - 2.0 * (candidate_x @ x.T)
        + jnp.sum(candidate_x * candidate_x, axis=1)[:, None], 0.0)
    candidate_sq = candidate_sq.at[jnp.arange(num_local_trials), candidates].set(0.0)
    candidate_sq = jnp.minimum(candidate_sq, closest_sq[None, :])
    best = jnp.argmin(jnp.sum(candidate_sq, axis=1))
    return seeds.at[c].set(candidate_x[best]), candidate_sq[best]

  seeds, _ = jax.lax.fori_loop(1, num_clusters, add_seed, (seeds, closest_sq))
  return seeds


def random_init(x: jax.Array, num_clusters: int, key: jax.Array) -> jax.Array:
  """num_clusters distinct data points [K, D], uniformly at random."""
  return x[jax.random.choice(key, x.shape[0], (num_clusters,), replace=False)]


# ---------------------------------------------------------------------------
# Steps shared by Lloyd and mini-batch
# ---------------------------------------------------------------------------


def _fill_empty_clusters(assignments: jax.Array, sq_dist: jax.Array,
                         num_clusters: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Moves the farthest points into empty clusters: (assignments [N], sq_dist [N], was_empty [K]).

  Clusters are filled in index order, each with the point farthest from its current centroid
  (lowest index on ties, so deterministic) among points whose cluster keeps >= 1 other
  point. A moved point becomes its cluster's only member (distance 0 once the centroid moves
  onto it). When N >= K such a point always exists, so no cluster is left empty.
  """
  counts = jnp.zeros((num_clusters,), jnp.int32).at[assignments].add(1)
  was_empty = counts == 0

  def fill_one(cluster, state):
    def move(state):
      assignments, sq_dist, counts = state
      movable = counts[assignments] >= 2
      far = jnp.argmax(jnp.where(movable, sq_dist, -1.0))
      counts = counts.at[assignments[far]].add(-1).at[cluster].set(1)
      return assignments.at[far].set(cluster), sq_dist.at[far].set(0.0), counts

    return jax.lax.cond(state[2][cluster] == 0, move, lambda s: s, state)

  def fill_all(state):
    return jax.lax.fori_loop(0, num_clusters, fill_one, state)

  state = (assignments, sq_dist, counts)
  assignments, sq_dist, _ = jax.lax.cond(jnp.any(was_empty), fill_all, lambda s: s, state)
  return assignments, sq_dist, was_empty


def _assign(x: jax.Array, centroids: jax.Array,
            balanced: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
  """E-step, empty clusters reseeded: (assignments [N] int32, sq_dist [N], was_empty [K])."""
  if balanced:
    sq_dist_all = squared_distances(x, centroids)  # [N, K]
    assignments = sinkhorn_lib.balanced_assign(sq_dist_all, exact_sizes=True)
    sq_dist = jnp.take_along_axis(sq_dist_all, assignments[:, None], axis=1)[:, 0]
  else:
    assignments, sq_dist = nearest_centroid(x, centroids)
  return _fill_empty_clusters(assignments, sq_dist, centroids.shape[0])


def _cluster_sums(x: jax.Array, assignments: jax.Array,
                  num_clusters: int) -> tuple[jax.Array, jax.Array]:
  """(sum of points [K, D], count [K] float32) per cluster."""
  sums = jax.ops.segment_sum(x, assignments, num_segments=num_clusters)
  counts = jax.ops.segment_sum(jnp.ones(assignments.shape, jnp.float32), assignments,
                               num_segments=num_clusters)
  return sums, counts


def _cluster_means(x: jax.Array, assignments: jax.Array, old_centroids: jax.Array) -> jax.Array:
  """M-step [K, D]; a cluster without points keeps its old centroid."""
  sums, counts = _cluster_sums(x, assignments, old_centroids.shape[0])
  return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], old_centroids)


def _final_assignment(x: jax.Array, centroids: jax.Array,
                      balanced: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(centroids, assignments, inertia) from one E-step with the given centroids.

  Only a reseeded cluster changes centroid (onto its single moved point), so the inertia is
  exactly sum_n ||x_n - mu_{a_n}||^2 for the returned pair.
  """
  assignments, sq_dist, was_empty = _assign(x, centroids, balanced)
  means = _cluster_means(x, assignments, centroids)
  centroids = jnp.where(was_empty[:, None], means, centroids)
  return centroids, assignments, jnp.sum(sq_dist)


# ---------------------------------------------------------------------------
# Lloyd and mini-batch loops
# ---------------------------------------------------------------------------


def _lloyd(x: jax.Array, centroids: jax.Array, tol: jax.Array, num_iters: int,
           balanced: bool) -> tuple[jax.Array, jax.Array]:
  """(centroids [K, D], iterations run []) of Lloyd's algorithm from the given centroids."""

  def keep_going(state):
    iteration, _, _, converged = state
    return (iteration < num_iters) & ~converged

  def step(state):
    iteration, centroids, previous_inertia, _ = state
    assignments, sq_dist, _ = _assign(x, centroids, balanced)
    inertia = jnp.sum(sq_dist)
    # Comparisons only, no division: no NaN when the inertia reaches 0.
    converged = (iteration > 0) & (previous_inertia - inertia <= tol * previous_inertia)
    return iteration + 1, _cluster_means(x, assignments, centroids), inertia, converged

  state = (jnp.zeros((), jnp.int32), centroids, jnp.zeros((), jnp.float32),
           jnp.zeros((), bool))
  iterations, centroids, _, _ = jax.lax.while_loop(keep_going, step, state)
  return centroids, iterations


def _mini_batch(x: jax.Array, centroids: jax.Array, key: jax.Array, num_steps: int,
                batch_size: int) -> jax.Array:
  """Centroids [K, D] after num_steps mini-batch steps (Sculley 2010, per-batch form)."""
  num_clusters = centroids.shape[0]
  # Drawn up front: RNG inside the loop body makes compilation several times slower.
  batch_indices = jax.random.randint(key, (num_steps, batch_size), 0, x.shape[0])

  def step(i, state):
    centroids, counts = state
    batch = x[batch_indices[i]]  # [B, D]
    assignments, _ = nearest_centroid(batch, centroids)
    batch_sums, batch_counts = _cluster_sums(batch, assignments, num_clusters)
    new_counts = counts + batch_counts
    # Learning rate 1 / count per centre: the centre is the mean of all points it received.
    updated = (centroids * counts[:, None] + batch_sums) / jnp.maximum(new_counts, 1.0)[:, None]
    return jnp.where(batch_counts[:, None] > 0, updated, centroids), new_counts

  counts = jnp.zeros((num_clusters,), jnp.float32)
  centroids, _ = jax.lax.fori_loop(0, num_steps, step, (centroids, counts))
  return centroids


@functools.partial(jax.jit, static_argnames=('num_clusters', 'num_iters', 'init_method',
                                             'balanced', 'batch_size'))
def _fit(x: jax.Array, key: jax.Array, init_centroids: jax.Array | None, tol: jax.Array, *,
         num_clusters: int, num_iters: int, init_method: str, balanced: bool,
         batch_size: int | None) -> KMeansResult:
  # Split only for mini-batch: every RNG call adds compile time to the common Lloyd path.
  init_key, batch_key = (key, None) if batch_size is None else jax.random.split(key)
  if init_centroids is not None:
    centroids = init_centroids
  elif init_method == 'kmeans++':
    centroids = kmeans_plus_plus(x, num_clusters, init_key)
  else:
    centroids = random_init(x, num_clusters, init_key)
  if batch_size is None:
    centroids, iterations = _lloyd(x, centroids, tol, num_iters, balanced)
  else:
    centroids = _mini_batch(x, centroids, batch_key, num_iters, batch_size)
    iterations = jnp.asarray(num_iters, jnp.int32)
  centroids, assignments, inertia = _final_assignment(x, centroids, balanced)
  return KMeansResult(centroids, assignments, inertia, iterations)


def kmeans(x: jax.Array, num_clusters: int, key: jax.Array, *, num_iters: int = 100,
           tol: float = 1e-4, init: str | jax.Array = 'kmeans++', balanced: bool = False,
           batch_size: int | None = None) -> KMeansResult:
  """k-means of x [N, D] into num_clusters clusters (see module doc for the algorithms).

  Args:
    x: [N, D] points (computed in float32).
    num_clusters: K <= N.
    key: PRNG key; the result is a deterministic function of (x, key, arguments).
    num_iters: maximum Lloyd iterations, or the number of mini-batch steps.
    tol: Lloyd stops when the relative inertia improvement falls to tol or below.
    init: 'kmeans++' (greedy), 'random' (distinct data points) or given centroids [K, D].
    balanced: Sinkhorn-balanced E-steps, cluster sizes floor(N/K) or floor(N/K) + 1.
    batch_size: mini-batch k-means with this many points per step (then one full E-step).

  Returns:
    KMeansResult with jax arrays; inertia and num_iters_run are scalars. Jittable with
    num_clusters, num_iters, init (when a string), balanced and batch_size static.
  """
  x = jnp.asarray(x, jnp.float32)
  if x.ndim != 2:
    raise ValueError(f'x must be [N, D], got shape {x.shape}')
  num_points = x.shape[0]
  if num_points < num_clusters:
    raise ValueError(f'k-means needs at least as many points as clusters: N={num_points} '
                     f'< num_clusters={num_clusters}')
  if num_clusters < 1 or num_iters < 0:
    raise ValueError(f'need num_clusters >= 1 and num_iters >= 0, got {num_clusters}, '
                     f'{num_iters}')
  if batch_size is not None and batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  if isinstance(init, str):
    if init not in _INIT_METHODS:
      raise ValueError(f'init must be one of {_INIT_METHODS} or centroids [K, D], got {init!r}')
    init_method, init_centroids = init, None
  else:
    init_centroids = jnp.asarray(init, jnp.float32)
    if init_centroids.shape != (num_clusters, x.shape[1]):
      raise ValueError(f'init centroids must be [{num_clusters}, {x.shape[1]}], got '
                       f'{init_centroids.shape}')
    init_method = 'given'
  return _fit(x, key, init_centroids, jnp.asarray(tol, jnp.float32), num_clusters=num_clusters,
              num_iters=num_iters, init_method=init_method, balanced=balanced,
              batch_size=batch_size)
