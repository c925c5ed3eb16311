"""Tests for the synthetic dataset generator."""

from __future__ import annotations

import re

import numpy as np
import pytest

from genrec_jax.data import synthetic
from genrec_jax.data.raw import RawData


@pytest.fixture(scope='module')
def default_data() -> tuple[RawData, dict[str, np.ndarray]]:
  return synthetic.generate_with_truth()


def _item_index(raw: RawData) -> np.ndarray:
  """Item index per interaction; raw id 'i0042' is index 42 in the truth arrays."""
  return np.array([int(item[1:]) for item in raw.items.tolist()])


def _sequences(raw: RawData) -> list[np.ndarray]:
  """Item indices per user in time order, without relying on the file order."""
  order = np.lexsort((raw.timestamps, raw.users))
  users, items = raw.users[order], _item_index(raw)[order]
  starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
  return np.split(items, starts[1:])


def _count_top_share(raw: RawData, num_items: int, fraction: float = 0.2) -> float:
  counts = np.sort(np.bincount(_item_index(raw), minlength=num_items))[::-1]
  return counts[:int(round(fraction * num_items))].sum() / counts.sum()


def _gini(raw: RawData, num_items: int) -> float:
  counts = np.sort(np.bincount(_item_index(raw), minlength=num_items))
  cumulative = np.cumsum(counts)
  return float((num_items + 1 - 2 * (cumulative / cumulative[-1]).sum()) / num_items)


def _same_topic_rates(raw: RawData, item_topic: np.ndarray) -> tuple[float, float]:
  """Returns (observed, baseline) rates of consecutive same-topic pairs.

  The baseline is what each user's own topic mix gives in a random order: a random
  consecutive pair is same-topic with probability sum_k c_k (c_k - 1) / (n (n - 1)).
  """
  observed = baseline = pairs = 0.0
  for sequence in _sequences(raw):
    topics = item_topic[sequence]
    n = len(topics)
    counts = np.bincount(topics)
    observed += np.sum(topics[1:] == topics[:-1])
    baseline += np.sum(counts * (counts - 1)) / n
    pairs += n - 1
  return observed / pairs, baseline / pairs


def test_returns_raw_data_with_string_ids_and_no_files(default_data):
  raw, truth = default_data
  assert isinstance(raw, RawData)
  assert raw.name == 'synthetic'
  assert raw.source_files == ()
  assert raw.dropped == {}
  assert raw.timestamps.dtype == np.float64
  assert all(re.fullmatch(r'u\d{4}', user) for user in np.unique(raw.users))
  assert all(re.fullmatch(r'i\d{4}', item) for item in np.unique(raw.items))
  assert len(np.unique(raw.users)) == 500
  assert sorted(raw.item_text) == [f'i{i:04d}' for i in range(300)]
  assert len(truth['item_topic']) == len(truth['item_popularity']) == 300


def test_interactions_are_grouped_by_user_in_time_order(default_data):
  raw, _ = default_data
  assert np.all(raw.users[1:] >= raw.users[:-1])
  same_user = raw.users[1:] == raw.users[:-1]
  assert np.all(np.diff(raw.timestamps)[same_user] > 0)


def test_ids_widen_past_four_digits():
  raw = synthetic.generate(num_users=10_001, num_items=12_000, mean_length=5,
                           min_length=1)
  assert raw.users[-1] == 'u10000'
  assert all(len(item) == 6 for item in raw.item_text)


def test_same_seed_is_identical_and_other_seed_differs():
  first = synthetic.generate(seed=7)
  again = synthetic.generate(seed=7)
  other = synthetic.generate(seed=8)
  for field in ('users', 'items', 'timestamps'):
    np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
  assert first.item_text == again.item_text
  assert not (len(first.items) == len(other.items)
              and np.array_equal(first.items, other.items))
  assert first.item_text != other.item_text


def test_catalog_does_not_depend_on_num_users():
  _, small = synthetic.generate_with_truth(num_users=50, seed=3)
  _, large = synthetic.generate_with_truth(num_users=900, seed=3)
  np.testing.assert_array_equal(small['item_topic'], large['item_topic'])
  np.testing.assert_array_equal(small['item_popularity'], large['item_popularity'])


