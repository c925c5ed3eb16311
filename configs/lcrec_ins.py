r"""LC-Rec row of the Ghost table: decoder-only LM over RQ-KMeans SIDs (RQK-4), beam 20.

  python -m genrec_jax.main --config=configs/lcrec_ins.py:cpu --workdir=runs/lcrec
  python -m genrec_jax.main --config=configs/lcrec_ins.py:cpu --workdir=runs/lcrec --mode=tokenize

Variants: cpu (MovieLens-100k; Qwen2-shaped decoder from scratch, 2 layers, d=128,
whole-sequence training), paper (Amazon Instruments, Qwen2.5-3B from
checkpoints/Qwen2.5-3B, LC-Rec's seqrec instruction prompt, lr 3e-5, 4 epochs), smoke.
Variant suffixes: `_rqk6` the RQK-6 ablation (6 levels); `_prompt` LC-Rec's seqrec
instruction prompt instead of the bare SID stream (MiniLM's WordPiece vocabulary as the text
vocabulary of the from-scratch model, per-prefix training); `_prefix` the bare SID stream
trained per prefix (one history -> target example per step slot, as `_prompt`: 28x the
optimizer updates of whole-sequence training at batch 32); `_alltasks` the prompt plus
item2index, index2item and fusionseqrec on the item titles.
"""

from genrec_jax import config as config_lib


def get_config(variant: str = 'cpu'):
  variant, _, ablation = variant.partition('_')
  config = config_lib.table_config('lcrec', variant)
  config.name = 'LC-Rec'
  config.tokenize.update(method='rq_kmeans', levels=4)
  if ablation == 'rqk6':
    config.tokenize.levels = 6
    config.name = 'RQK-6'
  elif ablation in ('prompt', 'alltasks'):
    config.instructions.tasks = ('seqrec',) if ablation == 'prompt' else (
        'seqrec', 'item2index', 'index2item', 'fusionseqrec')
    config.train.example_kind = 'prefix'
    if not config.model.hf_dir:
      config.instructions.text_tokenizer = 'minilm'
    config.name = 'LC-Rec (prompt)' if ablation == 'prompt' else 'LC-Rec (all tasks)'
  elif ablation == 'prefix':
    config.train.example_kind = 'prefix'
    config.name = 'LC-Rec (per prefix)'
  elif ablation:
    raise ValueError(f'unknown ablation {ablation!r}; use rqk6, prompt, prefix or alltasks')
  return config
