r"""TIGER row of the Ghost table: RQ-VAE SIDs (3 levels + dedup level for every item), T5
encoder-decoder from scratch (paper size: d_model 128, 4+4 layers, 6 heads, d_ff 1024,
dropout 0.1).

  python -m genrec_jax.main --config=configs/tiger_ins.py:cpu --workdir=runs/tiger

No Sinkhorn on any RQ-VAE level (LC-Rec's balanced last level is not TIGER's; the default
lives in methods/tiger.py): collisions are told apart by the dedup level only.

Variants: cpu (MovieLens-100k), paper (Amazon Instruments), smoke. The encoder-decoder trains
on per-prefix examples (one encoder pass per target), so on this CPU the `cpu` variant is
smaller (2+2 layers, 4 heads of 32, d_ff 512, batch 64) and sees each target once (1 epoch,
531 s here) where the decoder-only rows see it three times.

Expected on `cpu` (test, seeds 0-2, 2-core CPU, 2026-12; experiments/ghost_table_ml100k.md):
HR@10 0.052 ± 0.005, tail HR@10 0 on every seed (0-7 tail items among 9,430 top-10 slots),
MGU@10 0.422, ARP@10 320.
"""

from configs import common

VARIANTS = common.TABLE_VARIANTS
SUFFIXES = ()


def get_config(variant: str = 'cpu'):
  variant = common.parse_variant(variant, VARIANTS)[0]
  config = common.table_config('tiger', variant)
  config.name = 'TIGER'
  if variant == 'cpu':
    config.model.update(num_heads=4, head_dim=32, d_ff=512, num_encoder_layers=2,
                        num_decoder_layers=2)
    config.train.update(batch_size=64, num_epochs=1)
  elif variant == 'smoke':
    config.model.update(d_model=32, num_heads=2, head_dim=16, d_ff=64, num_encoder_layers=1,
                        num_decoder_layers=1)
  return config
