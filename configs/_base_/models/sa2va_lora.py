# Sa2VA + LoRA on the LLM. The checkpoint directory comes from SA2VA_MODEL_PATH (a local copy of
# an official ByteDance/Sa2VA-* export, or one written by tools/make_tiny_sa2va.py).
model_path = '{{$SA2VA_MODEL_PATH:checkpoints/Sa2VA-InternVL3-2B}}'

model = dict(
    type='Sa2VAVesselModel',
    model_path=model_path,
    dtype='bfloat16',               # frozen weights stay in this dtype (no fp32 up-cast)
    # quantize_base=None,           # 'nf4' / 'fp4': QLoRA, the LLM's frozen q/k/v/o/gate/up/down as 4-bit
    #                               # bitsandbytes Linear4bit under LoRA (pip install -e '.[qlora]'); the
    #                               # embeddings, lm_head, norms, ViT and SAM2 stay in `dtype`
    lora=dict(r=128, alpha=256, dropout=0.05,
              target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']),
    trainable=dict(lora=True, token_rows=True, text_hidden_fcs=True, mask_decoder=True, projector=True),
    trainable_tokens=['[SEG]'],
    llm_loss_weight=1.0,
    mask_loss_weight=2.0,           # sigmoid BCE
    dice_loss_weight=0.5,
    loss_resolution=1024,           # never 256: 1-2 px vessels vanish there
    gradient_checkpointing=True,
    attn_implementation='sdpa',
    trainable_dtype='float32',      # trainables (and so AdamW's updates) in fp32 over the bf16 base
    sam2_feature_cache_size=0,      # frozen SAM2 features reused for unaugmented images
    # Speed switches (models/speed.py; measured in docs/PERFORMANCE.md). The exact ones are on.
    vision_feature_cache=False,     # frozen ViT features too, same keys and capacity as the SAM2 cache
    sam2_side_stream=True,          # frozen SAM2 encoder on its own CUDA stream, overlapped with ViT + LLM (exact)
    compile_llm_layers=False,       # torch.compile each decoder layer (bf16 rounding differs slightly)
    compile_frozen_encoders=False,  # torch.compile the no-grad ViT and SAM2 image encoder
    cuda_graph_llm_layers=False,    # compiled decoder layers replay CUDA graphs: less host time per layer (exact)
    light_token_rows=True,          # trainable token rows without peft's full merged matrix copy (exact; -2 GiB at 8B)
    causal_mask_for_right_padding=True,  # right-padded batches: no padding mask; causal attention hides the pads (exact)
    indexed_image_splice=False,     # image splice at host-known positions: no sync in its backward (exact; call 51: no gain seen)
)
