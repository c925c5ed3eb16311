r"""GenAIR on SASRec, BERT4Rec and GRU4Rec, and each recommender without it.

  python -m genrec_jax.main --config=configs/genair_ins.py:cpu_sasrec --workdir=runs/genair_sasrec
  python -m genrec_jax.main --config=configs/genair_ins.py:cpu_sasrec_plain --workdir=runs/sasrec_w

Variants `<size>_<backbone>[_plain]`, backbone in sasrec (the default), bert4rec, gru4rec;
`_plain` is the same recommender (same sizes, loss, examples and budget) with its own item
ID table and no calibration, i.e. without GenAIR.
  cpu    MovieLens-100k, sized for this 2-core CPU: d = 64, CE over the catalogue, SASRec and
         GRU4Rec trained on whole windows ('window' examples), BERT4Rec on masked windows;
         the frozen table is SmolLM2-135M-Instruct's view of its archetypes (prompt ⊕
         archetype hidden means, PCA 384 + 384; `experiments/archetypes/`, made by
         `python -m genrec_jax.embed.archetypes`). Results: experiments/RESULTS.md (GenAIR).
  paper  the public code's setting on Amazon Beauty (2014): d = 128, max length 200, batch
         128, lr 1e-3, dropout 0.5, 50 epochs with patience 20 on NDCG@10, BCE with one
         sampled negative, BERT4Rec mask rate 0.6, 100 sampled negatives at evaluation
         (the paper's protocol; eval.protocol='full' for full ranking); the table from
         `embed.npy_path` (archetypes of Beauty from any LLM, see the README).
  smoke  a few steps on synthetic data, the table from MiniLM of the synthetic item text.

Expected on `cpu` (test NDCG@10, 3 seeds, full ranking / 100 sampled negatives, 2-core CPU,
2026-12; 1-12 min per run): `cpu_sasrec` 0.053 / 0.400 (`_plain` 0.064 / 0.437),
`cpu_bert4rec` 0.040 / 0.378 (`_plain` 0.052 / 0.376), `cpu_gru4rec` 0.071 / 0.422 (`_plain`
0.055 / 0.405); experiments/RESULTS.md (GenAIR).
"""

from configs import common
from genrec_jax.config import base_config
from genrec_jax.methods import genair

BACKBONES = tuple(genair.BACKBONES)
VARIANTS = ('cpu', 'paper', 'smoke')
SUFFIXES = (*BACKBONES, 'plain')  # one backbone, then optionally plain
NAMES = {'sasrec': 'SASRec', 'bert4rec': 'BERT4Rec', 'gru4rec': 'GRU4Rec'}
# The archetype tables of MovieLens-100k (genrec_jax/embed/archetypes.py writes them).
ML100K_LLM_TABLE = 'experiments/archetypes/ml100k_smollm2_llm768.npy'


def get_config(variant: str = 'cpu_sasrec'):
  size, suffixes = common.parse_variant(variant, VARIANTS, SUFFIXES)
  named = [s for s in suffixes if s != 'plain']
  plain = len(named) < len(suffixes)
  if len(named) > 1 or len(suffixes) - len(named) > 1 or (plain and suffixes[-1] != 'plain'):
    raise ValueError(f'unknown variant {variant!r}: use <{"|".join(VARIANTS)}>_<backbone>'
                     f'[_plain] with backbone in {", ".join(BACKBONES)}.')
  backbone = named[0] if named else 'sasrec'
  method = backbone if plain else 'genair'
  defaults = genair.default_config(backbone)
  if plain:  # the backbone's own fields only
    defaults = genair.BACKBONES[backbone].default_config()
  if size == 'paper':
    config = base_config(method, 'amazon2014-beauty', defaults)
  else:
    config = common.table_config(method, size, defaults)
  config.name = NAMES[backbone] + ('' if plain else ' + GenAIR')
  m = config.model
  if backbone == 'bert4rec':
    config.train.example_kind = 'masked'
  else:
    config.train.example_kind = 'window'
  if size == 'smoke':
    m.update(hidden=16, num_layers=1, dropout=0.1)
    if not plain:
      config.embed.source = 'minilm'  # synthetic items have text, no archetypes
    return config
  if size == 'cpu':
    m.update(hidden=64, dropout=0.2)
    config.train.update(batch_size=128, lr=1e-3, warmup_steps=50, num_steps=0,
                        num_epochs=60, eval_every=0, early_stop_patience=10,
                        early_stop_metric='ndcg@10')
    if not plain:
      config.embed.update(source='npy', npy_path=ML100K_LLM_TABLE)
    return config
  m.update(hidden=128, dropout=0.5)
  if backbone == 'bert4rec':
    m.mask_prob = 0.6
  config.data.max_history = 200
  config.sequential.update(loss='bce', num_negatives=1)
  config.eval.protocol = 'sampled'
  config.train.update(batch_size=128, lr=1e-3, num_epochs=50, early_stop_patience=20,
                      early_stop_metric='ndcg@10', weight_decay=0.0)
  if not plain:
    config.embed.update(source='npy', npy_path='experiments/archetypes/beauty_llm768.npy')
  return config
