"""Rotary position embeddings in the Hugging Face convention.

HF rotates the two halves of each head (`rotate_half`: [x1, x2] -> [-x2, x1]) rather than
interleaved pairs, so a checkpoint's q/k projections only work with this layout. Positions
are passed explicitly: left-padded rows and KV-cache steps each carry their own positions.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

# RoPE variants implemented here; HF also has 'dynamic', 'yarn', 'longrope', ... (not here).
SUPPORTED_ROPE_TYPES = ('default', 'linear', 'llama3')


def check_rope_scaling(scaling: Mapping[str, Any] | None) -> None:
  """Raises ValueError if `scaling` (HF rope_scaling / rope_parameters) is not supported."""
  if not scaling:
    return
  rope_type = scaling.get('rope_type', scaling.get('type', 'default'))
  if rope_type not in SUPPORTED_ROPE_TYPES:
    raise ValueError(
        f'RoPE scaling type {rope_type!r} is not supported (supported: '
        f'{", ".join(SUPPORTED_ROPE_TYPES)}). It comes from `rope_scaling` / `rope_parameters` '
        'in config.json; use a checkpoint without that long-context scaling, or implement it '
        'in genrec_jax/models/rope.py.')
  if scaling.get('partial_rotary_factor', 1.0) != 1.0:
    raise ValueError('partial_rotary_factor != 1 is not supported by genrec_jax/models/rope.py.')
  required = {'linear': ('factor',),
              'llama3': ('factor', 'low_freq_factor', 'high_freq_factor',
                         'original_max_position_embeddings')}.get(rope_type, ())
  missing = [k for k in required if k not in scaling]
  if missing:
    raise ValueError(f'RoPE scaling {rope_type!r} needs {missing} in rope_scaling; got '
                     f'{dict(scaling)}.')


def inverse_frequencies(head_dim: int, theta: float,
                        scaling: Mapping[str, Any] | None = None) -> np.ndarray:
  """The [head_dim // 2] rotation frequencies (float32), after optional scaling."""
  check_rope_scaling(scaling)
  inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  rope_type = (scaling or {}).get('rope_type', (scaling or {}).get('type', 'default'))
  if rope_type == 'linear':
    inv_freq = inv_freq / scaling['factor']
  elif rope_type == 'llama3':
    inv_freq = _llama3_frequencies(inv_freq, scaling)
  return inv_freq.astype(np.float32)


def _llama3_frequencies(inv_freq: np.ndarray, scaling: Mapping[str, Any]) -> np.ndarray:
  """Llama 3.1: slow frequencies divided by `factor`, fast kept, a smooth blend between."""
  factor = scaling['factor']
  low, high = scaling['low_freq_factor'], scaling['high_freq_factor']
  old_context = scaling['original_max_position_embeddings']
  wavelength = 2 * math.pi / inv_freq
  scaled = np.where(wavelength > old_context / low, inv_freq / factor, inv_freq)
  smooth = (old_context / wavelength - low) / (high - low)
  blended = (1 - smooth) * scaled / factor + smooth * scaled
  is_medium = (wavelength >= old_context / high) & (wavelength <= old_context / low)
  return np.where(is_medium, blended, scaled)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: np.ndarray) -> jax.Array:
  """Rotates x [B, T, N, H] by the angles positions [B, T] * inv_freq [H/2], in float32."""
  angles = positions[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)  # [B, T, H/2]
  angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]  # [B, T, 1, H]
  x32 = x.astype(jnp.float32)
  first, second = jnp.split(x32, 2, axis=-1)
  rotated = jnp.concatenate([-second, first], axis=-1)
  return (x32 * jnp.cos(angles) + rotated * jnp.sin(angles)).astype(x.dtype)