@pytest.mark.parametrize('kwargs', [
    {},
    # Tiny topics and long sticky sequences: users use topics up and must move on.
    dict(num_items=20, num_topics=8, mean_length=15, topic_stickiness=1.0),
    # Every user takes the whole catalog.
    dict(num_users=30, num_items=12, min_length=12, mean_length=12),
])
def test_no_user_repeats_an_item(kwargs):
  raw = synthetic.generate(**kwargs)
  for sequence in _sequences(raw):
    assert len(np.unique(sequence)) == len(sequence)


@pytest.mark.parametrize('kwargs', [
    {},
    dict(num_items=1000, mean_length=30, min_length=2),
    dict(mean_length=5, min_length=5),
])
def test_lengths_respect_minimum_and_mean(kwargs):
  args = dict(num_items=300, mean_length=12, min_length=5) | kwargs
  raw = synthetic.generate(**args)
  lengths = np.array([len(sequence) for sequence in _sequences(raw)])
  assert len(lengths) == 500
  assert lengths.min() >= args['min_length']
  assert abs(lengths.mean() - args['mean_length']) <= 0.2 * args['mean_length']


def test_lengths_are_capped_at_catalog_size():
  raw = synthetic.generate(num_items=10, min_length=3, mean_length=8, num_topics=2)
  lengths = np.array([len(sequence) for sequence in _sequences(raw)])
  assert lengths.max() == 10


def test_popularity_has_a_long_tail(default_data):
  raw, _ = default_data
  # Users never repeat an item and like 1-3 topics, which caps the head at the
  # defaults (12 items from ~37-item topics); bigger catalogs get more skewed.
  assert _count_top_share(raw, 300) > 0.55
  assert _gini(raw, 300) > 0.45
  large = synthetic.generate(num_users=1000, num_items=2000)
  assert _count_top_share(large, 2000) > 0.7


def test_zero_zipf_exponent_gives_flat_popularity():
  raw, truth = synthetic.generate_with_truth(zipf_exponent=0.0)
  np.testing.assert_allclose(truth['item_popularity'], 1 / 300)
  assert _count_top_share(raw, 300) < 0.4
  assert _gini(raw, 300) < 0.25


def test_truth_popularity_is_zipf_and_matches_counts(default_data):
  raw, truth = default_data
  popularity = truth['item_popularity']
  ranks = np.arange(1, 301, dtype=np.float64)
  np.testing.assert_allclose(np.sort(popularity)[::-1],
                             ranks**-1.1 / np.sum(ranks**-1.1))
  counts = np.bincount(_item_index(raw), minlength=300)
  # Checks alignment of truth index <-> raw id: popular items are used a lot.
  assert counts[np.argmax(popularity)] >= np.quantile(counts, 0.95)
  assert np.corrcoef(np.argsort(np.argsort(popularity)),
                     np.argsort(np.argsort(counts)))[0, 1] > 0.6


def test_user_tastes_are_concentrated(default_data):
  _, truth = default_data
  taste = truth['user_taste']
  assert taste.shape == (500, 8)
  np.testing.assert_allclose(taste.sum(axis=1), 1.0)
  top3_mass = np.sort(taste, axis=1)[:, -3:].sum(axis=1)
  assert np.mean(top3_mass > 0.9) > 0.8


def test_consecutive_items_share_topic_beyond_topic_mix(default_data):
  raw, truth = default_data
  observed, baseline = _same_topic_rates(raw, truth['item_topic'])
  assert observed > baseline + 0.1


def test_without_stickiness_topic_runs_match_the_baseline():
  # Shows the baseline above is the right one: with no stickiness it is met.
  raw, truth = synthetic.generate_with_truth(topic_stickiness=0.0)
  observed, baseline = _same_topic_rates(raw, truth['item_topic'])
  assert abs(observed - baseline) < 0.03


