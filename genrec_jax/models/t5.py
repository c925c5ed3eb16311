"""T5-style encoder-decoder trained from scratch (TIGER's generative retrieval backbone).

Shapes: B batch, S encoder length, T decoder length, L decoder cache slots, D d_model,
N heads, H head_dim, F d_ff, V vocab, R relative-position buckets.

Follows T5 (Raffel et al., 2020; HF T5ForConditionalGeneration):
  * Pre-norm blocks with T5's LayerNorm (= RMSNorm: no mean, no bias) and a final norm per
    stack; dropout on the embeddings, attention probabilities, feed-forward hidden, every
    sublayer output and the stack output.
  * No 1/sqrt(H) on attention logits: T5 folds that scale into the query init.
  * Relative position bias: layer 0's self-attention of each stack owns a table [R, N] and
    shares its bias with the other layers of the stack (bidirectional buckets in the
    encoder, causal in the decoder); cross-attention has no position bias.
  * One token embedding shared by encoder, decoder and (when tied) the LM head, whose
    logits are then scaled by D**-0.5.

Params (float32 by default; activations in `config.dtype`):
  shared/embedding [V, D]
  {encoder,decoder}/layers_0/relative_attention_bias/embedding [R, N]
  {encoder,decoder}/layers_{i}/self_attention_norm/scale [D]
  {encoder,decoder}/layers_{i}/self_attention/{query,key,value}/kernel [D, N, H]
  {encoder,decoder}/layers_{i}/self_attention/out/kernel [N, H, D]
  decoder/layers_{i}/cross_attention_norm/scale, cross_attention/... (as self_attention)
  {encoder,decoder}/layers_{i}/feed_forward_norm/scale [D]
  {encoder,decoder}/layers_{i}/feed_forward/wi/kernel [D, F] ('relu') or wi_0, wi_1
    ('gated-gelu'), feed_forward/wo/kernel [F, D]
  {encoder,decoder}/final_norm/scale [D]
  lm_head/kernel [D, V] (only when not tie_embeddings)

Decoding cache (every leaf batch-leading, so beam_search can gather rows by parent beam):
  {'index': [B] int32          next decoder slot (= decoder tokens fed so far),
   'encoded': [B, S, D]        encoder output in config.dtype,
   'encoder_mask': [B, S] bool real encoder tokens,
   'layers': tuple over decoder layers of {'k': [B, L, N, H], 'v': [B, L, N, H]}}
Cross-attention keys/values are recomputed from `encoded` at every step rather than cached:
the beam search gathers the whole cache every step, and per-layer cross k/v would be
2 * N * H / D * num_decoder_layers times larger than `encoded`. Writing past L is not checked
inside jit (XLA clamps): size L to 1 (start token) + the number of decode steps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from genrec_jax.models import attention
from genrec_jax.models import norm
from genrec_jax.models import transformer

Cache = dict[str, Any]
LayerCache = attention.LayerCache  # {'k': [B, L, N, H], 'v': [B, L, N, H]}

FEED_FORWARDS = ('relu', 'gated-gelu')


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Architecture; defaults are TIGER's setting (Rajput et al., 2023). Hashable."""
  vocab_size: int
  d_model: int = 128
  num_heads: int = 6
  head_dim: int = 64
  d_ff: int = 1024
  num_encoder_layers: int = 4
  num_decoder_layers: int = 4
  dropout: float = 0.1
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  feed_forward: str = 'relu'  # 'relu' (T5 v1.0, TIGER) | 'gated-gelu' (T5 v1.1)
  tie_embeddings: bool = True
  layer_norm_epsilon: float = 1e-6
  dtype: Any = jnp.float32  # activations (and the decoding cache)
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    object.__setattr__(self, 'dtype', jnp.dtype(self.dtype))
    object.__setattr__(self, 'param_dtype', jnp.dtype(self.param_dtype))
    if self.feed_forward not in FEED_FORWARDS:
      raise ValueError(f'feed_forward={self.feed_forward!r}; expected one of {FEED_FORWARDS}.')
    if self.num_encoder_layers < 1 or self.num_decoder_layers < 1:
      raise ValueError('T5 needs at least one encoder and one decoder layer.')
    if self.relative_attention_num_buckets < 4 or self.relative_attention_num_buckets % 4:
      # Bidirectional halves the buckets, then half of those are exact distances.
      raise ValueError('relative_attention_num_buckets must be a positive multiple of 4, got '
                       f'{self.relative_attention_num_buckets}.')
    if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 2:
      # The causal exact range is num_buckets // 2 distances; the log buckets start after it.
      raise ValueError('relative_attention_max_distance must exceed '
                       'relative_attention_num_buckets // 2.')

  def replace(self, **changes) -> T5Config:
    return dataclasses.replace(self, **changes)


