"""SID token arrays: items to their global token ids, histories to token streams, and the
log-probability of given tokens. Shared by the generative stage, its loss terms, LC-Rec's
prompts and the experiments. Token -1 is padding everywhere."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def global_item_tokens(local_tokens: np.ndarray, token_base: int) -> np.ndarray:
  """[I, L] int32 SID tokens as backbone vocabulary ids (SID token t -> token_base + t)."""
  return np.where(local_tokens >= 0, local_tokens + token_base, -1).astype(np.int32)


def compact(tokens: jax.Array, left: bool) -> jax.Array:
  """Moves the -1 entries of each row to the left (or right), keeping the order of the rest."""
  valid = tokens >= 0
  order = jnp.argsort(valid if left else ~valid, axis=1, stable=True)
  return jnp.take_along_axis(tokens, order, axis=1)


def item_tokens_of(item_tokens: jax.Array, items: jax.Array) -> jax.Array:
  """[..., L] global SID tokens of items [...] (-1 items and pad slots give -1)."""
  tokens = item_tokens[jnp.maximum(items, 0)]
  return jnp.where(items[..., None] >= 0, tokens, -1)


def history_tokens(item_tokens: jax.Array, history: jax.Array) -> jax.Array:
  """History items [B, H] -> their SID tokens concatenated, left-padded [B, H·L]."""
  tokens = item_tokens_of(item_tokens, history)
  return compact(tokens.reshape(history.shape[0], -1), left=True)


def stream(item_tokens: jax.Array, items: jax.Array, *per_item: jax.Array):
  """A chunk of items [B, W] -> (tokens [B, W·L] right-padded, then each per-item array
  [B, W] spread over its item's tokens), for whole-sequence training."""
  batch = items.shape[0]
  tokens = item_tokens_of(item_tokens, items)  # [B, W, L]
  spread = [jnp.broadcast_to(x[..., None], tokens.shape).reshape(batch, -1) for x in per_item]
  tokens = tokens.reshape(batch, -1)
  order = jnp.argsort(tokens < 0, axis=1, stable=True)  # padding to the right
  return tuple(jnp.take_along_axis(x, order, axis=1) for x in (tokens, *spread))
