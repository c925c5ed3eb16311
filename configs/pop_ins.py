r"""Pop row of the Ghost table: the most popular training items for every user.

  python -m genrec_jax.main --config=configs/pop_ins.py:ins --workdir=runs/pop_ins

Variants: cpu (MovieLens-100k; the same run as configs/pop_ml100k.py), ins (the papers' own
Amazon Instruments data, LC-Rec format), paper (Amazon 2018 Instruments raw files), smoke.
"""

from genrec_jax import config as config_lib


def get_config(variant: str = 'ins'):
  config = config_lib.table_config('pop', variant)
  config.name = 'Pop'
  return config
