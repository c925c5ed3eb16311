r"""LC-Rec-style generative recommender on MovieLens-100k (RQ-KMeans SIDs, decoder-only LM).

  python -m genrec_jax.main --config=configs/lcrec_ml100k.py --workdir=runs/lcrec_ml100k
  python -m genrec_jax.main --config=configs/lcrec_ml100k.py --workdir=... --mode=tokenize

Variants (`:variant`):
  cpu    (default) MiniLM item-text embeddings -> PCA 32 -> RQ-KMeans 4 levels x 256 codes
         (RQK-4), a Qwen2-shaped decoder trained from scratch (2 layers, d=128), whole-
         sequence training, beam 20. Minutes on 2 CPU cores.
  rqk6   the RQK-6 ablation (6 levels).
  smoke  a few steps, for tests.
"""

from genrec_jax import config as config_lib


def get_config(variant: str = 'cpu'):
  config = config_lib.base_config(method='lcrec', dataset='ml-100k')
  config.tokenize.update(method='rq_kmeans', levels=4, codes_per_level=256, pca_dim=32)
  config.train.update(batch_size=32, num_epochs=10, lr=1e-3, warmup_steps=100,
                      weight_decay=0.01, example_kind='sequence', log_every=50,
                      early_stop_metric='ndcg@10', early_stop_patience=3)
  if variant == 'rqk6':
    config.tokenize.levels = 6
    config.name = 'lcrec_rqk6_ml-100k'
  elif variant == 'smoke':
    config.train.update(num_steps=6, log_every=2, eval_every=6)
    config.name = 'lcrec_ml-100k_smoke'
  elif variant != 'cpu':
    raise ValueError(f"unknown variant {variant!r}; use 'cpu', 'rqk6' or 'smoke'")
  return config