def test_last_item_topic_beats_global_popularity(default_data):
  raw, truth = default_data
  item_topic = truth['item_topic']
  counts = np.bincount(_item_index(raw), minlength=300)
  global_top = np.argsort(-counts)[:10]
  topic_top = {
      topic: np.flatnonzero(item_topic == topic)[
          np.argsort(-counts[item_topic == topic])[:10]]
      for topic in range(8)
  }
  popular_hits = topic_hits = 0
  for sequence in _sequences(raw):
    for previous, following in zip(sequence[:-1], sequence[1:]):
      popular_hits += following in global_top
      topic_hits += following in topic_top[item_topic[previous]]
  assert topic_hits > 1.5 * popular_hits


def test_within_topic_draws_are_popularity_without_replacement():
  # One topic, two items per user: the second item is drawn from popularity
  # renormalised over the items not yet taken.
  raw, truth = synthetic.generate_with_truth(
      num_users=100_000, num_items=4, num_topics=1, min_length=2, mean_length=2,
      zipf_exponent=1.0)
  popularity = truth['item_popularity']
  pairs = _item_index(raw).reshape(-1, 2)
  np.testing.assert_allclose(np.bincount(pairs[:, 0], minlength=4) / len(pairs),
                             popularity, atol=0.01)
  for first in range(4):
    expected = np.where(np.arange(4) == first, 0.0, popularity)
    expected /= expected.sum()
    second = pairs[pairs[:, 0] == first, 1]
    np.testing.assert_allclose(np.bincount(second, minlength=4) / len(second),
                               expected, atol=0.02)


def test_timestamps_increase_per_user_and_interleave(default_data):
  raw, _ = default_data
  order = np.lexsort((raw.timestamps, raw.users))
  users, times = raw.users[order], raw.timestamps[order]
  same_user = users[1:] == users[:-1]
  assert np.all(np.diff(times)[same_user] > 0)
  assert np.all(np.isfinite(times)) and times.min() >= 1.6e9
  assert np.all(times == np.floor(times))
  # In global time order users alternate, not one user's history after another's.
  by_time = raw.users[np.argsort(raw.timestamps, kind='stable')]
  assert np.mean(by_time[1:] != by_time[:-1]) > 0.5


def _words(text: str) -> set[str]:
  return set(re.findall(r'[a-z]+', text.lower()))


@pytest.mark.parametrize('num_topics', [8, 30])
def test_item_text_shares_words_within_topic_only(num_topics):
  raw, truth = synthetic.generate_with_truth(num_items=300, num_topics=num_topics)
  item_topic = truth['item_topic']
  texts = [raw.item_text[f'i{i:04d}'] for i in range(300)]
  titles = [text['title'] for text in texts]
  assert len(set(titles)) == 300
  assert all(text[field] for text in texts
             for field in ('title', 'categories', 'brand', 'description'))
  assert len(set(truth['topic_names'].tolist())) == num_topics
  shared_words = []
  for topic in range(num_topics):
    members = np.flatnonzero(item_topic == topic)
    shared = set.intersection(*(_words(titles[i]) for i in members))
    assert shared, f'titles of topic {topic} share no word'
    shared_words.append(frozenset(shared))
    name = truth['topic_names'][topic]
    assert all(texts[i]['categories'].startswith(f'{name} > ') for i in members)
    assert len({texts[i]['brand'] for i in members}) <= 3
  # A topic's shared words identify it: no two topics share the same set.
  assert len(set(shared_words)) == num_topics


@pytest.mark.parametrize('kwargs, argument', [
    (dict(num_users=0), 'num_users'),
    (dict(num_users=2.5), 'num_users'),
    (dict(num_items=0), 'num_items'),
    (dict(min_length=0), 'min_length'),
    (dict(min_length=301, mean_length=400), 'min_length'),
    (dict(num_topics=0), 'num_topics'),
    (dict(num_topics=301), 'num_topics'),
    (dict(mean_length=4), 'mean_length'),
    (dict(mean_length=301), 'mean_length'),
    (dict(mean_length=float('nan')), 'mean_length'),
    (dict(zipf_exponent=-0.5), 'zipf_exponent'),
    (dict(zipf_exponent=float('inf')), 'zipf_exponent'),
    (dict(topic_stickiness=1.5), 'topic_stickiness'),
    (dict(seed=-1), 'seed'),
    (dict(name=''), 'name'),
])
def test_rejects_bad_arguments(kwargs, argument):
  with pytest.raises(ValueError, match=argument):
    synthetic.generate(**kwargs)