def relative_position_bucket(relative_position: jax.Array, *, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> jax.Array:
  """T5's bucket (int32, same shape) of relative_position = key position - query position.

  Distances below max_exact = (half the available buckets) get one bucket each; larger ones
  share logarithmically wider buckets up to max_distance, beyond which all share the last.
  Bidirectional: keys after the query use the upper half of the buckets. Causal: keys after
  the query (masked anyway) fall into bucket 0. Computed in float32 like HF T5.
  """
  relative_position = jnp.asarray(relative_position, jnp.int32)
  if bidirectional:
    num_buckets //= 2
    offset = jnp.where(relative_position > 0, num_buckets, 0)
    distance = jnp.abs(relative_position)
  else:
    offset = 0
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  # max(distance, 1): the log branch is discarded below max_exact, but must not see log(0).
  log_ratio = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) / max_exact)
               / math.log(max_distance / max_exact))
  large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return (offset + jnp.where(distance < max_exact, distance, large)).astype(jnp.int32)


def _dense(features: int | tuple[int, ...], in_axes: int | tuple[int, ...],
           kernel_axes: tuple[str, ...], stddev: float, cfg: T5Config,
           name: str) -> nn.DenseGeneral:
  """Bias-free linear layer with T5's normal(stddev) init and logical axis names."""
  init = nn.with_logical_partitioning(nn.initializers.normal(stddev), kernel_axes)
  return nn.DenseGeneral(features, axis=in_axes, use_bias=False, dtype=cfg.dtype,
                         param_dtype=cfg.param_dtype, kernel_init=init, name=name)


def _norm(cfg: T5Config, name: str) -> norm.RMSNorm:
  return norm.RMSNorm(cfg.layer_norm_epsilon, 'embed', cfg.dtype, cfg.param_dtype, name=name)


class RelativePositionBias(nn.Module):
  """Per-head attention bias from bucketed relative positions. Param: embedding [R, N]."""
  config: T5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, query_positions: jax.Array, key_positions: jax.Array) -> jax.Array:
    """query_positions [B|1, T], key_positions [B|1, S] -> float32 bias [B|1, N, T, S]."""
    cfg = self.config
    init = nn.with_logical_partitioning(nn.initializers.normal(cfg.d_model**-0.5),
                                        (None, 'heads'))
    table = self.param('embedding', init, (cfg.relative_attention_num_buckets, cfg.num_heads),
                       cfg.param_dtype)
    relative = key_positions[:, None, :] - query_positions[:, :, None]  # [B|1, T, S]
    buckets = relative_position_bucket(
        relative, bidirectional=self.bidirectional,
        num_buckets=cfg.relative_attention_num_buckets,
        max_distance=cfg.relative_attention_max_distance)
    bias = jnp.take(table.astype(jnp.float32), buckets, axis=0)  # [B|1, T, S, N]
    return jnp.transpose(bias, (0, 3, 1, 2))


