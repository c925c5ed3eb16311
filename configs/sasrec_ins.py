r"""SASRec: the collaborative model LETTER aligns to (hidden 32 = LETTER's latent size).

  python -m genrec_jax.main --config=configs/sasrec_ins.py:cpu --workdir=runs/sasrec

Variants: cpu (MovieLens-100k), paper (Amazon Instruments), smoke.

Expected on `cpu` (test, 3 seeds, 2-core CPU, 2026-12): HR@10 0.136 ± 0.006, tail HR@10
0.074 ± 0.006, NDCG@10 0.064 ± 0.004, MGU@10 0.184; 200-290 s per run.
"""

from configs import common

VARIANTS = common.TABLE_VARIANTS
SUFFIXES = ()


def get_config(variant: str = 'cpu'):
  variant = common.parse_variant(variant, VARIANTS)[0]
  config = common.table_config('sasrec', variant)
  config.name = 'SASRec'
  config.model.update(hidden=32, num_layers=2, num_heads=1, dropout=0.2)
  if variant != 'smoke':
    config.train.update(batch_size=256, lr=1e-3, num_steps=0, num_epochs=30, eval_every=0,
                        early_stop_patience=5)
  return config
