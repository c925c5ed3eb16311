r"""IFairLRS rows of the Ghost table on the LC-Rec backbone: `:cpu_rw` (group reweighting) and
`:cpu_rr` (popularity-penalised re-ranking of the beam candidates).

  python -m genrec_jax.main --config=configs/ifairlrs_ins.py:cpu_rw --workdir=runs/ifair_rw
"""

from genrec_jax import config as config_lib


def get_config(variant: str = 'cpu_rw'):
  variant, _, mode = variant.partition('_')
  config = config_lib.table_config('ifairlrs', variant)
  config.ifairlrs.mode = mode or 'rw'
  config.tokenize.update(method='rq_kmeans', levels=4)
  config.name = f'IFairLRS-{config.ifairlrs.mode.upper()}'
  return config
