"""GRU4Rec (Hidasi et al., ICLR'16), as RecBole builds it: item embedding -> dropout ->
stacked GRU -> dense to the item space; scores = states · item vectors (tied).

The GRU follows PyTorch's equations (bias in both the input and the hidden projections):
  r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
  n = tanh(W_in x + b_in + r ∘ (W_hn h + b_hn))      h' = (1 − z) ∘ n + z ∘ h
The input projections of all steps are one matmul; only the hidden ones run in the scan.
Left padding (-1) leaves the state unchanged, so a history's state starts at 0 at its
first real item.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from genrec_jax.models.sasrec import item_embedding


class GRU4Rec(nn.Module):
  num_items: int
  max_len: int  # unused by the recurrence; kept so every encoder is built alike
  hidden: int = 64
  num_layers: int = 1
  dropout: float = 0.2

  def setup(self):
    self.item_embedding = item_embedding(self.num_items + 1, self.hidden)  # + padding row
    self.layers = [GRULayer(self.hidden) for _ in range(self.num_layers)]
    self.input_dropout = nn.Dropout(self.dropout)
    self.output = nn.Dense(self.hidden)

  def encode(self, history: jax.Array, train: bool = False,
             item_vectors: jax.Array | None = None) -> jax.Array:
    """history [B, T] item ids, left-padded with -1 -> states [B, T, H]; row t has read
    history[:, :t + 1]."""
    valid = history >= 0
    if item_vectors is None:
      x = self.item_embedding(jnp.where(valid, history, self.num_items))
    else:
      x = jnp.take(item_vectors, jnp.maximum(history, 0), axis=0)
    x = self.input_dropout(x, deterministic=not train) * valid[..., None]
    for layer in self.layers:
      x = layer(x, valid)
    return self.output(x)

  def item_table(self) -> jax.Array:
    return self.item_embedding.embedding[:self.num_items]

  def __call__(self, history: jax.Array, train: bool = False) -> jax.Array:
    """Scores [B, I] of the next item after each (left-padded) history."""
    return self.encode(history, train)[:, -1] @ self.item_table().T


class GRULayer(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x: jax.Array, valid: jax.Array) -> jax.Array:
    """x [B, T, D], valid [B, T] -> hidden states [B, T, H] (h kept where not valid)."""
    h_dim = self.hidden
    init = nn.initializers.lecun_normal()
    w_x = self.param('input_kernel', init, (x.shape[-1], 3 * h_dim))  # gates r, z, n
    b_x = self.param('input_bias', nn.initializers.zeros, (3 * h_dim,))
    w_h = self.param('recurrent_kernel', init, (h_dim, 3 * h_dim))
    b_h = self.param('recurrent_bias', nn.initializers.zeros, (3 * h_dim,))
    gates_x = jnp.einsum('btd,dg->btg', x, w_x) + b_x  # every step's input part at once

    def step(h, inputs):
      gx, ok = inputs  # [B, 3H], [B]
      gh = h @ w_h + b_h
      r = jax.nn.sigmoid(gx[:, :h_dim] + gh[:, :h_dim])
      z = jax.nn.sigmoid(gx[:, h_dim:2 * h_dim] + gh[:, h_dim:2 * h_dim])
      n = jnp.tanh(gx[:, 2 * h_dim:] + r * gh[:, 2 * h_dim:])
      h = jnp.where(ok[:, None], (1.0 - z) * n + z * h, h)
      return h, h

    h0 = jnp.zeros((x.shape[0], h_dim), gates_x.dtype)
    _, states = jax.lax.scan(step, h0, (jnp.swapaxes(gates_x, 0, 1), valid.T))
    return jnp.swapaxes(states, 0, 1)
