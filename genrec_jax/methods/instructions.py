"""LC-Rec's instruction tasks: prompts of text around SID tokens, for decoder backbones.

Every example is LC-Rec's SFT wrapper around one task instruction, followed by the response:
  Below is an instruction that describes a task. Write a response that appropriately
  completes the request.\\n\\n### Instruction:\\n{instruction}\\n\\n### Response:{response}
Tasks (instruction -> response; the text of LC-Rec's first template of each, its test prompt):
  seqrec        history SIDs, joined by ", "   -> next item's SIDs  (the recommendation task)
  item2index    an item's title                -> its SIDs
  index2item    an item's SIDs                 -> its title
  fusionseqrec  history SIDs                   -> next item's title
itemsearch and preferenceobtain need the user intentions and preferences LC-Rec generated
with GPT-3.5, which no dataset here has; asking for them is an error that says so.

The text around a placeholder is tokenized once; prompts are then assembled from token ids
on device (history SIDs, separators, text), which equals tokenizing the whole prompt string
because SID tokens are added tokens the tokenizer splits at (tested against the tokenizer).
LC-Rec samples one of 17 paraphrases per training example; this uses the first of each task.

How the tasks mix (LC-Rec concatenates one dataset per task and shuffles): every training
batch of B seqrec examples also trains fusionseqrec on the same histories, and
ceil(B · I / N) random items (I items, N seqrec examples per epoch) for item2index and for
index2item, so an epoch sees each task in about LC-Rec's proportions.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers

from genrec_jax.embed import bert
from genrec_jax.methods.sid_tokens import compact

SFT_TEMPLATE = ('Below is an instruction that describes a task. Write a response that '
                'appropriately completes the request.\n\n### Instruction:\n{instruction}'
                '\n\n### Response:')
HISTORY_SEPARATOR = ', '
# task -> its instruction, with one placeholder (responses: see the module docstring)
TASKS = {
    'seqrec': ('The user has interacted with items {inters} in chronological order. Can you '
               'predict the next possible item that the user may expect?'),
    'item2index': 'Which item has the title: "{title}"?',
    'index2item': 'What is the title of item {item}?',
    'fusionseqrec': ('The user has sequentially interacted with items {inters}. Can you '
                     'recommend the next item for him? Tell me the title of the item？'),
}
NEEDS_GENERATED_TEXT = ('itemsearch', 'preferenceobtain')


def check_tasks(tasks: Sequence[str], field: str = 'instructions.tasks') -> None:
  for task in tasks:
    if task in NEEDS_GENERATED_TEXT:
      raise ValueError(f'{field}: {task!r} needs the user intentions/preferences LC-Rec '
                       'generated with GPT-3.5 (its X.user.json), which no dataset here has; '
                       f'use a subset of {tuple(TASKS)}.')
    if task not in TASKS:
      raise ValueError(f'{field}: unknown task {task!r}; use a subset of {tuple(TASKS)}.')
  if tasks and 'seqrec' not in tasks:
    raise ValueError(f'{field}: must include "seqrec" (the task that is evaluated).')


def load_tokenizer(path: str, field: str) -> tokenizers.Tokenizer:
  """A tokenizer.json ('minilm' = the installed MiniLM's), without the padding and truncation
  a saved tokenizer may carry (MiniLM's pads and cuts every text to 128 tokens)."""
  if path == 'minilm':
    path = os.path.join(bert.minilm_dir(), bert.TOKENIZER_FILE)
  if not os.path.isfile(path):
    raise ValueError(f'{field}: no file {path!r}; give a tokenizer.json path or "minilm".')
  tokenizer = tokenizers.Tokenizer.from_file(path)
  tokenizer.no_padding()
  tokenizer.no_truncation()
  return tokenizer


@dataclasses.dataclass(frozen=True)
class Template:
  """The token ids of a task's prompt before and after its placeholder."""
  before: np.ndarray
  after: np.ndarray


def compile_template(instruction: str, encode: Callable[[str], list[int]]) -> Template:
  text = SFT_TEMPLATE.format(instruction='\x00').replace('\x00', instruction)
  placeholder = text[text.index('{'):text.index('}') + 1]
  before, after = text.split(placeholder)
  return Template(np.asarray(encode(before), np.int32), np.asarray(encode(after), np.int32))


def wrap(template: Template, middle: jax.Array) -> jax.Array:
  """The prompt [B, P] (left-padded with -1) with middle [B, M] (-1 = none) in place."""
  batch = middle.shape[0]
  parts = [jnp.broadcast_to(jnp.asarray(x), (batch, len(x)))
           for x in (template.before, template.after)]
  return compact(jnp.concatenate([parts[0], middle, parts[1]], axis=1), left=True)


def join_items(item_tokens: jax.Array, separator: np.ndarray) -> jax.Array:
  """[B, H, L] SID tokens of history items (-1 rows = no item) -> [B, H·(L + S)] tokens of
  the items joined by the separator (S tokens after every item but the last)."""
  batch, num, _ = item_tokens.shape
  present = (item_tokens >= 0).any(-1)  # [B, H]
  last = jnp.max(jnp.where(present, jnp.arange(num), -1), axis=1, keepdims=True)
  with_sep = present & (jnp.arange(num)[None, :] < last)
  sep = jnp.where(with_sep[..., None], jnp.asarray(separator)[None, None, :], -1)
  return jnp.concatenate([item_tokens, sep], axis=-1).reshape(batch, -1)


class Instructions:
  """Builds the tasks' prompts and responses as token ids (SID token ids already offset).

  Args:
    tasks: task names (a subset of TASKS including 'seqrec').
    encode: text -> token ids, without special tokens.
    item_tokens: [I, L] SID token ids of every item (-1 pads).
    titles: [I] item titles (needed by the tasks other than seqrec).
    max_title_tokens: titles are cut to this many tokens.
    items_per_step: item2index / index2item examples per training step.
  """

  def __init__(self, tasks: Sequence[str], encode: Callable[[str], list[int]],
               item_tokens: np.ndarray, titles: Sequence[str] | None = None,
               max_title_tokens: int = 32, items_per_step: int = 1):
    check_tasks(tasks)
    self.tasks = tuple(tasks)
    self.templates = {t: compile_template(TASKS[t], encode) for t in self.tasks}
    self.separator = np.asarray(encode(HISTORY_SEPARATOR), np.int32)
    self.item_tokens = jnp.asarray(item_tokens)
    self.items_per_step = items_per_step
    self.title_tokens = None
    if self.tasks != ('seqrec',):  # the other tasks all use titles
      if titles is None or len(titles) != len(item_tokens):
        raise ValueError(f'instructions.tasks={self.tasks} need every item\'s title; the '
                         'dataset has no item text. Fix: use tasks=("seqrec",).')
      self.title_tokens = jnp.asarray(_pad_rows([encode(t)[:max_title_tokens] for t in titles]))

  def _history(self, task: str, history: jax.Array) -> jax.Array:
    tokens = self.item_tokens[jnp.maximum(history, 0)]
    tokens = jnp.where(history[..., None] >= 0, tokens, -1)
    return wrap(self.templates[task], join_items(tokens, self.separator))

  def seqrec_prompt(self, history: jax.Array) -> jax.Array:
    """[B, H] history items (-1 = none) -> [B, P] seqrec prompts, left-padded."""
    return self._history('seqrec', history)

  def auxiliary_examples(self, batch: dict, rng: jax.Array):
    """[(task, prompts [N, P], responses [N, R])] of the tasks other than seqrec."""
    examples = []
    if 'fusionseqrec' in self.tasks:
      examples.append(('fusionseqrec', self._history('fusionseqrec', batch['history']),
                       self.title_tokens[batch['target']]))
    items = jax.random.randint(rng, (self.items_per_step,), 0, self.item_tokens.shape[0])
    if 'item2index' in self.tasks:
      examples.append(('item2index', wrap(self.templates['item2index'],
                                          self.title_tokens[items]), self.item_tokens[items]))
    if 'index2item' in self.tasks:
      examples.append(('index2item', wrap(self.templates['index2item'],
                                          self.item_tokens[items]), self.title_tokens[items]))
    return examples


def items_per_step(batch_size: int, num_items: int, num_examples: int) -> int:
  """Item-task examples per step so an epoch of seqrec examples sees about every item once."""
  return max(1, math.ceil(batch_size * num_items / max(num_examples, 1)))


def _pad_rows(rows: list[list[int]]) -> np.ndarray:
  width = max(1, max(len(r) for r in rows))
  out = np.full((len(rows), width), -1, np.int32)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return out
