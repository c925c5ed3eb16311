"""TIGER (Rajput et al., NeurIPS'23): RQ-VAE semantic IDs with a dedup level, a T5-style
encoder–decoder trained from scratch on them, trie-constrained beam search.

Paper setting: RQ-VAE 3 levels x 256 codes over a text embedding of the item, a fourth
(dedup) level for every item; T5 with d_model 128, 4+4 layers, 6 heads of 64, d_ff 1024,
dropout 0.1; the encoder reads the history's SID tokens, the decoder emits the next item's.
"""

from __future__ import annotations

import ml_collections

from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import backbones
from genrec_jax.methods.generative import GenerativeRecommender
from genrec_jax.models import t5 as t5_lib

SPEC = MethodSpec(family='generative', needs=('sids',))


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'model': dict(d_model=128, num_heads=6, head_dim=64, d_ff=1024, num_encoder_layers=4,
                    num_decoder_layers=4, dropout=0.1, feed_forward='relu', dtype='float32'),
      'decode': dict(beam_size=20),
      # No Sinkhorn-balanced level (LC-Rec's): collisions are told apart by the dedup level.
      'tokenize': dict(method='rqvae', levels=3, dedup='all',
                       rqvae=dict(sinkhorn_epsilons=(0.0, 0.0, 0.0))),
      'train': dict(example_kind='prefix', lr=1e-3),
  })


def validate_config(config) -> None:
  if config.train.example_kind != 'prefix':
    raise ValueError("Invalid config.train.example_kind: the encoder-decoder trains on "
                     "'prefix' examples.")


def build(config, dataset, inputs: BuildInputs = BuildInputs(), **parts):
  """TIGER on the encoder-decoder backbone. parts: as in lcrec.build."""
  sids = inputs.sids
  m = config.model
  start_token = sids.vocab_size  # one token after the SID vocabulary
  model = t5_lib.T5(t5_lib.T5Config(
      vocab_size=-(-(start_token + 1) // 128) * 128, d_model=m.d_model, num_heads=m.num_heads,
      head_dim=m.head_dim, d_ff=m.d_ff, num_encoder_layers=m.num_encoder_layers,
      num_decoder_layers=m.num_decoder_layers, dropout=m.dropout,
      feed_forward=m.feed_forward, dtype=m.dtype))
  backbone = backbones.EncoderDecoderBackbone(model, start_token)
  return GenerativeRecommender(
      backbone, sids, dataset.num_items, max_history=config.data.max_history,
      beam_size=config.decode.beam_size, token_base=0, **parts)
