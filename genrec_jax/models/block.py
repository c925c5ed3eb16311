"""Pre-norm decoder block: x + attn(norm(x)), then h + mlp(norm(h))."""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
import jax

from genrec_jax.models import attention
from genrec_jax.models import mlp
from genrec_jax.models import norm

if TYPE_CHECKING:
  from genrec_jax.models.transformer import TransformerConfig

ACTIVATION_AXES = ('batch', 'length', 'embed')


class DecoderBlock(nn.Module):
  """One decoder layer. Params: input_norm, attention, post_attention_norm, mlp."""
  config: TransformerConfig

  @nn.compact
  def __call__(self, x: jax.Array, positions: jax.Array, attn_mask: jax.Array,
               cache: attention.LayerCache | None = None,
               cache_index: jax.Array | None = None,
               prompt: attention.LayerCache | None = None,
               prompt_mask: jax.Array | None = None
               ) -> tuple[jax.Array, attention.LayerCache | None]:
    """x [B, T, D] -> ([B, T, D], updated layer cache); arguments as in Attention."""
    cfg = self.config
    make_norm = lambda name: norm.RMSNorm(cfg.rms_norm_eps, 'embed', cfg.dtype,
                                          cfg.param_dtype, name=name)
    x = nn.with_logical_constraint(x, ACTIVATION_AXES)
    attn_out, cache = attention.Attention(cfg, name='attention')(
        make_norm('input_norm')(x), positions, attn_mask, cache, cache_index, prompt,
        prompt_mask)
    x = x + attn_out
    mlp_out = mlp.MLP(cfg.hidden_size, cfg.intermediate_size, cfg.initializer_range, cfg.dtype,
                      cfg.param_dtype, name='mlp')(make_norm('post_attention_norm')(x))
    x = nn.with_logical_constraint(x + mlp_out, ACTIVATION_AXES)
    return x, cache
