"""Sa2VA-Qwen2.5-VL and Sa2VA-Qwen3-VL: tiny random checkpoints train, export and round-trip.

Each family: ``tools/make_tiny_sa2va.py --family F`` writes a tiny random checkpoint; the dataset
and collate pick the Qwen-VL inputs from its config.json; every trainable group gets a gradient
and moves (frozen weights do not); a short training run raises the Dice of the training images;
the trained model exports to the family's official layout with a bit-exact round trip (weights
equal the merged ones, predictions within float32 rounding) and as a peft adapter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from projects.sa2va_vessel.datasets.collate import vessel_collate
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from projects.sa2va_vessel.evaluation.metrics import threshold_sweep
from projects.sa2va_vessel.models.checkpoint import load_sa2va
from projects.sa2va_vessel.models.export import base_checkpoint_keys, export_adapter, export_full, merged_state_dict
from projects.sa2va_vessel.models.training_checkpoint import load_adapter_export
from projects.sa2va_vessel.models.vessel_model import TRAINABLE_GROUPS, Sa2VAVesselModel
from tests._data_support import load_tool, tiny_training_model

# one xdist worker runs this module: its module-scoped fixtures are built once, not once per worker
pytestmark = pytest.mark.xdist_group('qwen_families')

FAMILIES = ['qwen2_5_vl', 'qwen3_vl']
FP32_PREDICTION_TOLERANCE = 1e-5
# measured (4 synthetic 256-px images, lr 5e-3, Qwen2.5-VL tiny): swept Dice 0.06 after 0-40 steps,
# Dice at 0.5 0.42 after 60 (0.33 after 80, 0.57 after 100)
# Qwen3-VL tiny learns slower (at lr 5e-3: swept Dice 0.064 -> 0.076 after 60 steps); at lr 1e-2
# its swept Dice is 0.12 after 60 steps, 0.47 after 80, 0.60 after 100 (measured, one thread)
LEARN_STEPS = {'qwen2_5_vl': 60, 'qwen3_vl': 80}
LEARN_LR = {'qwen2_5_vl': 5e-3, 'qwen3_vl': 1e-2}


def _make_checkpoint(family: str, out: Path, monkeypatch) -> Path:
    tool = load_tool('make_tiny_sa2va')
    monkeypatch.setattr(sys, 'argv', ['make_tiny_sa2va.py', str(out), '--family', family, '--seed', '0'])
    tool.main()
    return out


_model = tiny_training_model


def _dice(model: Sa2VAVesselModel, batch: dict) -> float:
    """Mean per-image Dice at its best swept threshold (the project's model-selection Dice).

    The swept Dice, not Dice at 0.5: early in training the logits of a tiny model pass through an
    all-background phase where Dice at 0.5 is 0 although the ranking of pixels already improves.
    """
    probs = model(batch['data'], batch['data_samples'], mode='predict')
    dice = [
        threshold_sweep(p['prob'][0].numpy(), s['mask'][0])['best_dice'] for p, s in zip(probs, batch['data_samples'])
    ]
    return sum(dice) / len(dice)


def _predict(model: Sa2VAVesselModel, batch: dict) -> torch.Tensor:
    return torch.cat([o['prob'] for o in model(batch['data'], batch['data_samples'], mode='predict')])


@pytest.fixture(scope='module', params=FAMILIES)
def family_run(request, synthetic_vessels: Path, tmp_path_factory) -> dict:
    """A tiny checkpoint of the family, a batch of its training images, and a model trained on them."""
    family = request.param
    tmp = tmp_path_factory.mktemp(f'qwen_{family}')
    with pytest.MonkeyPatch.context() as mp:
        checkpoint = _make_checkpoint(family, tmp / 'ckpt', mp)
    dataset = VesselSegDataset(str(synthetic_vessels), 'train', str(checkpoint), random_question=False)
    batch = vessel_collate([dataset[i] for i in range(4)])
    model = _model(checkpoint)
    dice_before = _dice(model, batch)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=LEARN_LR[family], weight_decay=0.0
    )
    for _ in range(LEARN_STEPS[family]):
        losses = model(batch['data'], batch['data_samples'], mode='loss')
        sum(losses.values()).backward()
        optimizer.step()
        optimizer.zero_grad()
    return dict(
        family=family,
        tmp=tmp,
        checkpoint=checkpoint,
        batch=batch,
        model=model.eval(),
        dice_before=dice_before,
        dice_after=_dice(model, batch),
    )


def test_checkpoint_family_and_batch_layout(family_run: dict) -> None:
    config = json.loads((family_run['checkpoint'] / 'config.json').read_text())
    assert config['text_config']['model_type'] == family_run['family'] + '_text'
    model, data = family_run['model'], family_run['batch']['data']
    assert model.sa2va.arch.family == family_run['family'] and model.is_qwen
    n_images = data['input_ids'].shape[0]
    assert data['image_grid_thw'].shape == (n_images, 3)
    assert data['pixel_values'].shape[0] == int(data['image_grid_thw'].prod(dim=1).sum())
    assert data['position_ids'].shape == (3,) + tuple(data['input_ids'].shape)
    tokens = (data['input_ids'] == model.img_context_id).sum(dim=1)
    assert torch.equal(tokens, data['image_grid_thw'].prod(dim=1) // 4)


def test_every_trainable_group_gets_a_gradient_and_moves(family_run: dict) -> None:
    model = _model(family_run['checkpoint'])
    batch = family_run['batch']
    groups = model.trainable_groups()
    assert set(groups) == set(TRAINABLE_GROUPS)
    trainable = {n for ps in groups.values() for n, _ in ps}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = model(batch['data'], batch['data_samples'], mode='loss')
    sum(losses.values()).backward()
    for group, params in groups.items():
        norm = torch.sqrt(sum(p.grad.pow(2).sum() for _, p in params if p.grad is not None))
        assert torch.isfinite(norm) and norm > 0, f'group {group} got no gradient'
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
    for group, params in groups.items():
        assert any(not torch.equal(p, before[n]) for n, p in params), f'group {group} did not move'
    for name, p in model.named_parameters():
        if name not in trainable:
            assert torch.equal(p, before[name]), f'frozen {name} changed'
    # LoRA on every projection of the family's decoder layers, nothing in the vision tower
    lora = {n.split('.lora_')[0].rsplit('.', 1)[-1] for n, _ in groups['lora']}
    assert lora == {'q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'}
    assert all('.language_model.' in n for n, _ in groups['lora'])
    assert all('.visual.' in n for n, _ in groups['projector'])


def test_training_raises_dice(family_run: dict) -> None:
    before, after = family_run['dice_before'], family_run['dice_after']
    print(f'{family_run["family"]}: Dice {before:.3f} -> {after:.3f} after {LEARN_STEPS[family_run["family"]]} steps')
    assert after > before + 0.1, f'Dice {before:.3f} -> {after:.3f}'


def test_export_round_trip_is_bit_exact(family_run: dict) -> None:
    model, base, out = family_run['model'], family_run['checkpoint'], family_run['tmp'] / 'export_fp32'
    export_full(model, out, dtype=torch.float32)
    assert base_checkpoint_keys(out) == base_checkpoint_keys(base)
    config, base_config = (json.loads((d / 'config.json').read_text()) for d in (out, base))
    assert config['architectures'] == base_config['architectures']
    assert config['auto_map'] == base_config['auto_map']
    assert (out / 'preprocessor_config.json').is_file()
    merged = merged_state_dict(model)
    loaded, _ = load_sa2va(out)
    state = loaded.state_dict()
    assert set(state) == set(merged)
    for key, tensor in merged.items():
        assert torch.equal(state[key], tensor), key
    # the [SEG] rows were trained and written into embed_tokens / lm_head
    base_modules, _ = load_sa2va(base)
    seg = model.seg_token_id
    assert not torch.equal(
        state['language_model.model.embed_tokens.weight'][seg],
        base_modules.state_dict()['language_model.model.embed_tokens.weight'][seg],
    )
    reloaded = _model(out).eval()
    batch = family_run['batch']
    diff = (_predict(reloaded, batch) - _predict(model, batch)).abs().max()
    assert diff <= FP32_PREDICTION_TOLERANCE, f'{diff:.2e}'


def test_adapter_export_round_trip(family_run: dict) -> None:
    from peft import PeftModel

    model, out = family_run['model'], family_run['tmp'] / 'adapter'
    export_adapter(model, out, dtype=torch.float32)
    fresh = _model(family_run['checkpoint']).eval()
    load_adapter_export(fresh, out)
    batch = family_run['batch']
    assert torch.equal(_predict(fresh, batch), _predict(model, batch))
    # standard peft: the adapter on the base's language model gives the trained text logits
    llm = PeftModel.from_pretrained(load_sa2va(family_run['checkpoint'])[0].language_model, str(out)).eval()
    ids = batch['data']['input_ids'][:1, -12:]
    with torch.no_grad():
        theirs = llm(input_ids=ids).logits
        ours = model.sa2va.language_model(input_ids=ids).logits
    assert torch.allclose(theirs, ours, atol=1e-5, rtol=0)
