"""Fine-tune a GGUF chat model with LoRA on SFT conversations and write the merged model back to GGUF.

Runs inside the training tool venv (torch CPU or CUDA, transformers, trl, peft, gguf), launched as a
subprocess by ``orbit.training.llm``; it imports nothing from Orbit, so the engine's own venv never
needs torch. One JSON config file in, three files out in ``out_dir``:

* ``model.gguf``: the base GGUF's metadata and tokenizer copied verbatim; every tensor LoRA did not touch
  copied byte for byte (still quantized); the merged weights of the LoRA-trained projections
  (attention v/o and the MLP, which llama.cpp stores unpermuted) written as ``out_type`` (Q8_0 default).
  Written to a temporary name and renamed, so a crash never leaves a half-written model.
* ``adapter/``: the PEFT LoRA adapter (for other servers or for merging elsewhere).
* ``train_stats.json``: steps, loss, trained tokens, wall time and tokens per second.

The loss covers the assistant turns only (TRL ``assistant_only_loss`` with a ChatML template that marks
them); SmolLM2's own template renders the same text, so what is trained is what the server prompts.

Usage: python sft_lora.py config.json
"""

import json
import math
import os
import sys
import time
from pathlib import Path

# llama.cpp GGUF names of the Llama projections whose weights are stored without the q/k rotary permutation
GGUF_NAMES = {
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
DEFAULT_TARGETS = ["v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# ChatML as SmolLM2 renders it, with the assistant turns marked for TRL's assistant-only loss
CHATML_TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

DEFAULTS = {
    "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": DEFAULT_TARGETS,
    "learning_rate": 2e-4, "epochs": 1.0, "max_steps": -1, "batch_size": 4, "grad_accum": 1,
    "max_length": 1024, "seed": 0, "threads": 0, "out_type": "q8_0", "device": "auto",
}


def log(msg: str) -> None:
    print(f"[sft_lora] {msg}", flush=True)


def load_config(path: str) -> dict:
    cfg = {**DEFAULTS, **json.loads(Path(path).read_text(encoding="utf-8"))}
    for key in ("base_gguf", "data", "out_dir"):
        if not cfg.get(key):
            raise SystemExit(f"config needs {key!r}")
    unknown = set(cfg["target_modules"]) - {k.split(".")[1] for k in GGUF_NAMES}
    if unknown:
        raise SystemExit(f"target_modules {sorted(unknown)} cannot be written back to GGUF unpermuted; "
                         f"use some of {DEFAULT_TARGETS}")
    return cfg


def read_conversations(path: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append({"messages": json.loads(line)["messages"]})
    return rows


def train(cfg: dict) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    torch.manual_seed(cfg["seed"])
    use_cpu = cfg["device"] == "cpu" or (cfg["device"] == "auto" and not torch.cuda.is_available())
    base = Path(cfg["base_gguf"])
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(base.parent), gguf_file=base.name)
    model = AutoModelForCausalLM.from_pretrained(str(base.parent), gguf_file=base.name, dtype=torch.float32)
    # the GGUF tensors are dequantized to float32 on load: a plain model, not a quantized one
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.chat_template = CHATML_TRAINING_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    load_s = time.perf_counter() - t0
    log(f"loaded {base.name} in {load_s:.1f}s ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params)")

    rows = read_conversations(cfg["data"])
    if not rows:
        raise SystemExit("no training conversations")
    out_dir = Path(cfg["out_dir"])
    args = SFTConfig(
        output_dir=str(out_dir / "trainer"), per_device_train_batch_size=cfg["batch_size"],
        gradient_accumulation_steps=cfg["grad_accum"], num_train_epochs=cfg["epochs"], max_steps=cfg["max_steps"],
        learning_rate=cfg["learning_rate"], lr_scheduler_type="constant", warmup_steps=0, logging_steps=1,
        save_strategy="no", report_to=[], seed=cfg["seed"], data_seed=cfg["seed"], use_cpu=use_cpu,
        bf16=False, fp16=False, max_length=cfg["max_length"], assistant_only_loss=True, packing=False,
        dataloader_num_workers=0, disable_tqdm=True, gradient_checkpointing=False,
    )
    peft_config = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                             target_modules=list(cfg["target_modules"]), task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=peft_config)
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    t1 = time.perf_counter()
    result = trainer.train()
    train_s = time.perf_counter() - t1
    steps = int(result.global_step)
    seen = [h["num_tokens"] for h in trainer.state.log_history if "num_tokens" in h]
    epochs_seen = float(trainer.state.epoch or 0.0)
    tokens = float(seen[-1]) if seen else sum(lengths) * epochs_seen  # tokens through forward+backward
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    adapter = out_dir / "adapter"
    trainer.model.save_pretrained(str(adapter))
    merged = trainer.model.merge_and_unload()
    state = {k: v.detach().float().cpu().numpy() for k, v in merged.state_dict().items()}
    stats = {
        "examples": len(lengths), "steps": steps, "epochs": round(epochs_seen, 3),
        "tokens_per_example_mean": sum(lengths) / len(lengths), "max_length": cfg["max_length"],
        "tokens": int(tokens), "train_seconds": round(train_s, 2),
        "load_seconds": round(load_s, 2), "tokens_per_s": round(tokens / train_s, 1) if train_s > 0 else None,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "train_loss": float(result.training_loss) if result.training_loss is not None else None,
        "lora_r": cfg["lora_r"], "target_modules": list(cfg["target_modules"]), "device": "cpu" if use_cpu else "cuda",
        "threads": torch.get_num_threads(),
    }
    return {"state": state, "stats": stats}


def write_gguf(base_gguf: str, state: dict, target_modules: list[str], out_path: Path, out_type: str) -> dict:
    """Copy the base GGUF, replacing the LoRA-trained projections with the merged weights."""
    import gguf
    import numpy as np

    qtypes = {"q8_0": gguf.GGMLQuantizationType.Q8_0, "f16": gguf.GGMLQuantizationType.F16,
              "f32": gguf.GGMLQuantizationType.F32}
    if out_type not in qtypes:
        raise SystemExit(f"out_type must be one of {sorted(qtypes)}")
    reader = gguf.GGUFReader(base_gguf)
    arch = reader.fields["general.architecture"].contents()
    if arch != "llama":
        raise SystemExit(f"only llama-architecture GGUFs are supported (got {arch})")
    replace = {}
    for hf_name, value in state.items():
        parts = hf_name.split(".")  # model.layers.<i>.<block>.<proj>.weight
        if len(parts) == 6 and parts[1] == "layers" and parts[4] in target_modules and parts[5] == "weight":
            replace[f"blk.{parts[2]}.{GGUF_NAMES[parts[3] + '.' + parts[4]]}.weight"] = value
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)
    written = 0
    payload = []
    for tensor in reader.tensors:
        new = replace.pop(tensor.name, None)
        if new is None:
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                                   tensor.tensor_type)
            payload.append(tensor.data)
            continue
        expected = tuple(int(x) for x in reversed(tensor.shape.tolist()))
        if new.shape != expected:
            raise SystemExit(f"{tensor.name}: merged shape {new.shape} != GGUF shape {expected}")
        qtype = qtypes[out_type]
        data = gguf.quants.quantize(new.astype(np.float32), qtype) if qtype == gguf.GGMLQuantizationType.Q8_0 \
            else new.astype(np.float16 if qtype == gguf.GGMLQuantizationType.F16 else np.float32)
        writer.add_tensor_info(tensor.name, data.shape, data.dtype, data.nbytes, qtype)
        payload.append(data)
        written += 1
    if replace:
        raise SystemExit(f"merged tensors without a GGUF counterpart: {sorted(replace)[:5]}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in payload:
        writer.write_tensor_data(data)
    writer.close()
    os.replace(tmp, out_path)
    return {"replaced_tensors": written, "copied_tensors": len(reader.tensors) - written, "out_type": out_type,
            "gguf_bytes": out_path.stat().st_size}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    cfg = load_config(argv[1])
    out_dir = Path(cfg["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    result = train(cfg)
    t0 = time.perf_counter()
    written = write_gguf(cfg["base_gguf"], result["state"], list(cfg["target_modules"]), out_dir / "model.gguf",
                         cfg["out_type"])
    stats = {**result["stats"], **written, "export_seconds": round(time.perf_counter() - t0, 2)}
    if stats["loss_last"] is not None and not math.isfinite(stats["loss_last"]):
        raise SystemExit(f"training diverged: loss {stats['loss_last']}")
    tmp = out_dir / ".train_stats.json.tmp"
    tmp.write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "train_stats.json")
    log(json.dumps(stats, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
