r"""Augmentation (`:cpu_augment`) and Substitution (`:cpu_substitute`) rows of the Ghost table
on the LC-Rec backbone: head items replaced by their most similar tail item with p = 0.375.

  python -m genrec_jax.main --config=configs/augment_ins.py:cpu_augment --workdir=runs/aug

Expected (test, seeds 0-2, 2-core CPU, 2026-12; experiments/ghost_table_ml100k.md):
`cpu_augment` HR@10 0.080 ± 0.006, tail HR@10 0.038 ± 0.005, MGU@10 0.127, ARP@10 221;
`cpu_substitute` HR@10 0.039 ± 0.007, tail HR@10 0.030 ± 0.012, MGU@10 0.259, ARP@10 145;
~2-6 min of training a seed.
"""

from configs import common

VARIANTS = common.TABLE_VARIANTS
SUFFIXES = ('augment', 'substitute')


def get_config(variant: str = 'cpu_augment'):
  size, suffixes = common.parse_variant(variant, VARIANTS, SUFFIXES, combinable=False)
  config = common.table_config('augment', size, llm_backbone=True)
  config.augment.update(mode=suffixes[-1] if suffixes else 'augment', p=0.375)
  config.tokenize.update(method='rqvae', levels=4)  # LC-Rec's tokenizer (configs/lcrec_ins.py)
  config.name = 'Augmentation' if config.augment.mode == 'augment' else 'Substitution'
  return config
