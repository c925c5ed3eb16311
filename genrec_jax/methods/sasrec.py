"""SASRec: next-item prediction with a causal self-attention encoder, full softmax; a
sequential recommender (methods/sequential.py) on the SASRec encoder.

  python -m genrec_jax.main --config=configs/sasrec_ins.py:cpu --workdir=runs/sasrec
"""

from __future__ import annotations

import ml_collections

from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods.sequential import SequentialRecommender
from genrec_jax.models.sasrec import SASRec as SASRecModel

SPEC = MethodSpec(family='sequential')


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'model': dict(hidden=64, num_layers=2, num_heads=1,
                                                  dropout=0.2)})


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  del inputs
  m = config.model
  encoder = SASRecModel(num_items=dataset.num_items, max_len=config.data.max_history,
                        hidden=m.hidden, num_layers=m.num_layers, num_heads=m.num_heads,
                        dropout=m.dropout)
  return SequentialRecommender(encoder, config.data.max_history)
