"""Synthetic interaction data with a long tail and learnable next-item structure.

For fast tests and smoke runs: pure numpy, deterministic from the seed, and quick
(10k users x 2k items in well under a second).

The generating process:
  * Items: each item has one topic and a Zipf popularity weight
    (rank ** -zipf_exponent over a random permutation of items).
  * Users: a concentrated Dirichlet taste over topics (most users like 1-3 topics).
  * Sequences: the next item's topic is the previous item's topic with probability
    `topic_stickiness`, else a draw from the user's taste; within the topic the item
    is drawn proportional to popularity, without repeating an item for that user.
  * Lengths: min_length + geometric extra, so the mean is about mean_length and a few
    users are very active, capped at num_items.
  * Timestamps: per-user start time spread over a year plus heavy-tailed (lognormal)
    gaps, so users interleave in time and each user's times strictly increase.
  * Text: title, category path, brand and description from topic-specific word lists,
    so items of one topic share words.

The catalog (topics, popularity, text), tastes, lengths, sequences and timestamps use
independent random streams, so e.g. changing num_users keeps the catalog fixed.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from genrec_jax.data.raw import RawData

# 2020-09-13, an arbitrary epoch so timestamps look like real ones.
_EPOCH_SECONDS = 1.6e9
_START_SPREAD_SECONDS = 365 * 24 * 3600
# Lognormal gaps between a user's interactions: median two hours, mean about 15
# hours (bursts plus long breaks), clipped so the far tail stays within months.
_GAP_LOG_MEDIAN = np.log(2 * 3600.0)
_GAP_LOG_SIGMA = 2.0
_MAX_GAP_SECONDS = 90 * 24 * 3600
# Dirichlet total concentration of user tastes; small, so users like few topics.
_TASTE_CONCENTRATION = 1.0
# Dirichlet concentration of topic sizes; 1 makes sizes vary a lot, like real
# categories (and big topics saturate less, which keeps the long tail long).
_TOPIC_SIZE_CONCENTRATION = 1.0


@dataclasses.dataclass(frozen=True)
class _Theme:
  """Word lists for one topic; `keyword` appears in every title of the topic."""

  name: str
  keyword: str
  subtopics: dict[str, tuple[str, ...]]
  adjectives: tuple[str, ...]
  brands: tuple[str, ...]
  audiences: tuple[str, ...]


_THEMES = (
    _Theme(
        'Musical Instruments', 'Studio',
        {'Guitars': ('Acoustic Guitar', 'Electric Guitar', 'Guitar Strings'),
         'Keyboards': ('Digital Piano', 'MIDI Keyboard', 'Synthesizer'),
         'Drums & Percussion': ('Snare Drum', 'Cajon', 'Drumsticks')},
        ('Vintage', 'Professional', 'Compact', 'Resonant', 'Handcrafted'),
        ('Harmonia', 'Fretline', 'Tonewood'),
        ('beginners', 'touring musicians', 'home recording')),
    _Theme(
        'Books', 'Paperback',
        {'Mystery & Thriller': ('Mystery Novel', 'Detective Story', 'Thriller'),
         'Science Fiction': ('Space Opera', 'Cyberpunk Novel', 'Time Travel Saga'),
         'History': ('Biography', 'War Chronicle', 'Atlas')},
        ('Illustrated', 'Bestselling', 'Annotated', 'Classic', 'Collected'),
        ('Lantern Press', 'Inkwell Books', 'Meridian House'),
        ('book clubs', 'curious readers', 'young adults')),
    _Theme(
        'Home & Kitchen', 'Kitchen',
        {'Cookware': ('Skillet', 'Dutch Oven', 'Saucepan'),
         'Small Appliances': ('Blender', 'Toaster', 'Coffee Grinder'),
         'Cutlery': ('Chef Knife', 'Knife Set', 'Cutting Board')},
        ('Nonstick', 'Stainless', 'Cast Iron', 'Everyday', 'Premium'),
        ('Ironleaf', 'Copperpot', 'Hearthware'),
        ('home cooks', 'busy families', 'weekend bakers')),
    _Theme(
        'Sports & Outdoors', 'Trail',
        {'Camping': ('Tent', 'Sleeping Bag', 'Camp Stove'),
         'Fitness': ('Yoga Mat', 'Kettlebell', 'Resistance Band'),
         'Cycling': ('Bike Helmet', 'Bike Light', 'Water Bottle')},
        ('Lightweight', 'Rugged', 'Waterproof', 'Foldable', 'Ultralight'),
        ('Summitra', 'Ridgeback', 'Northpeak'),
        ('hikers', 'athletes', 'weekend campers')),
    _Theme(
        'Beauty', 'Skincare',
        {'Skin Care': ('Face Serum', 'Moisturizer', 'Cleanser'),
         'Hair Care': ('Shampoo', 'Hair Mask', 'Conditioner'),
         'Fragrance': ('Eau de Parfum', 'Body Mist', 'Scented Oil')},
        ('Gentle', 'Hydrating', 'Organic', 'Radiant', 'Soothing'),
        ('Lumiere', 'Petal & Pine', 'Aurabloom'),
        ('sensitive skin', 'daily routines', 'all skin types')),
    _Theme(
        'Toys & Games', 'Playtime',
        {'Board Games': ('Board Game', 'Card Game', 'Jigsaw Puzzle'),
         'Building Toys': ('Building Blocks', 'Marble Run', 'Magnetic Tiles'),
         'Dolls & Figures': ('Action Figure', 'Plush Bear', 'Doll House')},
        ('Colorful', 'Educational', 'Deluxe', 'Wooden', 'Giant'),
        ('Tinkertown', 'Jollybox', 'Kidwise'),
        ('kids', 'family game night', 'toddlers')),
    _Theme(
        'Electronics', 'Digital',
        {'Audio': ('Wireless Earbuds', 'Bluetooth Speaker', 'Headphones'),
         'Computer Accessories': ('Laptop Stand', 'Mechanical Keyboard', 'USB Hub'),
         'Cameras': ('Action Camera', 'Tripod', 'Camera Lens')},
        ('Wireless', 'Portable', 'Smart', 'High-Speed', 'Noise-Cancelling'),
        ('Voltix', 'Nexon Labs', 'Pixelcore'),
        ('commuters', 'gamers', 'remote workers')),
    _Theme(
        'Patio & Garden', 'Garden',
        {'Garden Tools': ('Pruning Shears', 'Trowel', 'Soaker Hose'),
         'Plants & Seeds': ('Tomato Seeds', 'Herb Kit', 'Flower Bulbs'),
         'Outdoor Decor': ('Bird Feeder', 'Solar Lantern', 'Planter')},
        ('Heavy-Duty', 'Organic', 'Weatherproof', 'Rustic', 'Self-Watering'),
        ('Greenthumb', 'Mossbrook', 'Fernhill'),
        ('balcony gardeners', 'backyard growers', 'plant lovers')),
    _Theme(
        'Pet Supplies', 'Pet',
        {'Dogs': ('Dog Leash', 'Chew Toy', 'Dog Bed'),
         'Cats': ('Scratching Post', 'Cat Tree', 'Litter Box'),
         'Fish & Aquatic': ('Fish Tank', 'Aquarium Filter', 'Fish Food')},
        ('Durable', 'Cozy', 'Orthopedic', 'Interactive', 'Washable'),
        ('Pawsome', 'Whisker & Co.', 'Tailwind'),
        ('puppies', 'indoor cats', 'senior pets')),
    _Theme(
        'Office Products', 'Office',
        {'Writing': ('Fountain Pen', 'Gel Pens', 'Notebook'),
         'Organization': ('Desk Organizer', 'File Folder', 'Label Maker'),
         'Office Furniture': ('Desk Lamp', 'Ergonomic Chair', 'Monitor Riser')},
        ('Ergonomic', 'Minimalist', 'Refillable', 'Recycled', 'Adjustable'),
        ('Paperloom', 'Deskcraft', 'Quillstone'),
        ('students', 'home offices', 'small teams')),
    _Theme(
        'Video Games', 'Gaming',
        {'Console Accessories': ('Controller', 'Charging Dock', 'Console Skin'),
         'Games': ('Adventure Game', 'Racing Game', 'Strategy Game'),
         'PC Gaming': ('Optical Mouse', 'Mouse Pad', 'Headset')},
        ('Collector\'s', 'Pro', 'Retro', 'RGB', 'Limited'),
        ('Arcadia', 'Pixelforge', 'Questline'),
        ('competitive players', 'retro fans', 'couch co-op')),
    _Theme(
        'Clothing', 'Fashion',
        {'Tops': ('T-Shirt', 'Wool Sweater', 'Hoodie'),
         'Shoes': ('Running Shoes', 'Leather Boots', 'Sneakers'),
         'Accessories': ('Scarf', 'Leather Belt', 'Beanie')},
        ('Slim-Fit', 'Breathable', 'Layered', 'Tailored', 'Relaxed'),
        ('Threadline', 'Northloom', 'Urban Thistle'),
        ('everyday wear', 'cold weather', 'travel')),
)

# Syllables for made-up series words that keep topics distinct past len(_THEMES).
_SYLLABLES = ('ka', 'lo', 'mi', 'ren', 'ta', 'vo', 'zu', 'bel',
              'dor', 'fi', 'gar', 'hu', 'jin', 'mar', 'no', 'pes')


def generate(**kwargs) -> RawData:
  """Returns a synthetic dataset; see `generate_with_truth` for the arguments."""
  return generate_with_truth(**kwargs)[0]


def generate_with_truth(
    num_users: int = 500,
    num_items: int = 300,
    mean_length: float = 12,
    min_length: int = 5,
    num_topics: int = 8,
    zipf_exponent: float = 1.1,
    topic_stickiness: float = 0.7,
    seed: int = 0,
    name: str = 'synthetic',
) -> tuple[RawData, dict[str, np.ndarray]]:
  """Returns a synthetic dataset and the latent truth that generated it.

  Args:
    num_users: number of users; every user gets at least min_length interactions.
    num_items: catalog size; item i has raw id 'i0000'-style with index i.
    mean_length: target mean interactions per user (a bit lower if many users hit
      the num_items cap).
    min_length: minimum interactions per user.
    num_topics: number of item topics (categories); each gets at least one item.
    zipf_exponent: popularity of the item with popularity rank r is r ** -exponent;
      0 gives uniform popularity.
    topic_stickiness: probability that the next item keeps the previous item's topic.
    seed: non-negative integer; the output is a pure function of the arguments.
    name: dataset name stored in RawData.

  Returns:
    (raw, truth). raw has interactions grouped by user, in time order within a user.
    truth holds arrays aligned with the item index i <-> raw id (and user index
    u <-> raw user id): 'item_topic' [num_items] int, 'item_popularity' [num_items]
    float summing to 1, 'user_taste' [num_users, num_topics] float, 'topic_names'
    [num_topics] str.

  Raises:
    ValueError: an argument is out of range; the message names it.
  """
  _validate(num_users=num_users, num_items=num_items, mean_length=mean_length,
            min_length=min_length, num_topics=num_topics,
            zipf_exponent=zipf_exponent, topic_stickiness=topic_stickiness,
            seed=seed, name=name)
  catalog_rng, taste_rng, length_rng, sequence_rng, time_rng = (
      np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))

  item_topic, popularity = _make_catalog(
      catalog_rng, num_items, num_topics, zipf_exponent)
  topic_names, item_text_rows = _make_item_text(catalog_rng, item_topic)

  # Taste prior mean = each topic's share of popularity, so the overall item mix
  # follows item popularity instead of lifting tail items of unpopular topics.
  topic_mass = np.bincount(item_topic, weights=popularity, minlength=num_topics)
  user_taste = taste_rng.dirichlet(_TASTE_CONCENTRATION * topic_mass, size=num_users)
  lengths = _sample_lengths(length_rng, num_users, num_items, mean_length, min_length)

  sequences = _sample_sequences(sequence_rng, lengths, user_taste, item_topic,
                                popularity, topic_stickiness)
  times = _sample_times(time_rng, lengths)

  in_sequence = np.arange(sequences.shape[1]) < lengths[:, None]
  user_ids = _raw_ids('u', num_users)
  item_ids = _raw_ids('i', num_items)
  raw = RawData(
      name=name,
      users=user_ids[np.repeat(np.arange(num_users), lengths)],
      items=item_ids[sequences[in_sequence]],
      timestamps=times[in_sequence],
      item_text=dict(zip(item_ids.tolist(), item_text_rows)),
      source_files=(),
      dropped={},
  )
  truth = {
      'item_topic': item_topic,
      'item_popularity': popularity,
      'user_taste': user_taste,
      'topic_names': np.array(topic_names),
  }
  return raw, truth


def _validate(*, num_users, num_items, mean_length, min_length, num_topics,
              zipf_exponent, topic_stickiness, seed, name) -> None:
  """Raises ValueError naming the first bad argument."""
  for arg, value in (('num_users', num_users), ('num_items', num_items),
                     ('min_length', min_length), ('num_topics', num_topics)):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
      raise ValueError(f'{arg} must be a positive integer, got {value!r}.')
  if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
    raise ValueError(f'seed must be a non-negative integer, got {seed!r}.')
  if min_length > num_items:
    raise ValueError(
        f'min_length ({min_length}) must be <= num_items ({num_items}): users '
        'never repeat an item.')
  if num_topics > num_items:
    raise ValueError(
        f'num_topics ({num_topics}) must be <= num_items ({num_items}): every '
        'topic needs an item.')
  if (not isinstance(mean_length, numbers.Real) or isinstance(mean_length, bool)
      or not min_length <= mean_length <= num_items):
    raise ValueError(
        f'mean_length must be a number in [min_length, num_items] = '
        f'[{min_length}, {num_items}], got {mean_length!r}.')
  if (not isinstance(zipf_exponent, numbers.Real) or isinstance(zipf_exponent, bool)
      or not 0 <= zipf_exponent < np.inf):
    raise ValueError(
        f'zipf_exponent must be a finite number >= 0, got {zipf_exponent!r}.')
  if (not isinstance(topic_stickiness, numbers.Real)
      or isinstance(topic_stickiness, bool) or not 0 <= topic_stickiness <= 1):
    raise ValueError(
        f'topic_stickiness must be a probability in [0, 1], got {topic_stickiness!r}.')
  if not isinstance(name, str) or not name:
    raise ValueError(f'name must be a non-empty string, got {name!r}.')


def _make_catalog(rng: np.random.Generator, num_items: int, num_topics: int,
                  zipf_exponent: float) -> tuple[np.ndarray, np.ndarray]:
  """Returns item topics [num_items] and popularity [num_items] summing to 1."""
  # One item per topic first so no topic is empty; the rest follow random shares.
  topic_share = rng.dirichlet(np.full(num_topics, _TOPIC_SIZE_CONCENTRATION))
  rest = rng.choice(num_topics, size=num_items - num_topics, p=topic_share)
  item_topic = rng.permutation(np.concatenate([np.arange(num_topics), rest]))
  # Random permutation, so popularity rank is independent of index and topic.
  rank = rng.permutation(num_items) + 1
  popularity = rank.astype(np.float64) ** -float(zipf_exponent)
  return item_topic.astype(np.int64), popularity / popularity.sum()


def _sample_lengths(rng: np.random.Generator, num_users: int, num_items: int,
                    mean_length: float, min_length: int) -> np.ndarray:
  """Returns per-user lengths: min_length + geometric extra, capped at num_items."""
  # Geometric rather than Poisson: activity is long-tailed in real logs.
  mean_extra = float(mean_length) - min_length
  extra = rng.geometric(1.0 / (mean_extra + 1.0), size=num_users) - 1
  return np.minimum(min_length + extra, num_items).astype(np.int64)


def _sample_sequences(rng: np.random.Generator, lengths: np.ndarray,
                      user_taste: np.ndarray, item_topic: np.ndarray,
                      popularity: np.ndarray, topic_stickiness: float) -> np.ndarray:
  """Returns item indices [num_users, max_length]; -1 past each user's length.

  Vectorised over users per time step. Items are laid out sorted by topic, so each
  topic is one segment of the popularity CDF; a draw is an inverse-CDF lookup in that
  segment with the user's seen items cut out, which is exact sampling without
  replacement (no rejection loop, however much of the topic's head is used up).
  """
  num_users, num_topics = user_taste.shape
  max_length = int(lengths.max())
  sequences = np.full((num_users, max_length), -1, np.int64)
  taste_cdf = np.cumsum(user_taste, axis=1)

  by_topic = np.argsort(item_topic, kind='stable')
  topic_size = np.bincount(item_topic, minlength=num_topics)
  topic_end = np.cumsum(topic_size)
  topic_start = topic_end - topic_size
  topic_items = np.split(by_topic, topic_end[:-1])
  cum_popularity = np.cumsum(popularity[by_topic])
  cum_before = np.concatenate([[0.0], cum_popularity])
  # Where each item's slice of the CDF begins.
  item_cdf_start = np.empty(len(popularity))
  item_cdf_start[by_topic] = cum_before[:-1]

  for step in range(max_length):
    users = np.flatnonzero(lengths > step)
    draw = rng.random(len(users)) * taste_cdf[users, -1]
    topic = np.minimum((taste_cdf[users] <= draw[:, None]).sum(axis=1), num_topics - 1)
    if step > 0:
      sticky = rng.random(len(users)) < topic_stickiness
      topic[sticky] = item_topic[sequences[users[sticky], step - 1]]

    # Seen items of the chosen topic are holes [start, start + width) in the CDF.
    history = sequences[users, :step]
    in_topic = item_topic[history] == topic[:, None]
    hole_start = np.where(in_topic, item_cdf_start[history], np.inf)
    hole_width = np.where(in_topic, popularity[history], 0.0)
    order = np.argsort(hole_start, axis=1)
    hole_start = np.take_along_axis(hole_start, order, axis=1)
    hole_width = np.take_along_axis(hole_width, order, axis=1)
    low, high = cum_before[topic_start[topic]], cum_before[topic_end[topic]]
    unseen_mass = (high - low) - hole_width.sum(axis=1)
    # Draw in the CDF with holes squeezed out, then step over the holes left to right.
    point = low + rng.random(len(users)) * unseen_mass
    for column in range(step):
      point += np.where(point >= hole_start[:, column], hole_width[:, column], 0.0)
    position = np.searchsorted(cum_popularity, point, side='right')
    item = by_topic[np.clip(position, topic_start[topic], topic_end[topic] - 1)]

    # Used-up topics, and float round-off landing on a hole edge, take the slow path.
    redo = (unseen_mass <= 1e-9 * (high - low)) | (history == item[:, None]).any(axis=1)
    for row in np.flatnonzero(redo):
      item[row] = _draw_unseen(rng, history[row], topic_items[topic[row]],
                               user_taste[users[row]], item_topic, popularity)
    sequences[users, step] = item
  return sequences


def _draw_unseen(rng: np.random.Generator, history: np.ndarray,
                 topic_items: np.ndarray, taste: np.ndarray, item_topic: np.ndarray,
                 popularity: np.ndarray) -> int:
  """Exact draw of an item not in history: from the topic, else from any topic.

  A used-up topic falls back to all unseen items weighted by taste x popularity, then
  by popularity alone (taste can be exactly 0); lengths <= num_items ensure one exists.
  """
  weight = popularity[topic_items] * ~np.isin(topic_items, history)
  if weight.sum() > 0:
    return int(topic_items[rng.choice(len(weight), p=weight / weight.sum())])
  unseen = np.ones(len(popularity), bool)
  unseen[history] = False
  for weight in (popularity * taste[item_topic] * unseen, popularity * unseen):
    if weight.sum() > 0:
      return int(rng.choice(len(weight), p=weight / weight.sum()))
  raise AssertionError('no unseen item left; lengths must be capped at num_items.')


def _sample_times(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
  """Returns float64 seconds [num_users, max_length], strictly increasing per user."""
  start = _EPOCH_SECONDS + np.floor(
      rng.uniform(0, _START_SPREAD_SECONDS, size=len(lengths)))
  shape = (len(lengths), int(lengths.max()))
  gaps = rng.lognormal(_GAP_LOG_MEDIAN, _GAP_LOG_SIGMA, size=shape)
  # Whole seconds like real logs; +1 keeps each user's times strictly increasing.
  gaps = np.floor(np.minimum(gaps, _MAX_GAP_SECONDS)) + 1
  gaps[:, 0] = 0
  return start[:, None] + np.cumsum(gaps, axis=1)


def _raw_ids(prefix: str, count: int) -> np.ndarray:
  """Returns ['u0000', 'u0001', ...]; zero-padded so string order is index order."""
  width = max(4, len(str(count - 1)))
  return np.array([f'{prefix}{i:0{width}d}' for i in range(count)])


def _series_word(topic: int) -> str:
  """Returns a made-up word unique to `topic`, e.g. 'Kalo'."""
  base = len(_SYLLABLES)
  word = _SYLLABLES[topic % base] + _SYLLABLES[(topic // base) % base]
  topic //= base * base
  while topic:
    word += _SYLLABLES[topic % base]
    topic //= base
  return word.capitalize()


def _make_item_text(rng: np.random.Generator, item_topic: np.ndarray
                    ) -> tuple[list[str], list[dict[str, str]]]:
  """Returns topic names and per-item text fields, aligned with the item index."""
  num_topics = int(item_topic.max()) + 1
  topic_names, topic_keywords = [], []
  for topic in range(num_topics):
    theme = _THEMES[topic % len(_THEMES)]
    if topic < len(_THEMES):
      topic_names.append(theme.name)
      topic_keywords.append(theme.keyword)
    else:
      # Reused word lists: a series word keeps these topics distinguishable.
      series = _series_word(topic)
      topic_names.append(f'{series} {theme.name}')
      topic_keywords.append(f'{series} {theme.keyword}')

  # A few integer draws per item instead of per-field rng.choice calls.
  draws = rng.integers(0, 2**31, size=(len(item_topic), 5))
  rows = []
  for index, (topic, draw) in enumerate(zip(item_topic.tolist(), draws.tolist())):
    theme = _THEMES[topic % len(_THEMES)]
    subtopics = list(theme.subtopics)
    subtopic = subtopics[draw[0] % len(subtopics)]
    nouns = theme.subtopics[subtopic]
    noun = nouns[draw[1] % len(nouns)]
    adjective = theme.adjectives[draw[2] % len(theme.adjectives)]
    brand = theme.brands[draw[3] % len(theme.brands)]
    audience = theme.audiences[draw[4] % len(theme.audiences)]
    keyword = topic_keywords[topic]
    rows.append({
        # The item index makes every title unique.
        'title': f'{adjective} {keyword} {noun} No. {index}',
        'categories': f'{topic_names[topic]} > {subtopic}',
        'brand': brand,
        'description': (f'{_article(adjective)} {adjective.lower()} '
                        f'{keyword.lower()} {noun.lower()} by {brand}, made for '
                        f'{audience}.'),
    })
  return topic_names, rows


def _article(word: str) -> str:
  return 'An' if word[0].lower() in 'aeiou' else 'A'
