"""Compiled modules serve the training step; evaluation runs the same weights eager."""

from __future__ import annotations

from projects.sa2va_vessel.models.speed import is_compiled
from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel


def _compiled_modules(model: Sa2VAVesselModel) -> list:
    return list(model.sa2va.language_model.model.layers) + [model.sa2va.vision_tower, model.sa2va.sam2.vision_encoder]


def test_compiled_in_training_eager_in_eval():
    # torch.compile is lazy: nothing compiles until a call, so this is cheap on the CPU
    model = Sa2VAVesselModel(
        'preset:tiny',
        dtype='float32',
        compile_llm_layers=True,
        compile_frozen_encoders=True,
        gradient_checkpointing=False,
    )
    modules = _compiled_modules(model)
    assert model.training and all(is_compiled(m) for m in modules)
    graphs = [m._compiled_call_impl for m in modules]
    model.eval()
    assert not any(is_compiled(m) for m in modules)
    model.train()
    # the same compiled callables come back: their graphs are reused, nothing compiles again
    assert [m._compiled_call_impl for m in modules] == graphs
    model.set_speed_switches(model.speed.replace(compile_llm_layers=False))
    assert not any(is_compiled(m) for m in model.sa2va.language_model.model.layers)
    assert is_compiled(model.sa2va.vision_tower)
