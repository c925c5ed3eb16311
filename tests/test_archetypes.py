"""GenAIR's archetypes: the prompt from item metadata, the JSONL import and its named errors,
a generation cache that resumes a file cut mid-line without duplicates, the LLM view."""

import json

import numpy as np
import pytest

from genrec_jax.data.raw import DataError
from genrec_jax.embed import archetypes


def test_prompt_follows_the_public_template():
  fields = {'title': 'Toy Story', 'year': '1995', 'genres': "Animation, Children's; Comedy",
            'imageURL': 'http://x', 'description': 'a' * 150 + '\nb'}
  assert archetypes.item_prompt(fields, 'movie') == (
      'Based on the following attributes, identify the types of users this item would '
      "appeal to: \n title is Toy Story; year is 1995; genres is Animation, Children's. "
      'Comedy; description is ' + 'a' * 100 + '\nWhich potential users align best with this '
      'movie?')


def _write(path, lines):
  path.write_text(''.join(line + '\n' for line in lines))
  return str(path)


@pytest.mark.parametrize('lines, message', [
    (['{"item_id": "a", "archetype": "fans"}', '{"item_id": "zz", "archetype": "x"}'],
     'unknown item'),
    (['{"item_id": "a", "archetype": "fans"}'], r'1 items have no archetype \(first: b\)'),
    (['{"item_id": "a", "archetype": "  "}', '{"item_id": "b", "archetype": "x"}'],
     'empty archetype text'),
    (['{"item_id": "a", "archetype": "x"}', '{"item_id": "a", "archetype": "y"}'],
     'given twice'),
    (['{"item_id": "a", "text": "x"}'], 'not a JSON object'),
])
def test_import_names_each_bad_line(tmp_path, lines, message):
  path = _write(tmp_path / 'a.jsonl', lines)
  with pytest.raises(DataError, match=message) as error:
    archetypes.read_archetypes(path, ['a', 'b'])
  assert path in str(error.value)


def test_import_returns_texts_in_item_order(tmp_path):
  path = _write(tmp_path / 'a.jsonl', ['{"item_id": 2, "archetype": "two"}', '',
                                       '{"item_id": "1", "archetype": "one"}'])
  assert archetypes.read_archetypes(path, ['1', '2']) == ['one', 'two']


def _fake_generator(calls):
  def generate_batch(prompts, batch_index):
    calls.append(batch_index)
    rng = np.random.default_rng(batch_index)  # deterministic per batch, as the real one
    return [(f'{p} -> fans #{rng.integers(1000)}', rng.normal(size=3), rng.normal(size=3))
            for p in prompts]
  return generate_batch


def test_generation_resumes_a_file_cut_mid_line_without_duplicates(tmp_path):
  prompts, items = [f'p{i}' for i in range(7)], [str(i) for i in range(7)]
  whole = str(tmp_path / 'whole.jsonl')
  archetypes.generate_archetypes(prompts, items, whole, _fake_generator([]), batch_size=3,
                                 show_progress=False)
  reference = open(whole).read()
  cut = tmp_path / 'cut.jsonl'
  lines = reference.splitlines(keepends=True)
  cut.write_text(''.join(lines[:4]) + lines[4][:25])  # killed while writing item 4
  calls = []
  cache = archetypes.generate_archetypes(prompts, items, str(cut), _fake_generator(calls),
                                         batch_size=3, show_progress=False)
  assert calls == [1, 2]  # batch 0 was whole; batch 1 (items 3-5) is redone whole
  assert cut.read_text() == reference  # same texts, every item once, in order
  ids = [json.loads(line)['item_id'] for line in cut.read_text().splitlines()]
  assert ids == items and sorted(cache.records) == sorted(items)
  calls.clear()
  archetypes.generate_archetypes(prompts, items, str(cut), _fake_generator(calls),
                                 batch_size=3, show_progress=False)
  assert not calls and cut.read_text() == reference  # a finished cache is left alone
  prompt_means, archetype_means = archetypes.cached_means(cache, items)
  assert prompt_means.shape == archetype_means.shape == (7, 3)


def test_llm_view_is_pca_of_each_part_concatenated():
  rng = np.random.default_rng(0)
  prompt, archetype = rng.normal(size=(40, 12)), rng.normal(size=(40, 9)) * 5
  view = archetypes.llm_view(prompt, archetype, dim=4)
  assert view.shape == (40, 8)
  for part, x in ((view[:, :4], prompt), (view[:, 4:], archetype)):
    centred = x - x.mean(axis=0)
    top = np.linalg.svd(centred, compute_uv=False)[:4]
    np.testing.assert_allclose(np.linalg.norm(part, axis=0), top, rtol=1e-4)  # variances
    np.testing.assert_allclose(part.T @ part, np.diag(top ** 2), atol=1e-3)  # uncorrelated
