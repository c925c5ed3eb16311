"""Losses shared by the methods: pure, jittable, float32 inside, masked by -1 targets.

Each is tested against a slow reference in tests/test_losses.py. The methods' named loss
terms (methods/loss_terms.py, methods/sequential.py) are built from these.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def target_log_probs(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """log softmax(logits)[target] over the full last axis; logits [..., V], targets [...].
  A target of -1 (padding) gives 0."""
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  picked = jnp.take_along_axis(log_probs, jnp.maximum(targets, 0)[..., None], axis=-1)[..., 0]
  return jnp.where(targets >= 0, picked, 0.0)


def unlikelihood(log_probs: jax.Array, valid: jax.Array) -> jax.Array:
  """−log(1 − p) of each valid entry of log_probs (0 elsewhere); p is capped at 1 − 1e-6
  so a certain token costs a large finite amount, never inf."""
  p = jnp.minimum(jnp.exp(log_probs), 1.0 - 1e-6)
  return jnp.where(valid, -jnp.log1p(-p), 0.0)
