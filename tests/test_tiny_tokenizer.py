"""The self-made tiny tokenizer: loadable as Qwen2, real special tokens in the real order."""

import json

from transformers import AutoTokenizer, Qwen2Tokenizer, Qwen2TokenizerFast

from projects.sa2va_vessel.datasets.tiny_tokenizer import ADDED_TOKENS, added_token_ids, build_tiny_tokenizer
from tests._data_support import LAYOUT, real_tokenizer, requires_real_tokenizer, tiny_checkpoint_dir, tiny_tokenizer

PHRASE = 'Please segment the blood vessels in this image.'


def test_loads_as_qwen2_fast_with_small_vocab():
    tok = tiny_tokenizer()
    assert isinstance(tok, Qwen2TokenizerFast)
    assert 900 <= len(tok) <= 1000
    assert tok.pad_token == '<|endoftext|>' and tok.eos_token == '<|im_end|>' and tok.bos_token is None
    assert tok.padding_side == 'right'


def test_added_tokens_are_contiguous_at_the_end_in_the_real_order():
    tok = tiny_tokenizer()
    ids = added_token_ids(tok)
    assert ids == list(range(len(tok) - len(ADDED_TOKENS), len(tok)))
    for content, _ in ADDED_TOKENS:
        assert tok.tokenize(f'a{content}b')[1] == content  # never split
    saved = json.loads((tiny_checkpoint_dir() / 'added_tokens.json').read_text())
    assert saved == {c: i for (c, _), i in zip(ADDED_TOKENS, ids)}


@requires_real_tokenizer
def test_same_added_tokens_and_flags_as_the_real_tokenizer():
    real = json.loads((LAYOUT / 'added_tokens.json').read_text())
    assert [c for c, _ in sorted(real.items(), key=lambda kv: kv[1])] == [c for c, _ in ADDED_TOKENS]
    cfg = json.loads((LAYOUT / 'tokenizer_config.json').read_text())
    flags = {v['content']: v['special'] for v in cfg['added_tokens_decoder'].values()}
    assert flags == dict(ADDED_TOKENS)
    assert real_tokenizer().additional_special_tokens == tiny_tokenizer().additional_special_tokens


def test_phrases_tokenise_to_words_and_round_trip():
    tok = tiny_tokenizer()
    assert tok.tokenize(PHRASE)[:3] == ['Please', 'Ġsegment', 'Ġthe']
    text = 'Sure, [SEG].<|im_end|>\n Unseen wörds 123!'
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_deterministic_and_slow_tokenizer_agrees(tmp_path):
    build_tiny_tokenizer(tmp_path)
    for name in ('tokenizer.json', 'vocab.json', 'merges.txt', 'added_tokens.json'):
        assert (tmp_path / name).read_bytes() == (tiny_checkpoint_dir() / name).read_bytes()
    assert isinstance(AutoTokenizer.from_pretrained(str(tmp_path)), Qwen2TokenizerFast)
    slow = Qwen2Tokenizer.from_pretrained(str(tmp_path))
    text = '<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img>\n' + PHRASE + '<|im_end|>\nSure, [SEG].'
    assert slow.encode(text, add_special_tokens=False) == tiny_tokenizer().encode(text, add_special_tokens=False)