class MultiHeadAttention(nn.Module):
  """T5 attention (self or cross), no biases and no 1/sqrt(H) logit scaling.

  Params: query/key/value kernels [D, N, H], out kernel [N, H, D].
  """
  config: T5Config

  @nn.compact
  def __call__(self, x: jax.Array, context: jax.Array, attn_mask: jax.Array,
               position_bias: jax.Array | None = None, cache: LayerCache | None = None,
               cache_index: jax.Array | None = None,
               train: bool = False) -> tuple[jax.Array, LayerCache | None]:
    """Attends queries from x to keys/values from context (or the cache).

    Args:
      x: normed queries [B, T, D].
      context: normed keys/values source [B, S, D] (x itself for self-attention).
      attn_mask: [B|1, T|1, S] bool, True where a query may read a key (S = L with a cache).
      position_bias: float32 [B|1, N, T, S] added to the logits, or None.
      cache: self-attention {'k', 'v'} [B, L, N, H]; context's keys are written at slots
        cache_index[b] .. + S and the queries read all L slots.
      cache_index: [B] int32 first slot to write (with a cache).
      train: apply dropout to the attention probabilities.

    Returns:
      (output [B, T, D], updated cache or None).
    """
    cfg = self.config
    heads, head_dim, d_model = cfg.num_heads, cfg.head_dim, cfg.d_model
    qkv_axes = ('embed', 'heads', 'kv')
    # T5 init: the query std also carries the 1/sqrt(H) softmax temperature.
    query = _dense((heads, head_dim), -1, qkv_axes, (d_model * head_dim)**-0.5, cfg,
                   'query')(x)  # [B, T, N, H]
    key = _dense((heads, head_dim), -1, qkv_axes, d_model**-0.5, cfg, 'key')(context)
    value = _dense((heads, head_dim), -1, qkv_axes, d_model**-0.5, cfg, 'value')(context)
    query = nn.with_logical_constraint(query, ('batch', 'length', 'heads', 'kv'))

    new_cache = None
    if cache is not None:
      key = attention.write_rows(cache['k'], key, cache_index)  # [B, L, N, H]
      value = attention.write_rows(cache['v'], value, cache_index)
      new_cache = {'k': key, 'v': value}

    logits = jnp.einsum('BTNH,BSNH->BNTS', query, key,
                        preferred_element_type=jnp.float32)  # [B, N, T, S]
    if position_bias is not None:
      logits = logits + position_bias
    logits = jnp.where(attn_mask[:, None], logits, attention.MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1).astype(cfg.dtype)
    probs = nn.Dropout(cfg.dropout)(probs, deterministic=not train)
    out = jnp.einsum('BNTS,BSNH->BTNH', probs, value.astype(cfg.dtype))  # [B, T, N, H]
    out = _dense(d_model, (-2, -1), ('heads', 'kv', 'embed'), (heads * head_dim)**-0.5, cfg,
                 'out')(out)  # [B, T, D]
    return out, new_cache


