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
