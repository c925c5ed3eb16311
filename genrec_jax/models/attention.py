"""Grouped-query self-attention with RoPE, optional q/k/v biases and Qwen3 q/k norm.

Shapes: B batch, T query length, S key length (T, or the cache length when decoding),
D hidden_size, N query heads, K key/value heads, G = N // K query heads per kv head,
H head_dim. Query head n reads kv head n // G (HF `repeat_kv`), so N is split as (K, G).
With a shared prompt (beam search): U prompt rows, E = B // U rows (beams) per prompt row,
P prompt length; row u * E + e reads prompt row u.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp

from genrec_jax.models import norm
from genrec_jax.models import rope

if TYPE_CHECKING:
  from genrec_jax.models.transformer import TransformerConfig

# Masked attention logits: large finite negative, so a fully masked row (a padding query)
# gives a uniform softmax instead of NaN.
MASK_VALUE = -1e30

LayerCache = dict[str, jax.Array]  # {'k': [B, S, K, H], 'v': [B, S, K, H]}


def write_rows(buffer: jax.Array, update: jax.Array, index: jax.Array) -> jax.Array:
  """buffer [B, S, ...] with update [B, T, ...] written at slots index[b] .. index[b] + T."""
  write_row = lambda row, new, start: jax.lax.dynamic_update_slice_in_dim(row, new, start, 0)
  return jax.vmap(write_row)(buffer, update.astype(buffer.dtype), index)


class Attention(nn.Module):
  """Causal GQA self-attention of one decoder layer.

  Params: q_proj/k_proj/v_proj kernels [D, heads, H] (+ bias [heads, H] when
  `attention_bias`), o_proj kernel [N, H, D] (+ bias [D] when `attention_out_bias`),
  q_norm/k_norm scale [H] when `qk_norm` (Qwen3).
  """
  config: TransformerConfig

  def _projection(self, features, kernel_axes, bias_axes, use_bias, name, in_axes=-1):
    """A linear layer contracting `in_axes` into `features`, with logical axis names."""
    cfg = self.config
    init = nn.initializers.normal(cfg.initializer_range)
    return nn.DenseGeneral(
        features=features, axis=in_axes, use_bias=use_bias, dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        kernel_init=nn.with_logical_partitioning(init, kernel_axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, bias_axes), name=name)

  @nn.compact
  def __call__(self, x: jax.Array, positions: jax.Array, attn_mask: jax.Array,
               cache: LayerCache | None = None,
               cache_index: jax.Array | None = None,
               prompt: LayerCache | None = None,
               prompt_mask: jax.Array | None = None) -> tuple[jax.Array, LayerCache | None]:
    """Attends x [B, T, D] to itself, or to the cache after writing x's keys into it.

    Args:
      x: normed hidden states [B, T, D].
      positions: RoPE positions [B, T].
      attn_mask: [B, T, S] bool, True where query t may read key slot s (causal and not
        padding); S = T without a cache, the cache length with one.
      cache: this layer's {'k', 'v'} [B, S, K, H], or None.
      cache_index: [B] int32 slot where x's first token is written (with a cache).
      prompt: {'k', 'v'} [U, P, K, H] keys before the cache's, shared by the E rows of each
        prompt row and never copied (a beam search gathers only the small per-beam cache).
      prompt_mask: [U, P] bool, the prompt keys every row of a prompt row may read, or
        [B, P] per row (branches of one prompt that stop reading it at different points).

    Returns:
      (output [B, T, D], updated layer cache or None).
    """
    cfg = self.config
    num_heads, num_kv_heads, head_dim = (cfg.num_attention_heads, cfg.num_key_value_heads,
                                         cfg.head_dim)
    groups = num_heads // num_kv_heads
    bias = cfg.attention_bias
    q_axes, kv_axes = ('heads', 'kv'), ('kv_heads', 'kv')
    query = self._projection((num_heads, head_dim), ('embed', *q_axes), q_axes, bias,
                             'q_proj')(x)  # [B, T, N, H]
    key = self._projection((num_kv_heads, head_dim), ('embed', *kv_axes), kv_axes, bias,
                           'k_proj')(x)  # [B, T, K, H]
    value = self._projection((num_kv_heads, head_dim), ('embed', *kv_axes), kv_axes, bias,
                             'v_proj')(x)  # [B, T, K, H]
    if cfg.qk_norm:  # Qwen3: RMSNorm over head_dim of each head, before RoPE.
      head_norm = lambda name: norm.RMSNorm(cfg.rms_norm_eps, 'kv', cfg.dtype,
                                            cfg.param_dtype, name=name)
      query, key = head_norm('q_norm')(query), head_norm('k_norm')(key)
    inv_freq = rope.inverse_frequencies(head_dim, cfg.rope_theta, cfg.rope_scaling_dict)
    query = rope.apply_rope(query, positions, inv_freq)  # [B, T, N, H]
    key = rope.apply_rope(key, positions, inv_freq)  # [B, T, K, H]
    query = nn.with_logical_constraint(query, ('batch', 'length', 'heads', 'kv'))
    key = nn.with_logical_constraint(key, ('batch', 'length', 'kv_heads', 'kv'))
    value = nn.with_logical_constraint(value, ('batch', 'length', 'kv_heads', 'kv'))

    new_cache = None
    if cache is not None:
      key = write_rows(cache['k'], key, cache_index)  # [B, S, K, H]
      value = write_rows(cache['v'], value, cache_index)
      new_cache = {'k': key, 'v': value}

    batch, length = query.shape[:2]
    query = query.reshape(batch, length, num_kv_heads, groups, head_dim)
    logits = jnp.einsum('BTKGH,BSKH->BKGTS', query, key,
                        preferred_element_type=jnp.float32) * head_dim**-0.5
    logits = jnp.where(attn_mask[:, None, None, :, :], logits, MASK_VALUE)
    if prompt is None:
      probs = jax.nn.softmax(logits, axis=-1).astype(cfg.dtype)
      out = jnp.einsum('BKGTS,BSKH->BTKGH', probs, value.astype(cfg.dtype))
    else:  # one softmax over [prompt keys; own keys]
      rows, prompt_len = prompt['k'].shape[:2]
      by_prompt = query.reshape(rows, batch // rows, length, num_kv_heads, groups, head_dim)
      prompt_logits = jnp.einsum('UETKGH,UPKH->UEKGTP', by_prompt, prompt['k'],
                                 preferred_element_type=jnp.float32) * head_dim**-0.5
      prompt_logits = prompt_logits.reshape(batch, num_kv_heads, groups, length, prompt_len)
      if prompt_mask.shape[0] != batch:  # [U, P]: the same for the E rows of a prompt row
        prompt_mask = jnp.repeat(prompt_mask, batch // rows, axis=0)
      prompt_logits = jnp.where(prompt_mask[:, None, None, None, :], prompt_logits, MASK_VALUE)
      probs = jax.nn.softmax(jnp.concatenate([prompt_logits, logits], axis=-1),
                             axis=-1).astype(cfg.dtype)
      prompt_probs = probs[..., :prompt_len].reshape(
          rows, batch // rows, num_kv_heads, groups, length, prompt_len)
      out = jnp.einsum('UEKGTP,UPKH->UETKGH', prompt_probs, prompt['v'].astype(cfg.dtype))
      out = out.reshape(batch, length, num_kv_heads, groups, head_dim)
      out += jnp.einsum('BKGTS,BSKH->BTKGH', probs[..., prompt_len:], value.astype(cfg.dtype))
    out = out.reshape(batch, length, num_heads, head_dim)
    out = nn.with_logical_constraint(out, ('batch', 'length', 'heads', 'kv'))
    out = self._projection(cfg.hidden_size, ('heads', 'kv', 'embed'), ('embed',),
                           cfg.attention_out_bias, 'o_proj', in_axes=(-2, -1))(out)  # [B, T, D]
    return out, new_cache
