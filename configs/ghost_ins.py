r"""Ghost (SKT + AUO) on the LC-Rec backbone, and its ablations (Ghost Tables I and II).

  python -m genrec_jax.main --config=configs/ghost_ins.py:cpu --workdir=runs/ghost
  python -m genrec_jax.main --config=configs/ghost_ins.py:paper --workdir=runs/ghost_ins \
      --config.data.dir=/data/amazon18/Instruments

Variants: cpu (MovieLens-100k, minutes here), paper (Amazon Instruments: Qwen2.5-3B from
checkpoints/Qwen2.5-3B, lr 3e-5, 4 epochs, L^h = 3, L^t = 2, alpha = 0.1, K_a = 200, K_b = 5),
smoke. Ablation suffixes: `_noauo` (w/o AUO), `_noskt` (w/o SKT: RQ-KMeans 4 levels + AUO),
`_rqk46` (RQK-4-6: head 4 / tail 6 levels, no prefix inheritance, no AUO). RQK-4 and RQK-6
are LC-Rec-backbone rows (configs/lcrec_ins.py, `:cpu_rqk4` and `:cpu_rqk6`); the LC-Rec row
itself uses LC-Rec's RQ-VAE tokenizer. `_smollm2`: Ghost with SmolLM2-135M-Instruct as the
backbone (vocabulary extended by the SID tokens) and item-text encoder, as
configs/lcrec_ins.py's `_smollm2` (`smoke_smollm2` runs on a CPU in minutes).

Expected (test, 2-core CPU, 2026-12): trained per example (`--config.train.example_kind=
prefix`, seeds 0-2) HR@10 0.087 ± 0.009, tail HR@10 0.039 ± 0.010, MGU@10 0.170, ARP@10 225,
~40 min with the machine to itself; on whole sequences (the `cpu` default, seeds 0-2)
HR@10 0.067 ± 0.008, tail HR@10 0.003 ± 0.002, MGU@10 0.348, 16-27 min of training
(experiments/ghost_table_ml100k.md).
"""

from configs import common

VARIANTS = common.TABLE_VARIANTS
SUFFIXES = ('noauo', 'noskt', 'rqk46', 'smollm2')  # one at a time


def get_config(variant: str = 'cpu'):
  variant, ablations = common.parse_variant(variant, VARIANTS, SUFFIXES, combinable=False)
  ablation = ablations[0] if ablations else ''
  config = common.table_config('ghost', variant, llm_backbone=True)
  config.ghost.update(auo=True, alpha=0.1, k_a=200, k_b=5)
  config.tokenize.update(method='skt', head_levels=3, tail_levels=2)
  config.name = 'Ghost'
  if ablation == 'smollm2':
    common.smollm2_backbone(config, variant)
    config.name = 'Ghost (SmolLM2)'
  elif ablation == 'noauo':
    config.ghost.auo = False
    config.name = 'Ghost w/o AUO'
  elif ablation == 'noskt':
    config.tokenize.update(method='rq_kmeans', levels=4)
    config.name = 'Ghost w/o SKT'
  elif ablation == 'rqk46':
    config.ghost.auo = False
    config.tokenize.update(method='rqk_var', head_levels=4, tail_levels=6)
    config.name = 'RQK-4-6'
  return config
