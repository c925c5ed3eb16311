"""RMSNorm in the Hugging Face convention: x * rsqrt(mean(x^2) + eps) * weight."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class RMSNorm(nn.Module):
  """Root-mean-square norm over the last axis, computed in float32.

  Attributes:
    eps: added to the mean square (HF `rms_norm_eps`).
    axis_name: logical axis of the normalised dimension ('embed' for the residual stream,
      'kv' for Qwen3's per-head q/k norm over head_dim).
    dtype: output dtype (the activation dtype).
    param_dtype: dtype of the `scale` parameter (HF `weight`), initialised to ones.
  """
  eps: float = 1e-6
  axis_name: str = 'embed'
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param(
        'scale', nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
        (x.shape[-1],), self.param_dtype)
    x = x.astype(jnp.float32)
    mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    normed = x * jax.lax.rsqrt(mean_square + self.eps)
    return (normed * scale.astype(jnp.float32)).astype(self.dtype)
