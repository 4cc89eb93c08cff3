"""Prompt templates and one-turn ids/labels; golden exactness with the real tokenizer."""

import json
import random

import pytest

from projects.sa2va_vessel.datasets import conversation as conv
from projects.sa2va_vessel.datasets.conversation import (
    IGNORE_INDEX,
    PROMPT_TEMPLATES,
    SEG_ANSWERS,
    VESSEL_QUESTIONS,
    encode_turn,
    get_template,
    image_token_string,
    make_question,
    pick_answer,
    pick_question,
)
from tests._data_support import GOLDEN_REF, real_tokenizer, requires_golden, requires_real_tokenizer, tiny_tokenizer

GOLDEN_PROMPT = '<image>\nPlease segment the blood vessel.'
GOLDEN_ANSWER = 'Sure, [SEG].'


def test_template_strings():
    q = PROMPT_TEMPLATES['qwen_chat']
    assert q['INSTRUCTION'] == '<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n'
    assert (q['SUFFIX'], q['SUFFIX_AS_EOS'], q['SEP']) == ('<|im_end|>', True, '\n')
    assert PROMPT_TEMPLATES['internlm2_chat']['INSTRUCTION'] == q['INSTRUCTION']
    p = PROMPT_TEMPLATES['phi3_chat']
    assert p['INSTRUCTION'] == '<|user|>\n{input}<|end|>\n<|assistant|>\n' and p['SUFFIX'] == '<|end|>'
    with pytest.raises(KeyError, match="unknown prompt template 'nope'"):
        get_template('nope')


def test_image_token_string_and_question():
    s = image_token_string(3)
    assert s.startswith('<img>') and s.endswith('</img>') and s.count('<IMG_CONTEXT>') == 768
    assert make_question('Segment it.') == '<image>\nSegment it.'
    assert make_question(GOLDEN_PROMPT) == GOLDEN_PROMPT
    with pytest.raises(ValueError):
        image_token_string(0)


def test_question_and_answer_choice():
    assert pick_question(None) == VESSEL_QUESTIONS[0] and pick_answer(None) == SEG_ANSWERS[0]
    picks = {pick_question(random.Random(i)) for i in range(50)}
    assert len(picks) > 3 and picks <= set(VESSEL_QUESTIONS)
    assert pick_question(random.Random(5)) == pick_question(random.Random(5))
    assert all('[SEG]' in a for a in SEG_ANSWERS)


def _check_structure(tok, turn, n_tiles):
    ctx = tok.convert_tokens_to_ids('<IMG_CONTEXT>')
    seg = tok.convert_tokens_to_ids('[SEG]')
    end = tok.convert_tokens_to_ids('<|im_end|>')
    ids, labels = turn.input_ids, turn.labels
    assert len(ids) == len(labels)
    assert ids.count(ctx) == 256 * n_tiles
    n_prompt = len(turn.prompt_input_ids)
    assert ids[:n_prompt] == turn.prompt_input_ids
    assert all(x == IGNORE_INDEX for x in labels[:n_prompt])
    answer = labels[n_prompt:-1]
    assert seg in answer and answer[-1] == end and answer == ids[n_prompt:-1]
    assert labels[-1] == IGNORE_INDEX and tok.decode([ids[-1]]) == '\n'  # the separator is unlabelled
    assert ids[0] == tok.convert_tokens_to_ids('<|im_start|>')  # no BOS, no system prompt


def test_structure_with_tiny_tokenizer():
    tok = tiny_tokenizer()
    for n_tiles in (1, 3):
        turn = encode_turn(tok, GOLDEN_PROMPT, GOLDEN_ANSWER, n_tiles)
        _check_structure(tok, turn, n_tiles)


def test_bad_question_or_answer():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match='<image>'):
        encode_turn(tok, 'no image here', GOLDEN_ANSWER, 1)
    with pytest.raises(ValueError, match=r'\[SEG\]'):
        encode_turn(tok, GOLDEN_PROMPT, 'no seg', 1)


def test_template_without_suffix_eos_appends_tokenizer_eos(monkeypatch):
    tok = tiny_tokenizer()
    monkeypatch.setitem(conv.PROMPT_TEMPLATES, 'plain', dict(INSTRUCTION='{input}\n', SEP=''))
    turn = encode_turn(tok, GOLDEN_PROMPT, GOLDEN_ANSWER, 1, template='plain')
    assert turn.input_ids[-1] == tok.eos_token_id == turn.labels[-1]


@requires_real_tokenizer
@requires_golden
def test_golden_ids_labels_prompt_exact():
    from safetensors.torch import load_file

    ref = load_file(str(GOLDEN_REF / 'inputs.safetensors'))
    meta = json.loads((GOLDEN_REF / 'meta.json').read_text())
    assert (meta['prompt'], meta['answer'], meta['n_tiles']) == (GOLDEN_PROMPT, GOLDEN_ANSWER, 1)
    tok = real_tokenizer()
    turn = encode_turn(tok, GOLDEN_PROMPT, GOLDEN_ANSWER, n_tiles=1, template='qwen_chat')
    assert turn.input_ids == ref['input_ids'][0].tolist()
    assert turn.labels == ref['labels'][0].tolist()
    assert turn.prompt_input_ids == ref['prompt_input_ids'][0].tolist()
    assert turn.input_ids.index(meta['seg_token_id']) == meta['seg_positions'][0]
    _check_structure(tok, turn, 1)
