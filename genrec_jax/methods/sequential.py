"""The sequential family: history -> user state -> a score per item; exact top-k.

A SequentialRecommender is composed of
  encoder     a flax module with encode(history [B, T] left-padded, train, item_vectors=None)
              -> states [B, T', D] whose last row is the user state, and item_table() ->
              [I, D]: SASRec (causal), GRU4Rec, BERT4Rec (whose states end at an appended
              MASK, and whose encode_tokens reads masked sequences)
  item vectors  the encoder's table; with frozen item embeddings [I, d_f] (e.g. an LLM's),
              an adapter part maps them to [I, D] (`params['adapter']`): LinearAdapter adds
              frozen @ W to the table (W learned, from 0), MLPAdapter (GenAIR) replaces the
              table by Linear -> LayerNorm -> GELU -> Linear of the frozen rows. With an
              adapter the encoder reads the same vectors at its input (tied, as SASRec ties).
  loss terms  pure functions of SequentialOutputs, weighted: loss = Σ weight · mean(values)
              over the rows with a target (a term may return one scalar instead)
  scorer      scores = state · item vectors; top k (past items masked if asked)
Training batches (data/pipeline.py) decide where the loss is taken:
  'prefix'  {'history', 'target'}: the last state predicts the target;
  'window'  {'history', 'targets' [B, T]}: every state predicts the next item, all in one
            causal pass (the original SASRec's training; -1 targets are skipped);
  'masked'  {'tokens', 'labels' [B, L]}: the states at masked tokens predict the items
            there (BERT4Rec).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genrec_jax.decode.item_topk import topk_items
from genrec_jax.losses import sample_negatives
from genrec_jax.losses import sampled_bce
from genrec_jax.losses import target_log_probs
from genrec_jax.methods import Method
from genrec_jax.models.item_adapter import ItemAdapter


@dataclasses.dataclass
class SequentialOutputs:
  """What the loss terms read. Rows are [B] (prefix batches) or [B, T] (window, masked)."""
  states: jax.Array  # [B, D] or [B, T, D]
  targets: jax.Array  # [B] or [B, T]; -1 = no target at this row
  item_vectors: jax.Array  # [I, D]
  exclude: jax.Array | None = None  # [B, E] items of each sequence (never negatives)
  rng: jax.Array | None = None  # for terms that sample
  adapted: jax.Array | None = None  # [I, D] the adapter's output, if any (GenAIR's target)

  @property
  def scores(self) -> jax.Array:
    """[B, I] or [B, T, I] against every item."""
    return self.states @ self.item_vectors.T


class ItemCrossEntropy:
  """−log softmax(scores)[target] over the full catalogue (SASRec's full-softmax loss)."""

  name = 'nll'

  def __init__(self, weight: float = 1.0):
    self.weight = weight

  def __call__(self, out: SequentialOutputs):
    return -target_log_probs(out.scores, out.targets), {}


class SampledBinaryCrossEntropy:
  """BCE of the target against `num_negatives` items sampled uniformly per row from those
  not in the row's sequence (history and targets), as SASRec's and GenAIR's code train."""

  name = 'bce'

  def __init__(self, num_negatives: int = 1, weight: float = 1.0):
    self.num_negatives = num_negatives
    self.weight = weight

  def __call__(self, out: SequentialOutputs):
    rows = out.targets.shape[1] if out.targets.ndim == 2 else 1
    negatives = sample_negatives(out.rng, out.exclude, out.item_vectors.shape[0],
                                 rows * self.num_negatives)
    negatives = negatives.reshape(*out.targets.shape, self.num_negatives)
    targets = jnp.maximum(out.targets, 0)
    pos = jnp.einsum('...d,...d->...', out.states, out.item_vectors[targets])
    neg = jnp.einsum('...d,...kd->...k', out.states, out.item_vectors[negatives])
    return sampled_bce(pos, neg, out.targets >= 0), {}


def recommender_loss(kind: str, num_negatives: int = 1):
  """The next-item term by name: 'ce' (full softmax) or 'bce' (sampled negatives)."""
  if kind == 'ce':
    return ItemCrossEntropy()
  if kind == 'bce':
    return SampledBinaryCrossEntropy(num_negatives)
  raise ValueError(f"unknown sequential loss {kind!r}; use 'ce' or 'bce'")


class LinearAdapter:
  """item vectors = the encoder's table + frozen @ W; W [d_f, D] learned, starting at 0."""

  def init(self, rng, frozen: jax.Array, dim: int):
    del rng
    return jnp.zeros((frozen.shape[1], dim), jnp.float32)

  def __call__(self, params, frozen: jax.Array, table: jax.Array) -> jax.Array:
    return table + frozen @ params


class MLPAdapter:
  """GenAIR's adapter: item vectors = Linear -> LayerNorm -> GELU -> Linear of the frozen
  rows; the encoder's own item table is not used."""

  def __init__(self, hidden: int):
    self.hidden = hidden

  def _module(self, dim: int):
    return ItemAdapter(hidden=self.hidden, out=dim)

  def init(self, rng, frozen: jax.Array, dim: int):
    return self._module(dim).init(rng, frozen[:1])['params']

  def __call__(self, params, frozen: jax.Array, table: jax.Array) -> jax.Array:
    return self._module(table.shape[-1]).apply({'params': params}, frozen)


class SequentialRecommender(Method):

  def __init__(self, encoder, max_history: int, terms=(ItemCrossEntropy(),),
               frozen_item_embeddings: np.ndarray | None = None, adapter=None,
               example_options: dict | None = None):
    self.encoder = encoder
    self.max_history = max_history
    self.terms = tuple(terms)
    self.frozen = (None if frozen_item_embeddings is None
                   else jnp.asarray(frozen_item_embeddings, jnp.float32))
    self.adapter = (None if self.frozen is None
                    else adapter if adapter is not None else LinearAdapter())
    self.example_options = dict(example_options or {})

  def init(self, rng):
    params = self.encoder.init(rng, jnp.full((1, self.max_history), -1, jnp.int32))['params']
    if self.frozen is None:
      return params
    dim = self.encoder.apply({'params': params}, method='item_table').shape[-1]
    return {**params, 'adapter': self.adapter.init(jax.random.fold_in(rng, 1), self.frozen,
                                                   dim)}

  def _encoder_params(self, params):
    return {k: v for k, v in params.items() if k != 'adapter'}

  def _encode(self, params, tokens, rng=None, method='encode'):
    train = rng is not None
    extra = {} if self.adapter is None else {'item_vectors': self.item_vectors(params)}
    return self.encoder.apply({'params': self._encoder_params(params)}, tokens, train,
                              method=method, rngs={'dropout': rng} if train else {}, **extra)

  def user_states(self, params, history, rng=None):
    return self._encode(params, history, rng)[:, -1]

  def item_vectors(self, params):
    """[I, D] item vectors (the encoder's table, or its adapted frozen embeddings)."""
    table = self.encoder.apply({'params': self._encoder_params(params)}, method='item_table')
    if self.frozen is None:
      return table
    return self.adapter(params['adapter'], self.frozen, table)

  def scores(self, params, batch, rng=None):
    return self.user_states(params, batch['history'], rng) @ self.item_vectors(params).T

  def outputs(self, params, batch, rng) -> SequentialOutputs:
    """The states, targets and the rest the terms read, for a batch of any kind."""
    if 'labels' in batch:  # masked items (BERT4Rec)
      states = self._encode(params, batch['tokens'], rng, method='encode_tokens')
      targets = batch['labels']
      exclude = jnp.where(targets >= 0, targets, batch['tokens'])
    elif 'targets' in batch:  # every position of a window
      states, targets = self._encode(params, batch['history'], rng), batch['targets']
      exclude = jnp.concatenate([batch['history'], targets[:, -1:]], axis=1)
    else:
      states, targets = self.user_states(params, batch['history'], rng), batch['target']
      exclude = jnp.concatenate([batch['history'], targets[:, None]], axis=1)
    vectors = self.item_vectors(params)
    return SequentialOutputs(
        states=states, targets=targets, item_vectors=vectors, exclude=exclude,
        rng=None if rng is None else jax.random.fold_in(rng, 1),
        adapted=None if self.frozen is None else vectors)

  def loss_fn(self, params, batch, rng):
    out = self.outputs(params, batch, rng)
    per_position = out.targets.ndim == 2
    count = jnp.maximum(jnp.sum(out.targets >= 0), 1)
    loss, metrics = None, {}
    for term in self.terms:
      values, term_metrics = term(out)
      if values.ndim == 0:
        part = term.weight * values
      elif per_position:  # rows without a target give 0 and do not count
        part = term.weight * jnp.sum(values) / count
      else:
        part = term.weight * jnp.mean(values)
      loss = part if loss is None else loss + part
      metrics.update({name: jnp.mean(value) for name, value in term_metrics.items()})
    return loss, metrics

  @functools.partial(jax.jit, static_argnums=(0, 3))
  def predict_topk(self, params, batch, k):
    return topk_items(self.scores(params, batch), k, batch.get('exclude'))

  @functools.partial(jax.jit, static_argnums=(0,))
  def score_items(self, params, batch, items):
    return jnp.take_along_axis(self.scores(params, batch), items, axis=1)


# ------------------------------------------------------------------------------------------
# The settings every sequential method shares (config.sequential), and its builder.
# ------------------------------------------------------------------------------------------


def default_sequential_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      loss='ce',  # 'ce': full softmax over the catalogue; 'bce': sampled negatives
      num_negatives=1,  # 'bce': negatives per target, never an item of the sequence
  ))


