"""LC-Rec (Zheng et al., ICDE'24): a decoder-only LLM whose vocabulary gains the SID tokens,
fine-tuned to generate the next item's SID from the history's SIDs; trie beam search.

Backbone: `model.hf_dir` names a local Hugging Face checkpoint (Qwen2/Qwen2.5/Qwen3/LLaMA)
whose vocabulary is extended with the SID tokens (rows initialised at the mean embedding,
trainable unless `model.freeze_backbone`); with `model.hf_dir=''` a Qwen2-shaped decoder of
the configured size is trained from scratch on SID tokens only (the `cpu` configs).

Input format: the SID stream (history items' SID tokens, then the target's). The papers wrap
it in an instruction prompt ("Here are the user's historical interactions: ... "); with a
from-scratch model there is no text vocabulary, so the stream carries the same information.
"""

from __future__ import annotations

import jax
import ml_collections

from genrec_jax.methods import backbones
from genrec_jax.methods._generative import GenerativeRecommender
from genrec_jax.models import hf_loading
from genrec_jax.models import transformer as transformer_lib

uses_sids = True


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'model': dict(
          hf_dir='',  # local Hugging Face checkpoint; '' = from scratch with the sizes below
          hidden_size=128, intermediate_size=512, num_layers=2, num_heads=4, num_kv_heads=2,
          rope_theta=10000.0, dtype='float32', remat=False,
          # With hf_dir: which parts fine-tune (the new SID rows always do).
          train_backbone=True, train_old_vocab=True,
      ),
      'decode': dict(beam_size=20),
      'tokenize': dict(method='rq_kmeans', levels=4),
      'train': dict(example_kind='sequence', lr=1e-3),
  })


def validate_config(config) -> None:
  if config.eval.mask_history:
    raise ValueError('Invalid config.eval.mask_history: generative methods decode with a trie '
                     'beam search and do not mask past items; set it to False.')


def decoder_backbone(config, sids, seed: int):
  """(backbone, token id of the first SID token, optimizer restriction or None)."""
  m = config.model
  if m.hf_dir:
    checkpoint = hf_loading.load_checkpoint(m.hf_dir, dtype=m.dtype, remat=m.remat)
    first_new = len(checkpoint.tokenizer) if checkpoint.tokenizer is not None else None
    params, model_config = hf_loading.extend_vocab(
        checkpoint.params, checkpoint.config, sids.vocab_size, jax.random.PRNGKey(seed),
        first_new_id=first_new)
    base = first_new if first_new is not None else checkpoint.config.vocab_size
    model = transformer_lib.Transformer(model_config)
    restrict = None
    if not (m.train_backbone and m.train_old_vocab):
      restrict = lambda tx: hf_loading.partial_optimizer(
          tx, params, first_new_id=base, train_backbone=m.train_backbone,
          train_old_vocab=m.train_old_vocab)
    return backbones.DecoderBackbone(model, init_params=params), base, restrict
  vocab = -(-sids.vocab_size // 128) * 128  # rows padded so the table shards evenly
  model_config = transformer_lib.TransformerConfig(
      vocab_size=vocab, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
      num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
      num_key_value_heads=m.num_kv_heads, rope_theta=m.rope_theta, tie_word_embeddings=True,
      model_type='qwen2', attention_bias=True, dtype=m.dtype, remat=m.remat)
  return backbones.DecoderBackbone(transformer_lib.Transformer(model_config)), 0, None


def build(config, dataset, sids, embeddings=None, **hooks):
  """hooks: auo_weight, distractors, is_tail, example_weight (used by ghost / ifairlrs)."""
  del embeddings
  backbone, base, restrict = decoder_backbone(config, sids, config.seed)
  method = GenerativeRecommender(
      backbone, sids, dataset.num_items, max_history=config.data.max_history,
      beam_size=config.decode.beam_size, token_base=base, **hooks)
  if restrict is not None:
    method.restrict_optimizer = restrict
  return method
