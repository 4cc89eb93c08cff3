"""Numerical equivalence with the official Sa2VA-Qwen2.5-VL / -Qwen3-VL code (../shared/fixtures/golden_qwen*).

Tolerance (the fixtures' README, section 7): max |ours - official| <= 1e-5 x the official tensor's
absolute maximum for every float tensor, 1e-6 for the LLM hidden-state stacks (so that the weak
h/w-row-swap and M-RoPE-layout perturbations are caught too); ids, labels, grids, positions and
window indices exactly; pixel values bit for bit (sha256 of the official tensors).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from projects.sa2va_vessel.datasets.checkpoint_config import checkpoint_inputs
from projects.sa2va_vessel.datasets.conversation import (
    encode_turn,
    make_question,
    qwen_image_token_string,
    qwen_inference_prompt_ids,
)
from projects.sa2va_vessel.datasets.image_processing import (
    SAM2_SIZE,
    normalise_sam2,
    normalise_sam2_tensor,
    sam2_image_uint8,
)
from projects.sa2va_vessel.datasets.qwen_image_processing import process_image, qwen_vl_utils_resize
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from projects.sa2va_vessel.models.checkpoint import CheckpointError, load_sa2va
from projects.sa2va_vessel.models.sa2va import mask_logits_to_size
from tests._data_support import QWEN_GOLDEN, qwen_golden_checkpoint_dir, require

# one xdist worker runs this module: its module-scoped fixtures are built once, not once per worker
pytestmark = pytest.mark.xdist_group('golden_equivalence_qwen')

RELATIVE_TOLERANCE = 1e-5
HIDDEN_STACK_TOLERANCE = 1e-6
QUESTION, ANSWER = 'Please segment the blood vessel.', 'Sure, [SEG].'
EXACT_SAM2_MEAN, EXACT_SAM2_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FAMILIES = sorted(QWEN_GOLDEN)
EXPECTED_COUNTS = {'qwen2_5_vl': (417, 5_894_490), 'qwen3_vl': (442, 6_023_578)}


def _sha(t: torch.Tensor | np.ndarray) -> str:
    arr = t.numpy() if isinstance(t, torch.Tensor) else t
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _rel(mine: torch.Tensor, reference: torch.Tensor) -> float:
    mine = mine.reshape(reference.shape).float()
    return float((mine - reference.float()).abs().max() / reference.float().abs().max())


@pytest.fixture(scope='module', params=FAMILIES)
def golden(request) -> dict:
    from safetensors.torch import load_file

    family = request.param
    root = require(QWEN_GOLDEN[family][0], f'golden {family} fixture')
    model_dir = qwen_golden_checkpoint_dir(family)
    modules, report = load_sa2va(model_dir)
    modules.eval()
    ref = {}
    for name in ('inputs', 'mllm_outputs', 'sam2_outputs'):
        ref.update(load_file(root / 'reference' / f'{name}.safetensors'))
    meta = json.loads((root / 'reference' / 'meta.json').read_text())
    inputs = checkpoint_inputs(model_dir)
    image = Image.open(root / 'reference' / 'test_image.png').convert('RGB')
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return dict(
        family=family,
        root=root,
        model_dir=model_dir,
        modules=modules,
        report=report,
        ref=ref,
        meta=meta,
        inputs=inputs,
        image=image,
        tokenizer=tokenizer,
    )


def _stages(golden: dict, split: str) -> dict:
    """Every MLLM stage of one sequence (train: the training sample; infer: predict_forward's prompt)."""
    m, ref, settings = golden['modules'], golden['ref'], golden['inputs'].qwen_image
    image = golden['image'] if split == 'train' else qwen_vl_utils_resize(golden['image'])
    processed = process_image(image, settings)
    ids, grid, mask = ref[f'{split}_input_ids'], ref[f'{split}_image_grid_thw'], ref[f'{split}_attention_mask']
    out: dict = {'processed': processed}
    captured: dict = {}
    hooks = [
        m.visual.patch_embed.register_forward_hook(lambda _m, _a, o: captured.__setitem__('patch_embed', o)),
        m.visual.blocks[-1].register_forward_hook(lambda _m, _a, o: captured.__setitem__('last_block', o)),
    ]
    layer_outputs: list = []
    hooks.append(
        m.language_model.model.layers[0].register_forward_hook(
            lambda _m, _a, o: layer_outputs.append(o[0] if isinstance(o, tuple) else o)
        )
    )
    try:
        with torch.no_grad():
            embeds, deepstack = m.image_embeddings(processed.pixel_values, grid)
            inputs_embeds = m.splice_image_embeddings(ids, embeds)
            positions, deltas = m.rope_position_ids(ids, grid, mask)
            last = m.llm_last_hidden(inputs_embeds, mask.bool(), positions, deepstack, ids == m.image_token_id)
            if split == 'infer':  # the step whose input is [SEG]: a full forward over prompt + [SEG]
                seg_id = golden['meta']['seg_token_id']
                ext = torch.cat([ids, torch.tensor([[seg_id]])], dim=1)
                ext_mask = torch.ones_like(ext)
                ext_pos, _ = m.rope_position_ids(ext, grid, ext_mask)
                ext_hidden = m.llm_last_hidden(
                    m.splice_image_embeddings(ext, embeds), ext_mask.bool(), ext_pos, deepstack, ext == m.image_token_id
                )
                out['seg_hidden_state'] = ext_hidden[:, -1]
            else:
                out['seg_hidden_state'] = last[ids == golden['meta']['seg_token_id']]
                logits = m.language_model.lm_head(m.logits_hidden(last))[0]
                out['logits'] = logits
            out['seg_embedding'] = m.text_hidden_fcs(out['seg_hidden_state'])
    finally:
        for h in hooks:
            h.remove()
    out.update(
        image_embeds=embeds,
        inputs_embeds=inputs_embeds,
        position_ids=positions,
        rope_deltas=deltas,
        llm_hidden_states_all=torch.stack([inputs_embeds, layer_outputs[0], last]),
        visual_patch_embed=captured['patch_embed'],
        visual_last_block=captured['last_block'],
        deepstack=deepstack,
        grid=grid,
    )
    return out


@pytest.fixture(scope='module')
def stages(golden: dict) -> dict:
    return {split: _stages(golden, split) for split in ('infer', 'train')}


# ---- loading ----------------------------------------------------------------------------------
def test_every_official_tensor_loaded(golden: dict) -> None:
    report = golden['report']
    n_tensors, n_values = EXPECTED_COUNTS[golden['family']]
    assert report.n_tensors == n_tensors
    assert report.n_parameters + sum(t.numel() for t in report.passthrough.values()) == n_values
    assert golden['modules'].arch.family == golden['family']


@pytest.mark.parametrize('damage', ['missing', 'unexpected', 'misshaped'])
def test_key_accounting_names_the_key(golden: dict, damage: str, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = golden['model_dir']
    for file in src.iterdir():
        if file.name != 'model.safetensors' and file.is_file():
            shutil.copy(file, tmp_path / file.name)
    state = load_file(src / 'model.safetensors')
    key = 'model.model.language_model.layers.1.mlp.up_proj.weight'
    if damage == 'missing':
        del state[key]
    elif damage == 'unexpected':
        state['model.model.visual.extra_block.weight'] = torch.zeros(2)
        key = 'model.model.visual.extra_block.weight'
    else:
        state[key] = state[key][:-1].clone()
    save_file(state, str(tmp_path / 'model.safetensors'))
    with pytest.raises(CheckpointError) as err:
        load_sa2va(tmp_path)
    expected = {'missing': 'language_model.model.layers.1.mlp.up_proj.weight', 'unexpected': key, 'misshaped': key}[
        damage
    ]
    assert expected in str(err.value), str(err.value)


# ---- inputs -----------------------------------------------------------------------------------
def test_training_pixel_values_bit_exact(golden: dict, stages: dict) -> None:
    processed, ref = stages['train']['processed'], golden['ref']
    assert np.array_equal(processed.resized_uint8, ref['train_resized_uint8'].numpy())
    assert torch.equal(processed.pixel_values[:4], ref['train_pixel_values_first4'])
    assert _sha(processed.pixel_values) == golden['meta']['train_pixel_values_sha256']
    assert torch.equal(processed.image_grid_thw, ref['train_image_grid_thw'])


def test_inference_pixel_values_bit_exact(golden: dict, stages: dict) -> None:
    meta, ref = golden['meta'], golden['ref']
    assert _sha(np.asarray(qwen_vl_utils_resize(golden['image']))) == meta['qwen_vl_utils_resized_sha256']
    processed = stages['infer']['processed']
    assert np.array_equal(processed.resized_uint8, ref['infer_resized_uint8'].numpy())
    assert _sha(processed.pixel_values) == meta['pf_pixel_values_sha256']
    assert torch.equal(processed.image_grid_thw, ref['infer_image_grid_thw'])


def test_training_ids_and_labels_bit_exact(golden: dict) -> None:
    ref = golden['ref']
    n_tokens = int(ref['train_image_grid_thw'].prod()) // 4
    turn = encode_turn(
        golden['tokenizer'],
        make_question(QUESTION),
        ANSWER,
        n_tiles=1,
        template=golden['inputs'].template,
        image_tokens=qwen_image_token_string(n_tokens),
    )
    assert turn.input_ids == ref['train_input_ids'][0].tolist()
    assert turn.labels == ref['train_labels'][0].tolist()


def test_inference_prompt_ids_bit_exact(golden: dict) -> None:
    ref = golden['ref']
    n_tokens = int(ref['infer_image_grid_thw'].prod()) // 4
    ids = qwen_inference_prompt_ids(golden['tokenizer'], make_question(QUESTION), n_tokens)
    assert ids == ref['infer_input_ids'][0].tolist()


def test_dataset_item_is_the_official_training_sample(golden: dict, tmp_path: Path) -> None:
    """The dataset picks the Qwen-VL inputs from config.json alone and builds the official sample."""
    for sub in ('images', 'masks', 'splits'):
        (tmp_path / sub).mkdir()
    golden['image'].save(tmp_path / 'images' / 'test.png')
    mask = np.zeros((512, 512), dtype=np.uint8)
    mask[100:300, 200:260] = 255
    Image.fromarray(mask).save(tmp_path / 'masks' / 'test.png')
    (tmp_path / 'splits' / 'train.txt').write_text('test\n')
    dataset = VesselSegDataset(
        str(tmp_path),
        'train',
        str(golden['model_dir']),
        random_question=False,
        questions=(QUESTION,),
        answers=(ANSWER,),
    )
    item, ref = dataset[0], golden['ref']
    assert torch.equal(item['input_ids'], ref['train_input_ids'][0])
    assert torch.equal(item['labels'], ref['train_labels'][0])
    assert torch.equal(item['image_grid_thw'], ref['train_image_grid_thw'])
    assert _sha(item['pixel_values']) == golden['meta']['train_pixel_values_sha256']
    assert torch.equal(item['position_ids'], golden['ref']['train_position_ids'][:, 0])
    # the SAM2 input of the official predict path (bf16-rounded constants), first row
    # the dataset ships raw uint8 pixels; the model normalises them on its device
    assert item['g_pixel_values'].dtype == torch.uint8
    assert torch.equal(normalise_sam2_tensor(item['g_pixel_values'])[:, 0, :], ref['g_pixel_values_row0'][:, :])


# ---- MLLM stages --------------------------------------------------------------------------------
MLLM_STAGES = [
    (split, name)
    for split in ('infer', 'train')
    for name in ('image_embeds', 'inputs_embeds', 'llm_hidden_states_all', 'seg_hidden_state', 'seg_embedding')
] + [('infer', 'visual_patch_embed'), ('infer', 'visual_last_block')]


@pytest.mark.parametrize('split,name', MLLM_STAGES)
def test_mllm_stage_matches_official(golden: dict, stages: dict, split: str, name: str) -> None:
    key = f'{split}_{name}'
    tolerance = HIDDEN_STACK_TOLERANCE if name == 'llm_hidden_states_all' else RELATIVE_TOLERANCE
    rel = _rel(stages[split][name], golden['ref'][key])
    print(f'{key}: max abs diff / absmax = {rel:.2e}')
    assert rel <= tolerance, f'{key}: {rel:.2e} > {tolerance:.0e}'


@pytest.mark.parametrize('split', ['infer', 'train'])
def test_mrope_positions_exact(golden: dict, stages: dict, split: str) -> None:
    assert torch.equal(stages[split]['position_ids'], golden['ref'][f'{split}_position_ids'])
    assert torch.equal(stages[split]['rope_deltas'], golden['ref'][f'{split}_rope_deltas'])


def test_vision_family_specific_stages(golden: dict, stages: dict) -> None:
    m, ref, grid = golden['modules'], golden['ref'], stages['infer']['grid']
    if golden['family'] == 'qwen2_5_vl':
        window_index, cu = m.visual.get_window_index(grid)
        assert torch.equal(window_index, ref['infer_visual_window_index'])
        cu = torch.unique_consecutive(torch.tensor(cu, dtype=torch.int32))
        assert torch.equal(cu, ref['infer_visual_cu_window_seqlens'])
    else:
        with torch.no_grad():
            pos = m.visual.fast_pos_embed_interpolate(grid)
        assert _rel(pos, ref['infer_visual_pos_embeds']) <= RELATIVE_TOLERANCE
        assert _rel(torch.stack(stages['infer']['deepstack']), ref['infer_deepstack_embeds']) <= RELATIVE_TOLERANCE


def test_llm_loss_and_answer_logits_match(golden: dict, stages: dict) -> None:
    ref, logits = golden['ref'], stages['train']['logits']
    positions = ref['train_answer_logit_positions']
    answer = logits[positions]
    assert _rel(torch.logsumexp(answer, dim=-1), ref['train_logits_answer_logsumexp']) <= RELATIVE_TOLERANCE
    top = answer.topk(5, dim=-1)
    assert torch.equal(top.indices, ref['train_logits_answer_top5_ids'])
    assert _rel(top.values, ref['train_logits_answer_top5_values']) <= RELATIVE_TOLERANCE
    labels = ref['train_labels'][0]
    loss = torch.nn.functional.cross_entropy(logits[:-1], labels[1:], ignore_index=-100)
    assert _rel(loss, ref['train_llm_loss']) <= RELATIVE_TOLERANCE


# ---- SAM2 ----------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def sam2_out(golden: dict, stages: dict) -> dict:
    m, ref = golden['modules'], golden['ref']
    image = np.asarray(golden['image'])
    g_uint8 = sam2_image_uint8(image, SAM2_SIZE)
    assert _sha(g_uint8) == golden['meta']['g_image_uint8_sha256']
    g_pixels = normalise_sam2(g_uint8)[None]
    with torch.no_grad():
        fpn = m.sam2_backbone(g_pixels)
        image_embed, high_res = m.sam2_decoder_inputs(fpn)
        decoded = m.decode_masks(image_embed, high_res, stages['infer']['seg_embedding'])
        # training: exact float32 ImageNet constants (SAM2TrainRunner.preprocess_image)
        x = torch.from_numpy(g_uint8.copy()).permute(2, 0, 1).float() / 255
        g_train = ((x - torch.tensor(EXACT_SAM2_MEAN).view(3, 1, 1)) / torch.tensor(EXACT_SAM2_STD).view(3, 1, 1))[None]
        t_embed, t_high = m.sam2_decoder_inputs(m.sam2_backbone(g_train))
        train = m.decode_masks(t_embed, t_high, stages['train']['seg_embedding'])
    return {
        'g_pixels': g_pixels,
        'neck_fpn_2': fpn[2],
        'ious': decoded['iou_pred'],
        'low_res_masks': decoded['mask_logits'][:, None],
        'best_index': decoded['best_index'],
        'mask_logits_orig_res': mask_logits_to_size(decoded['mask_logits'], (512, 512)),
        'train_low_res_masks': train['mask_logits'][:, None],
        'ref': ref,
    }


@pytest.mark.parametrize('name', ['neck_fpn_2', 'ious', 'low_res_masks', 'mask_logits_orig_res', 'train_low_res_masks'])
def test_sam2_stage_matches_official(golden: dict, sam2_out: dict, name: str) -> None:
    rel = _rel(sam2_out[name], golden['ref'][name])
    print(f'{name}: max abs diff / absmax = {rel:.2e}')
    assert rel <= RELATIVE_TOLERANCE, f'{name}: {rel:.2e} > {RELATIVE_TOLERANCE:.0e}'


def test_sam2_language_embedding_and_mask_choice(golden: dict, stages: dict, sam2_out: dict) -> None:
    ref = golden['ref']
    assert torch.equal(sam2_out['g_pixels'][0, :, 0, :], ref['g_pixel_values_row0'])
    assert _rel(stages['infer']['seg_embedding'], ref['language_embd']) <= RELATIVE_TOLERANCE
    assert int(sam2_out['best_index']) == int(ref['ious'].argmax()) == golden['meta']['best_idx']
    reference = ref['mask_logits_orig_res']
    decided = reference.abs() > RELATIVE_TOLERANCE * reference.abs().max()
    mine = (sam2_out['mask_logits_orig_res'].sigmoid() > 0.5).to(torch.uint8)
    assert torch.equal(mine[decided], ref['mask_binary_orig_res'][decided])


# ---- generation (the official predict_forward: generate with a KV cache, answer [SEG] <|im_end|>) ---------
def test_generation_path_matches_official_predict_forward(golden: dict, monkeypatch) -> None:
    """``greedy_seg_generate`` (KV cache, M-RoPE decode positions) on the official inference prompt,
    the answer forced to [SEG] <|im_end|> as the fixture did: the [SEG] hidden state, its SAM2
    language embedding, the mask logits, the IoU choice and the binary mask of the official call."""
    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.image_processing import chw_uint8
    from projects.sa2va_vessel.models.generation import greedy_seg_generate
    from tests._data_support import tiny_training_model

    ref, meta, settings = golden['ref'], golden['meta'], golden['inputs'].qwen_image
    model = tiny_training_model(golden['model_dir']).eval()
    sa2va = model.sa2va
    processed = process_image(qwen_vl_utils_resize(golden['image']), settings)
    ids, grid = ref['infer_input_ids'][0], ref['infer_image_grid_thw']
    positions, _ = sa2va.rope_position_ids(ids[None], grid, torch.ones_like(ids[None]))
    item = {
        'pixel_values': processed.pixel_values,
        'image_grid_thw': processed.image_grid_thw,
        'position_ids': positions[:, 0],
        'n_tiles': 1,
        'g_pixel_values': chw_uint8(sam2_image_uint8(np.asarray(golden['image']), SAM2_SIZE)),
        'input_ids': ids,
        'labels': torch.full_like(ids, -100),  # the whole sequence is the prompt
        'masks': torch.zeros((1, 512, 512), dtype=torch.bool),
        'img_path': 'test_image.png',
        'ori_size': (512, 512),
        'pad_token_id': int(golden['tokenizer'].pad_token_id),
    }
    captured: dict = {}
    handle = sa2va.text_hidden_fcs.register_forward_hook(
        lambda _m, args, out: captured.update(seg_hidden=args[0].detach(), seg_embedding=out.detach())
    )
    decode = sa2va.decode_masks

    def recording_decode(*args, **kwargs):
        captured['decoded'] = decode(*args, **kwargs)
        return captured['decoded']

    monkeypatch.setattr(sa2va, 'decode_masks', recording_decode)
    forced = [meta['seg_token_id'], golden['tokenizer'].convert_tokens_to_ids('<|im_end|>')]
    assert forced == ref['infer_generated_ids'][0].tolist()
    try:
        out = greedy_seg_generate(model, vessel_collate([item]), stop_ids=[forced[1]], forced_answers=[forced])[0]
    finally:
        handle.remove()
    assert out['generated_ids'] == forced and out['n_seg'] == 1
    for name, key in (('seg_hidden', 'infer_seg_hidden_state'), ('seg_embedding', 'infer_seg_embedding')):
        rel = _rel(captured[name], ref[key])
        print(f'generation {key}: max abs diff / absmax = {rel:.2e}')
        assert rel <= RELATIVE_TOLERANCE, f'{key}: {rel:.2e}'
    decoded = captured['decoded']
    rel = _rel(decoded['mask_logits'][:, None], ref['low_res_masks'])
    print(f'generation low_res_masks: max abs diff / absmax = {rel:.2e}')
    assert rel <= RELATIVE_TOLERANCE
    assert int(decoded['best_index']) == meta['best_idx']
    reference = ref['mask_logits_orig_res']
    decided = reference.abs() > RELATIVE_TOLERANCE * reference.abs().max()
    mine = (out['prob'] > 0.5).to(torch.uint8).reshape(reference.shape)
    assert torch.equal(mine[decided], ref['mask_binary_orig_res'][decided])