def validate_sequential_config(config, kinds: tuple[str, ...]) -> None:
  """Raises ConfigError naming the field: the loss, its negatives, the example kinds the
  encoder trains on."""
  from genrec_jax.config import ConfigError  # pylint: disable=g-import-not-at-top (cycle)
  seq = config.sequential
  if seq.loss not in ('ce', 'bce'):
    raise ConfigError(f"Invalid config.sequential.loss={seq.loss!r}: use 'ce' (full "
                     "softmax) or 'bce' (sampled negatives).")
  if seq.num_negatives < 1:
    raise ConfigError('Invalid config.sequential.num_negatives: must be >= 1.')
  if config.train.example_kind not in kinds:
    raise ConfigError(f'Invalid config.train.example_kind={config.train.example_kind!r}: '
                     f'{config.method} trains on {kinds}.')


def build_recommender(config, encoder, frozen=None, adapter=None, extra_terms=(),
                      example_options=None) -> SequentialRecommender:
  """The recommender of `encoder` with config.sequential's loss (CE for run records made
  before that field existed)."""
  seq = config.get('sequential') or default_sequential_config()
  terms = (recommender_loss(seq.loss, seq.num_negatives), *extra_terms)
  return SequentialRecommender(encoder, config.data.max_history, terms=terms,
                               frozen_item_embeddings=frozen, adapter=adapter,
                               example_options=example_options)
