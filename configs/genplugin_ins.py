r"""X + GENPLUGIN rows of the Ghost table: the row X's own config (SIDs, backbone, budget),
trained per example, with GENPLUGIN around it (methods/genplugin.py): a language encoder
over the items' text vectors beside X's ID encoder, CE_id + CE_text + 0.5 KL + 0.1 InfoNCE
with exposure-bias substitution, then retrieval-augmented fine-tuning of the decoder
(phase 2, in <workdir>/finetune/) with users retrieved by BM25 over titles and by a finished
SASRec run's user vectors (embed.cf_run):

  python -m genrec_jax.main --config=configs/sasrec_ins.py:cpu --workdir=runs/sasrec
  python -m genrec_jax.main --config=configs/genplugin_ins.py:cpu_lcrec \
      --workdir=runs/lcrec_genplugin --config.embed.cf_run=runs/sasrec

Variants `<size>_<base>`: size cpu (MovieLens-100k), paper (Amazon Instruments, sized for
accelerators), smoke; base tiger (TIGER's row), lcrec (LC-Rec per prefix; the default),
ghost (Ghost per prefix), letter (LETTER on LC-Rec, per prefix; its SIDs read embed.cf_run
too). embed.cf_run defaults to runs/sasrec, as above. On `paper`,
LC-Rec-backbone rows keep Qwen2.5-3B but read the bare SID stream (GENPLUGIN's ID view needs
the history's SID tokens, not LC-Rec's instruction prompt).

Substitution starts after a third of phase 1 (epoch 1 of 3, 0.33 of TIGER's single `cpu`
epoch; the public code starts at epoch 10 of 200); phase 2 is one epoch at train.lr.

Expected (test, 2-core CPU, 2026-12, one seed): `cpu_lcrec` HR@10 0.110, tail HR@10 0.023,
MGU@10 0.293 (LC-Rec per prefix on the same seed: 0.105, 0.031, 0.265); 40 min of phase 1 and
12 min of phase 2. `cpu_tiger` HR@10 0.049, tail HR@10 0.002, MGU@10 0.414 (TIGER: 0.057, 0,
0.421); 19 min of phase 1 and 6 min of phase 2 (experiments/RESULTS.md). `cpu_ghost`: not
measured yet.
"""

from configs import common
from configs import ghost_ins
from configs import lcrec_ins
from configs import letter_ins
from configs import tiger_ins
from genrec_jax.methods import genplugin

VARIANTS = ('cpu', 'paper', 'smoke')
SUFFIXES = ('lcrec', 'tiger', 'ghost', 'letter')


def _base_config(size: str, base: str):
  """The row X's config (per prefix) and its backbone field, if any."""
  if base == 'tiger':
    return tiger_ins.get_config(size), None
  if base == 'lcrec':
    config = lcrec_ins.get_config(f'{size}_prefix')
    config.name = 'LC-Rec'
  elif base == 'ghost':
    config = ghost_ins.get_config(size)
  elif base == 'letter':
    config = letter_ins.get_config(size)
  else:
    raise ValueError(f'unknown base {base!r}; use one of {sorted(genplugin.BASES)}')
  config.train.example_kind = 'prefix'
  config.instructions.update(tasks=(), text_tokenizer='')
  return config, config.get(base, {}).get('backbone')


def get_config(variant: str = 'cpu_lcrec'):
  size, bases = common.parse_variant(variant, VARIANTS, SUFFIXES, combinable=False)
  base = bases[0] if bases else 'lcrec'
  config, backbone = _base_config(size, base)
  config.embed.cf_run = config.embed.cf_run or 'runs/sasrec'
  config.method = 'genplugin'
  config.genplugin = genplugin.default_config(base, backbone).genplugin
  config.name = f'{config.name} + GENPLUGIN'
  g = config.genplugin
  if size == 'cpu':
    g.substitute_from_epoch = round(config.train.num_epochs / 3, 2)
  elif size == 'paper':
    g.language_layers = config.model.get('num_encoder_layers', 2)
  else:  # smoke: every part runs within its few steps
    g.update(substitute_from_epoch=0.0, finetune_epochs=0, finetune_steps=4,
             projection_dim=32, retrieval_top=8, retrieval_keep=4)
  return config
