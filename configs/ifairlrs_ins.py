r"""IFairLRS rows of the Ghost table on the LC-Rec backbone: `:cpu_rw` (group reweighting) and
`:cpu_rr` (popularity-penalised re-ranking of the beam candidates).

RW weights the target's popularity group: by default the dataset's data.num_groups (5)
equal-size popularity groups (ifairlrs.num_groups=0; 2 = the head/tail split), weights
rescaled to mean 1 over training examples (ifairlrs.normalize_weights). RR re-ranks the same
beam as every other row (decode.beam_size = 20; no wider beam) with s − λ·log(1 + count); λ is
chosen after training on valid NDCG@10 from ifairlrs.rr_lambda_grid (0, 0.1, 0.25, 0.5, 1)
and applied to test; results.json records it under 'ifairlrs_rr'.

  python -m genrec_jax.main --config=configs/ifairlrs_ins.py:cpu_rw --workdir=runs/ifair_rw

Expected (test, seeds 0-2, 2-core CPU, 2026-12; experiments/ghost_table_ml100k.md):
`cpu_rw` HR@10 0.078 ± 0.010, tail HR@10 0.005 ± 0.004, MGU@10 0.394;
`cpu_rr` HR@10 0.077 ± 0.003, tail HR@10 0.012 ± 0.009, MGU@10 0.350 (λ chosen on valid
NDCG@10); ~2-3 min of training a seed.
"""

from configs import common

VARIANTS = common.TABLE_VARIANTS
SUFFIXES = ('rw', 'rr')


def get_config(variant: str = 'cpu_rw'):
  size, suffixes = common.parse_variant(variant, VARIANTS, SUFFIXES, combinable=False)
  config = common.table_config('ifairlrs', size, llm_backbone=True)
  config.ifairlrs.mode = suffixes[-1] if suffixes else 'rw'
  config.tokenize.update(method='rqvae', levels=4)  # LC-Rec's tokenizer (configs/lcrec_ins.py)
  config.name = f'IFairLRS-{config.ifairlrs.mode.upper()}'
  return config
