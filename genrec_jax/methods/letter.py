"""LETTER (Wang et al., CIKM'24): RQ-VAE SIDs regularised by collaborative alignment to frozen
SASRec item embeddings and by code diversity (tokenize.method='letter', see
tokenize/letter.py), under the TIGER or the LC-Rec backbone (letter.backbone).

`embed.cf_run` names the workdir of a SASRec run on the same data; train it first, e.g.
  python -m genrec_jax.main --config=configs/sasrec_ins.py:cpu --workdir=runs/sasrec
"""

from __future__ import annotations

import ml_collections

from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import lcrec
from genrec_jax.methods import tiger
from genrec_jax.tokenize.rqvae import default_rqvae_config

SPEC = MethodSpec(family='generative', needs=('sids',))
BACKBONES = {'tiger': tiger, 'lcrec': lcrec}


def default_config(backbone: str = 'lcrec') -> ml_collections.ConfigDict:
  """LETTER's fields on the given backbone (config files pass letter.backbone here)."""
  if backbone not in BACKBONES:
    raise ValueError(f'Invalid config.letter.backbone {backbone!r}: use one of '
                     f'{sorted(BACKBONES)}.')
  config = BACKBONES[backbone].default_config()
  # LETTER's own RQ-VAE keeps the shared Sinkhorn-balanced last level on either backbone
  # (TIGER's default_config switches it off for TIGER's tokenizer).
  config.update({'letter': dict(backbone=backbone),
                 'tokenize': dict(method='letter', levels=4 if backbone == 'lcrec' else 3,
                                  rqvae=dict(sinkhorn_epsilons=tuple(
                                      default_rqvae_config().sinkhorn_epsilons)))})
  return config


def default_config_for(config) -> ml_collections.ConfigDict:
  return default_config(config.letter.backbone)


def validate_config(config) -> None:
  BACKBONES[config.letter.backbone].validate_config(config)


def build(config, dataset, inputs: BuildInputs = BuildInputs()):
  return BACKBONES[config.letter.backbone].build(config, dataset, inputs)
