"""load_fast_tokenizer: a slow tokenizer folder is converted once, then every load reads the cache."""

import shutil

import pytest

from projects.sa2va_vessel.datasets import fast_tokenizer as ft
from tests._data_support import LAYOUT

TOKENIZER_FILES = ('vocab.json', 'merges.txt', 'tokenizer_config.json', 'added_tokens.json', 'special_tokens_map.json')


@pytest.fixture
def slow_folder(tmp_path):
    if not (LAYOUT / 'vocab.json').is_file():
        pytest.skip(f'{LAYOUT} (the real tokenizer files) is absent')
    folder = tmp_path / 'ckpt'
    folder.mkdir()
    for name in TOKENIZER_FILES:
        if (LAYOUT / name).is_file():
            shutil.copyfile(LAYOUT / name, folder / name)
    return folder


def test_converted_once_then_read_from_the_cache(slow_folder, tmp_path, monkeypatch):
    monkeypatch.setenv(ft.CACHE_ENV, str(tmp_path / 'cache'))
    first = ft.load_fast_tokenizer(slow_folder)
    assert first.is_fast and not (slow_folder / 'tokenizer.json').exists()  # the checkpoint is not written
    cached = tmp_path / 'cache' / 'tokenizers' / ft.tokenizer_key(slow_folder)
    assert (cached / 'tokenizer.json').is_file()

    loaded = []
    real_auto = ft._auto
    monkeypatch.setattr(ft, '_auto', lambda path: loaded.append(path) or real_auto(path))
    second = ft.load_fast_tokenizer(slow_folder)
    assert loaded == [cached]  # no conversion from the slow files again
    text = '<img><IMG_CONTEXT></img>\nPlease segment the blood vessel. Sure, [SEG].'
    assert second(text).input_ids == first(text).input_ids
    assert second.convert_tokens_to_ids('[SEG]') == 151674


def test_the_key_follows_the_file_contents(slow_folder):
    key = ft.tokenizer_key(slow_folder)
    (slow_folder / 'added_tokens.json').write_text('{}')
    assert ft.tokenizer_key(slow_folder) != key
