"""Export of trained checkpoints (models/export.py, tools/export_hf.py) on the tiny random Sa2VA.

"Trained" checkpoints are made by perturbing every trainable tensor of the config's model with
seeded noise (LoRA B included, so the merge is not trivially W) and saving them as the plain
runner's TrainableCheckpointHook does (trainable parameters + buffers, ``meta.trainable_only``).

Tolerance of the round trip: a float32 export predicts the trained model's mask probabilities to
within 1e-5 (the merged matmul W' x differs from W x + s B (A x) by float32 rounding only); its
weights equal the merged weights bit for bit. A bf16 export's weights equal the fp32-merged
weights cast once to bf16, bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from projects.sa2va_vessel.models.checkpoint import CheckpointError, load_sa2va
from projects.sa2va_vessel.models.export import (
    OFFICIAL_AUTO_MAP,
    base_checkpoint_keys,
    build_model_from_config,
    export_full,
    merged_state_dict,
)
from projects.sa2va_vessel.models.training_checkpoint import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    MANIFEST,
    MODULES_WEIGHTS,
    load_adapter_export,
    load_training_checkpoint,
)
from tests._data_support import load_tool

# one xdist worker runs this module: its module-scoped fixtures are built once, not once per worker
pytestmark = pytest.mark.xdist_group('export')


export_hf = load_tool('export_hf')

FP32_PREDICTION_TOLERANCE = 1e-5
SEG_ID = 995  # the tiny tokenizer's [SEG]

CONFIG = """
custom_imports = dict(imports=['projects.sa2va_vessel.models'], allow_failed_imports=False)
model = dict(type='Sa2VAVesselModel', model_path={base!r}, dtype='float32',
             lora=dict(r={r}, alpha={alpha}, dropout=0.0), gradient_checkpointing=False)
