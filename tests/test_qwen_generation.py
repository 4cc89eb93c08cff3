"""Generation mode of the Qwen-VL families: greedy decoding with a KV cache and M-RoPE positions.

On a tiny random checkpoint of each family (adapters perturbed, so that they matter):

- greedy decoding through the cache (``greedy_seg_generate``) gives, token for token and logit for
  logit, what decoding gives when the whole sequence is recomputed at every step with the M-RoPE
  ids ``get_rope_index`` assigns to the full sequence (an independent path: no cache, no rope delta);
- with the answer forced, the hidden state of the step whose input is ``[SEG]`` yields the same
  mask as the teacher-forced forward pass; an answer without ``[SEG]`` is counted missing;
- ``tools/predict.py --mode generate`` runs end to end on an exported Qwen-VL directory.

The comparison with the official code's generation (``infer_*`` of the golden fixtures) is in
tests/test_golden_equivalence_qwen.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from projects.sa2va_vessel.datasets.collate import vessel_collate
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from projects.sa2va_vessel.evaluation.inference import load_eval_model
from projects.sa2va_vessel.models.generation import greedy_seg_generate, stop_token_ids
from projects.sa2va_vessel.models.presets import TINY_PRESET
from projects.sa2va_vessel.models.random_checkpoint import write_random_sa2va

FAMILIES = ['qwen2_5_vl', 'qwen3_vl']
NEW_TOKENS = 6
LOGIT_TOLERANCE = 1e-4  # relative to the step's largest |logit|; float32 cache vs recompute noise ~1e-6


@pytest.fixture(scope='module', params=FAMILIES)
def setup(request, synthetic_vessels: Path, tmp_path_factory) -> dict:
    family = request.param
    checkpoint = write_random_sa2va(tmp_path_factory.mktemp(f'gen_{family}'), preset=TINY_PRESET[family], seed=0)
    model, _ = load_eval_model(None, checkpoint, device='cpu')
    with torch.no_grad():  # make the adapters matter, so a misaligned read would show
        gen = torch.Generator().manual_seed(0)
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    # the frozen SAM2 features of the two images are computed once for all the calls below (exact)
    model.set_speed_switches(dataclasses.replace(model.speed, sam2_feature_cache_size=4))
    dataset = VesselSegDataset(str(synthetic_vessels), 'val', str(checkpoint), random_question=False)
    batch = vessel_collate([dataset[0], dataset[1]])
    return dict(
        family=family,
        checkpoint=checkpoint,
        model=model,
        dataset=dataset,
        batch=batch,
        stops=stop_token_ids(dataset.tokenizer, dataset.template),
    )


def _prompt(batch: dict, i: int) -> torch.Tensor:
    ids, labels = batch['data']['input_ids'][i], batch['data']['labels'][i]
    return ids[: int(torch.nonzero(labels != -100)[0])][None]


def _recompute_greedy(model, batch: dict, i: int, n_steps: int, stops: set[int]) -> tuple[list[int], list]:
    """Greedy decoding without a cache: the full sequence through the LLM at every step, with the
    M-RoPE ids ``get_rope_index`` gives the full sequence (the image embeddings computed once)."""
    sa2va, data = model.sa2va, batch['data']
    grid = data['image_grid_thw']
    first = int(grid[:i].prod(dim=-1).sum())
    pixels = data['pixel_values'][first : first + int(grid[i].prod())]
    ids, tokens, logits = _prompt(batch, i), [], []
    with torch.no_grad():
        image = sa2va.image_embeddings(pixels, grid[i : i + 1])
        for _ in range(n_steps):
            hidden = sa2va.last_hidden_from_inputs(
                ids, pixels, grid[i : i + 1], torch.ones_like(ids, dtype=torch.bool), image_embeds=image
            )
            step_logits = sa2va.language_model.lm_head(sa2va.logits_hidden(hidden[:, -1]))[0]
            token = int(step_logits.argmax())
            tokens.append(token)
            logits.append(step_logits)
            if token in stops:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return tokens, logits


def test_rope_delta_is_nonzero_after_the_image(setup: dict) -> None:
    """The decode positions differ from the sequence index (so a 1-D position would show)."""
    sa2va, batch = setup['model'].sa2va, setup['batch']
    prompt = _prompt(batch, 0)
    _, delta = sa2va.rope_position_ids(prompt, batch['data']['image_grid_thw'][:1], torch.ones_like(prompt))
    assert int(delta) < 0
    position = sa2va.decode_position_ids(prompt.shape[1], int(delta), prompt.device)
    assert position.shape == (3, 1, 1) and int(position.max()) == prompt.shape[1] + int(delta)


def test_cached_greedy_equals_full_recompute_token_for_token(setup: dict) -> None:
    model, batch, stops = setup['model'], setup['batch'], setup['stops']
    lm_head = model.sa2va.language_model.lm_head
    seen: list[torch.Tensor] = []
    handle = lm_head.register_forward_hook(lambda _m, _a, out: seen.append(out.detach()[0]))
    try:
        generated = greedy_seg_generate(model, batch, stops, max_new_tokens=NEW_TOKENS)
    finally:
        handle.remove()
    offset = 0
    for i, record in enumerate(generated):
        tokens, logits = _recompute_greedy(model, batch, i, NEW_TOKENS, stops)
        assert record['generated_ids'] == tokens, (i, record['generated_ids'], tokens)
        cached = seen[offset : offset + len(tokens)]
        offset += len(tokens)
        for step, (a, b) in enumerate(zip(cached, logits)):
            rel = float((a - b).abs().max() / b.abs().max())
            assert rel <= LOGIT_TOLERANCE, f'sample {i} step {step}: logits differ by {rel:.2e}'
    assert offset == len(seen)


def test_seg_step_hidden_state_gives_the_teacher_forced_mask(setup: dict) -> None:
    model, batch, dataset = setup['model'], setup['batch'], setup['dataset']
    seg = model.seg_token_id
    data = batch['data']
    answers = [[int(t) for t, lab in zip(data['input_ids'][i], data['labels'][i]) if lab != -100] for i in range(2)]
    assert seg in answers[0]
    without_seg = [t if t != seg else dataset.tokenizer.convert_tokens_to_ids('.') for t in answers[1]]
    gen = greedy_seg_generate(model, batch, setup['stops'], forced_answers=[answers[0], without_seg])
    assert (gen[0]['n_seg'], gen[0]['missing_seg']) == (1, False)
    assert (gen[1]['n_seg'], gen[1]['missing_seg'], gen[1]['prob']) == (0, True, None)
    teacher = model.val_step(batch)
    assert gen[0]['prob'].shape == teacher[0]['prob'].shape
    assert torch.allclose(gen[0]['prob'], teacher[0]['prob'], atol=1e-5)


def test_predict_cli_generate_mode_on_an_export(synthetic_vessels: Path, tmp_path: Path) -> None:
    """tools/predict.py --mode generate on a Qwen3-VL export (the family with DeepStack; the
    builder's inputs of both families are checked against the dataset's below)."""
    from projects.sa2va_vessel.evaluation.cli import predict_main

    checkpoint = write_random_sa2va(tmp_path / 'ckpt', preset=TINY_PRESET['qwen3_vl'], seed=1)
    src = tmp_path / 'in'
    src.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(src / 'a.png')
    out = tmp_path / 'out'
    predict_main([str(checkpoint), str(src), str(out), '--mode', 'generate', '--device', 'cpu'])
    manifest = json.loads((out / 'predictions.json').read_text())
    assert manifest['mode'] == 'generate' and len(manifest['images']) == 1
    entry = manifest['images'][0]
    prob = np.asarray(Image.open(out / 'prob' / 'a.png'))
    assert prob.shape == (120, 160)
    # a random model rarely writes [SEG]: then the window is counted and its map is all zero
    assert entry['missing_seg_windows'] in (0, 1)
    if entry['missing_seg_windows']:
        assert prob.max() == 0


def test_sample_builder_item_is_the_dataset_item(setup: dict) -> None:
    """tools/predict.py's samples from a bare image: the dataset's Qwen-VL inputs for that image."""
    from projects.sa2va_vessel.evaluation.inference import ImageSampleBuilder

    dataset = setup['dataset']
    built = ImageSampleBuilder(setup['checkpoint'])(dataset.load(0)['image'])
    item = dataset[0]
    for key in ('input_ids', 'labels', 'pixel_values', 'image_grid_thw', 'position_ids'):
        assert torch.equal(built[key], item[key]), key
