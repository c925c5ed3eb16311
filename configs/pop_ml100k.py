r"""Pop (most popular items) on MovieLens-100k, full ranking, past items not masked.

  python -m genrec_jax.main --config=configs/pop_ml100k.py --workdir=runs/pop_ml100k

Variants (`:variant`): `cpu` (default) and `paper` are the same here (Pop has no model);
`masked` excludes each user's past items, as RecBole does for general recommenders.

Expected (test, this repo's 2-core CPU, 2026-12): HR@10 0.0498, NDCG@10 0.0224, tail HR@10 0,
MGU@10 0.422; deterministic; seconds.
"""

from configs import common
from genrec_jax import config as config_lib

VARIANTS = ('cpu', 'paper', 'masked')
SUFFIXES = ()


def get_config(variant: str = 'cpu'):
  common.parse_variant(variant, VARIANTS)
  config = config_lib.base_config(method='pop', dataset='ml-100k')
  if variant == 'masked':
    config.eval.mask_history = True
    config.name = 'pop_ml100k_masked'
  return config
