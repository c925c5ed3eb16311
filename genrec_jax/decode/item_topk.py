"""Exact top-k over the whole catalogue from per-item scores (item-level methods)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Large finite negative for masked scores: never -inf, so no inf - inf = NaN downstream.
MASKED = -1e30


def mask_items(scores: jax.Array, exclude: jax.Array) -> jax.Array:
  """scores [B, I] with the items in exclude [B, E] (-1 = padding) set to MASKED."""
  rows = jnp.arange(scores.shape[0])[:, None]
  # Padding (-1) is sent out of bounds and dropped, so it masks nothing.
  cols = jnp.where(exclude >= 0, exclude, scores.shape[1])
  return scores.at[rows, cols].set(MASKED, mode='drop')


def topk_items(scores: jax.Array, k: int,
               exclude: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """(items [B, k], scores [B, k]), best first; slots with only masked items left are -1."""
  if exclude is not None:
    scores = mask_items(scores, exclude)
  k_eff = min(k, scores.shape[1])
  top_scores, top_items = jax.lax.top_k(scores, k_eff)
  top_items = jnp.where(top_scores > MASKED / 2, top_items, -1)
  pad = k - k_eff
  if pad:
    top_items = jnp.pad(top_items, ((0, 0), (0, pad)), constant_values=-1)
    top_scores = jnp.pad(top_scores, ((0, 0), (0, pad)), constant_values=MASKED)
  return top_items, top_scores
