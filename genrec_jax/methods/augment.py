"""Augmentation and Substitution debiasing baselines (Ghost, Table I) on the LC-Rec backbone.

Every head item in a user's training sequence is replaced, with probability augment.p
(0.375), by the tail item most similar to it (cosine of item embeddings):
  augment     the modified sequence is added as an extra training sequence;
  substitute  it replaces the original training sequence.
Validation and test targets and histories are never changed; popularity statistics stay
those of the original data. The draw is fixed by config.seed.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import lcrec

SPEC = MethodSpec(family='generative', needs=('sids', 'embeddings'))


def default_config() -> ml_collections.ConfigDict:
  config = lcrec.default_config()
  config.update({'augment': dict(mode='augment', p=0.375)})
  return config


def validate_config(config) -> None:
  lcrec.validate_config(config)
  if config.augment.mode not in ('augment', 'substitute'):
    raise ValueError("Invalid config.augment.mode: use 'augment' or 'substitute'.")
  if not 0 <= config.augment.p <= 1:
    raise ValueError('Invalid config.augment.p: must be in [0, 1].')


def most_similar_tail(embeddings: np.ndarray, is_head: np.ndarray) -> np.ndarray:
  """[I] for each item, the most cosine-similar tail item (other than itself)."""
  x = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
  tails = np.flatnonzero(~is_head)
  sims = x @ x[tails].T
  sims[tails, np.arange(len(tails))] = -np.inf  # never map an item onto itself
  return tails[np.argmax(sims, axis=1)]


def training_data(dataset, embeddings: np.ndarray, mode: str, p: float, seed: int):
  """The dataset the model trains on (see the module docstring)."""
  rng = np.random.default_rng(seed)
  replacement = most_similar_tail(embeddings, dataset.is_head)
  in_train = np.ones(len(dataset.seq_items), bool)
  in_train[dataset.seq_offsets[1:] - 1] = False
  in_train[dataset.seq_offsets[1:] - 2] = False
  swap = in_train & dataset.is_head[dataset.seq_items] & (rng.random(len(in_train)) < p)
  modified = np.where(swap, replacement[dataset.seq_items], dataset.seq_items).astype(np.int32)
  if mode == 'substitute':
    return dataclasses.replace(dataset, seq_items=modified)
  # Augment: the modified copies become extra users after the real ones (same valid/test
  # items, which are never trained on).
  lengths = dataset.seq_lengths
  return dataclasses.replace(
      dataset, seq_items=np.concatenate([dataset.seq_items, modified]),
      seq_offsets=np.concatenate([dataset.seq_offsets,
                                  dataset.seq_offsets[-1] + np.cumsum(lengths)]),
      user_ids=np.concatenate([dataset.user_ids, np.char.add(dataset.user_ids, '#aug')]))


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  train_dataset = training_data(dataset, inputs.embeddings, config.augment.mode,
                                config.augment.p, config.seed)
  return lcrec.build(config, dataset, inputs, train_dataset=train_dataset)
