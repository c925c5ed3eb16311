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
  return _as_k_slots(top_items, top_scores, k)


def similarity_topk(queries: jax.Array, table: jax.Array, k: int,
                    exclude: jax.Array | None = None,
                    chunk_size: int | None = None) -> tuple[jax.Array, jax.Array]:
  """Exact top-k of scores queries [B, D] · table [I, D]^T, as topk_items would return them
  (same items, order and ties: the lower item id first), computed chunk_size items at a time
  so memory is O(B · (k + chunk_size)), never O(B · I); None = one chunk."""
  num_items = table.shape[0]
  if chunk_size is None or chunk_size >= num_items:
    return topk_items(jnp.einsum('BD,ID->BI', queries, table), k, exclude)
  batch = queries.shape[0]
  count = -(-num_items // chunk_size)
  padded = jnp.pad(table, ((0, count * chunk_size - num_items), (0, 0)))
  chunks = padded.reshape(count, chunk_size, table.shape[1])
  k_eff = min(k, num_items)

  def body(best, xs):
    best_scores, best_items = best
    chunk, start = xs
    scores = jnp.einsum('BD,CD->BC', queries, chunk)
    ids = start + jnp.arange(chunk_size)
    scores = jnp.where(ids[None, :] < num_items, scores, MASKED)
    if exclude is not None:  # past items: their ids inside this chunk are masked
      local = jnp.where((exclude >= start) & (exclude < start + chunk_size), exclude - start,
                        chunk_size)
      scores = scores.at[jnp.arange(batch)[:, None], local].set(MASKED, mode='drop')
    # Running best first: on equal scores top_k keeps the earlier (lower-id) entry.
    pool_scores = jnp.concatenate([best_scores, scores], axis=1)
    pool_items = jnp.concatenate([best_items, jnp.broadcast_to(ids, scores.shape)], axis=1)
    best_scores, index = jax.lax.top_k(pool_scores, k_eff)
    return (best_scores, jnp.take_along_axis(pool_items, index, axis=1)), None

  start = (jnp.full((batch, k_eff), MASKED, jnp.float32),
           jnp.full((batch, k_eff), num_items, jnp.int32))
  starts = jnp.arange(count, dtype=jnp.int32) * chunk_size
  (top_scores, top_items), _ = jax.lax.scan(body, start, (chunks, starts))
  return _as_k_slots(top_items, top_scores, k)


def _as_k_slots(top_items: jax.Array, top_scores: jax.Array,
                k: int) -> tuple[jax.Array, jax.Array]:
  """Masked slots become item -1, and the lists are padded to k slots (k may exceed the
  catalogue)."""
  top_items = jnp.where(top_scores > MASKED / 2, top_items, -1)
  pad = k - top_items.shape[1]
  if pad:
    top_items = jnp.pad(top_items, ((0, 0), (0, pad)), constant_values=-1)
    top_scores = jnp.pad(top_scores, ((0, 0), (0, pad)), constant_values=MASKED)
  return top_items, top_scores
