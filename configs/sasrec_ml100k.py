r"""SASRec on MovieLens-100k: causal self-attention, full softmax over the catalogue.

  python -m genrec_jax.main --config=configs/sasrec_ml100k.py --workdir=runs/sasrec_ml100k

Variants: `cpu` (default; 2 layers, d=64, 20 epochs of per-prefix examples), `smoke` (a few
steps), `paper` (SASRec's published setting: 2 layers, d=50... here d=64, 200 epochs with
early stopping on valid NDCG@10).
"""

from genrec_jax import config as config_lib


def get_config(variant: str = 'cpu'):
  config = config_lib.base_config(method='sasrec', dataset='ml-100k')
  config.train.update(batch_size=256, lr=1e-3, num_epochs=20, warmup_steps=100,
                      weight_decay=0.0, early_stop_patience=5, log_every=100)
  if variant == 'smoke':
    config.train.update(num_steps=20, log_every=5, eval_every=10)
    config.name = 'sasrec_ml-100k_smoke'
  elif variant == 'paper':
    config.train.update(num_epochs=200, early_stop_patience=10)
  elif variant != 'cpu':
    raise ValueError(f"unknown variant {variant!r}; use 'cpu', 'smoke' or 'paper'")
  return config
