"""Item-level distributions implied by token-level SID models, over the whole catalogue.

A token-level model (a SID head) defines an item distribution only through its tokens. On a
catalogue small enough, every item's probability can be enumerated exactly, and compared
with what the decoders estimate (SimGR's diagnostics, experiments/simgr_diagnostics.py):

  autoregressive (AR), exact   log P(v | h) = Σ_t log P(c_v^t | h, c_v^<t), for every item v
                               of the trie. `normalize='vocab'`: each step's softmax runs over
                               the full vocabulary, as the beam search scores (mass on tokens
                               that lead to no item is lost, so Σ_v P(v) <= 1); 'trie': over
                               the tokens the trie allows after the prefix, so Σ_v P(v) = 1
                               (an EOS that ends a short SID is one of those tokens).
  parallel                     every position p of the SID predicted from the history at once,
                               independently: log q(v | h) = Σ_p log P_p(class_v^p | h), where
                               class_v^p is v's token at p, or a 'none' class past the end of
                               a shorter SID; only catalogue items are scored, so the ranking
                               is over valid SIDs only.
  product of marginals         the parallel estimate an ideal parallel head would give: the
                               exact joint's own per-position marginals, multiplied. It
                               isolates the error of the independence assumption itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.tokenize.trie import NOT_ALLOWED
from genrec_jax.tokenize.trie import Trie

_NEG = -1e30


def trie_paths(trie: Trie, item_tokens: np.ndarray) -> np.ndarray:
  """[I, L] the internal trie node each item's token t is chosen at (-1 past its end).

  item_tokens [I, L] are the trie's token sequences, -1 padded (row i = item i)."""
  step_tokens, children = np.asarray(trie.step_tokens), np.asarray(trie.children)
  num_items, length = item_tokens.shape
  nodes = np.full((num_items, length), -1, np.int64)
  node = np.zeros(num_items, np.int64)
  for t in range(length):
    running = item_tokens[:, t] >= 0
    nodes[running, t] = node[running]
    if t + 1 < length:
      slots = np.searchsorted(step_tokens[t], item_tokens[running, t])
      node[running] = children[node[running], slots]
  return nodes


def sequence_log_probs(logits: jax.Array, item_tokens: jax.Array, normalize: str = 'vocab',
                       trie: Trie | None = None, nodes: jax.Array | None = None) -> jax.Array:
  """[B, I] exact log P(item | history) of a token-level model, teacher-forced.

  logits [B, I, L, V]: logits[b, i, t] is the distribution of token t of item i given user
  b's history and item i's tokens before t (backbone.continuation_logits of every item).
  item_tokens [I, L] global tokens, -1 padded. normalize: 'vocab' or 'trie' (see the module
  doc; 'trie' needs the trie and trie_paths(trie, item_tokens) as nodes)."""
  logits = logits.astype(jnp.float32)
  valid = item_tokens >= 0
  picked = jnp.take_along_axis(logits, jnp.maximum(item_tokens, 0)[None, ..., None],
                               axis=-1)[..., 0]  # [B, I, L]
  if normalize == 'vocab':
    norm = jax.nn.logsumexp(logits, axis=-1)
  elif normalize == 'trie':
    step_tokens = jnp.asarray(trie.step_tokens)[:item_tokens.shape[1]]  # [L, S]
    allowed = jnp.asarray(trie.children)[jnp.maximum(nodes, 0)] != NOT_ALLOWED  # [I, L, S]
    slot_logits = jnp.take_along_axis(logits, step_tokens[None, None], axis=-1)  # [B,I,L,S]
    norm = jax.nn.logsumexp(jnp.where(allowed[None], slot_logits, _NEG), axis=-1)
  else:
    raise ValueError(f"normalize={normalize!r}: use 'vocab' or 'trie'.")
  return jnp.where(valid[None], picked - norm, 0.0).sum(-1)


def parallel_classes(local_tokens: np.ndarray, num_tokens: int) -> np.ndarray:
  """[I, P] class of each item at each SID position: its local token (0..num_tokens-1), or
  num_tokens ('none') past the end of a shorter SID."""
  return np.where(local_tokens >= 0, local_tokens, num_tokens).astype(np.int32)


def parallel_log_probs(position_log_probs: jax.Array, classes: jax.Array) -> jax.Array:
  """[B, I] Σ_p position_log_probs[b, p, classes[i, p]]: the parallel (independent
  positions) score of every catalogue item; position_log_probs [B, P, C] (log-softmax per
  position), classes [I, P] from parallel_classes."""
  positions = jnp.arange(classes.shape[1])
  return position_log_probs[:, positions[None, :], classes].sum(-1)


def product_of_marginals(item_log_probs: jax.Array, classes: jax.Array,
                         num_classes: int) -> jax.Array:
  """[B, I] Σ_p log m_p(class_v^p) with m_p the per-position marginals of the item
  distribution item_log_probs [B, I] (normalised over the catalogue first)."""
  probs = jax.nn.softmax(item_log_probs.astype(jnp.float32), axis=-1)  # [B, I]
  onehot = jax.nn.one_hot(classes, num_classes, dtype=jnp.float32)  # [I, P, C]
  marginals = jnp.einsum('BI,IPC->BPC', probs, onehot)
  return parallel_log_probs(jnp.log(jnp.maximum(marginals, 1e-30)), classes)
