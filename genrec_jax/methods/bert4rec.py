"""BERT4Rec: a bidirectional self-attention encoder trained to recover masked items
(Cloze), scoring the next item at a MASK appended to the history; a sequential recommender
(methods/sequential.py) on 'masked' examples (data/pipeline.py): windows of max_history + 1
items, each item masked with model.mask_prob (at least one per window), and every window
once more with only its last item masked, as BERT4Rec adds for the next-item case.

Losses (config.sequential.loss): 'ce' full softmax over the catalogue at each masked
position (default), 'bce' sampled negatives.

  python -m genrec_jax.main --config=configs/genair_ins.py:cpu_bert4rec_plain --workdir=runs/bert4rec
"""

from __future__ import annotations

import ml_collections

from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import sequential
from genrec_jax.models.bert4rec import BERT4Rec as BERT4RecModel

SPEC = MethodSpec(family='sequential')
EXAMPLE_KINDS = ('masked',)


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'model': dict(hidden=64, num_layers=2, num_heads=2, dropout=0.2, mask_prob=0.2),
      'train': dict(example_kind='masked'),
      'sequential': sequential.default_sequential_config(),
  })


def validate_config(config) -> None:
  sequential.validate_sequential_config(config, EXAMPLE_KINDS)
  if not 0 < config.model.mask_prob < 1:
    from genrec_jax.config import ConfigError  # pylint: disable=g-import-not-at-top (cycle)
    raise ConfigError('Invalid config.model.mask_prob: must be in (0, 1), e.g. 0.2.')


def encoder(config, dataset) -> BERT4RecModel:
  m = config.model
  return BERT4RecModel(num_items=dataset.num_items, max_len=config.data.max_history,
                       hidden=m.hidden, num_layers=m.num_layers, num_heads=m.num_heads,
                       dropout=m.dropout)


def example_options(config) -> dict:
  return {'mask_prob': float(config.model.mask_prob)}


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  del inputs
  return sequential.build_recommender(config, encoder(config, dataset),
                                      example_options=example_options(config))
