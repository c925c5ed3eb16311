"""Trie-constrained beam search over item semantic IDs, compiled as one XLA program.

Every returned item is a complete sequence of the trie, so an invalid item is never
recommended. State is pure arrays with beams folded into the batch (row b * K + k is beam k
of user b), and the steps run in a `lax.while_loop`; a step reads its mask with one gather
from the dense trie (see genrec_jax/tokenize/trie.py), never with Python.

Scores are sequence log-probabilities under the model: each step normalises the logits over
the FULL vocabulary (log_softmax) and only then keeps the trie's allowed tokens, like Hugging
Face beam search with prefix_allowed_tokens_fn. Probability mass the model puts on invalid
tokens is lost, not renormalised onto the valid ones.

Pools, per user:
  alive     K partial sequences (internal trie nodes), the best K non-completing
            candidates of the step; slots that have no candidate are dead (score MASKED).
  finished  the best K completed items seen so far. Each step, the candidates whose token
            completes an item are merged into it (top K of old pool + new completions; on
            equal scores the older entry wins). Items of different lengths finish at
            different steps (variable-length SIDs).
A completed item never takes an alive slot, so alive beams are always real prefixes.

Early exit (optional, on by default, results unchanged): log-probabilities only decrease
along a sequence, so once every user's finished pool is full and no alive beam scores above
its worst finished item (ties keep the older entry), nothing can change and the loop stops
before trie.max_len steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from genrec_jax.decode.item_topk import MASKED
from genrec_jax.tokenize.trie import Trie

# tokens [B*K] int32, cache (leaves [B*K, ...]), step -> (logits [B*K, V], new cache).
TokensToLogits = Callable[[jax.Array, Any, jax.Array], tuple[jax.Array, Any]]


def _is_live(scores: jax.Array) -> jax.Array:
  """True where a score is a real log-probability, not the MASKED placeholder."""
  return scores > MASKED / 2


def _expand(logits: jax.Array, alive_scores: jax.Array, alive_nodes: jax.Array,
            finished_scores: jax.Array, finished_items: jax.Array, trie: Trie,
            step: jax.Array):
  """One decoding step: scores every allowed extension and refills both pools.

  Args:
    logits: [B, K or 1, V] next-token logits of each alive beam (1 = shared by all beams).
    alive_scores: [B, K] log-probabilities of the alive beams (MASKED = dead).
    alive_nodes: [B, K] internal trie node of each alive beam, at depth `step`.
    finished_scores, finished_items: [B, K] the finished pool, best first.
    trie: the decoding trie.
    step: depth of the token being chosen.

  Returns:
    (alive_scores, alive_nodes, alive_tokens, parents, finished_scores, finished_items),
    all [B, K]; parents are the beam (in 0..K-1) each new alive beam extends.
  """
  batch_size, beam_size = alive_scores.shape
  slot_tokens = trie.step_tokens[step]  # [S]
  num_slots = slot_tokens.shape[0]
  logits = logits.astype(jnp.float32)
  # log_softmax over the full vocabulary, evaluated only at this step's slots.
  log_norm = jax.nn.logsumexp(logits, axis=-1, keepdims=True)  # [B, K|1, 1]
  slot_log_probs = jnp.take(logits, slot_tokens, axis=-1) - log_norm  # [B, K|1, S]
  child = trie.children[alive_nodes]  # [B, K, S]
  allowed = (child != -1) & _is_live(alive_scores)[..., None]
  # MASKED is set (not added), so dead beams never drift towards -inf.
  scores = jnp.where(allowed, alive_scores[..., None] + slot_log_probs, MASKED)  # [B, K, S]
  scores = scores.reshape(batch_size, beam_size * num_slots)
  child = child.reshape(batch_size, beam_size * num_slots)

  # Completed items: merged into the finished pool, old entries first so they win ties.
  done_scores = jnp.where(child < -1, scores, MASKED)
  pool_scores = jnp.concatenate([finished_scores, done_scores], axis=1)  # [B, K + K*S]
  pool_items = jnp.concatenate([finished_items, -child - 2], axis=1)
  finished_scores, best = jax.lax.top_k(pool_scores, beam_size)  # [B, K]
  finished_items = jnp.take_along_axis(pool_items, best, axis=1)
  finished_items = jnp.where(_is_live(finished_scores), finished_items, -1)

  # Partial sequences compete for the K alive slots.
  alive_scores, best = jax.lax.top_k(jnp.where(child >= 0, scores, MASKED), beam_size)
  # Dead slots park at the root; they stay dead because their score is MASKED.
  alive_nodes = jnp.where(_is_live(alive_scores), jnp.take_along_axis(child, best, axis=1), 0)
  alive_tokens = slot_tokens[best % num_slots]  # [B, K]
  parents = best // num_slots  # [B, K]
  return alive_scores, alive_nodes, alive_tokens, parents, finished_scores, finished_items


def _check_leading_axis(tree: Any, rows: int, what: str) -> None:
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != rows:
      raise ValueError(f'beam_search: {what} leaf {jax.tree_util.keystr(path)} has shape '
                       f'{jnp.shape(leaf)}; expected leading axis {rows}.')


@functools.partial(
    jax.jit,
    static_argnames=('tokens_to_logits', 'batch_size', 'beam_size', 'start_token',
                     'early_exit'))
def beam_search(tokens_to_logits: TokensToLogits,
                cache: Any,
                trie: Trie,
                *,
                batch_size: int,
                beam_size: int,
                first_logits: jax.Array | None = None,
                start_token: int = 0,
                early_exit: bool = True) -> tuple[jax.Array, jax.Array]:
  """Top-`beam_size` items per user by trie-constrained beam search.

  The cache is given per USER (leading axis B) and repeated to B * beam_size rows inside
  (row b * K + k = beam k of user b), so the prompt is prefilled once per user, never once
  per beam. After each step the cache rows are gathered with the parent beams.

  Args:
    tokens_to_logits: (tokens [R] int32, cache, step int32 scalar) -> (logits [R, V], new
      cache), with R = B * beam_size (or B for the start token): the model runs one step on
      the last chosen token of each row. `step` counts the tokens fed by this search, from 0
      (with first_logits, SID token t is fed at step t; without, the start token is step 0
      and SID token t is step t + 1). Static: pass a stable callable, and call beam_search inside
      your own jit with the weights as traced arguments rather than closing over concrete
      weights (they would be baked into the program as constants).
    cache: pytree whose leaves have leading axis B (e.g. a KV cache after the prefill).
    trie: the item trie (its token ids must be < V).
    batch_size: B, the number of users.
    beam_size: K, beams per user and items returned per user.
    first_logits: [B, V] logits of the first SID token, from the prefill of each user's
      prompt. If None, they are computed by feeding `start_token` to tokens_to_logits on the
      B user rows (before the cache is repeated).
    start_token: token fed first when first_logits is None.
    early_exit: stop once no alive beam can enter any finished pool (same results).

  Returns:
    items [B, K] int32, best first, -1 where fewer than K items could be found (only when the
    trie has fewer than K items reachable); scores [B, K] float32 sequence log-probabilities
    (MASKED where items is -1).
  """
  _check_leading_axis(cache, batch_size, 'cache')
  if first_logits is None:
    start = jnp.full((batch_size,), start_token, jnp.int32)
    first_logits, cache = tokens_to_logits(start, cache, jnp.int32(0))
    _check_leading_axis(cache, batch_size, 'cache returned for the start token')
    step_offset = 1
  else:
    step_offset = 0
  if first_logits.ndim != 2 or first_logits.shape[0] != batch_size:
    raise ValueError(f'beam_search: first_logits has shape {first_logits.shape}; expected '
                     f'[batch_size={batch_size}, vocab].')

  rows = batch_size * beam_size
  # Only beam 0 is live at the root, so the first step yields K distinct prefixes.
  alive_scores = jnp.full((batch_size, beam_size), MASKED, jnp.float32).at[:, 0].set(0.0)
  alive_nodes = jnp.zeros((batch_size, beam_size), jnp.int32)
  finished_scores = jnp.full((batch_size, beam_size), MASKED, jnp.float32)
  finished_items = jnp.full((batch_size, beam_size), -1, jnp.int32)
  # Step 0 on the per-user logits: every beam of a user shares the root, so the logits are
  # broadcast (not copied) and the repeated cache needs no gather.
  (alive_scores, alive_nodes, alive_tokens, _, finished_scores,
   finished_items) = _expand(first_logits[:, None, :], alive_scores, alive_nodes,
                             finished_scores, finished_items, trie, jnp.int32(0))
  cache = jax.tree.map(lambda x: jnp.repeat(x, beam_size, axis=0), cache)  # leaves [B*K, ...]
  user_rows = jnp.arange(batch_size, dtype=jnp.int32)[:, None] * beam_size  # [B, 1]

  def nothing_left(state):
    _, alive_scores, _, _, _, finished_scores, _ = state
    # Extending a beam never raises its score, and ties keep the older finished entry.
    beaten = jnp.max(alive_scores, axis=1) <= jnp.min(finished_scores, axis=1)  # [B]
    return jnp.all(beaten)

  def cond(state):
    step = state[0]
    keep_going = step < trie.max_len
    if early_exit:
      keep_going &= ~nothing_left(state)
    return keep_going

  def body(state):
    (step, alive_scores, alive_nodes, alive_tokens, cache, finished_scores,
     finished_items) = state
    logits, cache = tokens_to_logits(alive_tokens.reshape(rows), cache,
                                     step - 1 + step_offset)  # [B*K, V]
    logits = logits.reshape(batch_size, beam_size, -1)
    (alive_scores, alive_nodes, alive_tokens, parents, finished_scores,
     finished_items) = _expand(logits, alive_scores, alive_nodes, finished_scores,
                               finished_items, trie, step)
    parent_rows = (user_rows + parents).reshape(rows)  # [B*K]
    cache = jax.tree.map(lambda x: x[parent_rows], cache)
    return (step + 1, alive_scores, alive_nodes, alive_tokens, cache, finished_scores,
            finished_items)

  state = (jnp.int32(1), alive_scores, alive_nodes, alive_tokens, cache, finished_scores,
           finished_items)
  state = jax.lax.while_loop(cond, body, state)
  _, _, _, _, _, finished_scores, finished_items = state
  return finished_items, finished_scores
