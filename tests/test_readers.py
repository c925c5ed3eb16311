"""Tests for genrec_jax.data.readers on tiny fixtures in the real public layouts."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import shutil

import numpy as np
import pytest

from genrec_jax.data import raw
from genrec_jax.data import readers

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'raw')


def _write(path, lines: list[str]) -> str:
  """Writes lines to path, gzip-compressed if it ends in .gz; returns the path."""
  path = str(path)
  data = ''.join(line + '\n' for line in lines).encode('utf-8')
  if path.endswith('.gz'):
    with gzip.open(path, 'wb') as f:
      f.write(data)
  else:
    with open(path, 'wb') as f:
      f.write(data)
  return path


def _review(user='U1', item='I1', time=1000, **extra) -> str:
  return json.dumps({'reviewerID': user, 'asin': item, 'overall': 5.0,
                     'unixReviewTime': time, **extra})


def _assert_interactions(data, users, items, timestamps):
  assert data.users.tolist() == users
  assert data.items.tolist() == items
  np.testing.assert_array_equal(data.timestamps, np.array(timestamps, dtype=np.float64))
  assert data.timestamps.dtype == np.float64


# Readers on the fixtures.


def test_amazon2014():
  data = readers.read_amazon2014(os.path.join(FIXTURES, 'amazon2014'), 'Beauty')
  assert data.name == 'amazon2014/Beauty'
  _assert_interactions(
      data,
      ['A1YJEY40YUW4SE', 'A60XNB876KYML', 'A3G6XNM240RMWA', 'A1YJEY40YUW4SE',
       'A1PQFP6SAJ6D80', 'A38FVHZTNQ271F', 'A60XNB876KYML'],
      ['7806397051', '7806397051', '9759091062', '9788072216', 'B00004TMFE',
       'B00004TUBL', '9790790961'],
      [1391040000, 1397779200, 1378425600, 1372377600, 1405209600, 1346976000,
       1394668800])
  assert data.item_text == {
      '7806397051': {
          'title': 'Rimmel London Lasting Finish Lipstick',
          'brand': 'Rimmel',
          'categories': 'Beauty > Makeup > Lips > Lipstick, Beauty > Makeup',
          'description': "It's a long-lasting lipstick.",
          'price': '4.50'},
      '9759091062': {'title': 'Nail Polish', 'categories': 'Beauty',
                     'description': 'Says "glossy" on the bottle.'},
      'B00004TMFE': {'title': 'Hair Dryer',
                     'categories': 'Beauty > Hair Care > Styling Tools',
                     'price': '19.00'},
  }
  assert data.dropped == {'meta_item_without_interactions': 1}
  assert [os.path.basename(p) for p in data.source_files] == [
      'reviews_Beauty_5.json.gz', 'meta_Beauty.json.gz']
  assert all(os.path.isabs(p) for p in data.source_files)


def test_amazon2018_5core_and_meta():
  data = readers.read_amazon2018(os.path.join(FIXTURES, 'amazon2018'), 'Musical_Instruments')
  assert data.name == 'amazon2018/Musical_Instruments'
  _assert_interactions(
      data,
      ['A2IBPI20UZIR0U', 'A14VAT5EAX3D9S', 'A195EZSQDW3E21', 'A2C00NNG1ZQQG2',
       'A94QU4C90B1AX', 'A2IBPI20UZIR0U'],
      ['1384719342', '1384719342', 'B00004Y2UT', 'B00005ML71', 'B000068NSX',
       'B000068NVI'],
      [1393545600, 1363392000, 1377648000, 1392336000, 1392940800, 1356048000])
  assert data.item_text == {
      '1384719342': {
          'title': 'Ernie Ball 2221 Regular Slinky',
          'brand': 'Ernie Ball',
          'categories': ('Musical Instruments > Instrument Accessories > '
                         'Guitar & Bass Accessories > Strings'),
          'description': 'Nickel wound strings. Bright tone. Made in USA.',
          'price': '$5.99'},
      'B00004Y2UT': {'title': 'Pop Filter'},  # The first of two records wins.
      'B000068NSX': {'title': 'Cable', 'categories': 'Musical Instruments',
                     'price': '$12.00'},
  }
  assert data.dropped == {'meta_duplicate_item': 1, 'meta_item_without_interactions': 1}


def test_amazon2018_ratings_csv_when_no_5core():
  data = readers.read_amazon2018(os.path.join(FIXTURES, 'amazon2018'), 'Digital_Music')
  _assert_interactions(
      data,
      ['A1ZCPG3D3HGRSS', 'AC2PL52NKPL29', 'A1SUZXBDZSDQ3A', 'A3A0W7FZXM0IZW',
       'A1ZCPG3D3HGRSS'],
      ['0001388703', '0001388703', '0001526863', '0001526863', '0001377647'],
      [1387670400, 1378857600, 1362182400, 1354406400, 1399939200])
  assert data.item_text == {}
  assert [os.path.basename(p) for p in data.source_files] == ['Digital_Music.csv']


def test_amazon2023_uses_parent_asin_and_seconds():
  data = readers.read_amazon2023(os.path.join(FIXTURES, 'amazon2023'), 'All_Beauty')
  assert data.name == 'amazon2023/All_Beauty'
  _assert_interactions(
      data,
      ['AGKHLEW2SOWHNMFQIJGBECAF7INQ', 'AGKHLEW2SOWHNMFQIJGBECAF7INQ',
       'AE74DYR3QUGVPZJ3P7RFWBGIX7XQ', 'AFQLNQNQYFWQZPJQZS6V3NZU4QBQ',
       'AFKZENTNBQ7A7V7UXW5JJI6UGRYQ', 'AE74DYR3QUGVPZJ3P7RFWBGIX7XQ'],
      # Row 3 has asin B097R46CSY but parent_asin B09JS339BZ.
      ['B00YQ6X8EO', 'B081TJ8YS3', 'B09JS339BZ', 'B09JS339BZ', 'B08BZ63GMJ',
       'B00R8DXL44'],
      [1588687728.923, 1588615855.070, 1589665266.052, 1643393630.220,
       1609322563.534, 1598567408.138])
  assert data.item_text == {
      'B00YQ6X8EO': {'title': 'Howard LC0008 Leather Conditioner',
                     'brand': 'Howard Products',
                     'description': 'Restores leather. Safe.'},
      'B09JS339BZ': {'title': 'Hair Clips 12 pcs', 'brand': 'Yeshan',
                     'categories': 'Beauty & Personal Care > Hair Care > Hair Accessories',
                     'price': '8.99'},
  }
  assert data.dropped == {'meta_item_without_interactions': 1}


def test_amazon2023_gzipped(tmp_path):
  for name in ('All_Beauty.jsonl', 'meta_All_Beauty.jsonl'):
    with open(os.path.join(FIXTURES, 'amazon2023', name), 'rb') as src:
      with gzip.open(tmp_path / f'{name}.gz', 'wb') as dst:
        shutil.copyfileobj(src, dst)
  plain = readers.read_amazon2023(os.path.join(FIXTURES, 'amazon2023'), 'All_Beauty')
  zipped = readers.read_amazon2023(tmp_path, 'All_Beauty')
  assert zipped.items.tolist() == plain.items.tolist()
  np.testing.assert_array_equal(zipped.timestamps, plain.timestamps)
  assert zipped.item_text == plain.item_text


def test_recbole_with_timestamp_and_item_file():
  data = readers.read_recbole_atomic(os.path.join(FIXTURES, 'recbole'), 'toy')
  assert data.name == 'toy'
  _assert_interactions(data, ['u1', 'u2', 'u1', 'u3', 'u4', 'u5'],
                       ['i1', 'i2', 'i3', 'i1', 'i4', 'i5'],
                       [100, 90, 120, 95.5, 130, 80])
  assert data.item_text == {
      'i1': {'title': 'The Matrix', 'genre': 'Action Sci-Fi', 'price': '9.5'},
      'i2': {'title': 'Amélie', 'genre': 'Comedy Romance'},
      'i3': {'title': 'Heat', 'price': '7'},
  }
  assert data.dropped == {'meta_item_without_text': 1,
                          'meta_item_without_interactions': 1}


def test_recbole_without_timestamp_uses_row_index():
  data = readers.read_recbole_atomic(os.path.join(FIXTURES, 'recbole'), 'toy_notime')
  _assert_interactions(data, ['u1', 'u2', 'u1', 'u3'], ['i1', 'i2', 'i3', 'i1'],
                       [0, 1, 2, 3])
  assert data.item_text == {}
  assert data.dropped == {}


def test_movielens100k_renames_fields(tmp_path):
  _write(tmp_path / 'ml-100k.inter', [
      'user_id:token\titem_id:token\trating:float\ttimestamp:float',
      '196\t242\t3\t881250949', '186\t302\t3\t891717742'])
  _write(tmp_path / 'ml-100k.item', [
      'item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq',
      "242\tKolya\t1996\tComedy", "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery",
      "1\tToy Story\t1995\tAnimation Children's Comedy"])
  data = readers.read_movielens100k(tmp_path)
  assert data.name == 'ml-100k'
  assert data.item_text == {
      '242': {'title': 'Kolya', 'year': '1996', 'genres': 'Comedy'},
      '302': {'title': 'L.A. Confidential', 'year': '1997',
              'genres': 'Crime, Film-Noir, Mystery'},
  }


def test_movielens100k_real_files():
  spec = importlib.util.find_spec('recbole')
  if spec is None or not any(
      os.path.isfile(os.path.join(d, 'dataset_example', 'ml-100k', 'ml-100k.inter'))
      for d in spec.submodule_search_locations or []):
    pytest.skip("recbole's example files are not installed")
  data = readers.read_movielens100k()
  assert len(data.users) == 100_000
  assert len(np.unique(data.users)) == 943
  assert len(np.unique(data.items)) == 1682
  assert data.users[0] == '196' and data.items[0] == '242'
  assert data.timestamps[0] == 881250949.0
  assert data.item_text['1'] == {'title': 'Toy Story', 'year': '1995',
                                 'genres': "Animation, Children's, Comedy"}
  assert data.dropped == {}


def test_movielens100k_without_recbole(monkeypatch):
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(raw.DataError, match=r'pip install --no-deps recbole==1\.2\.1'):
    readers.read_movielens100k()


def test_read_dispatch():
  data = readers.read('recbole', os.path.join(FIXTURES, 'recbole'), name='toy')
  assert data.name == 'toy'
  assert set(readers.READERS) == {
      'amazon2014', 'amazon2018', 'amazon2023', 'recbole', 'movielens100k', 'lcrec'}
  with pytest.raises(raw.DataError, match='amazon2014.*movielens100k'):
    readers.read('amazon2020', FIXTURES)


def test_on_bad_line_is_validated():
  with pytest.raises(raw.DataError, match='on_bad_line'):
    readers.read_recbole_atomic(
        os.path.join(FIXTURES, 'recbole'), 'toy', on_bad_line='ignore')


# Bad input.


@pytest.mark.parametrize('reader, kwargs, expected', [
    (readers.read_amazon2014, {'category': 'Beauty'}, 'reviews_Beauty_5.json.gz'),
    (readers.read_amazon2018, {'category': 'Beauty'}, 'Beauty_5.json.gz'),
    (readers.read_amazon2023, {'category': 'Beauty'}, 'Beauty.jsonl'),
    (readers.read_recbole_atomic, {'name': 'toy'}, 'toy.inter'),
    (readers.read_movielens100k, {}, 'ml-100k.inter'),
])
def test_missing_data_dir(tmp_path, reader, kwargs, expected):
  missing = tmp_path / 'nowhere'
  with pytest.raises(raw.DataError) as error:
    reader(missing, **kwargs)
  assert str(missing) in str(error.value)
  assert expected in str(error.value)


def test_missing_interactions_file_lists_directory(tmp_path):
  _write(tmp_path / 'reviews_beauty_5.json.gz', [_review()])
  with pytest.raises(raw.DataError) as error:
    readers.read_amazon2014(tmp_path, 'Beauty')
  message = str(error.value)
  assert str(tmp_path / 'reviews_Beauty_5.json.gz') in message
  assert 'reviews_beauty_5.json.gz' in message  # What the directory holds.


def test_malformed_json_line(tmp_path):
  long_junk = '{"reviewerID": "U2", ' + 'x' * 200
  path = _write(tmp_path / 'reviews_Beauty_5.json.gz', [_review(), long_junk])
  with pytest.raises(raw.DataError) as error:
    readers.read_amazon2014(tmp_path, 'Beauty')
  message = str(error.value)
  assert f'{path}:2' in message
  assert repr(long_junk[:80]) in message and long_junk[:81] not in message


@pytest.mark.parametrize('field', ['reviewerID', 'asin', 'unixReviewTime'])
def test_missing_required_field(tmp_path, field):
  record = json.loads(_review(user='U2'))
  del record[field]
  path = _write(tmp_path / 'Beauty_5.json.gz', [_review(), _review(), json.dumps(record)])
  with pytest.raises(raw.DataError) as error:
    readers.read_amazon2018(tmp_path, 'Beauty')
  assert f'{path}:3' in str(error.value) and repr(field) in str(error.value)


def test_missing_parent_asin_2023(tmp_path):
  path = _write(tmp_path / 'Beauty.jsonl', [
      json.dumps({'user_id': 'U1', 'asin': 'A1', 'timestamp': 1_000_000})])
  with pytest.raises(raw.DataError) as error:
    readers.read_amazon2023(tmp_path, 'Beauty')
  assert f'{path}:1' in str(error.value) and "'parent_asin'" in str(error.value)


@pytest.mark.parametrize('time', ['yesterday', None, [1, 2], 'nan'])
def test_unparseable_timestamp(tmp_path, time):
  path = _write(tmp_path / 'reviews_Beauty_5.json.gz', [_review(), _review(time=time)])
  with pytest.raises(raw.DataError) as error:
    readers.read_amazon2014(tmp_path, 'Beauty')
  assert f'{path}:2' in str(error.value) and 'unixReviewTime' in str(error.value)


def test_ratings_csv_bad_lines(tmp_path):
  path = _write(tmp_path / 'Books.csv', ['I1,U1,5.0,1000', 'I2,U1,5.0'])
  with pytest.raises(raw.DataError, match=re.escape(path) + ':2'):
    readers.read_amazon2018(tmp_path, 'Books')
  path = _write(tmp_path / 'Books.csv', ['item,user,rating,timestamp', 'I1,U1,5.0,1000'])
  with pytest.raises(raw.DataError, match=re.escape(path) + ':1.*timestamp'):
    readers.read_amazon2018(tmp_path, 'Books')


def test_recbole_header_without_ids(tmp_path):
  path = _write(tmp_path / 'toy.inter', [
      'user_id:token\tmovie_id:token\ttimestamp:float', 'u1\ti1\t1'])
  with pytest.raises(raw.DataError) as error:
    readers.read_recbole_atomic(tmp_path, 'toy')
  message = str(error.value)
  assert f'{path}:1' in message and 'movie_id:token' in message and 'item_id' in message


def test_recbole_header_bad_type(tmp_path):
  path = _write(tmp_path / 'toy.inter', ['user_id:int\titem_id:token', 'u1\ti1'])
  with pytest.raises(raw.DataError, match=re.escape(path) + ":1.*'user_id:int'"):
    readers.read_recbole_atomic(tmp_path, 'toy')


def test_recbole_item_header_without_item_id(tmp_path):
  _write(tmp_path / 'toy.inter', ['user_id:token\titem_id:token', 'u1\ti1'])
  path = _write(tmp_path / 'toy.item', ['id:token\ttitle:token_seq', 'i1\tA'])
  with pytest.raises(raw.DataError, match=re.escape(path) + ':1.*id:token'):
    readers.read_recbole_atomic(tmp_path, 'toy')


def test_recbole_bad_rows(tmp_path):
  header = 'user_id:token\titem_id:token\ttimestamp:float'
  path = _write(tmp_path / 'toy.inter', [header, 'u1\ti1\t1', 'u2\ti2'])
  with pytest.raises(raw.DataError, match=re.escape(path) + ':3'):
    readers.read_recbole_atomic(tmp_path, 'toy')
  path = _write(tmp_path / 'toy.inter', [header, 'u1\ti1\t1', 'u2\ti2\tsoon'])
  with pytest.raises(raw.DataError, match=re.escape(path) + ':3.*timestamp'):
    readers.read_recbole_atomic(tmp_path, 'toy')
  path = _write(tmp_path / 'toy.inter', [header, 'u1\t\t1'])
  with pytest.raises(raw.DataError, match=re.escape(path) + ":2.*'item_id'"):
    readers.read_recbole_atomic(tmp_path, 'toy')


def test_meta_sharing_no_items_names_both_files(tmp_path):
  reviews = _write(tmp_path / 'reviews_Beauty_5.json.gz', [_review(item='I1')])
  meta = _write(tmp_path / 'meta_Beauty.json.gz', [repr({'asin': 'X9', 'title': 'T'})])
  with pytest.raises(raw.DataError) as error:
    readers.read_amazon2014(tmp_path, 'Beauty')
  assert meta in str(error.value) and reviews in str(error.value)


def test_recbole_item_sharing_no_items(tmp_path):
  inter = _write(tmp_path / 'toy.inter', ['user_id:token\titem_id:token', 'u1\ti1'])
  item = _write(tmp_path / 'toy.item', ['item_id:token\ttitle:token_seq', 'i7\tA'])
  with pytest.raises(raw.DataError) as error:
    readers.read_recbole_atomic(tmp_path, 'toy')
  assert inter in str(error.value) and item in str(error.value)


@pytest.mark.parametrize('lines', [[], ['', '  ']])
def test_no_interactions(tmp_path, lines):
  path = _write(tmp_path / 'Beauty.jsonl', lines)
  with pytest.raises(raw.DataError, match=re.escape(path) + ': no interactions'):
    readers.read_amazon2023(tmp_path, 'Beauty')


def test_recbole_empty_file(tmp_path):
  path = _write(tmp_path / 'toy.inter', [])
  with pytest.raises(raw.DataError, match=re.escape(path) + ':1'):
    readers.read_recbole_atomic(tmp_path, 'toy')
  path = _write(tmp_path / 'toy.inter', ['user_id:token\titem_id:token'])
  with pytest.raises(raw.DataError, match=re.escape(path) + ': no interactions'):
    readers.read_recbole_atomic(tmp_path, 'toy')


def test_all_lines_skipped_is_an_error(tmp_path):
  path = _write(tmp_path / 'reviews_Beauty_5.json.gz', ['junk', 'more junk'])
  with pytest.raises(raw.DataError, match=re.escape(path) + ': no interactions.*malformed_json'):
    readers.read_amazon2014(tmp_path, 'Beauty', on_bad_line='skip')


def test_truncated_gzip(tmp_path):
  path = _write(tmp_path / 'reviews_Beauty_5.json.gz', [_review()] * 50)
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(raw.DataError, match=re.escape(path) + ': damaged or truncated gzip'):
    readers.read_amazon2014(tmp_path, 'Beauty')


def test_meta_malformed_line(tmp_path):
  _write(tmp_path / 'reviews_Beauty_5.json.gz', [_review(item='I1')])
  meta = _write(tmp_path / 'meta_Beauty.json.gz', [
      repr({'asin': 'I1', 'title': 'T'}), "{'asin': 'I2', 'title': "])
  with pytest.raises(raw.DataError, match=re.escape(meta) + ':2'):
    readers.read_amazon2014(tmp_path, 'Beauty')
  data = readers.read_amazon2014(tmp_path, 'Beauty', on_bad_line='skip')
  assert data.item_text == {'I1': {'title': 'T'}}
  assert data.dropped == {'meta_malformed_json': 1}


def test_meta_missing_item_id(tmp_path):
  _write(tmp_path / 'reviews_Beauty_5.json.gz', [_review(item='I1')])
  meta = _write(tmp_path / 'meta_Beauty.json.gz', [repr({'title': 'T'}),
                                                   repr({'asin': 'I1', 'title': 'T'})])
  with pytest.raises(raw.DataError, match=re.escape(meta) + ":1.*'asin'"):
    readers.read_amazon2014(tmp_path, 'Beauty')
  data = readers.read_amazon2014(tmp_path, 'Beauty', on_bad_line='skip')
  assert data.dropped == {'meta_missing_field:asin': 1}


def test_skip_counts_bad_lines(tmp_path):
  _write(tmp_path / 'reviews_Beauty_5.json.gz', [
      _review('U1', 'I1', 10),
      'not json',
      json.dumps({'asin': 'I2', 'unixReviewTime': 11}),
      _review('U2', 'I2', 'noon'),
      '',
      _review('U3', 'I3', 12),
      '[1, 2]',
      json.dumps({'reviewerID': 'U4', 'asin': 'I4'}),
      _review('U4', 'I4', 13),
  ])
  data = readers.read_amazon2014(tmp_path, 'Beauty', on_bad_line='skip')
  _assert_interactions(data, ['U1', 'U3', 'U4'], ['I1', 'I3', 'I4'], [10, 12, 13])
  assert data.dropped == {'malformed_json': 2, 'missing_field:reviewerID': 1,
                          'bad_timestamp:unixReviewTime': 1,
                          'missing_field:unixReviewTime': 1}


def test_skip_counts_recbole_rows_and_keeps_row_index(tmp_path):
  _write(tmp_path / 'toy.inter', [
      'user_id:token\titem_id:token', 'u1\ti1', 'u2', '\ti3', 'u4\ti4'])
  data = readers.read_recbole_atomic(tmp_path, 'toy', on_bad_line='skip')
  # Times are data row positions in the file, unchanged by the skipped rows.
  _assert_interactions(data, ['u1', 'u4'], ['i1', 'i4'], [0, 3])
  assert data.dropped == {'malformed_row': 1, 'missing_field:user_id': 1}


def test_skip_counts_csv_rows(tmp_path):
  _write(tmp_path / 'Books.csv', ['I1,U1,5.0,1000', 'I2,U1', ',U2,4.0,1001',
                                  'I3,U3,4.0,later', 'I4,U4,1.0,1002'])
  data = readers.read_amazon2018(tmp_path, 'Books', on_bad_line='skip')
  _assert_interactions(data, ['U1', 'U4'], ['I1', 'I4'], [1000, 1002])
  assert data.dropped == {'malformed_csv': 1, 'missing_field:item': 1,
                          'bad_timestamp:timestamp': 1}


def test_item_text_cleaning(tmp_path):
  _write(tmp_path / 'Beauty_5.json.gz', [_review(item='I1')])
  _write(tmp_path / 'meta_Beauty.json.gz', [json.dumps({
      'asin': 'I1', 'title': '  Salt &amp; Pepper\t Mill ',
      'description': ['Line one<br/>line two', '<P>para&nbsp;three</p>', '   '],
      'category': ['Home', '', 'Kitchen'], 'brand': None, 'price': ''})])
  data = readers.read_amazon2018(tmp_path, 'Beauty')
  assert data.item_text == {'I1': {
      'title': 'Salt & Pepper Mill',
      'description': 'Line one line two para three',
      'categories': 'Home > Kitchen'}}
