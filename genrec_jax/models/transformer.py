"""Decoder-only LM of the Qwen2 / Qwen2.5 / Qwen3 / LLaMA family, as Flax Linen modules.

Params (float32 by default; activations in `config.dtype`):
  embedder/embedding [V, D]
  layers_{i}/input_norm/scale [D]
  layers_{i}/attention/{q,k,v}_proj/kernel [D, heads, H], bias [heads, H] (attention_bias)
  layers_{i}/attention/o_proj/kernel [N, H, D], bias [D] (attention_out_bias)
  layers_{i}/attention/{q,k}_norm/scale [H] (qk_norm, Qwen3)
  layers_{i}/post_attention_norm/scale [D]
  layers_{i}/mlp/{gate,up}_proj/kernel [D, F], mlp/down_proj/kernel [F, D]
  final_norm/scale [D]
  lm_head/kernel [D, V] (only when not tie_word_embeddings)

KV cache (every leaf batch-leading, so a beam search can reorder rows with
`jax.tree.map(lambda x: x[idx], cache)`):
  {'index': [B] int32     next slot to write (equal across rows in lockstep decoding),
   'position': [B] int32  RoPE position of the next token (differs across left-padded rows),
   'mask': [B, S] bool    slot holds a real token (padding and unwritten slots are False),
   'layers': tuple over layers of {'k': [B, S, K, H], 'v': [B, S, K, H]} in config.dtype}
Writing past S is not checked inside jit (XLA clamps the write): size the cache to
prompt length + number of decode steps.

Shared prompt (`prefill_shared`): a beam search keeps each user's prompt keys/values once,
{'mask': [U, P] (or [U * E, P], per row), 'layers': ({'k', 'v'} [U, P, K, H], ...)}, and a
per-beam cache of only the generated tokens (row u * E + e is beam e of user u);
`decode_step(..., prompt)` reads both. `branch_logits` uses the same layout in training: R
short branches per sequence, each reading the sequence's keys up to its own branch point.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from genrec_jax.models import attention
from genrec_jax.models import block as block_lib
from genrec_jax.models import norm
from genrec_jax.models.transformer_config import TransformerConfig

Cache = dict[str, Any]


def positions_from_mask(mask: jax.Array) -> jax.Array:
  """RoPE positions [B, T]: 0, 1, ... over real tokens; padding before them gets 0."""
  return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)


def init_cache(config: TransformerConfig, batch: int, max_len: int) -> Cache:
  """An empty KV cache for `batch` rows of up to `max_len` tokens (layout: module doc)."""
  kv_shape = (batch, max_len, config.num_key_value_heads, config.head_dim)
  layer = lambda: {'k': jnp.zeros(kv_shape, config.dtype), 'v': jnp.zeros(kv_shape, config.dtype)}
  return {
      'index': jnp.zeros((batch,), jnp.int32),
      'position': jnp.zeros((batch,), jnp.int32),
      'mask': jnp.zeros((batch, max_len), bool),
      'layers': tuple(layer() for _ in range(config.num_hidden_layers)),
  }


class DecoderOutput(NamedTuple):
  logits: jax.Array  # [B, T, V] float32
  hidden: jax.Array | None  # [B, T, D] after the final norm (HF last_hidden_state), if asked
  cache: Cache | None  # the updated cache, when one was passed


class Embedder(nn.Module):
  """Token embedding [V, D]; `attend` is the tied LM head."""
  vocab_size: int
  hidden_size: int
  initializer_range: float = 0.02
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def setup(self):
    init = nn.initializers.normal(self.initializer_range)
    self.embedding = self.param('embedding', nn.with_logical_partitioning(init, ('vocab', 'embed')),
                                (self.vocab_size, self.hidden_size), self.param_dtype)

  def encode(self, tokens: jax.Array) -> jax.Array:
    """tokens [B, T] -> [B, T, D]. Ids >= V give NaN rows (jnp.take fill): never silent."""
    return jnp.take(self.embedding, tokens, axis=0).astype(self.dtype)

  def attend(self, hidden: jax.Array) -> jax.Array:
    """hidden [B, T, D] -> float32 logits [B, T, V]."""
    return jnp.einsum('BTD,VD->BTV', hidden, self.embedding.astype(self.dtype),
                      preferred_element_type=jnp.float32)


class LMHead(nn.Module):
  """Untied output projection, kernel [D, V] (HF lm_head.weight transposed)."""
  vocab_size: int
  initializer_range: float = 0.02
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, hidden: jax.Array) -> jax.Array:
    """hidden [B, T, D] -> float32 logits [B, T, V]."""
    init = nn.initializers.normal(self.initializer_range)
    kernel = self.param('kernel', nn.with_logical_partitioning(init, ('embed', 'vocab')),
                        (hidden.shape[-1], self.vocab_size), self.param_dtype)
    return jnp.einsum('BTD,DV->BTV', hidden, kernel.astype(self.dtype),
                      preferred_element_type=jnp.float32)


class Transformer(nn.Module):
  """The decoder-only LM. Pure function of params; see the module doc for layouts."""
  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.embedder = Embedder(cfg.vocab_size, cfg.hidden_size, cfg.initializer_range, cfg.dtype,
                             cfg.param_dtype)
    block_cls = nn.remat(block_lib.DecoderBlock) if cfg.remat else block_lib.DecoderBlock
    self.layers = [block_cls(cfg) for _ in range(cfg.num_hidden_layers)]  # layers_0, ...
    self.final_norm = norm.RMSNorm(cfg.rms_norm_eps, 'embed', cfg.dtype, cfg.param_dtype)
    if not cfg.tie_word_embeddings:
      self.lm_head = LMHead(cfg.vocab_size, cfg.initializer_range, cfg.dtype, cfg.param_dtype)

  def __call__(self, tokens: jax.Array, positions: jax.Array | None = None,
               mask: jax.Array | None = None, cache: Cache | None = None,
               return_hidden: bool = False) -> DecoderOutput:
    """Logits for every position of tokens [B, T].

    Args:
      tokens: [B, T] int token ids (ids at padding positions are ignored).
      positions: [B, T] RoPE positions; None derives them from the mask (and the cache).
      mask: [B, T], 1/True for real tokens, 0 for padding (left or right); None = all real.
      cache: a cache from `init_cache` / `prefill`; the tokens are appended to it.
      return_hidden: also return the final-norm hidden states [B, T, D].

    Returns:
      DecoderOutput(logits [B, T, V] float32, hidden or None, updated cache or None).
    """
    hidden, cache = self.hidden_states(tokens, positions, mask, cache)
    return DecoderOutput(self.logits(hidden), hidden if return_hidden else None, cache)

  def hidden_states(self, tokens: jax.Array, positions: jax.Array | None = None,
                    mask: jax.Array | None = None, cache: Cache | None = None,
                    prompt: Cache | None = None,
                    embedded: jax.Array | None = None) -> tuple[jax.Array, Cache | None]:
    """(final-norm hidden states [B, T, D], updated cache); arguments as in __call__, and
    a shared `prompt` read before the cache (see the module doc). `embedded` [B, T, D]:
    input vectors used instead of the tokens' embeddings (soft prompts, GENPLUGIN's mixed
    decoder inputs); the tokens then only give the shape."""
    batch, length = tokens.shape
    mask = jnp.ones((batch, length), bool) if mask is None else mask.astype(bool)
    query_steps = jnp.arange(length)
    if cache is None:
      start = None
      if positions is None:
        positions = positions_from_mask(mask)
      key_mask = mask  # [B, S=T]
      causal = query_steps[None, :] <= query_steps[:, None]  # [T, S]
      attn_mask = causal[None] & key_mask[:, None, :]  # [B, T, S]
    else:
      start = cache['index']  # [B]
      if positions is None:
        positions = cache['position'][:, None] + positions_from_mask(mask)
      key_mask = attention.write_rows(cache['mask'], mask, start)  # [B, S]
      query_slots = start[:, None] + query_steps[None, :]  # [B, T]
      key_slots = jnp.arange(key_mask.shape[1])
      attn_mask = (key_slots[None, None, :] <= query_slots[:, :, None]) & key_mask[:, None, :]

    # Padding ids may be anything (e.g. -1): embed token 0 there instead.
    x = (self.embedder.encode(jnp.where(mask, tokens, 0)) if embedded is None
         else embedded.astype(self.config.dtype))  # [B, T, D]
    layer_caches = []
    for i, layer in enumerate(self.layers):
      layer_cache = None if cache is None else cache['layers'][i]
      prompt_layer = None if prompt is None else prompt['layers'][i]
      x, layer_cache = layer(x, positions, attn_mask, layer_cache, start, prompt_layer,
                             None if prompt is None else prompt['mask'])
      layer_caches.append(layer_cache)
    hidden = self.final_norm(x)

    if cache is not None:
      next_position = jnp.max(jnp.where(mask, positions + 1, 0), axis=1)
      cache = {'index': start + length,
               'position': jnp.maximum(cache['position'], next_position).astype(jnp.int32),
               'mask': key_mask, 'layers': tuple(layer_caches)}
    return hidden, cache

  def logits(self, hidden: jax.Array) -> jax.Array:
    """hidden [B, T, D] -> float32 logits [B, T, V] (tied or untied head)."""
    if self.config.tie_word_embeddings:
      logits = self.embedder.attend(hidden)
    else:
      logits = self.lm_head(hidden)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))

  def prefill(self, tokens: jax.Array, mask: jax.Array, max_len: int | None = None,
              embedded: jax.Array | None = None) -> tuple[jax.Array, Cache]:
    """Runs a (left- or right-) padded prompt batch into a fresh cache of max_len slots.

    Returns (logits [B, V] at each row's last real token, cache). Decoding then continues
    at slot T with each row's own next position. `embedded`: as in hidden_states.
    """
    batch, length = tokens.shape
    max_len = length if max_len is None else max_len
    if max_len < length:
      raise ValueError(f'max_len={max_len} is shorter than the prompt length {length}.')
    cache = init_cache(self.config, batch, max_len)
    hidden, cache = self.hidden_states(tokens, None, mask, cache, embedded=embedded)
    last = length - 1 - jnp.argmax(mask[:, ::-1].astype(bool), axis=1)  # [B]
    last_hidden = jnp.take_along_axis(hidden, last[:, None, None], axis=1)  # [B, 1, D]
    return self.logits(last_hidden)[:, 0], cache

  def prefill_shared(self, tokens: jax.Array, mask: jax.Array, decode_len: int,
                     embedded: jax.Array | None = None) -> tuple[jax.Array, Cache, Cache]:
    """Like prefill, but returns (logits [B, V], a cache for `decode_len` new tokens that a
    beam search repeats per beam, the prompt that decode_step reads shared)."""
    logits, full = self.prefill(tokens, mask, embedded=embedded)
    cache = init_cache(self.config, tokens.shape[0], decode_len)
    cache['position'] = full['position']
    return logits, cache, {'mask': full['mask'], 'layers': full['layers']}

  def branch_logits(self, tokens: jax.Array, mask: jax.Array, branches: jax.Array,
                    branch_starts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Causal logits of a batch of sequences and of short branches off them, in one pass.

    Branch (b, r) reads sequence b's tokens before slot branch_starts[b, r] and then its
    own earlier tokens, at RoPE positions branch_starts[b, r] + 0, 1, ...: the logits it gets
    are those of the sequence tokens[b, :start] + branches[b, r] run on its own, but the
    sequence's keys are computed once and read by every branch (R·Lb·T attention scores,
    not (T + R·Lb)² as when packing the branches into the sequence).

    Args:
      tokens: [B, T] right-padded sequences (positions 0, 1, ...), mask [B, T] real tokens.
      branches: [B, R, Lb] token ids, -1 for padding.
      branch_starts: [B, R] int, the sequence slot each branch replaces onwards.

    Returns:
      (sequence logits [B, T, V], branch logits [B, R, Lb, V]).
    """
    batch, length = tokens.shape
    num_branches, branch_len = branches.shape[1:]
    hidden, full = self.hidden_states(tokens, None, mask, init_cache(self.config, batch, length))
    before = jnp.arange(length)[None, None, :] < branch_starts[:, :, None]  # [B, R, T]
    prompt = {'mask': (full['mask'][:, None, :] & before).reshape(-1, length),
              'layers': full['layers']}
    flat = branches.reshape(batch * num_branches, branch_len)
    cache = init_cache(self.config, flat.shape[0], branch_len)
    cache['position'] = branch_starts.reshape(-1).astype(jnp.int32)
    branch_hidden, _ = self.hidden_states(flat, None, flat >= 0, cache, prompt=prompt)
    branch_logits = self.logits(branch_hidden).reshape(batch, num_branches, branch_len, -1)
    return self.logits(hidden), branch_logits

  def decode_step(self, tokens: jax.Array, cache: Cache,
                  prompt: Cache | None = None) -> tuple[jax.Array, Cache]:
    """Appends one token per row, tokens [B]; returns (logits [B, V], cache). With a shared
    `prompt` (from prefill_shared) the rows also read it."""
    positions = cache['position'][:, None]  # [B, 1]
    hidden, cache = self.hidden_states(tokens[:, None], positions, None, cache, prompt=prompt)
    return self.logits(hidden)[:, 0], cache

  def init_cache(self, batch: int, max_len: int) -> Cache:
    return init_cache(self.config, batch, max_len)


# Functional helpers: `params` is the inner 'params' dict (what hf_loading returns). Jit them
# with the model static, e.g. jax.jit(prefill, static_argnums=(0, 4)).


def prefill(model: Transformer, params: Any, tokens: jax.Array, mask: jax.Array,
            max_len: int | None = None) -> tuple[jax.Array, Cache]:
  """(logits [B, V] at the last real prompt token, cache); see Transformer.prefill."""
  return model.apply({'params': params}, tokens, mask, max_len, method=Transformer.prefill)


def prefill_shared(model: Transformer, params: Any, tokens: jax.Array, mask: jax.Array,
                   decode_len: int) -> tuple[jax.Array, Cache, Cache]:
  """(logits, per-beam cache, shared prompt); see Transformer.prefill_shared."""
  return model.apply({'params': params}, tokens, mask, decode_len,
                     method=Transformer.prefill_shared)


def decode_step(model: Transformer, params: Any, tokens: jax.Array, cache: Cache,
                prompt: Cache | None = None) -> tuple[jax.Array, Cache]:
  """(logits [B, V], cache) after appending tokens [B]; see Transformer.decode_step."""
  return model.apply({'params': params}, tokens, cache, prompt,
                     method=Transformer.decode_step)


def abstract_params(model: Transformer) -> Any:
  """Param shapes and dtypes (jax.ShapeDtypeStruct pytree) without allocating them."""
  init = lambda key: model.init(key, jnp.zeros((1, 1), jnp.int32))
  return nn.unbox(jax.eval_shape(init, jax.random.key(0))['params'])
