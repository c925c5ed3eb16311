"""The decoder's architecture: `TransformerConfig`, and reading it from a Hugging Face
config (a checkpoint directory, its config.json, a dict or a transformers config).

transformers is used here for configs only (no weights, no torch).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax.numpy as jnp

from genrec_jax.models import rope

SUPPORTED_MODEL_TYPES = ('qwen2', 'qwen3', 'llama')


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Architecture (HF config.json names) plus our dtype / remat choices. Hashable.

  `attention_bias` means q/k/v biases; `attention_out_bias` the o_proj bias (Qwen2 has the
  first only; LLaMA / Qwen3 with HF attention_bias=True have both). `rope_scaling` is the HF
  scaling dict (without rope_theta) stored as sorted items, None for plain RoPE.
  """
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_hidden_layers: int
  num_attention_heads: int
  num_key_value_heads: int | None = None  # None: = num_attention_heads (no GQA)
  head_dim: int | None = None  # None: hidden_size // num_attention_heads
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_scaling: tuple[tuple[str, Any], ...] | None = None
  tie_word_embeddings: bool = False
  attention_bias: bool = False
  attention_out_bias: bool = False
  qk_norm: bool = False
  model_type: str = 'llama'
  initializer_range: float = 0.02
  dtype: Any = jnp.float32  # activations (and KV cache)
  param_dtype: Any = jnp.float32
  remat: bool = False  # rematerialise each block in the backward pass (saves memory)

  def __post_init__(self):
    set_field = lambda name, value: object.__setattr__(self, name, value)
    if self.num_key_value_heads is None:
      set_field('num_key_value_heads', self.num_attention_heads)
    if self.head_dim is None:
      set_field('head_dim', self.hidden_size // self.num_attention_heads)
    if isinstance(self.rope_scaling, Mapping):
      scaling = {k: v for k, v in self.rope_scaling.items() if k != 'rope_theta'}
      rope_type = scaling.get('rope_type', scaling.get('type', 'default'))
      set_field('rope_scaling', None if rope_type == 'default' else tuple(sorted(scaling.items())))
    set_field('dtype', jnp.dtype(self.dtype))
    set_field('param_dtype', jnp.dtype(self.param_dtype))
    if self.num_attention_heads % self.num_key_value_heads:
      raise ValueError(f'num_attention_heads={self.num_attention_heads} is not a multiple of '
                       f'num_key_value_heads={self.num_key_value_heads}.')
    if self.head_dim % 2:
      raise ValueError(f'RoPE needs an even head_dim, got {self.head_dim}.')
    rope.check_rope_scaling(self.rope_scaling_dict)

  @property
  def rope_scaling_dict(self) -> dict[str, Any] | None:
    return None if self.rope_scaling is None else dict(self.rope_scaling)

  def replace(self, **changes) -> TransformerConfig:
    return dataclasses.replace(self, **changes)

  @classmethod
  def from_hf(cls, source: Any, **overrides) -> TransformerConfig:
    """Builds the config from a HF checkpoint dir, its config.json, a dict or a HF config.

    Reading goes through `transformers.AutoConfig` so that fields left out of config.json
    (save_pretrained writes only non-default values) take the HF class defaults, and old
    `rope_theta` / `rope_scaling` fields are normalised into `rope_parameters`.

    Args:
      source: directory, path to config.json, dict of config.json, or a PretrainedConfig.
      **overrides: our fields (dtype, param_dtype, remat) or any field to override.
    """
    hf = _hf_config(source)
    model_type = hf.model_type
    if model_type not in SUPPORTED_MODEL_TYPES:
      raise ValueError(f'model_type {model_type!r} is not supported; supported: '
                       f'{", ".join(SUPPORTED_MODEL_TYPES)}.')
    get = lambda name, default=None: getattr(hf, name, default)
    if get('hidden_act', 'silu') != 'silu':
      raise ValueError(f"hidden_act {get('hidden_act')!r} is not supported (only 'silu').")
    if get('mlp_bias', False):
      raise ValueError('mlp_bias=True is not supported (Qwen2/Qwen3/LLaMA MLPs have no bias).')
    layer_types = set(get('layer_types') or ['full_attention'])
    if get('use_sliding_window', False) or layer_types != {'full_attention'}:
      raise ValueError('Sliding-window attention is not supported (use_sliding_window / '
                       f'layer_types={sorted(layer_types)}); only full attention layers.')
    rope_parameters = dict(get('rope_parameters') or {})
    theta = rope_parameters.get('rope_theta', get('rope_theta', 10000.0))
    # HF Qwen2 always has q/k/v biases and no o_proj bias; LLaMA / Qwen3 follow attention_bias.
    bias = model_type == 'qwen2' or bool(get('attention_bias', False))
    fields = dict(
        vocab_size=hf.vocab_size, hidden_size=hf.hidden_size,
        intermediate_size=hf.intermediate_size, num_hidden_layers=hf.num_hidden_layers,
        num_attention_heads=hf.num_attention_heads,
        num_key_value_heads=get('num_key_value_heads'), head_dim=get('head_dim'),
        rms_norm_eps=get('rms_norm_eps', 1e-6), rope_theta=float(theta),
        rope_scaling=rope_parameters or get('rope_scaling'),
        tie_word_embeddings=bool(get('tie_word_embeddings', False)), attention_bias=bias,
        attention_out_bias=bias and model_type != 'qwen2', qk_norm=model_type == 'qwen3',
        model_type=model_type, initializer_range=get('initializer_range', 0.02))
    fields.update(overrides)
    return cls(**fields)


def _hf_config(source: Any):
  """A transformers PretrainedConfig from a dir, a config.json path, a dict or a config."""
  import transformers  # pylint: disable=g-import-not-at-top  (heavy; configs only)
  if isinstance(source, transformers.PretrainedConfig):
    return source
  if isinstance(source, Mapping):
    fields = dict(source)
    if 'model_type' not in fields:
      raise ValueError('The config dict has no model_type (e.g. "qwen2", "qwen3", "llama").')
    return transformers.AutoConfig.for_model(fields.pop('model_type'), **fields)
  path = os.fspath(source)
  if os.path.isfile(path):
    with open(path) as f:
      return _hf_config(json.load(f))
  if not os.path.isfile(os.path.join(path, 'config.json')):
    raise FileNotFoundError(f'No config.json in {path!r}: expected a Hugging Face checkpoint '
                            'directory (config.json + *.safetensors).')
  return transformers.AutoConfig.from_pretrained(path)
