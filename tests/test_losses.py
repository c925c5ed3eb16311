"""genrec_jax/losses.py against slow float64 references written out element by element."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax import losses


def test_target_log_probs_equals_a_loop_over_rows_and_masks_padding():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 7)) * 3
  targets = rng.integers(0, 7, size=(3, 4))
  targets[1, 2] = targets[2, 0] = -1
  got = np.asarray(losses.target_log_probs(jnp.asarray(logits, jnp.float32),
                                           jnp.asarray(targets)))
  for b in range(3):
    for t in range(4):
      row = logits[b, t]
      expected = 0.0 if targets[b, t] < 0 else (
          row[targets[b, t]] - math.log(sum(math.exp(x) for x in row)))
      np.testing.assert_allclose(got[b, t], expected, rtol=1e-5, atol=1e-5)


def test_target_log_probs_is_finite_for_huge_logits_in_bfloat16():
  logits = jnp.array([[3e4, -3e4, 0.0]], jnp.bfloat16)  # softmax runs in float32
  got = losses.target_log_probs(logits, jnp.array([1]))
  assert np.isfinite(np.asarray(got)).all() and float(got[0]) < -5e4


def test_unlikelihood_by_hand_and_capped_at_certainty():
  log_probs = jnp.log(jnp.array([0.5, 0.9, 1.0, 0.25]))
  valid = jnp.array([True, True, True, False])
  got = np.asarray(losses.unlikelihood(log_probs, valid))
  np.testing.assert_allclose(got[:2], [-math.log(0.5), -math.log(0.1)], rtol=1e-5)
  np.testing.assert_allclose(got[2], -math.log(1e-6), rtol=1e-2)  # p = 1 costs ~13.8, not inf
  assert got[3] == 0.0
  grad = jax.grad(lambda lp: losses.unlikelihood(lp, valid).sum())(log_probs)
  assert np.isfinite(np.asarray(grad)).all()


def _catalogue(num_users=5, num_items=23, dim=6, seed=0):
  rng = np.random.default_rng(seed)
  queries = rng.normal(size=(num_users, dim)) * 1.5
  table = rng.normal(size=(num_items, dim))
  targets = rng.integers(0, num_items, num_users)
  targets[2] = -1  # padding
  return queries, table, targets


def _item_ce_reference(queries, table, targets):
  """float64, row by row: −log softmax(q · t_i)[target]."""
  out = []
  for q, target in zip(queries, targets):
    if target < 0:
      out.append(0.0)
      continue
    logits = [float(np.dot(q, t)) for t in table]
    top = max(logits)
    out.append(top + math.log(sum(math.exp(x - top) for x in logits)) - logits[target])
  return np.array(out)


def test_chunked_item_softmax_ce_equals_the_reference_and_the_unchunked_form():
  """Values and gradients of the chunked loss equal the unchunked full softmax (and a
  float64 loop), for chunks that divide the catalogue, that do not, and one chunk."""
  queries, table, targets = _catalogue()
  q, t, y = (jnp.asarray(queries, jnp.float32), jnp.asarray(table, jnp.float32),
             jnp.asarray(targets))
  weights = jnp.asarray(np.random.default_rng(1).normal(size=len(targets)), jnp.float32)

  def unchunked(q, t):
    return -losses.target_log_probs(q @ t.T, y)

  want = unchunked(q, t)
  np.testing.assert_allclose(want, _item_ce_reference(queries, table, targets), rtol=1e-5,
                             atol=1e-5)
  want_grads = jax.grad(lambda q, t: (unchunked(q, t) * weights).sum(), argnums=(0, 1))(q, t)
  for chunk in (1, 7, 64):  # one row, chunks that do not divide 23 rows, one chunk
    loss = lambda q, t, c=chunk: losses.item_softmax_cross_entropy(q, t, y, c)
    np.testing.assert_allclose(jax.jit(loss)(q, t), want, rtol=1e-5, atol=1e-5)
    grads = jax.jit(jax.grad(lambda q, t: (loss(q, t) * weights).sum(), argnums=(0, 1)))(q, t)
    for got, expected in zip(grads, want_grads):
      np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_chunked_logsumexp_keeps_memory_per_chunk_in_the_backward_pass():
  """The custom VJP recomputes each chunk: no [B, I] array is saved for the backward pass
  (autodiff through the scan would keep every chunk's logits)."""
  q = jnp.ones((4, 8), jnp.float32)
  t = jnp.ones((1000, 8), jnp.float32)
  f = lambda q, t: losses.chunked_logsumexp(q, t, 100).sum()
  jaxpr = str(jax.make_jaxpr(jax.grad(f, argnums=(0, 1)))(q, t))
  assert '4,1000]' not in jaxpr.replace(' ', '') and '10,4,100]' not in jaxpr.replace(' ', '')
  np.testing.assert_allclose(f(q, t), 4 * (8 + math.log(1000)), rtol=1e-6)


def test_sampled_softmax_with_logq_equals_a_loop_and_drops_accidental_hits():
  queries, table, targets = _catalogue(seed=2)
  rng = np.random.default_rng(3)
  q_dist = rng.random(len(table)) + 0.1
  q_dist /= q_dist.sum()
  negatives = rng.integers(0, len(table), 9)
  negatives[0] = targets[0]  # an accidental hit for row 0
  got = np.asarray(losses.sampled_softmax_cross_entropy(
      jnp.asarray(queries, jnp.float32), jnp.asarray(table, jnp.float32),
      jnp.asarray(targets), jnp.asarray(negatives), jnp.asarray(np.log(q_dist), jnp.float32)))
  for b, (q, target) in enumerate(zip(queries, targets)):
    if target < 0:
      assert got[b] == 0.0
      continue
    pos = float(np.dot(q, table[target])) - math.log(q_dist[target])
    logits = [pos] + [float(np.dot(q, table[n])) - math.log(q_dist[n]) for n in negatives
                      if n != target]
    top = max(logits)
    want = top + math.log(sum(math.exp(x - top) for x in logits)) - pos
    np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)


