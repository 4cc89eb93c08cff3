"""Numerical equivalence with the official Sa2VA code on ../shared/fixtures/golden.

Tolerance: max |ours - official| <= 1e-5 x the official tensor's absolute maximum, for every
floating tensor (the fixture README's suggestion: 10-100x above the measured numeric noise, below
every meaningful perturbation, the weakest of which is 1.6e-4). Token ids match exactly.
"""

from __future__ import annotations

import pytest
import torch

from projects.sa2va_vessel.models.checkpoint import load_sa2va
from projects.sa2va_vessel.models.sa2va import mask_logits_to_size
from tests._data_support import GOLDEN, require

# one xdist worker runs this module: its module-scoped fixtures are built once, not once per worker
pytestmark = pytest.mark.xdist_group('golden_equivalence')

RELATIVE_TOLERANCE = 1e-5
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SAM2_MEAN, SAM2_STD = (0.484375, 0.455078125, 0.40625), (0.228515625, 0.2236328125, 0.224609375)


def _normalise(images_uint8: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    x = images_uint8.permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope='module')
def golden() -> dict:
    from safetensors.torch import load_file

    root = require(GOLDEN, 'golden Sa2VA fixture')
    modules, report = load_sa2va(root / 'sa2va_tiny_internvl')
    modules.eval()
    ref = {}
    for name in ('inputs', 'mllm_outputs', 'sam2_outputs'):
        ref.update(load_file(root / 'reference' / f'{name}.safetensors'))
    return {'modules': modules, 'report': report, 'ref': ref}


@pytest.fixture(scope='module')
def ours(golden: dict) -> dict:
    m, ref = golden['modules'], golden['ref']
    tiles = _normalise(ref['tiles_uint8'], IMAGENET_MEAN, IMAGENET_STD)
    g_pixels = _normalise(ref['g_image_uint8'][None], SAM2_MEAN, SAM2_STD)
    ids = ref['input_ids']
    out = {}
    with torch.no_grad():
        out['pixel_shuffle_out'] = m.vision_features(tiles)
        out['vit_embeds'] = m.mlp1(out['pixel_shuffle_out'])
        out['inputs_embeds'] = m.splice_image_embeddings(ids, out['vit_embeds'], 151667)
        positions = torch.arange(ids.shape[1])[None]
        out['llm_last_hidden_state'] = m.llm_last_hidden(out['inputs_embeds'], ref['attention_mask'].bool(), positions)
        out['seg_hidden_state'] = out['llm_last_hidden_state'][ids == 151674]
        out['seg_embedding'] = m.text_hidden_fcs(out['seg_hidden_state'])
        fpn = m.sam2_backbone(g_pixels)
        out['neck_fpn_2'] = fpn[2]
        image_embed, high_res = m.sam2_decoder_inputs(fpn)
        out['pix_feat_with_mem'] = image_embed
        decoded = m.decode_masks(image_embed, high_res, out['seg_embedding'])
        out['ious'] = decoded['iou_pred']
        out['low_res_multimasks'] = decoded['multimask_logits']
        out['low_res_masks'] = decoded['mask_logits'][:, None]
        out['best_index'] = decoded['best_index']
        out['mask_logits_orig_res'] = mask_logits_to_size(decoded['mask_logits'], (512, 512))
    return out


def test_every_official_tensor_loaded(golden: dict) -> None:
    report = golden['report']
    assert report.n_tensors == 425
    assert report.n_parameters + sum(t.numel() for t in report.passthrough.values()) == 3_506_090


@pytest.mark.parametrize(
    'name',
    [
        'pixel_shuffle_out',
        'vit_embeds',
        'inputs_embeds',
        'llm_last_hidden_state',
        'seg_hidden_state',
        'seg_embedding',
        'neck_fpn_2',
        'pix_feat_with_mem',
        'ious',
        'low_res_multimasks',
        'low_res_masks',
        'mask_logits_orig_res',
    ],
)
def test_tensor_matches_official(golden: dict, ours: dict, name: str) -> None:
    reference = golden['ref'][name]
    mine = ours[name].reshape(reference.shape)
    rel = float((mine - reference).abs().max() / reference.abs().max())
    print(f'{name}: max abs diff / absmax = {rel:.2e}')
    assert rel <= RELATIVE_TOLERANCE, f'{name}: {rel:.2e} > {RELATIVE_TOLERANCE:.0e}'


def test_best_iou_mask_choice_matches(golden: dict, ours: dict) -> None:
    assert int(ours['best_index']) == int(golden['ref']['ious'].argmax()) == 1


def test_binary_mask_matches_where_decided(golden: dict, ours: dict) -> None:
    reference = golden['ref']['mask_logits_orig_res']
    decided = reference.abs() > RELATIVE_TOLERANCE * reference.abs().max()
    # predict_forward thresholds sigmoid(logits) > 0.5 in float32, where logits below ~1e-7 round to 0.5
    mine = (ours['mask_logits_orig_res'].sigmoid() > 0.5).to(torch.uint8)
    assert torch.equal(mine[decided], golden['ref']['mask_binary_orig_res'][decided])
