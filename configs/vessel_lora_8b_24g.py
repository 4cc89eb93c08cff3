# Sa2VA-InternVL3-8B on one 24 GB card (RTX 3090/4090, A5000/A10): the plain runner, bf16 base with
# fp32 trainables, activation recomputation, micro-batch 1 with 8-step accumulation (global batch
# 8 per GPU), and bitsandbytes' 8-bit AdamW (optimizer state 2 bytes per trainable parameter
# instead of 8; mmengine registers bitsandbytes' optimizers when it is installed). ZeRO-2 is off: on one GPU it partitions nothing and its fp32 master copy plus
# fp32 gradient buffer cost 2.7 GiB that this card does not have.
#   SA2VA_MODEL_PATH=/path/to/Sa2VA-InternVL3-8B VESSEL_DATA_ROOT=/path/to/prepared \
#   python tools/train.py configs/vessel_lora_8b_24g.py
# Measured capped at 24 GB on an H200 (docs/PERFORMANCE.md). Needs `pip install bitsandbytes`.
_base_ = ['./vessel_lora.py']

model_path = '{{$SA2VA_MODEL_PATH:checkpoints/Sa2VA-InternVL3-8B}}'
deepspeed = 'none'
mixed_precision = 'bf16'
master_weights = False  # fp32 trainables under autocast: 1.4 GiB less at 8B than fp32 masters beside bf16 copies
model = dict(model_path=model_path, gradient_checkpointing=True,
             compile_llm_layers=False, compile_frozen_encoders=False, cuda_graph_llm_layers=False)
optim_wrapper = dict(type='SyncFreeOptimWrapper',  # the plain runner in bf16: no loss scaling
                     optimizer=dict(type='AdamW8bit', _delete_=True, lr=4e-5, betas=(0.9, 0.999),
                                    weight_decay=0.05),
                     clip_grad=dict(max_norm=1.0), accumulative_counts=8)
train_dataloader = dict(batch_size=1, num_workers=4,
                        dataset=dict(model_path=model_path))
val_dataloader = dict(dataset=dict(model_path=model_path))
