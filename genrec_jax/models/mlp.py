"""SwiGLU feed-forward: down(silu(gate(x)) * up(x)), no biases (Qwen2/Qwen3/LLaMA)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """SwiGLU MLP. Params: gate_proj/up_proj kernel [D, F], down_proj kernel [F, D]."""
  hidden_size: int
  intermediate_size: int
  initializer_range: float = 0.02
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _dense(self, features: int, axes: tuple[str, str], name: str) -> nn.Dense:
    init = nn.initializers.normal(self.initializer_range)
    return nn.Dense(features, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                    kernel_init=nn.with_logical_partitioning(init, axes), name=name)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, T, D] -> [B, T, D]."""
    gate = self._dense(self.intermediate_size, ('embed', 'mlp'), 'gate_proj')(x)  # [B, T, F]
    up = self._dense(self.intermediate_size, ('embed', 'mlp'), 'up_proj')(x)  # [B, T, F]
    hidden = (nn.silu(gate.astype(jnp.float32)) * up.astype(jnp.float32)).astype(self.dtype)
    hidden = nn.with_logical_constraint(hidden, ('batch', 'length', 'mlp'))
    return self._dense(self.hidden_size, ('mlp', 'embed'), 'down_proj')(hidden)
