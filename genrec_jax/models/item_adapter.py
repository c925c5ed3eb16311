"""GenAIR's item adapter: frozen item vectors (an LLM's) -> the recommender's item space."""

from __future__ import annotations

import flax.linen as nn
import jax


class ItemAdapter(nn.Module):
  """Linear(d_f -> hidden) -> LayerNorm -> GELU -> Linear(hidden -> out), row-wise."""

  hidden: int
  out: int

  @nn.compact
  def __call__(self, frozen: jax.Array) -> jax.Array:
    h = nn.Dense(self.hidden, name='in')(frozen)
    h = nn.gelu(nn.LayerNorm(epsilon=1e-5, name='norm')(h), approximate=False)
    return nn.Dense(self.out, name='out')(h)
