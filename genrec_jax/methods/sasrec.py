"""SASRec: next-item prediction with a causal self-attention encoder; a sequential
recommender (methods/sequential.py) on the SASRec encoder. The causal mask is on: the state
at position t reads items up to t only (GenAIR's public SASRec comments it out).

Losses (config.sequential.loss): 'ce' full softmax (default), 'bce' sampled negatives.
Examples (config.train.example_kind): 'prefix' (one per target, RecBole's way) or 'window'
(every position of a window in one causal pass, the original SASRec's way).

  python -m genrec_jax.main --config=configs/sasrec_ins.py:cpu --workdir=runs/sasrec
"""

from __future__ import annotations

import ml_collections

from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import sequential
from genrec_jax.models.sasrec import SASRec as SASRecModel

SPEC = MethodSpec(family='sequential')
EXAMPLE_KINDS = ('prefix', 'window')


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'model': dict(hidden=64, num_layers=2, num_heads=1, dropout=0.2),
      'sequential': sequential.default_sequential_config(),
  })


def validate_config(config) -> None:
  sequential.validate_sequential_config(config, EXAMPLE_KINDS)


def encoder(config, dataset) -> SASRecModel:
  m = config.model
  return SASRecModel(num_items=dataset.num_items, max_len=config.data.max_history,
                     hidden=m.hidden, num_layers=m.num_layers, num_heads=m.num_heads,
                     dropout=m.dropout)


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  del inputs
  return sequential.build_recommender(config, encoder(config, dataset))
