"""The table's baseline rows are the methods their names say (../shared/METHODS.md)."""

import pytest

from genrec_jax import config as config_lib


def _load(spec):
  config = config_lib.load_config_file(spec)
  config_lib.validate(config)
  return config


@pytest.mark.parametrize('variant', ['cpu', 'cpu_prefix', 'cpu_prompt', 'paper', 'ins'])
def test_lcrec_uses_its_rqvae_with_a_sinkhorn_last_level(variant):
  tok = _load(f'configs/lcrec_ins.py:{variant}').tokenize
  assert (tok.method, tok.levels) == ('rqvae', 4)
  assert tok.rqvae.sinkhorn_epsilons[-1] > 0  # build.py applies it to the last level only


@pytest.mark.parametrize('spec', ['configs/ifairlrs_ins.py:cpu_rw',
                                  'configs/ifairlrs_ins.py:cpu_rr',
                                  'configs/augment_ins.py:cpu_augment',
                                  'configs/augment_ins.py:cpu_substitute'])
def test_lcrec_based_debiasing_rows_share_lcrec_tokenizer(spec):
  tok, lcrec = _load(spec).tokenize, _load('configs/lcrec_ins.py:cpu').tokenize
  assert tok.to_dict() == lcrec.to_dict()


@pytest.mark.parametrize('variant, name, example_kind', [
    ('cpu_rqk4', 'RQK-4', 'sequence'), ('cpu_rqk4_prefix', 'RQK-4 (per prefix)', 'prefix')])
def test_rqk4_is_its_own_row(variant, name, example_kind):
  config = _load(f'configs/lcrec_ins.py:{variant}')
  assert (config.tokenize.method, config.tokenize.levels) == ('rq_kmeans', 4)
  assert (config.name, config.train.example_kind) == (name, example_kind)


def test_unknown_lcrec_suffix_names_the_known_ones():
  with pytest.raises(ValueError, match='rqk4, rqk6, prompt, prefix'):
    config_lib.load_config_file('configs/lcrec_ins.py:cpu_rqk5')
