"""Prompt templates and the token ids/labels of one segmentation turn.

Sa2VA builds its prompts with xtuner-style templates (not the tokenizer's chat template):
no system prompt, no BOS. One turn is encoded in three pieces, as xtuner's `encode_fn`
does: the instruction (prompt; labels -100), the answer followed by the template SUFFIX
(labelled; the suffix doubles as EOS when SUFFIX_AS_EOS), and the separator SEP (labels
-100). `<image>` in the question becomes `<img>` + `<IMG_CONTEXT>` x (256 * n_tiles) + `</img>`
for the InternVL family, and `<|vision_start|>` + `<|image_pad|>` x N + `<|vision_end|>` (N = merged
image tokens, `qwen_image_token_string`) for the Qwen-VL families, as the official training
datasets do (`projects/sa2va/datasets/base.py`, arch_type "qwen").
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER = '<image>'
IMG_START_TOKEN = '<img>'
IMG_END_TOKEN = '</img>'
IMG_CONTEXT_TOKEN = '<IMG_CONTEXT>'
SEG_TOKEN = '[SEG]'
QWEN_VISION_START = '<|vision_start|>'
QWEN_VISION_END = '<|vision_end|>'
QWEN_IMAGE_PAD = '<|image_pad|>'
# (448 / 14)^2 patches, pixel-shuffled with downsample ratio 0.5 -> 256 tokens per tile.
TOKENS_PER_TILE = 256

# The templates Sa2VA checkpoints name in config.json "template" (xtuner PROMPT_TEMPLATE).
PROMPT_TEMPLATES: Dict[str, Dict[str, object]] = {
    'qwen_chat': dict(
        SYSTEM='<|im_start|>system\n{system}<|im_end|>\n',
        INSTRUCTION='<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n',
        SUFFIX='<|im_end|>',
        SUFFIX_AS_EOS=True,
        SEP='\n',
        STOP_WORDS=['<|im_end|>', '<|endoftext|>'],
    ),
    'internlm2_chat': dict(
        SYSTEM='<|im_start|>system\n{system}<|im_end|>\n',
        INSTRUCTION='<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n',
        SUFFIX='<|im_end|>',
        SUFFIX_AS_EOS=True,
        SEP='\n',
        STOP_WORDS=['<|im_end|>'],
    ),
    'phi3_chat': dict(
        SYSTEM='<|system|>\n{system}<|end|>\n',
        INSTRUCTION='<|user|>\n{input}<|end|>\n<|assistant|>\n',
        SUFFIX='<|end|>',
        SUFFIX_AS_EOS=True,
        SEP='\n',
        STOP_WORDS=['<|end|>'],
    ),
}

VESSEL_QUESTIONS = (
    'Please segment the blood vessels in this image.',
    'Can you segment the blood vessels in this image?',
    'Segment all the vessels in this image.',
    'Please segment the blood vessel.',
    'Where are the blood vessels in this image? Please output the segmentation mask.',
    'Could you provide a segmentation mask of the vessel tree?',
    'Please highlight the retinal vessels.',
    'What are the blood vessels in this picture? Please respond with a segmentation mask.',
)
DEFAULT_QUESTION = VESSEL_QUESTIONS[0]
SEG_ANSWERS = (
    'Sure, [SEG].',
    'It is [SEG].',
    'Sure, it is [SEG].',
    'Sure, the segmentation result is [SEG].',
    '[SEG].',
)
DEFAULT_ANSWER = SEG_ANSWERS[0]


def get_template(name: str) -> Dict[str, object]:
    """The template called `name`; a clear error lists the known names."""
    try:
        return PROMPT_TEMPLATES[name]
    except KeyError:
        raise KeyError(f'unknown prompt template {name!r}; known: {sorted(PROMPT_TEMPLATES)}') from None


def image_token_string(n_tiles: int, tokens_per_tile: int = TOKENS_PER_TILE) -> str:
    """`<img>` + `<IMG_CONTEXT>` x (tokens_per_tile * n_tiles) + `</img>`."""
    if n_tiles < 1:
        raise ValueError(f'n_tiles must be >= 1, got {n_tiles}')
    return IMG_START_TOKEN + IMG_CONTEXT_TOKEN * (tokens_per_tile * n_tiles) + IMG_END_TOKEN


def qwen_image_token_string(n_tokens: int) -> str:
    """`<|vision_start|>` + `<|image_pad|>` x n_tokens + `<|vision_end|>` (already expanded)."""
    if n_tokens < 1:
        raise ValueError(f'n_tokens must be >= 1, got {n_tokens}')
    return QWEN_VISION_START + QWEN_IMAGE_PAD * n_tokens + QWEN_VISION_END


def make_question(question: str) -> str:
    """Sa2VA's user turn for one image: '<image>\\n' + question (kept if already present)."""
    return question if IMAGE_PLACEHOLDER in question else f'{IMAGE_PLACEHOLDER}\n{question}'


