r"""Pop row of the Ghost table: the most popular training items for every user.

  python -m genrec_jax.main --config=configs/pop_ins.py:ins --workdir=runs/pop_ins

Variants: cpu (MovieLens-100k; the same run as configs/pop_ml100k.py), ins (the papers' own
Amazon Instruments data, LC-Rec format), paper (Amazon 2018 Instruments raw files), smoke.
"""

from configs import common

VARIANTS = common.TABLE_VARIANTS
SUFFIXES = ()


def get_config(variant: str = 'ins'):
  config = common.table_config('pop', common.parse_variant(variant, VARIANTS)[0])
  config.name = 'Pop'
  return config
