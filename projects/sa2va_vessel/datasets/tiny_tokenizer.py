"""A small self-made Qwen2-style tokenizer for tiny checkpoints and tests.

Tiny Sa2VA checkpoints must not depend on the real 151k-token vocabulary (a 2.8 MB fixture
that may be absent). This builds a byte-level BPE (~1000 tokens) trained on seeded text that
contains the prompt/answer phrases, with the Qwen2.5/InternVL/Sa2VA added tokens appended in
the real order (so `<|endoftext|>` is the first added id and `</vp>` the last), and saves it
so that `AutoTokenizer.from_pretrained(out_dir)` returns a `Qwen2TokenizerFast`, and the
slow `Qwen2Tokenizer` loads it too (vocab.json + merges.txt are written as well).

`family_tokenizer_from_bpe` saves the real 151k-token BPE the same way with any family's added
tokens (e.g. a Sa2VA-Qwen3-VL tokenizer from a Sa2VA-InternVL3 checkpoint's vocab.json + merges.txt).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator, List, Tuple

from .conversation import PROMPT_TEMPLATES, SEG_ANSWERS, VESSEL_QUESTIONS

# (content, special) in id order, exactly as the real Sa2VA-InternVL3 added_tokens.json.
# "special" is the added_tokens_decoder flag (skipped by decode(skip_special_tokens=True)).
ADDED_TOKENS: Tuple[Tuple[str, bool], ...] = (
    ('<|endoftext|>', True),
    ('<|im_start|>', True),
    ('<|im_end|>', True),
    ('<|object_ref_start|>', True),
    ('<|object_ref_end|>', True),
    ('<|box_start|>', True),
    ('<|box_end|>', True),
    ('<|quad_start|>', True),
    ('<|quad_end|>', True),
    ('<|vision_start|>', True),
    ('<|vision_end|>', True),
    ('<|vision_pad|>', True),
    ('<|image_pad|>', True),
    ('<|video_pad|>', True),
    ('<tool_call>', False),
    ('</tool_call>', False),
    ('<|fim_prefix|>', False),
    ('<|fim_middle|>', False),
    ('<|fim_suffix|>', False),
    ('<|fim_pad|>', False),
    ('<|repo_name|>', False),
    ('<|file_sep|>', False),
    ('<img>', True),
    ('</img>', True),
    ('<IMG_CONTEXT>', True),
    ('<quad>', True),
    ('</quad>', True),
    ('<ref>', True),
    ('</ref>', True),
    ('<box>', True),
    ('</box>', True),
    ('[SEG]', True),
    ('<p>', True),
    ('</p>', True),
    ('<vp>', True),
    ('</vp>', True),
)
_SA2VA_TOKENS: Tuple[Tuple[str, bool], ...] = (
    ('[SEG]', True),
    ('<p>', True),
    ('</p>', True),
    ('<vp>', True),
    ('</vp>', True),
)
# Sa2VA-Qwen2.5-VL: the 22 Qwen2.5 specials, then Sa2VA's 5 ([SEG] = base + 22).
QWEN2_5_VL_ADDED_TOKENS: Tuple[Tuple[str, bool], ...] = ADDED_TOKENS[:22] + _SA2VA_TOKENS
# Sa2VA-Qwen3-VL: Qwen3's 26 (the 22 plus tool_response/think pairs, not special), then Sa2VA's 5.
QWEN3_VL_ADDED_TOKENS: Tuple[Tuple[str, bool], ...] = (
    ADDED_TOKENS[:22]
    + (('<tool_response>', False), ('</tool_response>', False), ('<think>', False), ('</think>', False))
    + _SA2VA_TOKENS
)
_FAMILY_TOKENS = {'internvl': ADDED_TOKENS, 'qwen2_5_vl': QWEN2_5_VL_ADDED_TOKENS, 'qwen3_vl': QWEN3_VL_ADDED_TOKENS}


def added_tokens_for(family: str) -> Tuple[Tuple[str, bool], ...]:
    """The added tokens of a Sa2VA family's real tokenizer, in id order."""
    if family not in _FAMILY_TOKENS:
        raise ValueError(f'unknown Sa2VA family {family!r}; known: {sorted(_FAMILY_TOKENS)}')
    return _FAMILY_TOKENS[family]


# The real tokenizer_config lists these 13 as additional_special_tokens.
ADDITIONAL_SPECIAL_TOKENS: Tuple[str, ...] = tuple(t for t, _ in ADDED_TOKENS[1:14])
# Qwen2's pre-tokenisation regex (splits words, single digits, punctuation, whitespace).
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r'|\s*[\r\n]+|\s+(?!\S)|\s+'
)
DEFAULT_VOCAB_SIZE = 1000

_WORDS = (
    'the a an of in on to and with this that image picture photo fundus retina retinal vessel '
    'vessels blood artery vein capillary branch tree optic disc macula mask segment segmentation '
    'please can you could show where is are it sure result output highlight find all thin thick '
    'dark bright left right top bottom region pixel area structure eye scan angiography coronary '
    'model answer question yes no here there what which how many one two three'
).split()


