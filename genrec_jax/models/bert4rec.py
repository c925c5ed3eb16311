"""BERT4Rec (Sun et al., CIKM'19): a bidirectional self-attention encoder over the item
history, trained to recover masked items (the Cloze task).

Token ids: items 0..I-1, PAD = -1 (left padding), MASK = -2. The next item after a
history is predicted at a MASK appended to it (`encode`), so the model has max_len + 1
learned positions. Blocks are SASRec's (LayerNorm'd queries, point-wise FFN) without the
causal mask, as in GenAIR's public BERT4Rec; scores are states · item vectors (tied).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from genrec_jax.data.pipeline import MASK  # the mask token id in `tokens` (-2)
from genrec_jax.models.sasrec import SelfAttentionBlock
from genrec_jax.models.sasrec import item_embedding


class BERT4Rec(nn.Module):
  num_items: int
  max_len: int  # history items; positions are max_len + 1 (the appended MASK)
  hidden: int = 64
  num_layers: int = 2
  num_heads: int = 2
  dropout: float = 0.2

  def setup(self):
    # Rows num_items (padding) and num_items + 1 (MASK).
    self.item_embedding = item_embedding(self.num_items + 2, self.hidden)
    self.position_embedding = nn.Embed(self.max_len + 1, self.hidden,
                                       embedding_init=nn.initializers.normal(0.02))
    self.blocks = [SelfAttentionBlock(self.hidden, self.num_heads, self.dropout)
                   for _ in range(self.num_layers)]
    self.final_norm = nn.LayerNorm(epsilon=1e-8)
    self.input_dropout = nn.Dropout(self.dropout)

  def encode(self, history: jax.Array, train: bool = False,
             item_vectors: jax.Array | None = None) -> jax.Array:
    """history [B, T] (T <= max_len, left-padded) -> states [B, T + 1, H] of the history
    followed by a MASK; the last row is the user state (the next item)."""
    tokens = jnp.concatenate([history, jnp.full((history.shape[0], 1), MASK,
                                                history.dtype)], axis=1)
    return self.encode_tokens(tokens, train, item_vectors)

  def encode_tokens(self, tokens: jax.Array, train: bool = False,
                    item_vectors: jax.Array | None = None) -> jax.Array:
    """tokens [B, L] (items, MASK = -2, PAD = -1; L <= max_len + 1, right-aligned) ->
    states [B, L, H], every position attending to every real token (bidirectional).

    item_vectors [I, H]: the items' input vectors if not this table's (an adapter's output);
    MASK keeps its own learned vector."""
    valid = tokens != -1
    is_mask = tokens == MASK
    rows = jnp.where(is_mask, self.num_items + 1, jnp.where(valid, tokens, self.num_items))
    x = self.item_embedding(rows)
    if item_vectors is not None:
      adapted = jnp.take(item_vectors, jnp.maximum(tokens, 0), axis=0)
      x = jnp.where(is_mask[..., None], x, adapted)
    x = x * self.hidden**0.5
    x = x + self.position_embedding(jnp.arange(tokens.shape[1]) +
                                    (self.max_len + 1 - tokens.shape[1]))[None]
    x = self.input_dropout(x, deterministic=not train) * valid[..., None]
    mask = jnp.broadcast_to(valid[:, None, None, :],
                            (tokens.shape[0], 1, tokens.shape[1], tokens.shape[1]))
    for block in self.blocks:
      x = block(x, mask, train) * valid[..., None]
    return self.final_norm(x)

  def item_table(self) -> jax.Array:
    """[I, H] the (input and output) vectors of the real items."""
    return self.item_embedding.embedding[:self.num_items]

  def __call__(self, history: jax.Array, train: bool = False) -> jax.Array:
    """Scores [B, I] of the next item after each (left-padded) history."""
    return self.encode(history, train)[:, -1] @ self.item_table().T
