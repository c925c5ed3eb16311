"""SASRec (Kang & McAuley, 2018): a causal self-attention encoder over the item history.

Item embeddings are shared between the input and the output layer (scores = h · E_item);
learned positions; post-attention LayerNorm blocks as in the original code. The causal mask
is real (GenAIR's public SASRec has it commented out, which leaks the future).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

NEG = -1e9  # large finite negative for masked attention logits


def item_embedding(num_rows: int, hidden: int) -> nn.Embed:
  """The item table of the sequential encoders, `num_rows` (items and their special rows)
  padded to a multiple of 128 so that it shards evenly over the 'vocab' mesh axes."""
  return nn.Embed(-(-num_rows // 128) * 128, hidden,
                  embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                              ('vocab', 'embed')))


class SASRec(nn.Module):
  num_items: int
  max_len: int
  hidden: int = 64
  num_layers: int = 2
  num_heads: int = 1
  dropout: float = 0.2

  def setup(self):
    self.item_embedding = item_embedding(self.num_items + 1, self.hidden)  # + padding row
    self.position_embedding = nn.Embed(self.max_len, self.hidden,
                                       embedding_init=nn.initializers.normal(0.02))
    self.blocks = [SelfAttentionBlock(self.hidden, self.num_heads, self.dropout)
                   for _ in range(self.num_layers)]
    self.final_norm = nn.LayerNorm(epsilon=1e-8)
    self.input_dropout = nn.Dropout(self.dropout)

  def encode(self, history: jax.Array, train: bool = False,
             item_vectors: jax.Array | None = None) -> jax.Array:
    """history [B, T] item ids, left-padded with -1 -> states [B, T, H] (causal).

    item_vectors [I, H]: the input vectors of the items, if not this table's (an adapter's
    output, e.g. GenAIR's adapted LLM vectors)."""
    valid = history >= 0
    if item_vectors is None:
      x = self.item_embedding(jnp.where(valid, history, self.num_items)) * self.hidden**0.5
    else:  # padding rows are zeroed below
      x = jnp.take(item_vectors, jnp.where(valid, history, 0), axis=0) * self.hidden**0.5
    x = x + self.position_embedding(jnp.arange(history.shape[1]))[None]
    x = self.input_dropout(x, deterministic=not train) * valid[..., None]
    causal = jnp.tril(jnp.ones((history.shape[1],) * 2, bool))
    mask = causal[None, None] & valid[:, None, None, :]  # [B, 1, T, S]
    for block in self.blocks:
      x = block(x, mask, train) * valid[..., None]
    return self.final_norm(x)

  def item_table(self) -> jax.Array:
    """[I, H] the (input and output) vectors of the real items."""
    return self.item_embedding.embedding[:self.num_items]

  def item_scores(self, states: jax.Array) -> jax.Array:
    """states [..., H] -> scores [..., I] against every real item."""
    return states @ self.item_table().T

  def __call__(self, history: jax.Array, train: bool = False) -> jax.Array:
    """Scores [B, I] of the next item after each (left-padded) history."""
    return self.item_scores(self.encode(history, train)[:, -1])


class SelfAttentionBlock(nn.Module):
  """SASRec's block: LayerNorm'd queries attend to the inputs under `mask`, point-wise FFN."""

  hidden: int
  num_heads: int
  dropout: float

  @nn.compact
  def __call__(self, x, mask, train):
    normed = nn.LayerNorm(epsilon=1e-8)(x)
    attended = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.dropout, deterministic=not train)(
            normed, x, mask=mask)
    x = normed + attended
    h = nn.LayerNorm(epsilon=1e-8)(x)
    h = nn.Dense(self.hidden)(nn.Dropout(self.dropout, deterministic=not train)(h))
    h = nn.Dense(self.hidden)(nn.Dropout(self.dropout, deterministic=not train)(nn.relu(h)))
    return x + nn.Dropout(self.dropout, deterministic=not train)(h)