def _softmax64(row):
  top = max(row)
  exps = [math.exp(x - top) for x in row]
  return [e / sum(exps) for e in exps]


def test_symmetric_kl_equals_two_kl_sums_at_a_temperature():
  rng = np.random.default_rng(1)
  p_logits, q_logits = rng.normal(size=(2, 3, 6)) * 2, rng.normal(size=(2, 3, 6)) * 2
  got = np.asarray(losses.symmetric_kl(jnp.asarray(p_logits, jnp.float32),
                                       jnp.asarray(q_logits, jnp.float32), 0.85))
  for b in range(2):
    for t in range(3):
      p = _softmax64([x / 0.85 for x in p_logits[b, t]])
      q = _softmax64([x / 0.85 for x in q_logits[b, t]])
      kl = lambda a, c: sum(ai * math.log(ai / ci) for ai, ci in zip(a, c))
      np.testing.assert_allclose(got[b, t], kl(p, q) + kl(q, p), rtol=1e-4, atol=1e-6)
  same = losses.symmetric_kl(jnp.asarray(p_logits), jnp.asarray(p_logits) + 3.0)  # shift-free
  np.testing.assert_allclose(np.asarray(same), 0.0, atol=1e-5)


def test_info_nce_equals_a_loop_over_valid_pairs_both_directions():
  rng = np.random.default_rng(2)
  a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
  valid = np.array([True, True, False, True, True])
  a[2] = b[2] = 50.0  # an invalid row must neither count nor act as a negative
  got = {d: np.asarray(losses.info_nce(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32),
                                       jnp.asarray(valid), 0.9))
         for d, (q, k) in {'ab': (a, b), 'ba': (b, a)}.items()}
  for d, (q, k) in {'ab': (a, b), 'ba': (b, a)}.items():
    for i in range(5):
      if not valid[i]:
        assert got[d][i] == 0.0
        continue
      logits = [sum(q[i, x] * k[j, x] for x in range(4)) / 0.9 for j in range(5) if valid[j]]
      own = sum(q[i, x] * k[i, x] for x in range(4)) / 0.9
      top = max(logits)
      expected = -(own - top - math.log(sum(math.exp(v - top) for v in logits)))
      np.testing.assert_allclose(got[d][i], expected, rtol=1e-5, atol=1e-5)
  grads = jax.grad(lambda q: losses.info_nce(q, jnp.asarray(b, jnp.float32),
                                             jnp.asarray(valid), 0.9).sum())(
                                                 jnp.asarray(a, jnp.float32))
  assert np.all(np.asarray(grads)[2] == 0.0) and np.isfinite(np.asarray(grads)).all()


