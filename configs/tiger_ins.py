r"""TIGER row of the Ghost table: RQ-VAE SIDs (3 levels + dedup level for every item), T5
encoder-decoder from scratch (d_model 128, 4+4 layers, 6 heads, d_ff 1024, dropout 0.1).

  python -m genrec_jax.main --config=configs/tiger_ins.py:cpu --workdir=runs/tiger

Variants: cpu (MovieLens-100k), paper (Amazon Instruments), smoke.
"""

from genrec_jax import config as config_lib


def get_config(variant: str = 'cpu'):
  config = config_lib.table_config('tiger', variant)
  config.name = 'TIGER'
  if variant == 'smoke':
    config.model.update(d_model=32, num_heads=2, head_dim=16, d_ff=64, num_encoder_layers=1,
                        num_decoder_layers=1)
  return config
