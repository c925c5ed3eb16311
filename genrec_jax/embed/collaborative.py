"""Collaborative item vectors: the learned item embeddings of another run (e.g. SASRec).

LETTER aligns its quantised latents with frozen SASRec item embeddings; `tokenize.cf_run`
names the workdir of a finished SASRec run on the same dataset and config.data.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from genrec_jax import methods
from genrec_jax.data.dataset import Dataset


def item_embeddings_from_run(run_dir: str, dataset: Dataset) -> np.ndarray:
  """[I, d] item embeddings from the best checkpoint of the run in `run_dir`."""
  from genrec_jax.train import loop  # pylint: disable=g-import-not-at-top  (cycle via run)
  path = os.path.join(run_dir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'tokenize.cf_run={run_dir}: no config.json there; train the '
                            'collaborative model first, e.g. configs/sasrec_ml100k.py.')
  with open(path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  module = methods.get(config.method)
  method = module.build(config, dataset, None)
  if not hasattr(method, 'item_embeddings'):
    raise ValueError(f'tokenize.cf_run={run_dir}: method {config.method} has no item '
                     'embeddings; use a SASRec run.')
  params = loop.load_best_params(config, method, run_dir)
  vectors = np.asarray(method.item_embeddings(params), np.float32)
  if vectors.shape[0] != dataset.num_items:
    raise ValueError(f'tokenize.cf_run={run_dir}: {vectors.shape[0]} item vectors but the '
                     f'dataset has {dataset.num_items} items; use a run on the same data.')
  return vectors
