"""Losses shared by the methods; all jittable, all masked, float32 inside.

Each is tested against a slow reference in tests/test_losses.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_cross_entropy(logits: jax.Array, targets: jax.Array,
                          mask: jax.Array | None = None) -> jax.Array:
  """Mean over unmasked rows of −log softmax(logits)[target]. logits [..., V], targets [...]."""
  logits = logits.astype(jnp.float32)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  if mask is None:
    return nll.mean()
  mask = mask.astype(jnp.float32)
  return (nll * mask).sum() / jnp.maximum(mask.sum(), 1.0)
