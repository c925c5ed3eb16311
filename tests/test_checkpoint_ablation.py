"""experiments/checkpoint_ablation.py's bookkeeping on hand-made records (the evaluation it
runs is run.train_and_evaluate's eval-only path, checked against a fresh evaluation in
test_methods_smoke.py)."""

import json

import pytest

from experiments import checkpoint_ablation


def _record(keep, row, seed, field, value, name, hr):
  path = keep / row / seed / f'{field}={value}'
  path.mkdir(parents=True)
  (path / 'results.json').write_text(json.dumps(
      {'name': f'{name} [{field}={value}]', 'dataset': 'ml-100k',
       'splits': {'test': {'hr@10': hr}}}))


def test_values_parse_as_json_scalars():
  assert [checkpoint_ablation.parse_value(t) for t in ('20', '0.5', 'true', 'False', 'x')] == [
      20, 0.5, True, False, 'x']


def test_kept_records_group_by_row_and_value_in_numeric_order(tmp_path):
  for seed, hr in (('seed0', 0.1), ('seed1', 0.3)):
    for beam in (100, 20):
      _record(tmp_path, 'LC-Rec_per_prefix', seed, 'decode.beam_size', beam,
              'LC-Rec (per prefix)', hr + beam / 1000)
  field, rows = checkpoint_ablation.collect(str(tmp_path))
  assert field == 'decode.beam_size'
  assert list(rows) == ['LC-Rec (per prefix) (beam_size=20)',
                        'LC-Rec (per prefix) (beam_size=100)']  # 20 before 100
  assert sorted(r['hr@10'] for r in rows['LC-Rec (per prefix) (beam_size=100)']) == [
      pytest.approx(0.2), pytest.approx(0.4)]
  assert {r['value'] for r in rows['LC-Rec (per prefix) (beam_size=20)']} == {20}


def test_two_fields_in_one_keep_directory_are_refused(tmp_path):
  _record(tmp_path, 'A', 'seed0', 'decode.beam_size', 20, 'A', 0.1)
  _record(tmp_path, 'A', 'seed0', 'eval.mask_history', True, 'A', 0.1)
  with pytest.raises(ValueError, match='one field per keep directory'):
    checkpoint_ablation.collect(str(tmp_path))


def test_only_fields_that_act_after_training_are_accepted(tmp_path):
  with pytest.raises(ValueError, match='only eval'):
    checkpoint_ablation.evaluate_at(str(tmp_path), 'train.lr', 0.1)


def test_non_numeric_values_give_a_table_without_a_figure(tmp_path):
  for scorer, hr in (('beam', 0.1), ('similarity', 0.2)):
    _record(tmp_path / 'kept', 'SimGR', 'seed0', 'decode.scorer', scorer, 'SimGR', hr)
  text = checkpoint_ablation.report(str(tmp_path / 'kept'), str(tmp_path / 'out'))
  assert '| SimGR (scorer=beam) | 1 | 0.1000 |' in text
  assert '| SimGR (scorer=similarity) | 1 | **0.2000** |' in text  # the best in bold
  assert not (tmp_path / 'out.png').exists() and 'Figure' not in text
