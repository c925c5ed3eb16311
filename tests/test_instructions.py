"""LC-Rec's instruction prompts: the token ids assembled on device equal tokenizing the whole
prompt string, and the multi-task loss equals teacher-forced brute force on each example."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers

from genrec_jax import config as config_lib
from genrec_jax.methods import backbones
from genrec_jax.methods import instructions as instructions_lib
from genrec_jax.methods.generative import GenerativeRecommender
from genrec_jax.methods.sid_tokens import global_item_tokens
from genrec_jax.models import transformer as transformer_lib
from genrec_jax.models.transformer_config import TransformerConfig
from genrec_jax.tokenize.sid_table import SIDTable

TITLES = ['Fender Guitar Strings', 'Yamaha Keyboard Stand', 'Shure Microphone', 'Capo',
          'Drum Sticks (Pair)', '']  # the last item has no title


def _sids():
  """6 items; items 0-3 have 3 levels, items 4-5 end after 2 (variable length)."""
  codes = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 2], [1, 2, 3], [2, 0, -1], [2, 1, -1]],
                   np.int32)
  return SIDTable(codes=codes, level_sizes=(3, 3, 4), ends_with_eos=codes[:, 2] < 0,
                  level_names=('a', 'b', 'c'))


def _sid_string(sids, item):
  names = sids.token_names()
  return ''.join(names[t] for t in sids.item_tokens()[item] if t >= 0)


def _byte_bpe():
  """A small byte-level BPE (Qwen's kind of tokenizer), trained on the prompt texts."""
  tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
  tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=400, initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
  texts = [instructions_lib.SFT_TEMPLATE] + list(instructions_lib.TASKS.values())
  tokenizer.train_from_iterator(texts + TITLES, trainer)
  return tokenizer


def _minilm():
  return instructions_lib.load_tokenizer('minilm', 'test')


def _with_sid_tokens(tokenizer, sids):
  """The tokenizer with every SID token added (ids after the text vocabulary), the [I, L]
  item token ids under it, and the first SID token id."""
  base = tokenizer.get_vocab_size()
  tokenizer.add_tokens(sids.token_names())
  tokens = sids.item_tokens()
  item_tokens = np.where(tokens >= 0, tokens + base, -1)
  for item in range(len(tokens)):  # the table's token ids are the tokenizer's SID ids
    want = tokenizer.encode(_sid_string(sids, item), add_special_tokens=False).ids
    assert list(item_tokens[item][item_tokens[item] >= 0]) == want
  return tokenizer, item_tokens, base


def _encode(tokenizer):
  return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


def _prompt_text(task, **fields):
  instruction = instructions_lib.TASKS[task]
  for key, value in fields.items():
    instruction = instruction.replace('{' + key + '}', value)
  return instructions_lib.SFT_TEMPLATE.replace('{instruction}', instruction)


def _unpad(row):
  row = np.asarray(row)
  return list(row[row >= 0])


@pytest.mark.parametrize('make_tokenizer', [_byte_bpe, _minilm], ids=['byte_bpe', 'wordpiece'])
def test_prompts_equal_tokenizing_the_whole_string(make_tokenizer):
  sids = _sids()
  tokenizer, item_tokens, _ = _with_sid_tokens(make_tokenizer(), sids)
  inst = instructions_lib.Instructions(
      tuple(instructions_lib.TASKS), _encode(tokenizer), item_tokens, titles=TITLES,
      max_title_tokens=64)
  history = np.array([[-1, -1, 3, 0], [1, 4, 2, 5], [-1, -1, -1, 2]], np.int32)
  target = np.array([5, 0, 3], np.int32)
  for row, items in enumerate(history):
    inters = ', '.join(_sid_string(sids, i) for i in items if i >= 0)
    for task in ('seqrec', 'fusionseqrec'):
      built = inst._history(task, jnp.asarray(history))[row]  # pylint: disable=protected-access
      assert _unpad(built) == _encode(tokenizer)(_prompt_text(task, inters=inters)), task
  examples = {task: (prompts, responses) for task, prompts, responses in
              inst.auxiliary_examples({'history': history, 'target': target},
                                      jax.random.PRNGKey(0))}
  _, titles = examples['fusionseqrec']
  for row, item in enumerate(target):
    assert _unpad(titles[row]) == _encode(tokenizer)(TITLES[item])
  prompts, responses = examples['item2index']
  for prompt, response in zip(prompts, responses):
    item = int(np.flatnonzero((item_tokens == np.asarray(response)).all(1))[0])
    assert _unpad(prompt) == _encode(tokenizer)(_prompt_text('item2index', title=TITLES[item]))
  prompts, responses = examples['index2item']
  for prompt, response in zip(prompts, responses):
    text = tokenizer.decode([int(t) for t in prompt if t >= 0], skip_special_tokens=False)
    item = next(i for i in range(len(TITLES)) if _sid_string(sids, i) in text.replace(' ', ''))
    assert _unpad(prompt) == _encode(tokenizer)(
        _prompt_text('index2item', item=_sid_string(sids, item)))
    assert _unpad(response) == _encode(tokenizer)(TITLES[item])


def test_task_names_are_checked():
  with pytest.raises(ValueError, match='GPT-3.5'):
    instructions_lib.check_tasks(('seqrec', 'itemsearch'))
  with pytest.raises(ValueError, match='must include "seqrec"'):
    instructions_lib.check_tasks(('item2index',))
  with pytest.raises(ValueError, match='unknown task'):
    instructions_lib.check_tasks(('seqrec', 'item2title'))
  config = config_lib.base_config('lcrec', 'synthetic')
  config.instructions.tasks = ('seqrec',)
  with pytest.raises(ValueError, match='example_kind'):
    config_lib.validate(config)
  config.train.example_kind = 'prefix'
  with pytest.raises(ValueError, match='text_tokenizer'):
    config_lib.validate(config)
  config.instructions.text_tokenizer = 'minilm'
  config_lib.validate(config)
  sids = _sids()
  with pytest.raises(ValueError, match='no item text'):
    instructions_lib.Instructions(('seqrec', 'index2item'), _encode(_minilm()),
                                  sids.item_tokens(), titles=None)


def test_multitask_loss_equals_brute_force_teacher_forcing():
  """loss = (Σ seqrec NLL + Σ other tasks' NLL) / number of examples, each NLL computed by
  one causal pass over the prompt followed by its response."""
  sids = _sids()
  tokenizer, _, base = _with_sid_tokens(_byte_bpe(), sids)
  config = TransformerConfig(
      vocab_size=tokenizer.get_vocab_size(), hidden_size=32, intermediate_size=64,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, model_type='qwen2',
      attention_bias=True, tie_word_embeddings=True)
  backbone = backbones.DecoderBackbone(transformer_lib.Transformer(config))
  tasks = ('seqrec', 'fusionseqrec', 'item2index', 'index2item')
  instructions = instructions_lib.Instructions(
      tasks, _encode(tokenizer), global_item_tokens(sids.item_tokens(), base), titles=TITLES,
      items_per_step=3)
  method = GenerativeRecommender(backbone, sids, len(TITLES), max_history=4, beam_size=3,
                                 token_base=base, instructions=instructions)
  params = method.init(jax.random.PRNGKey(0))
  batch = {'history': jnp.array([[-1, -1, 3, 0], [1, 4, 2, 5]], jnp.int32),
           'target': jnp.array([5, 1], jnp.int32),
           'user': jnp.array([0, 1], jnp.int32)}
  rng = jax.random.PRNGKey(3)
  loss, metrics = jax.jit(method.loss_fn)(params, batch, rng)

  inst = method.instructions
  examples = [('seqrec', p, method.item_tokens_host[t]) for p, t in
              zip(inst.seqrec_prompt(batch['history']), np.asarray(batch['target']))]
  for task, prompts, responses in inst.auxiliary_examples(batch, jax.random.fold_in(rng, 1)):
    examples += [(task, p, r) for p, r in zip(prompts, responses)]
  # Brute force: each prompt + response as one right-padded row of a causal pass.
  rows = [(_unpad(p), _unpad(r)) for _, p, r in examples]
  width = max(len(p) + len(r) for p, r in rows)
  tokens = jnp.asarray([p + r + [-1] * (width - len(p) - len(r)) for p, r in rows])
  logits = jax.jit(backbone.sequence_logits)(params, tokens, tokens >= 0, None)
  log_probs = np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32)))
  nll = np.array([-sum(log_probs[b, len(p) - 1 + i, t] for i, t in enumerate(r))
                  for b, (p, r) in enumerate(rows)])
  tasks_of = np.array([task for task, _, _ in examples])
  assert len(nll) == 2 + 2 + 3 + 3
  np.testing.assert_allclose(metrics['nll'], nll[tasks_of == 'seqrec'].mean(), rtol=2e-4)
  for task in tasks[1:]:
    np.testing.assert_allclose(metrics[f'nll/{task}'], nll[tasks_of == task].mean(), rtol=2e-4)
  np.testing.assert_allclose(loss, nll.mean(), rtol=2e-4)
