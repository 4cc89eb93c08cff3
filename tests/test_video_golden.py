"""Numerical equivalence of the video path with the official Sa2VA code on ../shared/fixtures/golden_video.

Tolerances are the fixture README's (section 10), relative to each reference tensor's absolute
maximum: LLM tensors 1e-5, SAM2 float tensors 2e-5, the bfloat16 memory within one bfloat16 ulp,
the memory layout (which frames, which temporal encoding, token counts) and ids exactly, binary
masks equal wherever the reference logit exceeds the tolerance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from projects.sa2va_vessel.datasets.video_inputs import video_g_pixel_values, video_pixel_values, video_token_string
from projects.sa2va_vessel.models.checkpoint import load_sa2va
from projects.sa2va_vessel.models.sa2va import mask_logits_to_size
from projects.sa2va_vessel.models.video import (
    VideoPropagator,
    conditioning_frames,
    memory_from_passthrough,
    memory_official_state,
)
from tests._data_support import GOLDEN_MODEL, SHARED, require

# one xdist worker runs this module: its module-scoped fixtures are built once, not once per worker
pytestmark = pytest.mark.xdist_group('video_golden')

GOLDEN_VIDEO = SHARED / 'fixtures' / 'golden_video'
LLM_TOL, SAM_TOL = 1e-5, 2e-5
IMG_CONTEXT, SEG = 151667, 151674


@pytest.fixture(scope='module')
def golden() -> dict:
    from safetensors.torch import load_file

    root = require(GOLDEN_VIDEO / 'reference' / 'sam2_video_outputs.safetensors', 'golden video fixture').parents[1]
    require(GOLDEN_MODEL / 'model.safetensors', 'golden Sa2VA model')
    torch.manual_seed(0)
    modules, report = load_sa2va(GOLDEN_MODEL)
    modules.eval()
    memory = memory_from_passthrough(modules.arch, report.passthrough, torch.float32).eval()
    ref = {}
    for name in ('llm_outputs', 'sam2_video_outputs', 'train_outputs'):
        ref.update(load_file(root / 'reference' / f'{name}.safetensors'))
    stats = json.loads((root / 'reference' / 'tensor_stats.json').read_text())
    absmax = {k.split('/', 1)[1]: v['absmax'] for k, v in stats.items()}
    frames = [np.asarray(Image.open(root / 'frames' / f'frame_{i:02d}.png').convert('RGB')) for i in range(8)]
    return {'modules': modules, 'memory': memory, 'ref': ref, 'absmax': absmax, 'frames': frames, 'report': report}


@pytest.fixture(scope='module')
def ours(golden: dict) -> dict:
    m, memory, ref, frames = golden['modules'], golden['memory'], golden['ref'], golden['frames']
    out: dict = {}
    cond = conditioning_frames(len(frames))
    with torch.no_grad():
        tiles = video_pixel_values([frames[f] for f in cond])
        out['vit_embeds'] = m.mlp1(m.vision_features(tiles))
        ids = ref['llm_input_ids']
        out['inputs_embeds'] = m.splice_image_embeddings(ids, out['vit_embeds'], IMG_CONTEXT)
        n = ids.shape[1]
        out['llm_last_hidden_prefill'] = m.llm_last_hidden(
            out['inputs_embeds'], torch.ones(1, n, dtype=torch.bool), torch.arange(n)[None]
        )[0]
        # teacher-forced [SEG] after the prompt: its hidden state = the decode step fed [SEG]
        ids_seg = torch.cat([ids, torch.tensor([[SEG]])], dim=1)
        embeds = m.splice_image_embeddings(ids_seg, out['vit_embeds'], IMG_CONTEXT)
        hidden = m.llm_last_hidden(embeds, torch.ones(1, n + 1, dtype=torch.bool), torch.arange(n + 1)[None])
        out['seg_hidden_state'] = hidden[:, -1]
        out['seg_embedding'] = m.text_hidden_fcs(out['seg_hidden_state'])
        trace: dict = {}
        g = [video_g_pixel_values(f) for f in frames]
        result = VideoPropagator(m, memory).run(lambda t: g[t], len(frames), out['seg_embedding'], cond, trace=trace)
        out['result'], out['trace'], out['cond'], out['g'] = result, trace, cond, g
        out['vision_features_frame0'] = result.states[0].vision_features
        out['vision_features_frame5'] = result.states[5].vision_features
    return out


def _rel(golden: dict, name: str, mine: torch.Tensor) -> float:
    reference = golden['ref'][name].float()
    return float((mine.float().reshape(reference.shape) - reference).abs().max()) / golden['absmax'][name]


def test_memory_tensors_all_placed_and_round_trip(golden: dict) -> None:
    passthrough = golden['report'].passthrough
    assert len(passthrough) == 105
    back = memory_official_state(golden['memory'])
    assert set(back) == set(passthrough)
    assert all(torch.equal(back[k], passthrough[k]) for k in passthrough)


def test_prompt_ids_match_official(golden: dict) -> None:
    from projects.sa2va_vessel.datasets.conversation import encode_turn
    from tests._data_support import LAYOUT, real_tokenizer, requires_real_tokenizer  # noqa: F401

    require(LAYOUT / 'vocab.json', 'real Sa2VA tokenizer files')
    turn = encode_turn(
        real_tokenizer(),
        '<image>\nPlease segment the blood vessel.',
        'Sure, [SEG].',
        n_tiles=5,
        image_string=video_token_string(5),
    )
    assert turn.prompt_input_ids == golden['ref']['llm_input_ids'][0].tolist()
    assert turn.input_ids == golden['ref']['train_input_ids'][0].tolist()
    assert turn.labels == golden['ref']['train_labels'][0].tolist()


@pytest.mark.parametrize(
    'name', ['vit_embeds', 'inputs_embeds', 'llm_last_hidden_prefill', 'seg_hidden_state', 'seg_embedding']
)
def test_llm_stage_matches(golden: dict, ours: dict, name: str) -> None:
    rel = _rel(golden, name, ours[name])
    print(f'{name}: {rel:.2e}')
    assert rel <= LLM_TOL


@pytest.mark.parametrize('name', ['vision_features_frame0', 'vision_features_frame5'])
def test_vision_features_match(golden: dict, ours: dict, name: str) -> None:
    assert _rel(golden, name, ours[name]) <= SAM_TOL


@pytest.mark.parametrize('frame', range(8))
def test_every_frame_mask_logits_match(golden: dict, ours: dict, frame: int) -> None:
    ref = golden['ref']['mask_logits_256'][frame, 0]
    mine = ours['result'].mask_logits[frame, 0]
    rel = float((mine - ref).abs().max()) / float(golden['ref']['mask_logits_256'].abs().max())
    print(f'frame {frame} ({"conditioning" if frame in ours["cond"] else "propagated"}): {rel:.2e}')
    assert rel <= SAM_TOL


@pytest.mark.parametrize('frame', range(8))
def test_frame_heads_match(golden: dict, ours: dict, frame: int) -> None:
    state, ref = ours['result'].states[frame], golden['ref']
    for name, mine in (
        ('ious', state.iou_pred[0]),
        ('object_score_logits', state.object_score_logits),
        ('obj_ptr', state.object_pointer[0]),
    ):
        r = ref[name][frame].float()
        assert float((mine.reshape(r.shape) - r).abs().max()) <= SAM_TOL * golden['absmax'][name], name
    assert int(state.iou_pred[0].argmax()) == int(ref['ious'][frame].argmax())


def test_memory_bank_features_match(golden: dict, ours: dict) -> None:
    ref = golden['ref']['maskmem_features_bf16'].float()  # (8, 8, 64, 64)
    for frame in range(8):
        mine = ours['result'].states[frame].maskmem_features  # (HW, 1, mem) bf16
        mine = mine.float().permute(1, 2, 0).reshape(ref.shape[1:])
        diff = (mine - ref[frame]).abs()
        ulp = torch.finfo(torch.bfloat16).eps * ref[frame].abs().clamp_min(2**-126)  # one bf16 ulp
        assert bool((diff <= ulp * 1.0001).all()), f'frame {frame}: {int((diff > ulp).sum())} elements off'
    for frame in (0, 1):
        name = f'maskmem_features_fp32_frame{frame}'
        assert _rel(golden, name, ours['trace'][frame]['maskmem_features_fp32']) <= SAM_TOL


@pytest.mark.parametrize('frame', [5, 6, 7])
def test_memory_attention_stage_matches(golden: dict, ours: dict, frame: int) -> None:
    trace = ours['trace'][frame]
    assert _rel(golden, f'pix_feat_with_mem_frame{frame}', trace['pix_feat_with_mem']) <= SAM_TOL
    assert _rel(golden, f'memattn_obj_ptr_tokens_frame{frame}', trace['obj_ptr_tokens']) <= SAM_TOL
    assert _rel(golden, f'memattn_tpos_per_block_frame{frame}', torch.stack(trace['tpos_per_block'])) <= SAM_TOL


def test_memory_layout_exact(ours: dict) -> None:
    # README section 5: (frame, temporal-encoding index) blocks, pointer frames, token counts
    expected = {
        5: ([(0, 6), (1, 6), (2, 6), (3, 6), (4, 6)], [0, 1, 2, 3, 4], 20500),
        6: ([(0, 6), (1, 6), (2, 6), (3, 6), (4, 6), (5, 0)], [0, 1, 2, 3, 4, 5], 24600),
        7: ([(0, 6), (1, 6), (2, 6), (3, 6), (4, 6), (5, 1), (6, 0)], [0, 1, 2, 3, 4, 6, 5], 28700),
    }
    for frame, (blocks, pointers, tokens) in expected.items():
        trace = ours['trace'][frame]
        assert trace['layout']['blocks'] == blocks
        assert trace['layout']['pointers'] == pointers
        assert trace['n_tokens'] == tokens


@pytest.mark.parametrize('frame', [0, 5, 7])
def test_original_resolution_logits_match(golden: dict, ours: dict, frame: int) -> None:
    mine = mask_logits_to_size(ours['result'].mask_logits[frame], (512, 512))[0]
    assert _rel(golden, f'mask_logits_orig_res_frame{frame}', mine) <= SAM_TOL


def test_binary_masks_match_where_decided(golden: dict, ours: dict) -> None:
    ref_bits = np.unpackbits(golden['ref']['mask_binary_orig_res_packbits'].numpy(), axis=-1)[..., :512]
    logits = mask_logits_to_size(ours['result'].mask_logits[:, 0], (512, 512))
    reference_logits = mask_logits_to_size(golden['ref']['mask_logits_256'][:, 0], (512, 512))
    decided = reference_logits.abs() > SAM_TOL * reference_logits.abs().max()
    mine = (logits.sigmoid() > 0.5).numpy()
    assert np.array_equal(mine[decided.numpy()], ref_bits.astype(bool)[decided.numpy()])


def test_independent_frames_differ_from_memory(golden: dict, ours: dict) -> None:
    """Memory switched off (each frame prompted on its own) gives other masks on frames 5-7."""
    g = ours['g']
    with torch.no_grad():
        alone = (
            VideoPropagator(golden['modules'], golden['memory'])
            .run(lambda t: g[5 + t], 3, ours['seg_embedding'], [0], propagation='independent')
            .mask_logits
        )
    with_memory = ours['result'].mask_logits[5:]
    assert float((alone - with_memory).abs().max()) > 0.1 * float(with_memory.abs().max())
