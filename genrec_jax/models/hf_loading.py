"""Hugging Face checkpoints -> Transformer params, and vocabulary extension for SID tokens.

A checkpoint directory holds config.json, the weights (model.safetensors, or shards
model-0000x-of-0000y.safetensors listed in model.safetensors.index.json) and optionally a
tokenizer. Weights are mapped by the declarative WEIGHT_TABLE; the set of HF names expected
is the table restricted to the params the config's model actually has (so biases, q/k norms
and lm_head follow attention_bias, model_type and tie_word_embeddings).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import re
from typing import Any, NamedTuple

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from genrec_jax.models import transformer
from genrec_jax.models.transformer_config import TransformerConfig


class CheckpointError(ValueError):
  """The checkpoint does not match the config (missing, unexpected or mis-shaped weights)."""


@dataclasses.dataclass(frozen=True)
class Transform:
  """How a HF tensor becomes a Flax param of shape `flax_shape`.

  kind 'copy': same shape. 'flat': HF keeps it flat (biases [N*H] -> [N, H]).
  'linear': PyTorch Linear weight [out, in] -> kernel [*in, *out]; the first `in_dims` Flax
  axes are the input (1 for q/k/v/mlp/lm_head, 2 for o_proj's [N, H, D]).
  """
  kind: str
  in_dims: int = 1

  def hf_shape(self, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    if self.kind == 'copy':
      return tuple(flax_shape)
    if self.kind == 'flat':
      return (math.prod(flax_shape),)
    return (math.prod(flax_shape[self.in_dims:]), math.prod(flax_shape[:self.in_dims]))

  def to_flax(self, array: np.ndarray, flax_shape: tuple[int, ...]) -> np.ndarray:
    if self.kind == 'linear':
      array = array.T
    return array.reshape(flax_shape)


COPY = Transform('copy')
FLAT = Transform('flat')
LINEAR = Transform('linear')
LINEAR_FROM_HEADS = Transform('linear', in_dims=2)

# HF weight name -> Flax param path ('/'-joined), transform. '{i}' is the layer index.
WEIGHT_TABLE: tuple[tuple[str, str, Transform], ...] = (
    ('model.embed_tokens.weight', 'embedder/embedding', COPY),
    ('model.norm.weight', 'final_norm/scale', COPY),
    ('lm_head.weight', 'lm_head/kernel', LINEAR),
    ('model.layers.{i}.input_layernorm.weight', 'layers_{i}/input_norm/scale', COPY),
    ('model.layers.{i}.post_attention_layernorm.weight', 'layers_{i}/post_attention_norm/scale',
     COPY),
    ('model.layers.{i}.self_attn.q_proj.weight', 'layers_{i}/attention/q_proj/kernel', LINEAR),
    ('model.layers.{i}.self_attn.k_proj.weight', 'layers_{i}/attention/k_proj/kernel', LINEAR),
    ('model.layers.{i}.self_attn.v_proj.weight', 'layers_{i}/attention/v_proj/kernel', LINEAR),
    ('model.layers.{i}.self_attn.o_proj.weight', 'layers_{i}/attention/o_proj/kernel',
     LINEAR_FROM_HEADS),
    ('model.layers.{i}.self_attn.q_proj.bias', 'layers_{i}/attention/q_proj/bias', FLAT),
    ('model.layers.{i}.self_attn.k_proj.bias', 'layers_{i}/attention/k_proj/bias', FLAT),
    ('model.layers.{i}.self_attn.v_proj.bias', 'layers_{i}/attention/v_proj/bias', FLAT),
    ('model.layers.{i}.self_attn.o_proj.bias', 'layers_{i}/attention/o_proj/bias', COPY),
    ('model.layers.{i}.self_attn.q_norm.weight', 'layers_{i}/attention/q_norm/scale', COPY),
    ('model.layers.{i}.self_attn.k_norm.weight', 'layers_{i}/attention/k_norm/scale', COPY),
    ('model.layers.{i}.mlp.gate_proj.weight', 'layers_{i}/mlp/gate_proj/kernel', LINEAR),
    ('model.layers.{i}.mlp.up_proj.weight', 'layers_{i}/mlp/up_proj/kernel', LINEAR),
    ('model.layers.{i}.mlp.down_proj.weight', 'layers_{i}/mlp/down_proj/kernel', LINEAR),
)

# Found in some checkpoints and never used: RoPE tables are recomputed from the config.
IGNORED_WEIGHTS = re.compile(r'(model\.layers\.\d+\.self_attn\.rotary_emb|model\.rotary_emb)'
                             r'\.inv_freq')

_TOKENIZER_FILES = ('tokenizer.json', 'tokenizer_config.json', 'tokenizer.model', 'vocab.json')


class Checkpoint(NamedTuple):
  params: Any  # the inner 'params' dict of transformer.Transformer
  config: TransformerConfig
  tokenizer: Any  # a transformers tokenizer, or None when the directory has none


def expected_weights(config: TransformerConfig
                     ) -> dict[str, tuple[str, Transform, tuple[int, ...]]]:
  """{HF name: (Flax path, transform, Flax shape)} for every param the model has."""
  shapes = traverse_util.flatten_dict(
      transformer.abstract_params(transformer.Transformer(config)), sep='/')
  expected = {}
  for hf_pattern, flax_pattern, transform in WEIGHT_TABLE:
    layers = range(config.num_hidden_layers) if '{i}' in hf_pattern else [None]
    for i in layers:
      flax_path = flax_pattern.format(i=i)
      if flax_path in shapes:
        expected[hf_pattern.format(i=i)] = (flax_path, transform, shapes[flax_path].shape)
  unmapped = set(shapes) - {path for path, _, _ in expected.values()}
  if unmapped:  # a model param without a table row: the table must be extended.
    raise AssertionError(f'WEIGHT_TABLE has no entry for params {sorted(unmapped)}.')
  return expected


def load_checkpoint(directory: str | os.PathLike, *, load_tokenizer: bool = True,
                    **config_overrides) -> Checkpoint:
  """Loads config, weights (converted to config.param_dtype) and tokenizer from a HF dir.

  Args:
    directory: the checkpoint directory.
    load_tokenizer: load the tokenizer with transformers.AutoTokenizer if files exist.
    **config_overrides: TransformerConfig fields, e.g. dtype='bfloat16', remat=True.

  Raises:
    CheckpointError: naming every missing, unexpected or mis-shaped weight, its file and fix.
  """
  directory = os.fspath(directory)
  config = TransformerConfig.from_hf(directory, **config_overrides)
  params = load_weights(directory, config)
  tokenizer = None
  if load_tokenizer and any(os.path.exists(os.path.join(directory, name))
                            for name in _TOKENIZER_FILES):
    import transformers  # pylint: disable=g-import-not-at-top
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
  return Checkpoint(params, config, tokenizer)


def load_weights(directory: str | os.PathLike, config: TransformerConfig) -> Any:
  """The params pytree from the safetensors file(s) in `directory`, checked against config."""
  files = _weight_files(os.fspath(directory))
  expected = expected_weights(config)
  name_to_file, shapes = {}, {}
  for path in files:
    with _open_safetensors(path) as f:
      for name in f.keys():
        name_to_file[name] = path
        shapes[name] = tuple(f.get_slice(name).get_shape())
  _check(expected, name_to_file, shapes, config)

  flat_params = {}
  for path in files:
    with _open_safetensors(path) as f:
      for name in f.keys():
        if name not in expected:
          continue
        flax_path, transform, flax_shape = expected[name]
        array = np.asarray(f.get_tensor(name)).astype(config.param_dtype)
        flat_params[tuple(flax_path.split('/'))] = jnp.asarray(
            transform.to_flax(array, flax_shape))
  return traverse_util.unflatten_dict(flat_params)


def _open_safetensors(path: str):
  import safetensors  # pylint: disable=g-import-not-at-top
  try:
    return safetensors.safe_open(path, framework='numpy')
  except Exception as e:  # pylint: disable=broad-except  (SafetensorError, OSError)
    raise CheckpointError(f'{path} is not a readable safetensors file ({e}); it may be cut '
                          'short: copy or download it again.') from None


def _weight_files(directory: str) -> list[str]:
  index_path = os.path.join(directory, 'model.safetensors.index.json')
  if os.path.isfile(index_path):
    with open(index_path) as f:
      weight_map = json.load(f).get('weight_map')
    if not weight_map:
      raise CheckpointError(f'{index_path} has no "weight_map".')
    files = [os.path.join(directory, name) for name in sorted(set(weight_map.values()))]
    absent = [p for p in files if not os.path.isfile(p)]
    if absent:
      raise CheckpointError(f'Shards listed in {index_path} are missing: {absent}. Download '
                            'every shard of the checkpoint.')
    return files
  single = os.path.join(directory, 'model.safetensors')
  if os.path.isfile(single):
    return [single]
  found = sorted(glob.glob(os.path.join(directory, '*.safetensors')))
  if len(found) == 1:
    return found
  raise CheckpointError(
      f'No weights in {directory!r}: expected model.safetensors, or shards with '
      f'model.safetensors.index.json (found {len(found)} *.safetensors). PyTorch .bin '
      'checkpoints are not supported: convert them to safetensors.')


def _check(expected, name_to_file, shapes, config) -> None:
  """Raises CheckpointError listing every problem at once."""
  problems = []
  missing = [name for name in expected if name not in name_to_file]
  for name in missing:
    flax_path, transform, flax_shape = expected[name]
    hint = ('; if the LM head is tied to the embedding set "tie_word_embeddings": true in '
            'config.json' if name == 'lm_head.weight' else '')
    problems.append(f'missing weight {name} (for {flax_path}, HF shape '
                    f'{transform.hf_shape(flax_shape)}){hint}')
  for name, path in sorted(name_to_file.items()):
    tied_copy = name == 'lm_head.weight' and config.tie_word_embeddings
    if name in expected or tied_copy or IGNORED_WEIGHTS.fullmatch(name):
      continue
    problems.append(f'unexpected weight {name} in {os.path.basename(path)}')
  for name in expected:
    if name not in shapes:
      continue
    flax_path, transform, flax_shape = expected[name]
    want = transform.hf_shape(flax_shape)
    if shapes[name] != want:
      problems.append(f'weight {name} in {os.path.basename(name_to_file[name])} has shape '
                      f'{shapes[name]}, expected {want} (for {flax_path})')
  if problems:
    arch = (f'model_type={config.model_type}, vocab_size={config.vocab_size}, '
            f'hidden_size={config.hidden_size}, intermediate_size={config.intermediate_size}, '
            f'num_hidden_layers={config.num_hidden_layers}, '
            f'num_attention_heads={config.num_attention_heads}, '
            f'num_key_value_heads={config.num_key_value_heads}, head_dim={config.head_dim}, '
            f'attention_bias={config.attention_bias}, '
            f'tie_word_embeddings={config.tie_word_embeddings}')
    raise CheckpointError(
        f'The weights do not match config.json ({arch}):\n  - ' + '\n  - '.join(problems) +
        '\nFix: use the config.json that was saved with these weights (or correct the fields '
        'above); model_type decides the q/k/v biases (qwen2) and q/k norms (qwen3).')


# --------------------------------------------------------------------------------------
# Vocabulary extension for semantic-ID tokens.
# --------------------------------------------------------------------------------------

VOCAB_LABEL = 'vocab'  # the embedding matrix and the untied LM head kernel
BACKBONE_LABEL = 'backbone'  # everything else


def extend_vocab(params: Any, config: TransformerConfig, num_new_tokens: int,
                 key: jax.Array, init: str = 'mean', noise_scale: float = 0.1,
                 first_new_id: int | None = None) -> tuple[Any, TransformerConfig]:
  """Adds `num_new_tokens` rows (ids first_new_id ...) to the embedding and untied LM head.

  New token ids are first_new_id .. first_new_id + num_new_tokens - 1. By default
  first_new_id = config.vocab_size (appended rows). Pass the tokenizer's length instead when
  the checkpoint pads its vocabulary (Qwen: 151665 tokens, 151936 rows): tokens added to the
  tokenizer get ids from len(tokenizer), so their rows are overwritten and the matrix only
  grows as far as needed. Old rows never change, so logits of old tokens stay identical.

  init='mean': each new row = mean of the old rows + noise_scale * (per-dimension std of the
    old rows) * N(0, 1). At the head this gives new tokens about the average logit, so they
    neither dominate nor vanish at the start of training (Hewitt, 2021); the noise breaks
    the symmetry between new tokens. Statistics use rows < first_new_id (the trained ones).
  init='normal': N(0, config.initializer_range), like a freshly initialised model.

  Returns:
    (params with [V', D] embedding and [D, V'] head, config with vocab_size V').
  """
  start = config.vocab_size if first_new_id is None else first_new_id
  if num_new_tokens < 0 or not 0 < start <= config.vocab_size:
    raise ValueError(f'Need num_new_tokens >= 0 and 0 < first_new_id <= vocab_size='
                     f'{config.vocab_size}; got {num_new_tokens}, {first_new_id}.')
  if init not in ('mean', 'normal'):
    raise ValueError(f"init must be 'mean' or 'normal', got {init!r}.")
  new_vocab = max(config.vocab_size, start + num_new_tokens)
  embed_key, head_key = jax.random.split(key)

  def with_new_rows(rows: jax.Array, row_key: jax.Array) -> jax.Array:  # rows [V, D]
    old = rows[:start].astype(jnp.float32)
    noise = jax.random.normal(row_key, (num_new_tokens, rows.shape[1]), jnp.float32)
    if init == 'mean':
      new = old.mean(axis=0) + noise_scale * old.std(axis=0) * noise
    else:
      new = config.initializer_range * noise
    grown = jnp.pad(rows, ((0, new_vocab - rows.shape[0]), (0, 0)))
    return grown.at[start:start + num_new_tokens].set(new.astype(rows.dtype))

  params = dict(params)  # new containers: the caller's params are left as they were
  params['embedder'] = {**params['embedder'],
                        'embedding': with_new_rows(params['embedder']['embedding'], embed_key)}
  if 'lm_head' in params:
    kernel = params['lm_head']['kernel']  # [D, V]
    params['lm_head'] = {**params['lm_head'], 'kernel': with_new_rows(kernel.T, head_key).T}
  return params, config.replace(vocab_size=new_vocab)


def param_labels(params: Any) -> Any:
  """Labels for optax.partition (a.k.a. multi_transform): VOCAB_LABEL or BACKBONE_LABEL.

  A label covers whole arrays, but old and new token rows share one matrix; so to train
  only some rows, give the 'vocab' group `optax.chain(opt, vocab_row_mask(first_new_id))`.
  Examples (opt e.g. optax.adamw(...), n0 = first new token id):
    new rows only:              {'vocab': chain(opt, vocab_row_mask(n0)),
                                 'backbone': optax.set_to_zero()}
    backbone + new rows:        {'vocab': chain(opt, vocab_row_mask(n0)), 'backbone': opt}
    whole vocab, frozen body:   {'vocab': opt, 'backbone': optax.set_to_zero()}
  `partial_optimizer` builds these from two booleans.
  """
  def label(path, _):
    names = [getattr(k, 'key', str(k)) for k in path]
    is_vocab = names[-2:] in (['embedder', 'embedding'], ['lm_head', 'kernel'])
    return VOCAB_LABEL if is_vocab else BACKBONE_LABEL
  return jax.tree_util.tree_map_with_path(label, params)


def vocab_row_mask(first_row: int, end_row: int | None = None):
  """optax transform zeroing the updates of vocabulary rows outside [first_row, end_row).

  Applies to the embedding [V, D] (rows = axis 0) and the LM head kernel [D, V] (axis 1),
  recognised by their param names. Put it AFTER the optimizer in the chain: it then zeroes
  the final update, weight decay included, so frozen rows stay bit-identical.
  """
  import optax  # pylint: disable=g-import-not-at-top

  def mask_rows(path, update):
    names = [getattr(k, 'key', str(k)) for k in path]
    axis = 1 if names[-2:] == ['lm_head', 'kernel'] else 0
    rows = jnp.arange(update.shape[axis])
    keep = (rows >= first_row) & (rows < (update.shape[axis] if end_row is None else end_row))
    keep = keep[:, None] if axis == 0 else keep[None, :]
    return jnp.where(keep, update, jnp.zeros_like(update))

  def update_fn(updates, state, params=None):
    del params
    return jax.tree_util.tree_map_with_path(mask_rows, updates), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def partial_optimizer(optimizer, params: Any, *, first_new_id: int, train_backbone: bool,
                      train_old_vocab: bool):
  """`optimizer` restricted to the chosen parts: backbone, old vocab rows, new vocab rows.

  New rows (ids >= first_new_id) always train. Frozen parts get no optimizer state
  (optax.set_to_zero) unless they share a matrix with trained rows.
  """
  import optax  # pylint: disable=g-import-not-at-top
  vocab = optimizer if train_old_vocab else optax.chain(optimizer, vocab_row_mask(first_new_id))
  backbone = optimizer if train_backbone else optax.set_to_zero()
  return optax.partition({VOCAB_LABEL: vocab, BACKBONE_LABEL: backbone}, param_labels(params))