class FeedForward(nn.Module):
  """T5 feed-forward: wo(relu(wi x)) or wo(gelu_tanh(wi_0 x) * wi_1 x) ('gated-gelu')."""
  config: T5Config

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x [B, T, D] -> [B, T, D]."""
    cfg = self.config
    dense_in = lambda name: _dense(cfg.d_ff, -1, ('embed', 'mlp'), cfg.d_model**-0.5, cfg, name)
    if cfg.feed_forward == 'relu':
      hidden = nn.relu(dense_in('wi')(x))  # [B, T, F]
    else:
      gate = jax.nn.gelu(dense_in('wi_0')(x).astype(jnp.float32), approximate=True)
      hidden = (gate * dense_in('wi_1')(x).astype(jnp.float32)).astype(cfg.dtype)  # [B, T, F]
    hidden = nn.with_logical_constraint(hidden, ('batch', 'length', 'mlp'))
    hidden = nn.Dropout(cfg.dropout)(hidden, deterministic=not train)
    return _dense(cfg.d_model, -1, ('mlp', 'embed'), cfg.d_ff**-0.5, cfg, 'wo')(hidden)


class EncoderBlock(nn.Module):
  """Bidirectional self-attention + feed-forward, pre-norm, with residual dropout."""
  config: T5Config
  has_relative_bias: bool = False  # layer 0: owns the stack's relative position table

  @nn.compact
  def __call__(self, x: jax.Array, attn_mask: jax.Array, positions: jax.Array,
               position_bias: jax.Array | None,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """x [B, S, D] -> (x [B, S, D], position bias [B|1, N, S, S] for the next layers)."""
    cfg = self.config
    if self.has_relative_bias:
      position_bias = RelativePositionBias(cfg, bidirectional=True,
                                           name='relative_attention_bias')(positions, positions)
    dropout = lambda h: nn.Dropout(cfg.dropout)(h, deterministic=not train)
    normed = _norm(cfg, 'self_attention_norm')(x)
    attended, _ = MultiHeadAttention(cfg, name='self_attention')(
        normed, normed, attn_mask, position_bias, train=train)
    x = x + dropout(attended)
    fed = FeedForward(cfg, name='feed_forward')(_norm(cfg, 'feed_forward_norm')(x), train)
    x = nn.with_logical_constraint(x + dropout(fed), ('batch', 'length', 'embed'))
    return x, position_bias


class DecoderBlock(nn.Module):
  """Causal self-attention (optionally cached) + cross-attention + feed-forward."""
  config: T5Config
  has_relative_bias: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, encoded: jax.Array, self_mask: jax.Array,
               cross_mask: jax.Array, query_positions: jax.Array, key_positions: jax.Array,
               position_bias: jax.Array | None, cache: LayerCache | None = None,
               cache_index: jax.Array | None = None, train: bool = False
               ) -> tuple[jax.Array, jax.Array, LayerCache | None]:
    """x [B, T, D] -> (x, self-attention bias [B|1, N, T, T|L], updated layer cache)."""
    cfg = self.config
    if self.has_relative_bias:
      position_bias = RelativePositionBias(cfg, bidirectional=False,
                                           name='relative_attention_bias')(
                                               query_positions, key_positions)
    dropout = lambda h: nn.Dropout(cfg.dropout)(h, deterministic=not train)
    normed = _norm(cfg, 'self_attention_norm')(x)
    attended, cache = MultiHeadAttention(cfg, name='self_attention')(
        normed, normed, self_mask, position_bias, cache, cache_index, train)
    x = x + dropout(attended)
    attended, _ = MultiHeadAttention(cfg, name='cross_attention')(
        _norm(cfg, 'cross_attention_norm')(x), encoded, cross_mask, train=train)
    x = x + dropout(attended)
    fed = FeedForward(cfg, name='feed_forward')(_norm(cfg, 'feed_forward_norm')(x), train)
    x = nn.with_logical_constraint(x + dropout(fed), ('batch', 'length', 'embed'))
    return x, position_bias, cache


class Encoder(nn.Module):
  """Bidirectional T5 encoder stack over already-embedded inputs.

  Reusable on its own (e.g. language / ID encoders): embed tokens with any table, pass a
  config whose num_encoder_layers is the depth. Params: layers_{i}/..., final_norm.
  """
  config: T5Config

  @nn.compact
  def __call__(self, embedded: jax.Array, mask: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """embedded [B, S, D], mask [B, S] (True = real) -> [B, S, D] after the final norm.

    Rows at padding positions are computed but meaningless; mask them downstream.
    """
    cfg = self.config
    batch, length = embedded.shape[:2]
    mask = jnp.ones((batch, length), bool) if mask is None else mask.astype(bool)
    # Only relative distances matter, so left or right padding needs no position shift.
    positions = jnp.arange(length)[None]  # [1, S]
    attn_mask = mask[:, None, :]  # [B, 1, S]: every query reads every real key
    dropout = nn.Dropout(cfg.dropout)
    x = dropout(embedded.astype(cfg.dtype), deterministic=not train)
    position_bias = None
    for i in range(cfg.num_encoder_layers):
      x, position_bias = EncoderBlock(cfg, i == 0, name=f'layers_{i}')(
          x, attn_mask, positions, position_bias, train)
    x = _norm(cfg, 'final_norm')(x)
    return dropout(x, deterministic=not train)


class Decoder(nn.Module):
  """Causal T5 decoder stack with cross-attention to the encoder output."""
  config: T5Config

  @nn.compact
  def __call__(self, embedded: jax.Array, encoded: jax.Array, encoder_mask: jax.Array,
               cache_layers: tuple[LayerCache, ...] | None = None,
               cache_index: jax.Array | None = None, train: bool = False
               ) -> tuple[jax.Array, tuple[LayerCache, ...] | None]:
    """Final-norm hidden states [B, T, D] of embedded decoder inputs [B, T, D].

    Args:
      embedded: embedded decoder tokens [B, T, D].
      encoded: encoder output [B, S, D].
      encoder_mask: [B, S] bool, True for real encoder tokens.
      cache_layers: per-layer self-attention caches {'k', 'v'} [B, L, N, H], or None for
        teacher forcing over the T tokens alone.
      cache_index: [B] int32 slot (= position) of the first token (with a cache).
      train: apply dropout.

    Returns:
      (hidden [B, T, D], updated layer caches or None).
    """
    cfg = self.config
    steps = jnp.arange(embedded.shape[1])
    if cache_layers is None:
      query_positions = key_positions = steps[None]  # [1, T]
    else:
      query_positions = cache_index[:, None] + steps[None]  # [B, T]
      key_positions = jnp.arange(cache_layers[0]['k'].shape[1])[None]  # [1, L]
    # Causal; unwritten cache slots lie after every query, so this masks them too.
    self_mask = key_positions[:, None, :] <= query_positions[:, :, None]  # [B|1, T, T|L]
    cross_mask = encoder_mask.astype(bool)[:, None, :]  # [B, 1, S]
    dropout = nn.Dropout(cfg.dropout)
    x = dropout(embedded.astype(cfg.dtype), deterministic=not train)
    position_bias, new_layers = None, []
    for i in range(cfg.num_decoder_layers):
      layer_cache = None if cache_layers is None else cache_layers[i]
      x, position_bias, layer_cache = DecoderBlock(cfg, i == 0, name=f'layers_{i}')(
          x, encoded, self_mask, cross_mask, query_positions, key_positions, position_bias,
          layer_cache, cache_index, train)
      new_layers.append(layer_cache)
    x = dropout(_norm(cfg, 'final_norm')(x), deterministic=not train)
    return x, None if cache_layers is None else tuple(new_layers)


def init_cache(config: T5Config, encoded: jax.Array, encoder_mask: jax.Array,
               max_decode_len: int) -> Cache:
  """An empty decoder cache of max_decode_len slots next to the encoder output."""
  batch = encoded.shape[0]
  kv_shape = (batch, max_decode_len, config.num_heads, config.head_dim)
  layer = lambda: {'k': jnp.zeros(kv_shape, config.dtype), 'v': jnp.zeros(kv_shape, config.dtype)}
  return {
      'index': jnp.zeros((batch,), jnp.int32),
      'encoded': encoded.astype(config.dtype),
      'encoder_mask': encoder_mask.astype(bool),
      'layers': tuple(layer() for _ in range(config.num_decoder_layers)),
  }


class T5(nn.Module):
  """Encoder-decoder LM with a shared token embedding. See the module doc for layouts."""
  config: T5Config

  def setup(self):
    cfg = self.config
    # T5 inits the shared embedding with std 1 (inputs are not scaled by sqrt(D)).
    self.shared = transformer.Embedder(cfg.vocab_size, cfg.d_model, 1.0, cfg.dtype,
                                       cfg.param_dtype)
    self.encoder = Encoder(cfg)
    self.decoder = Decoder(cfg)
    if not cfg.tie_embeddings:
      self.lm_head = transformer.LMHead(cfg.vocab_size, cfg.d_model**-0.5, cfg.dtype,
                                        cfg.param_dtype)

  def __call__(self, encoder_tokens: jax.Array, encoder_mask: jax.Array,
               decoder_tokens: jax.Array, train: bool = False) -> jax.Array:
    """Teacher-forced logits.

    Args:
      encoder_tokens: [B, S] int ids (ids at padding positions are ignored).
      encoder_mask: [B, S], True/1 for real tokens (left or right padding).
      decoder_tokens: [B, T] int ids starting with the decoder start token; trailing
        padding (any id; negatives embed as 0) cannot affect earlier positions.
      train: apply dropout (needs a 'dropout' rng).

    Returns:
      float32 logits [B, T, V]; logits[:, t] predicts decoder_tokens[:, t + 1].
    """
    encoded = self.encode(encoder_tokens, encoder_mask, train)
    return self.decode(decoder_tokens, encoded, encoder_mask, train)

  def encode(self, encoder_tokens: jax.Array, encoder_mask: jax.Array,
             train: bool = False) -> jax.Array:
    """Encoder output [B, S, D] of encoder_tokens [B, S] with mask [B, S]."""
    encoder_mask = encoder_mask.astype(bool)
    # Padding ids may be anything (e.g. -1): embed token 0 there instead.
    embedded = self.shared.encode(jnp.where(encoder_mask, encoder_tokens, 0))
    return self.encoder(embedded, encoder_mask, train)

  def decode(self, decoder_tokens: jax.Array, encoded: jax.Array, encoder_mask: jax.Array,
             train: bool = False) -> jax.Array:
    """Teacher-forced logits [B, T, V] given the encoder output [B, S, D]."""
    embedded = self.shared.encode(jnp.maximum(decoder_tokens, 0))
    return self.decode_embedded(embedded, encoded, encoder_mask, train)

  def decode_embedded(self, embedded: jax.Array, encoded: jax.Array, encoder_mask: jax.Array,
                      train: bool = False) -> jax.Array:
    """Teacher-forced logits [B, T, V] of decoder input vectors [B, T, D] (token embeddings,
    or mixtures of them: GENPLUGIN's substitution)."""
    hidden, _ = self.decoder(embedded, encoded, encoder_mask, train=train)
    return self.logits(hidden)

  def logits(self, hidden: jax.Array) -> jax.Array:
    """Decoder hidden states [B, T, D] -> float32 logits [B, T, V]."""
    if self.config.tie_embeddings:
      # T5 rescales before the tied head, since the embedding has std 1.
      logits = self.shared.attend(hidden) * self.config.d_model**-0.5
    else:
      logits = self.lm_head(hidden)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))

  def prefill(self, encoder_tokens: jax.Array, encoder_mask: jax.Array, max_decode_len: int,
              start_token: int = 0) -> tuple[jax.Array, Cache]:
    """Encodes once and feeds the start token; returns (logits [B, V], cache at index 1)."""
    if max_decode_len < 1:
      raise ValueError(f'max_decode_len={max_decode_len}: the start token needs a slot.')
    encoded = self.encode(encoder_tokens, encoder_mask)
    cache = init_cache(self.config, encoded, encoder_mask, max_decode_len)
    start = jnp.full((encoder_tokens.shape[0],), start_token, jnp.int32)
    return self.decode_step(start, cache)

  def decode_step(self, tokens: jax.Array, cache: Cache) -> tuple[jax.Array, Cache]:
    """Feeds one decoder token per row, tokens [B]; returns (logits [B, V], cache)."""
    embedded = self.shared.encode(tokens[:, None])  # [B, 1, D]
    hidden, layers = self.decoder(embedded, cache['encoded'], cache['encoder_mask'],
                                  cache['layers'], cache['index'])
    cache = dict(cache, index=cache['index'] + 1, layers=layers)
    return self.logits(hidden)[:, 0], cache


