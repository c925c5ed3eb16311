"""GRU4Rec: next-item prediction with a GRU over the item history (RecBole's layout:
embedding -> dropout -> GRU -> dense); a sequential recommender (methods/sequential.py).

Losses (config.sequential.loss): 'ce' full softmax (default), 'bce' sampled negatives.
Examples (config.train.example_kind): 'prefix' or 'window' (every position in one pass).

  python -m genrec_jax.main --config=configs/genair_ins.py:cpu_gru4rec_plain --workdir=runs/gru4rec
"""

from __future__ import annotations

import ml_collections

from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import sequential
from genrec_jax.models.gru4rec import GRU4Rec as GRU4RecModel

SPEC = MethodSpec(family='sequential')
EXAMPLE_KINDS = ('prefix', 'window')


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'model': dict(hidden=64, num_layers=1, dropout=0.2),
      'sequential': sequential.default_sequential_config(),
  })


def validate_config(config) -> None:
  sequential.validate_sequential_config(config, EXAMPLE_KINDS)


def encoder(config, dataset) -> GRU4RecModel:
  m = config.model
  return GRU4RecModel(num_items=dataset.num_items, max_len=config.data.max_history,
                      hidden=m.hidden, num_layers=m.num_layers, dropout=m.dropout)


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  del inputs
  return sequential.build_recommender(config, encoder(config, dataset))
