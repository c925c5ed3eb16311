r"""LETTER rows of the Ghost table: RQ-VAE + collaborative alignment to SASRec item
embeddings + diversity, under the LC-Rec backbone (default) or TIGER (`:cpu_tiger`).

The SASRec run comes first (its 32-d item embeddings are the CF signal):
  python -m genrec_jax.main --config=configs/sasrec_ins.py:cpu --workdir=runs/sasrec
  python -m genrec_jax.main --config=configs/letter_ins.py:cpu --workdir=runs/letter \
      --config.embed.cf_run=runs/sasrec

Variants: cpu, ins, paper, smoke; suffix `_tiger` for the TIGER backbone. On `ins` (the
papers' Instruments data) the SIDs are LETTER's own, read from Instruments.index.json.

Expected on `cpu` (test, seeds 0-2, 2-core CPU, 2026-12; experiments/ghost_table_ml100k.md):
HR@10 0.116 ± 0.011, tail HR@10 0.032 ± 0.005, MGU@10 0.278, ARP@10 258; ~3 min of training a
seed after the SASRec run.
"""

import os

from configs import common
from genrec_jax.methods import letter

VARIANTS = common.TABLE_VARIANTS
SUFFIXES = ('tiger',)


def get_config(variant: str = 'cpu'):
  variant, suffixes = common.parse_variant(variant, VARIANTS, SUFFIXES, combinable=False)
  backbone = 'tiger' if suffixes else 'lcrec'
  config = common.table_config('letter', variant, letter.default_config(backbone),
                               llm_backbone=backbone == 'lcrec')
  config.name = f'LETTER ({backbone})'
  config.embed.cf_run = 'runs/sasrec'
  if variant == 'ins':
    config.tokenize.update(method='precomputed', index_path=os.path.join(
        config.data.dir, f'{config.data.category}.index.json'))
    config.name = f'LETTER SIDs ({backbone})'
  return config