def test_sampled_bce_equals_a_loop_over_rows():
  rng = np.random.default_rng(3)
  pos, neg = rng.normal(size=(4,)) * 3, rng.normal(size=(4, 3)) * 3
  valid = np.array([True, False, True, True])
  got = np.asarray(losses.sampled_bce(jnp.asarray(pos, jnp.float32),
                                      jnp.asarray(neg, jnp.float32), jnp.asarray(valid)))
  sigmoid = lambda x: 1.0 / (1.0 + math.exp(-x))
  for r in range(4):
    expected = 0.0 if not valid[r] else (
        -math.log(sigmoid(pos[r])) - sum(math.log(1.0 - sigmoid(x)) for x in neg[r]) / 3)
    np.testing.assert_allclose(got[r], expected, rtol=1e-5, atol=1e-6)


def test_sampled_negatives_never_hit_excluded_items_and_are_uniform_over_the_rest():
  exclude = np.array([[3, 0, 9, 3, -1, -1],  # duplicates and padding
                      [-1, -1, -1, -1, -1, -1],  # nothing excluded
                      [0, 1, 2, 3, 4, 5]], np.int32)  # only 6..9 left
  num_items, draws = 10, 20_000
  got = np.asarray(losses.sample_negatives(jax.random.PRNGKey(0), jnp.asarray(exclude),
                                           num_items, draws))
  assert got.shape == (3, draws) and got.min() >= 0 and got.max() < num_items
  for row, excluded in enumerate(exclude):
    allowed = sorted(set(range(num_items)) - set(excluded.tolist()))
    assert set(np.unique(got[row])) == set(allowed)  # never excluded, every free one drawn
    share = np.bincount(got[row], minlength=num_items)[allowed] / draws
    np.testing.assert_allclose(share, 1 / len(allowed), atol=0.02)


def _calibration_reference(vectors, items, strength, gamma):
  """float64 double loop over the batch's target positions i != j (GenAIR's formula)."""
  n = len(items)
  unit = [v / max(np.linalg.norm(v), 1e-12) for v in vectors.astype(np.float64)]
  total = 0.0
  for i in range(n):
    for j in range(n):
      if i == j:
        continue
      s = strength[items[i], items[j]]
      w = math.exp(-gamma * s) if s > 0 else 1.0  # pairs that never co-occur weigh 1
      total += w * sum((a - b) ** 2 for a, b in zip(unit[i], unit[j]))
  return -total / (n * (n - 1))


def test_behavioural_calibration_equals_a_double_loop_per_target_and_per_item():
  rng = np.random.default_rng(4)
  num_items, dim, gamma = 7, 5, 4.0
  strength = np.triu(rng.uniform(size=(num_items, num_items)) * (rng.uniform(
      size=(num_items, num_items)) < 0.5), 1)
  strength = (strength + strength.T).astype(np.float32)  # symmetric, zero diagonal, some 0
  table = rng.normal(size=(num_items, dim)).astype(np.float32)
  items = np.array([2, 5, 2, 0, 6, 3])  # item 2 twice: distance 0 to itself
  expected = _calibration_reference(table[items], items, strength, gamma)
  weights = jnp.asarray(np.exp(-gamma * strength))
  per_target = losses.behavioural_calibration(
      jnp.asarray(table[items]), weights[items][:, items], jnp.ones(len(items)))
  counts = np.bincount(items, minlength=num_items).astype(np.float32)
  per_item = losses.behavioural_calibration(jnp.asarray(table), weights, jnp.asarray(counts))
  np.testing.assert_allclose(float(per_target), expected, rtol=1e-5)
  np.testing.assert_allclose(float(per_item), expected, rtol=1e-5)
  rows = np.array([*items, 1])  # a zero-count row (padding) changes nothing
  padded = losses.behavioural_calibration(
      jnp.asarray(table[rows]), weights[rows][:, rows], jnp.asarray([1.0] * len(items) + [0.0]))
  np.testing.assert_allclose(float(padded), expected, rtol=1e-5)