"""


def write_config(path: Path, base: Path, r: int = 4, alpha: int = 8) -> Path:
    path.write_text(CONFIG.format(base=str(base), r=r, alpha=alpha))
    return path


def make_trained_checkpoint(config: Path, seed: int, out: Path):
    """A model of ``config`` with every trainable tensor moved, saved like TrainableCheckpointHook does."""
    model = build_model_from_config(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                scale = 0.05 if 'lora_B' in name else 0.3 * float(p.std()) if p.numel() > 1 else 0.1
                p.add_(torch.randn(p.shape, generator=gen) * max(scale, 1e-3))
    frozen = {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    state = {k: v.clone() for k, v in model.state_dict().items() if k not in frozen}
    torch.save({'meta': {'trainable_only': True, 'iter': seed}, 'state_dict': state}, out)
    return model, out


def predict(model, batch) -> torch.Tensor:
    out = model(data=batch['data'], data_samples=batch['data_samples'], mode='predict')
    return torch.cat([o['prob'] for o in out])


@pytest.fixture(scope='module')
def setup(tiny_checkpoint: Path, synthetic_vessels: Path, tmp_path_factory):
    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset

    tmp = tmp_path_factory.mktemp('export')
    config = write_config(tmp / 'cfg.py', tiny_checkpoint)
    trained_a, ckpt_a = make_trained_checkpoint(config, 1, tmp / 'a.pth')
    trained_b, ckpt_b = make_trained_checkpoint(config, 2, tmp / 'b.pth')
    dataset = VesselSegDataset(str(synthetic_vessels), 'val', str(tiny_checkpoint), max_dynamic_patch=1)
    batch = vessel_collate([dataset[0]])
    return dict(
        tmp=tmp,
        base=tiny_checkpoint,
        config=config,
        trained=trained_a,
        ckpt=ckpt_a,
        trained_b=trained_b,
        ckpt_b=ckpt_b,
        batch=batch,
        prob=predict(trained_a, batch),
    )


@pytest.fixture(scope='module')
def fp32_export(setup) -> Path:
    out = setup['tmp'] / 'full_fp32'
    export_hf.main([str(setup['config']), str(setup['ckpt']), str(out), '--dtype', 'fp32'])
    return out


def test_loading_a_checkpoint_reproduces_the_trained_model(setup) -> None:
    model = build_model_from_config(setup['config'])
    meta = load_training_checkpoint(model, setup['ckpt'])
    assert meta['iter'] == 1
    for (name, a), (_, b) in zip(model.state_dict().items(), setup['trained'].state_dict().items()):
        assert torch.equal(a, b), name


def test_fp32_export_round_trip(setup, fp32_export: Path) -> None:
    """Official layout, bit-exact merged weights, merge formula, config, tokenizer, predictions."""
    trained, base = setup['trained'], setup['base']
    assert base_checkpoint_keys(fp32_export) == base_checkpoint_keys(base)
    merged = merged_state_dict(trained)
    loaded, report = load_sa2va(fp32_export)
    assert report.dtype == torch.float32
    state = loaded.state_dict()
    assert set(state) == set(merged)
    for key, tensor in merged.items():
        assert torch.equal(state[key], tensor), key

    # the merge, recomputed independently: W + (alpha / r) * B @ A, and the [SEG] rows replaced
    base_state = load_file(base / 'model.safetensors')
    exported = load_file(fp32_export / 'model.safetensors')
    q = trained.sa2va.language_model.model.layers[1].self_attn.q_proj
    key = 'language_model.model.layers.1.self_attn.q_proj.weight'
    expected = base_state[key] + (8 / 4) * q.lora_B['default'].weight @ q.lora_A['default'].weight
    assert torch.allclose(exported[key], expected, atol=1e-7, rtol=0)
    assert not torch.equal(exported[key], base_state[key])
    for key, wrapper in (
        ('language_model.model.embed_tokens.weight', trained.sa2va.language_model.model.embed_tokens),
        ('language_model.lm_head.weight', trained.sa2va.language_model.lm_head),
    ):
        delta = wrapper.token_adapter.trainable_tokens_delta['default']
        assert torch.equal(exported[key][SEG_ID], delta[0]), key
        others = torch.arange(exported[key].shape[0]) != SEG_ID
        assert torch.equal(exported[key][others], base_state[key][others]), key
    assert torch.equal(exported['text_hidden_fcs.0.weight'], trained.sa2va.text_hidden_fcs[0].weight)

    cfg = json.loads((fp32_export / 'config.json').read_text())
    assert cfg['auto_map'] == OFFICIAL_AUTO_MAP and cfg['template'] == 'qwen_chat'
    assert cfg['dtype'] == cfg['torch_dtype'] == cfg['llm_config']['dtype'] == 'float32'
    assert cfg['llm_config']['vocab_size'] == exported['language_model.model.embed_tokens.weight'].shape[0]
    for name in ('tokenizer_config.json', 'vocab.json', 'merges.txt', 'sam2_config.json'):
        assert (fp32_export / name).is_file(), name

    # the export as a new base: LoRA starts at zero, predictions are the trained model's
    from projects.sa2va_vessel.models import Sa2VAVesselModel

    reloaded = Sa2VAVesselModel(
        model_path=str(fp32_export), dtype='float32', lora=dict(r=4, alpha=8, dropout=0.0), gradient_checkpointing=False
    ).eval()
    assert all(float(p.detach().abs().max()) == 0 for n, p in reloaded.named_parameters() if 'lora_B' in n)
    diff = float((predict(reloaded, setup['batch']) - setup['prob']).abs().max())
    print(f'fp32 export: max |prob difference| = {diff:.2e}')
    assert diff <= FP32_PREDICTION_TOLERANCE


def test_bf16_is_the_default_and_casts_once(setup) -> None:
    out = setup['tmp'] / 'full_bf16'
    export_hf.main([str(setup['config']), str(setup['ckpt']), str(out)])
    exported = load_file(out / 'model.safetensors')
    assert {t.dtype for t in exported.values()} == {torch.bfloat16}
    assert json.loads((out / 'config.json').read_text())['dtype'] == 'bfloat16'
    merged = merged_state_dict(setup['trained'])
    loaded, _ = load_sa2va(out)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, merged[key].to(torch.bfloat16)), key


def test_two_trainings_export_different_weights(setup) -> None:
    """The seed's bug: two exports came out identical."""
    out_a, out_b = setup['tmp'] / 'diff_a', setup['tmp'] / 'diff_b'
    export_hf.main([str(setup['config']), str(setup['ckpt']), str(out_a)])
    export_hf.main([str(setup['config']), str(setup['ckpt_b']), str(out_b)])
    a, b = load_file(out_a / 'model.safetensors'), load_file(out_b / 'model.safetensors')
    assert set(a) == set(b)
    differ = {k for k in a if not torch.equal(a[k], b[k])}
    for key in (
        'language_model.model.layers.0.mlp.down_proj.weight',
        'language_model.model.embed_tokens.weight',
        'language_model.lm_head.weight',
        'text_hidden_fcs.2.weight',
        'mlp1.1.weight',
        'grounding_encoder.sam2_model.sam_mask_decoder.conv_s0.weight',
    ):
        assert key in differ, key
    assert not any(k.startswith('vision_model.') for k in differ)  # frozen parts stay the base's


def test_deepspeed_directory_and_work_dir(setup) -> None:
    """DeepSpeed writes a directory whose mp_rank_00_model_states.pt holds the trainable weights under 'module'."""
    state = torch.load(setup['ckpt'], weights_only=False)['state_dict']
    work = setup['tmp'] / 'ds_work'
    (work / 'iter_3.pth').mkdir(parents=True)
    torch.save(
        {'module': state, 'buffer_names': [], 'meta': {'iter': 3}}, work / 'iter_3.pth' / 'mp_rank_00_model_states.pt'
    )
    (work / 'last_checkpoint').write_text(str(work / 'iter_3.pth'))
    for source in (work / 'iter_3.pth', work):
        model = build_model_from_config(setup['config'])
        assert load_training_checkpoint(model, source)['iter'] == 3
        for (name, a), (_, b) in zip(model.state_dict().items(), setup['trained'].state_dict().items()):
            assert torch.equal(a, b), name