_SYLLABLES = (
    'ra',
    'ti',
    'no',
    've',
    'sa',
    'lu',
    'mer',
    'con',
    'dis',
    'pre',
    'ex',
    'ic',
    'al',
    'ous',
    'ing',
    'ed',
    'er',
    'an',
    'ta',
    'ri',
    'mo',
    'ke',
    'pha',
    'gli',
    'stro',
    'qu',
)


def _corpus(seed: int, n_sentences: int = 600) -> Iterator[str]:
    """Seeded training text: the real question/answer phrases plus random word salad.

    Pseudo-words made of syllables give BPE enough distinct merges to reach ~1000 tokens.
    """
    rng = random.Random(seed)
    pseudo = [''.join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(600)]
    vocabulary = list(_WORDS) * 3 + pseudo
    for q in VESSEL_QUESTIONS:
        yield q
    for a in SEG_ANSWERS:
        yield a
    for tpl in PROMPT_TEMPLATES.values():
        yield str(tpl['INSTRUCTION']).format(input='')
    for _ in range(n_sentences):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(3, 12))]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 999)))
        sentence = ' '.join(words)
        yield sentence[0].upper() + sentence[1:] + rng.choice(['.', '?', '!', ',', ':'])


def _set_qwen2_pipeline(tok) -> None:
    """Qwen2's normaliser, pre-tokeniser and decoder on a ``tokenizers.Tokenizer``."""
    from tokenizers import Regex, decoders, normalizers, pre_tokenizers

    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior='isolated', invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()


def build_tiny_tokenizer(
    out_dir: str | Path, vocab_size: int = DEFAULT_VOCAB_SIZE, seed: int = 0, family: str = 'internvl'
) -> None:
    """Train and save the tiny tokenizer into `out_dir` (created if needed). Deterministic.

    `family` picks the added-token layout (InternVL, Qwen2.5-VL or Qwen3-VL Sa2VA).
    """
    # Imported here: only this builder needs the training API.
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    _set_qwen2_pipeline(tok)
    n_regular = vocab_size - len(ADDED_TOKENS)  # the same regular vocabulary for every family
    trainer = trainers.BpeTrainer(
        vocab_size=n_regular,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(list(_corpus(seed)), trainer=trainer)
    save_with_added_tokens(tok, out, family)


def family_tokenizer_from_bpe(bpe_dir: str | Path, out_dir: str | Path, family: str) -> None:
    """A real-vocabulary tokenizer of ``family`` in ``out_dir``: the Qwen2.5 byte-level BPE of
    ``bpe_dir`` (``vocab.json`` + ``merges.txt``, the files every Sa2VA family shares) with the
    family's added tokens appended in the real order, saved as ``build_tiny_tokenizer`` saves.

    E.g. a Sa2VA-Qwen3-VL tokenizer from a Sa2VA-InternVL3 checkpoint's vocabulary (benchmarks).
    """
    from tokenizers import Tokenizer, models

    src = Path(bpe_dir)
    missing = [name for name in ('vocab.json', 'merges.txt') if not (src / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f'{src}: no {" / ".join(missing)}; a {family} Sa2VA tokenizer is built from '
            'the Qwen2.5 byte-level BPE files vocab.json + merges.txt'
        )
    tok = Tokenizer(
        models.BPE.from_file(
            str(src / 'vocab.json'), str(src / 'merges.txt'), unk_token=None, fuse_unk=False, byte_fallback=False
        )
    )
    _set_qwen2_pipeline(tok)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_with_added_tokens(tok, out, family)


def save_with_added_tokens(tok, out: Path, family: str) -> None:
    """Append ``family``'s added tokens to the BPE ``tok`` (a ``tokenizers.Tokenizer``) and save it as
    a ``Qwen2TokenizerFast`` folder (plus vocab.json, merges.txt and added_tokens.json)."""
    from tokenizers import AddedToken
    from transformers import Qwen2TokenizerFast

    added_tokens = added_tokens_for(family)
    # Added tokens go after the regular vocabulary, one at a time so the ids follow the order.
    for content, special in added_tokens:
        token = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)
        if special:
            tok.add_special_tokens([token])
        else:
            tok.add_tokens([token])

    fast = Qwen2TokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token='<|im_end|>',
        pad_token='<|endoftext|>',
        unk_token=None,
        additional_special_tokens=list(ADDITIONAL_SPECIAL_TOKENS),
        add_prefix_space=False,
        errors='replace',
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
        split_special_tokens=False,
    )
    fast.padding_side = 'right'
    fast.save_pretrained(str(out))
    # vocab.json + merges.txt let the slow Qwen2Tokenizer load the folder too.
    tok.model.save(str(out))
    # save_pretrained writes no added_tokens.json for a fast-only tokenizer; the real
    # checkpoints have one and some tools read it.
    added = {content: tok.token_to_id(content) for content, _ in added_tokens}
    (out / 'added_tokens.json').write_text(json.dumps(dict(sorted(added.items())), indent=2) + '\n')


def added_token_ids(tokenizer) -> List[int]:
    """Ids of ADDED_TOKENS in `tokenizer` (any tokenizer that has them), in order."""
    return [tokenizer.convert_tokens_to_ids(t) for t, _ in ADDED_TOKENS]
