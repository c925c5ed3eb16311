"""Tests for genrec_jax.tokenize: k-means, Sinkhorn and RQ-KMeans against NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genrec_jax.tokenize import kmeans as kmeans_lib
from genrec_jax.tokenize import rq_kmeans
from genrec_jax.tokenize import sinkhorn as sinkhorn_lib

# ---------------------------------------------------------------------------
# Plain NumPy references (float64, loops, no library code), so a shared bug cannot hide.
# ---------------------------------------------------------------------------


def _reference_assign(x, centroids):
  """(nearest index [N], squared distance [N]) by explicit differences."""
  sq_dist = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(-1)  # [N, K]
  index = sq_dist.argmin(1)
  return index, sq_dist[np.arange(len(x)), index]


def _reference_lloyd(x, init, num_iters=100, tol=1e-4):
  """Lloyd from init: (centroids, assignments, inertia, iterations), same stopping rule."""
  x = np.asarray(x, np.float64)
  centroids = np.array(init, np.float64)
  previous_inertia = None
  iterations = 0
  for _ in range(num_iters):
    assignments, sq_dist = _reference_assign(x, centroids)
    inertia = sq_dist.sum()
    for k in range(len(centroids)):
      if np.any(assignments == k):
        centroids[k] = x[assignments == k].mean(0)
    iterations += 1
    if previous_inertia is not None and previous_inertia - inertia <= tol * previous_inertia:
      break
    previous_inertia = inertia
  assignments, sq_dist = _reference_assign(x, centroids)
  return centroids, assignments, sq_dist.sum(), iterations


def _reference_rq(x, num_levels, num_codes, normalize):
  """Residual recursion; each level starts Lloyd from its first num_codes residual rows."""
  residual = np.asarray(x, np.float64)
  inits, codes, codebooks = [], [], []
  for _ in range(num_levels):
    if normalize:
      residual = residual / np.linalg.norm(residual, axis=1, keepdims=True)
    init = residual[:num_codes].copy()
    centroids, assignments, _, _ = _reference_lloyd(residual, init)
    inits.append(init)
    codes.append(assignments)
    codebooks.append(centroids)
    residual = residual - centroids[assignments]
  return inits, np.stack(codes, 1), codebooks, residual


# Shared shapes (N = 240, D = 4, K in {6, 8}) keep the number of jit compilations small.


def _blobs(seed, num_blobs=6, per_blob=40, dim=4, spread=0.3, distance=10.0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(num_blobs, dim)) * distance
  labels = np.repeat(np.arange(num_blobs), per_blob)
  points = centers[labels] + rng.normal(size=(len(labels), dim)) * spread
  return points.astype(np.float32), labels


def _random_data(seed, num_points=240, dim=4):
  return np.random.default_rng(seed).normal(size=(num_points, dim)).astype(np.float32)


# ---------------------------------------------------------------------------
# Lloyd
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('data', ['blobs', 'random'])
def test_lloyd_matches_numpy_reference_from_same_init(data):
  x = _blobs(0)[0] if data == 'blobs' else _random_data(1)
  init = x[np.random.default_rng(2).choice(len(x), 6, replace=False)]
  result = kmeans_lib.kmeans(x, 6, jax.random.key(0), init=init)
  centroids, assignments, inertia, iterations = _reference_lloyd(x, init)
  np.testing.assert_array_equal(np.asarray(result.assignments), assignments)
  np.testing.assert_allclose(np.asarray(result.centroids), centroids, atol=1e-4)
  np.testing.assert_allclose(float(result.inertia), inertia, rtol=1e-4)
  assert int(result.num_iters_run) == iterations
  assert result.assignments.dtype == jnp.int32


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_kmeans_plus_plus_inertia_not_worse_than_reference(seed):
  x = _random_data(10 + seed)
  key = jax.random.key(seed)
  seeds = np.asarray(kmeans_lib.kmeans_plus_plus(jnp.asarray(x), 6, key))
  result = kmeans_lib.kmeans(x, 6, key, init=seeds)
  _, _, reference_inertia, _ = _reference_lloyd(x, seeds)
  assert float(result.inertia) <= 1.01 * reference_inertia
  # The built-in k-means++ path is at least as good as the reference from its seeds too.
  built_in = kmeans_lib.kmeans(x, 6, key)
  assert float(built_in.inertia) <= 1.1 * reference_inertia


def test_kmeans_is_deterministic_and_jittable():
  x = _random_data(3)
  first = kmeans_lib.kmeans(x, 6, jax.random.key(7))
  second = kmeans_lib.kmeans(x, 6, jax.random.key(7))
  jitted = jax.jit(lambda x, key: kmeans_lib.kmeans(x, 6, key))(x, jax.random.key(7))
  for a, b in [(first, second), (first, jitted)]:
    np.testing.assert_array_equal(np.asarray(a.assignments), np.asarray(b.assignments))
    np.testing.assert_array_equal(np.asarray(a.centroids), np.asarray(b.centroids))
  other = kmeans_lib.kmeans(x, 6, jax.random.key(8))
  assert not np.array_equal(np.asarray(first.centroids), np.asarray(other.centroids))


def test_kmeans_rejects_fewer_points_than_clusters_and_bad_init():
  x = _random_data(0, num_points=4)
  with pytest.raises(ValueError, match='at least as many points'):
    kmeans_lib.kmeans(x, 5, jax.random.key(0))
  with pytest.raises(ValueError, match='init'):
    kmeans_lib.kmeans(x, 2, jax.random.key(0), init='farthest')
  with pytest.raises(ValueError, match='init centroids'):
    kmeans_lib.kmeans(x, 2, jax.random.key(0), init=np.zeros((3, 4)))


def test_nearest_centroid_chunks_match_one_block():
  x = jnp.asarray(_random_data(4, num_points=1000))
  centroids = x[:7]
  one_block = kmeans_lib.nearest_centroid(x, centroids, chunk_rows=4096)
  chunked = kmeans_lib.nearest_centroid(x, centroids, chunk_rows=128)  # 1000 = 7 * 128 + 104
  reference_index, reference_sq = _reference_assign(np.asarray(x, np.float64),
                                                    np.asarray(centroids, np.float64))
  for index, sq_dist in [one_block, chunked]:
    np.testing.assert_array_equal(np.asarray(index), reference_index)
    np.testing.assert_allclose(np.asarray(sq_dist), reference_sq, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# k-means++ and empty clusters
# ---------------------------------------------------------------------------


def test_kmeans_plus_plus_seeds_are_distinct_data_points():
  x = _random_data(5)
  seeds = np.asarray(kmeans_lib.kmeans_plus_plus(jnp.asarray(x), 60, jax.random.key(0)))
  matches = (seeds[:, None, :] == x[None, :, :]).all(-1)  # [K, N]
  assert matches.any(1).all()
  assert len(np.unique(seeds, axis=0)) == 60
  first_seeds = {tuple(np.asarray(kmeans_lib.kmeans_plus_plus(jnp.asarray(x), 60,
                                                              jax.random.key(seed)))[0])
                 for seed in range(5)}
  assert len(first_seeds) > 1  # the first seed is random too


def test_greedy_kmeans_plus_plus_seeds_better_than_plain():
  x = _random_data(12)

  def mean_seeding_inertia(num_local_trials):
    inertias = []
    for seed in range(40):
      seeds = kmeans_lib.kmeans_plus_plus(jnp.asarray(x), 6, jax.random.key(seed),
                                          num_local_trials)
      inertias.append(_reference_assign(x, np.asarray(seeds))[1].sum())
    return np.mean(inertias)

  # Keeping the best of 2 + ln K candidates lowers the seeding inertia (here by ~13%).
  assert mean_seeding_inertia(None) < 0.95 * mean_seeding_inertia(1)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_kmeans_plus_plus_finds_every_well_separated_blob(seed):
  x, labels = _blobs(seed, spread=0.05, distance=20.0)
  seeds = np.asarray(kmeans_lib.kmeans_plus_plus(jnp.asarray(x), 6, jax.random.key(seed)))
  seed_blobs = {labels[(x == s).all(1).argmax()] for s in seeds}
  assert seed_blobs == set(range(6))
  result = kmeans_lib.kmeans(x, 6, jax.random.key(seed))
  assignments = np.asarray(result.assignments)
  for blob in range(6):  # each blob is exactly one cluster
    assert len(np.unique(assignments[labels == blob])) == 1
  assert len(np.unique(assignments)) == 6


def test_duplicated_initial_centroids_end_with_every_cluster_used():
  x, _ = _blobs(3)
  init = np.repeat(x[:2], 4, axis=0)  # 8 centroids, only 2 distinct
  result = kmeans_lib.kmeans(x, 8, jax.random.key(0), init=init)
  assert np.bincount(np.asarray(result.assignments), minlength=8).min() >= 1
  assert len(np.unique(np.asarray(result.centroids), axis=0)) == 8
  # Also on the last E-step alone (num_iters=0): reseeding happens there too.
  result = kmeans_lib.kmeans(x, 8, jax.random.key(0), init=init, num_iters=0)
  assert np.bincount(np.asarray(result.assignments), minlength=8).min() >= 1
  centroids, assignments = np.asarray(result.centroids), np.asarray(result.assignments)
  np.testing.assert_allclose(float(result.inertia),
                             ((x - centroids[assignments]) ** 2).sum(), rtol=1e-5)


def test_as_many_clusters_as_distinct_points_gives_zero_inertia():
  distinct = _random_data(6, num_points=6)
  x = np.repeat(distinct, 40, axis=0)
  result = kmeans_lib.kmeans(x, 6, jax.random.key(0))
  assignments = np.asarray(result.assignments)
  assert len(np.unique(assignments)) == 6
  for group in range(6):  # each distinct point is its own cluster
    assert len(np.unique(assignments[group * 40:(group + 1) * 40])) == 1
  assert float(result.inertia) == pytest.approx(0.0, abs=1e-4)


# ---------------------------------------------------------------------------
# Sinkhorn and balanced k-means
# ---------------------------------------------------------------------------


def test_sinkhorn_marginals_are_uniform():
  cost = jnp.asarray(np.random.default_rng(0).random((60, 7)), jnp.float32)
  plan = np.asarray(sinkhorn_lib.sinkhorn(cost, epsilon=0.05, num_iters=200))
  assert (plan >= 0).all()
  np.testing.assert_allclose(plan.sum(1), 1 / 60, rtol=1e-3)
  np.testing.assert_allclose(plan.sum(0), 1 / 7, rtol=1e-4)


def test_sinkhorn_marginals_with_padded_row_blocks():
  # 2100 rows = 2 blocks of 2048 (the second mostly padding, which must carry no mass).
  cost = jnp.asarray(np.random.default_rng(3).random((2100, 3)), jnp.float32)
  plan = np.asarray(sinkhorn_lib.sinkhorn(cost, epsilon=0.1, num_iters=30))
  assert plan.shape == (2100, 3)
  np.testing.assert_allclose(plan.sum(0), 1 / 3, rtol=1e-3)
  np.testing.assert_allclose(plan.sum(1), 1 / 2100, rtol=1e-2)


def test_sinkhorn_small_epsilon_recovers_the_optimal_assignment():
  # Optimal permutation: row 0 -> col 2, row 1 -> col 0, row 2 -> col 1 (total cost 3).
  cost = jnp.asarray([[5.0, 9.0, 1.0], [1.0, 5.0, 9.0], [9.0, 1.0, 5.0]])
  plan = np.asarray(sinkhorn_lib.sinkhorn(cost, epsilon=0.01, num_iters=200))
  np.testing.assert_allclose(plan, np.eye(3)[[2, 0, 1]] / 3, atol=1e-4)


@pytest.mark.parametrize('scale', [1e6, 1e30])
def test_sinkhorn_is_stable_for_huge_and_infinite_costs(scale):
  cost = np.random.default_rng(1).random((40, 5)).astype(np.float32) * scale
  cost[0, 0] = np.inf
  plan = np.asarray(sinkhorn_lib.sinkhorn(jnp.asarray(cost), epsilon=0.01, num_iters=100))
  assert np.isfinite(plan).all()
  np.testing.assert_allclose(plan.sum(0), 1 / 5, rtol=1e-4)
  np.testing.assert_allclose(plan.sum(1), 1 / 40, rtol=1e-2)
  assert plan[0, 0] < 1e-6


def test_balanced_assign_sizes_differ_by_at_most_one():
  rng = np.random.default_rng(2)
  cost = jnp.asarray(rng.random((243, 8)) ** 3, jnp.float32)  # skewed: argmax unbalanced
  sizes = np.bincount(np.asarray(sinkhorn_lib.balanced_assign(cost, exact_sizes=True)),
                      minlength=8)
  np.testing.assert_array_equal(np.sort(sizes), [30] * 5 + [31] * 3)  # 243 = 8 * 30 + 3
  plan = np.asarray(sinkhorn_lib.sinkhorn(cost))
  np.testing.assert_array_equal(np.asarray(sinkhorn_lib.balanced_assign(cost)), plan.argmax(1))


def test_balanced_kmeans_has_equal_cluster_sizes():
  x = _random_data(7, num_points=240)
  x[:120] += 5.0  # two unequal-looking halves, so plain k-means would not be balanced
  result = kmeans_lib.kmeans(x, 8, jax.random.key(0), balanced=True)
  sizes = np.bincount(np.asarray(result.assignments), minlength=8)
  np.testing.assert_array_equal(sizes, np.full(8, 30))
  centroids, assignments = np.asarray(result.centroids), np.asarray(result.assignments)
  np.testing.assert_allclose(float(result.inertia),
                             ((x - centroids[assignments]) ** 2).sum(), rtol=1e-4)


# ---------------------------------------------------------------------------
# Mini-batch
# ---------------------------------------------------------------------------


def test_mini_batch_inertia_close_to_full_lloyd():
  x, _ = _blobs(4, spread=1.0, distance=5.0)
  full = kmeans_lib.kmeans(x, 6, jax.random.key(0))
  mini = kmeans_lib.kmeans(x, 6, jax.random.key(0), batch_size=32, num_iters=100)
  assert float(mini.inertia) <= 1.05 * float(full.inertia)
  assert int(mini.num_iters_run) == 100
  _, sq_dist = _reference_assign(x.astype(np.float64), np.asarray(mini.centroids, np.float64))
  np.testing.assert_allclose(float(mini.inertia), sq_dist.sum(), rtol=1e-4)


# ---------------------------------------------------------------------------
# RQ-KMeans
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('normalize', [False, True])
def test_rq_kmeans_matches_numpy_residual_recursion(normalize):
  x, _ = _blobs(5, spread=2.0, distance=6.0)
  inits, codes, codebooks, residual = _reference_rq(x, 3, 6, normalize)
  model = rq_kmeans.fit_rq_kmeans(x, 3, 6, jax.random.key(0), init=inits,
                                  normalize_residuals=normalize)
  got_codes, got_residual = rq_kmeans.encode(model, x)
  np.testing.assert_array_equal(np.asarray(got_codes), codes)
  for got, want in zip(model.codebooks, codebooks):
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)
  np.testing.assert_allclose(np.asarray(got_residual), residual, atol=1e-4)
  assert got_codes.shape == (240, 3) and got_codes.dtype == jnp.int32


def test_rq_kmeans_reconstruction_error_decreases_with_levels():
  x = _random_data(8)
  model = rq_kmeans.fit_rq_kmeans(x, 3, [8, 6, 6], jax.random.key(0))
  codes, residual = rq_kmeans.encode(model, x)
  errors = [float(((x - rq_kmeans.reconstruct(model, codes[:, :level])) ** 2).sum())
            for level in range(1, 4)]
  assert errors[0] > errors[1] > errors[2]
  np.testing.assert_allclose(errors, np.asarray(model.level_inertia), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(rq_kmeans.reconstruct(model, codes)) + residual, x,
                             atol=1e-5)
  assert [c.shape for c in model.codebooks] == [(8, 4), (6, 4), (6, 4)]
  # New points: the first 50 encoded alone get the same codes as within the whole set.
  np.testing.assert_array_equal(np.asarray(rq_kmeans.encode(model, x[:50])[0]),
                                np.asarray(codes[:50]))


def test_rq_kmeans_pca_on_data_in_a_subspace():
  rng = np.random.default_rng(9)
  basis = np.linalg.qr(rng.normal(size=(8, 4)))[0].T  # [4, 8] orthonormal rows
  x = (rng.normal(size=(240, 4)) * [5.0, 3.0, 2.0, 1.0] @ basis + 4.0).astype(np.float32)
  model = rq_kmeans.fit_rq_kmeans(x, 2, 8, jax.random.key(0), pca_dim=4)
  components = np.asarray(model.pca_components)
  assert components.shape == (4, 8)
  np.testing.assert_allclose(components @ components.T, np.eye(4), atol=1e-5)
  overlap = components @ basis.T  # [4, 4], orthogonal iff the components span the subspace
  np.testing.assert_allclose(overlap @ overlap.T, np.eye(4), atol=1e-4)
  np.testing.assert_allclose(np.asarray(model.pca_mean), x.mean(0), atol=1e-4)
  assert model.codebooks[0].shape == (8, 4)
  codes, residual = rq_kmeans.encode(model, x)
  assert residual.shape == (240, 4)
  # Nothing lies outside the 4-d subspace, so the error in x space is the residual's alone.
  error = float(((x - rq_kmeans.reconstruct(model, codes)) ** 2).sum())
  np.testing.assert_allclose(error, float((np.asarray(residual) ** 2).sum()), rtol=1e-3)
  with pytest.raises(ValueError, match='pca_dim'):
    rq_kmeans.fit_rq_kmeans(x, 2, 8, jax.random.key(0), pca_dim=9)


def test_rq_kmeans_balanced_last_level():
  x = _random_data(11)
  model = rq_kmeans.fit_rq_kmeans(x, 2, 8, jax.random.key(0), balanced_last_level=True)
  codes = np.asarray(rq_kmeans.encode(model, x)[0])
  np.testing.assert_array_equal(np.bincount(codes[:, 1], minlength=8), np.full(8, 30))
  nearest = np.asarray(rq_kmeans.encode(model, x, balanced_last_level=False)[0])
  np.testing.assert_array_equal(nearest[:, 0], codes[:, 0])


def test_codebook_usage_by_hand():
  codes = np.array([[0, 1], [0, 1], [1, 0], [2, 1]])
  usage = rq_kmeans.codebook_usage(codes, 4)
  np.testing.assert_allclose(usage.fraction_used, [3 / 4, 2 / 4])
  entropy_0 = -(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25))
  entropy_1 = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
  np.testing.assert_allclose(usage.perplexity, np.exp([entropy_0, entropy_1]))
  uniform = rq_kmeans.codebook_usage(np.arange(6)[:, None], [6])
  np.testing.assert_allclose(uniform.perplexity, [6.0])
  np.testing.assert_allclose(uniform.fraction_used, [1.0])
