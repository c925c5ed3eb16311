"""Methods, chosen by name: `genrec_jax.methods.<name>` is the module of method `<name>`.

The contract is tiny. A method module defines

  default_config() -> ml_collections.ConfigDict   # its own fields (merged into the config)
  build(config, dataset, sids, embeddings=None) -> Method
  uses_sids = True                                  # optional: run the embed + tokenize
                                                    # stages first and pass sids/embeddings
  validate_config(config)                           # optional, raises ValueError

and the `Method` it builds has

  trainable: bool
  init(rng) -> params                               # fitted statistics for non-trainable ones
  loss_fn(params, batch, rng) -> (loss, metrics)    # trainable methods only
  predict_topk(params, batch, k) -> (items [B, k], scores [B, k])
  score_items(params, batch, items [B, C]) -> scores [B, C]   # for sampled evaluation
  train_dataset                                     # optional: the data to train on, if
                                                    # not the run's (augmentation)
  restrict_optimizer(tx) -> tx                      # optional: train only part of params

A batch is a dict of arrays: 'user' [B], 'history' [B, H] (left-padded with -1),
'history_len' [B], and for ranking 'exclude' [B, E] (items never to recommend, -1 padded).
`predict_topk` never returns an item from 'exclude'; -1 marks an empty slot.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Protocol

import jax


class Method(Protocol):
  trainable: bool

  def init(self, rng: jax.Array) -> Any: ...

  def predict_topk(self, params: Any, batch: dict, k: int) -> tuple[jax.Array, jax.Array]: ...

  def score_items(self, params: Any, batch: dict, items: jax.Array) -> jax.Array: ...


def available() -> list[str]:
  """Method names: the public modules here that define `build` (not the shared parts such
  as backbones and instructions)."""
  names = (m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith('_'))
  return sorted(n for n in names
                if hasattr(importlib.import_module(f'{__name__}.{n}'), 'build'))


def get(name: str):
  """The module of method `name`."""
  if name not in available():
    raise ValueError(f'unknown method {name!r}; available: {available()}')
  return importlib.import_module(f'{__name__}.{name}')