def pick_question(rng: Optional[random.Random], questions: Sequence[str] = VESSEL_QUESTIONS) -> str:
    """A random question when `rng` is given (training), else the first one (validation)."""
    return questions[0] if rng is None else rng.choice(list(questions))


def pick_answer(rng: Optional[random.Random], answers: Sequence[str] = SEG_ANSWERS) -> str:
    """A random `[SEG]` answer when `rng` is given, else the first one."""
    return answers[0] if rng is None else rng.choice(list(answers))


@dataclass
class EncodedTurn:
    """Token ids of one question/answer turn.

    `prompt_input_ids` is what inference feeds the model (instruction only); `input_ids` and
    `labels` are the training sequence (prompt + answer + suffix + separator).
    """

    input_ids: List[int]
    labels: List[int]
    prompt_input_ids: List[int]


def encode_turn(
    tokenizer,
    question: str,
    answer: str,
    n_tiles: int,
    template: str = 'qwen_chat',
    system: str = '',
    tokens_per_tile: int = TOKENS_PER_TILE,
    image_string: Optional[str] = None,
    image_tokens: Optional[str] = None,
) -> EncodedTurn:
    """Encode one turn; `question` must contain '<image>' exactly once (see make_question).

    `image_string` replaces '<image>' instead of the single-image block (the video path
    passes one block per frame, `video_inputs.video_token_string`).
    `image_tokens` replaces `<image>` the same way and strips the user text (the Qwen-VL
    families' string; their official datasets strip it).
    """
    tpl = get_template(template)
    if question.count(IMAGE_PLACEHOLDER) != 1:
        raise ValueError(f'question must contain {IMAGE_PLACEHOLDER!r} exactly once: {question!r}')
    if SEG_TOKEN not in answer:
        raise ValueError(f'answer must contain {SEG_TOKEN!r}: {answer!r}')
    if image_tokens is not None:
        text_in = question.replace(IMAGE_PLACEHOLDER, image_tokens).strip()
    else:
        if image_string is None:
            image_string = image_token_string(n_tiles, tokens_per_tile)
        text_in = question.replace(IMAGE_PLACEHOLDER, image_string)
    prompt = str(tpl['INSTRUCTION']).format(input=text_in)
    if system:
        prompt = str(tpl['SYSTEM']).format(system=system) + prompt
    output = answer + str(tpl.get('SUFFIX', ''))

    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    output_ids = tokenizer.encode(output, add_special_tokens=False)
    input_ids = prompt_ids + output_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + list(output_ids)
    if not tpl.get('SUFFIX_AS_EOS', False):
        # Without a suffix that ends the turn, the tokenizer's EOS does (labelled).
        input_ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    sep = str(tpl.get('SEP', ''))
    if sep:
        # The separator only joins turns: in the sequence, never a target.
        sep_ids = tokenizer.encode(sep, add_special_tokens=False)
        input_ids += sep_ids
        labels += [IGNORE_INDEX] * len(sep_ids)
    return EncodedTurn(input_ids=input_ids, labels=labels, prompt_input_ids=list(prompt_ids))


def qwen_inference_prompt_ids(tokenizer, question: str, n_image_tokens: int) -> List[int]:
    """The prompt ids of the official Sa2VA-Qwen `predict_forward` for one image.

    The user message is the image then the question with `<image>` removed (the newline after it
    stays), rendered by the checkpoint's own chat template (`chat_template.jinja`; Qwen2.5-VL's
    adds its default system prompt, Qwen3-VL's has none) with the generation prompt; the single
    `<|image_pad|>` is expanded to `n_image_tokens` copies, as the processor does.
    """
    if getattr(tokenizer, 'chat_template', None) is None:
        raise ValueError(
            f'{getattr(tokenizer, "name_or_path", "tokenizer")}: no chat template '
            '(chat_template.jinja); the Qwen-VL inference prompt needs it'
        )
    messages = [
        {
            'role': 'user',
            'content': [{'type': 'image'}, {'type': 'text', 'text': question.replace(IMAGE_PLACEHOLDER, '')}],
        }
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if text.count(QWEN_IMAGE_PAD) != 1:
        raise ValueError(f'the chat template rendered {text.count(QWEN_IMAGE_PAD)} {QWEN_IMAGE_PAD} for one image')
    text = text.replace(QWEN_IMAGE_PAD, QWEN_IMAGE_PAD * n_image_tokens)
    return tokenizer.encode(text, add_special_tokens=False)