# Functional helpers: `params` is the inner 'params' dict. Jit them with the model static,
# e.g. jax.jit(prefill, static_argnums=(0, 4)).


def prefill(model: T5, params: Any, encoder_tokens: jax.Array, encoder_mask: jax.Array,
            max_decode_len: int, start_token: int = 0) -> tuple[jax.Array, Cache]:
  """(first logits [B, V], cache) after encoding and feeding the start token.

  max_decode_len: decoder slots, >= 1 + the number of decode_step calls (for a trie beam
  search with these first logits, trie.max_len is enough).
  """
  return model.apply({'params': params}, encoder_tokens, encoder_mask, max_decode_len,
                     start_token, method=T5.prefill)


def decode_step(model: T5, params: Any, tokens: jax.Array,
                cache: Cache) -> tuple[jax.Array, Cache]:
  """(logits [B, V], cache) after feeding tokens [B]; see T5.decode_step."""
  return model.apply({'params': params}, tokens, cache, method=T5.decode_step)


def _abstract_variables(model: T5) -> Any:
  tokens = jnp.zeros((1, 1), jnp.int32)
  init = lambda key: model.init(key, tokens, jnp.ones((1, 1), bool), tokens)
  return jax.eval_shape(init, jax.random.key(0))


def abstract_params(model: T5) -> Any:
  """Param shapes and dtypes (jax.ShapeDtypeStruct pytree) without allocating them."""
  return nn.unbox(_abstract_variables(model)['params'])


def param_logical_axes(model: T5) -> Any:
  """PartitionSpec pytree of logical axis names per param (nn.logical_to_mesh_sharding)."""
  return nn.get_partition_spec(_abstract_variables(model)['params'])