def test_errors_name_the_problem(setup, capsys) -> None:
    tmp, config = setup['tmp'], setup['config']
    with pytest.raises(CheckpointError, match='no such checkpoint'):
        load_training_checkpoint(build_model_from_config(config), tmp / 'absent.pth')
    with pytest.raises(SystemExit):
        export_hf.main([str(config), str(tmp / 'absent.pth'), str(tmp / 'never')])
    assert 'absent.pth' in capsys.readouterr().err and not (tmp / 'never').exists()

    state = dict(torch.load(setup['ckpt'], weights_only=False)['state_dict'])
    state['sa2va.mlp1.linear_9.weight'] = torch.zeros(2)
    dropped = 'sa2va.text_hidden_fcs.2.bias'
    del state[dropped]
    torch.save({'state_dict': state}, tmp / 'bad.pth')
    with pytest.raises(CheckpointError) as err:
        load_training_checkpoint(build_model_from_config(config), tmp / 'bad.pth')
    assert 'sa2va.mlp1.linear_9.weight' in str(err.value) and dropped in str(err.value)

    other_rank = write_config(tmp / 'cfg_r8.py', setup['base'], r=8, alpha=16)
    with pytest.raises(
        CheckpointError,
        match=r'shape mismatch.*LoRA rank.*q_proj\.lora_A\.default\.weight: '
        r'checkpoint \(4, 64\) vs model \(8, 64\)',
    ):
        load_training_checkpoint(build_model_from_config(other_rank), setup['ckpt'])


def test_adapter_only_export(setup) -> None:
    from peft import PeftModel

    trained, out = setup['trained'], setup['tmp'] / 'adapter'
    export_hf.main([str(setup['config']), str(setup['ckpt']), str(out), '--adapter-only', '--dtype', 'fp32'])
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, MODULES_WEIGHTS, MANIFEST):
        assert (out / name).is_file(), name
    adapter = load_file(out / ADAPTER_WEIGHTS)
    assert 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' in adapter
    assert 'base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta' in adapter
    modules = load_file(out / MODULES_WEIGHTS)
    assert {k.split('.')[0] for k in modules} == {'mlp1', 'text_hidden_fcs', 'grounding_encoder'}
    assert 'grounding_encoder.sam2_model.sam_mask_decoder.conv_s1.weight' in modules
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest['token_rows']['language_model.model.embed_tokens'] == [SEG_ID]
    assert set(manifest['module_tensors']) == set(modules)

    # standard peft: the adapter on the base's Qwen2ForCausalLM gives the trained LLM
    llm = PeftModel.from_pretrained(load_sa2va(setup['base'])[0].language_model, str(out)).eval()
    ids = torch.tensor([[1, 5, 17, SEG_ID, 40, SEG_ID, 3]])
    with torch.no_grad():
        theirs = llm(input_ids=ids).logits
        ours = trained.sa2va.language_model(input_ids=ids).logits
    assert torch.allclose(theirs, ours, atol=1e-6, rtol=0)

    # our loader onto a fresh model built on the base: identical predictions
    fresh = build_model_from_config(setup['config'])
    load_adapter_export(fresh, out)
    assert torch.equal(predict(fresh, setup['batch']), setup['prob'])

    with pytest.raises(CheckpointError, match=r'r: export 4 vs model 8'):
        load_adapter_export(build_model_from_config(write_config(setup['tmp'] / 'cfg_r8b.py', setup['base'], r=8)), out)


def test_tied_embeddings_export(setup) -> None:
    """Sa2VA-1B/4B tie lm_head to embed_tokens: the merged token rows are written once, under embed_tokens."""
    import shutil

    from safetensors.torch import save_file

    tied = setup['tmp'] / 'tied_base'
    shutil.copytree(setup['base'], tied)
    cfg = json.loads((tied / 'config.json').read_text())
    cfg['tie_word_embeddings'] = cfg['llm_config']['tie_word_embeddings'] = True
    (tied / 'config.json').write_text(json.dumps(cfg))
    weights = load_file(tied / 'model.safetensors')
    del weights['language_model.lm_head.weight']
    save_file(weights, str(tied / 'model.safetensors'))
    config = write_config(setup['tmp'] / 'cfg_tied.py', tied)
    trained, ckpt = make_trained_checkpoint(config, 4, setup['tmp'] / 'tied.pth')
    model = build_model_from_config(config)
    load_training_checkpoint(model, ckpt)
    export_full(model, setup['tmp'] / 'tied_out', dtype=torch.float32)
    exported = load_file(setup['tmp'] / 'tied_out' / 'model.safetensors')
    assert set(exported) == set(weights)
    delta = trained.sa2va.language_model.model.embed_tokens.token_adapter.trainable_tokens_delta['default']
    assert torch.equal(exported['language_model.model.embed_tokens.weight'][SEG_ID], delta[0])
    reloaded, _ = load_sa2va(setup['tmp'] / 'tied_out')
    ids = torch.tensor([[1, SEG_ID, 4, 9]])
    with torch.no_grad():
        diff = reloaded.language_model(input_ids=ids).logits - trained.sa2va.language_model(input_ids=ids).logits
    assert float(diff.abs().max()) <= 1e-5
