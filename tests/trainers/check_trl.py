"""TRL 1.16.0 reads Orbit's TRL exports with its own dataset preparation and trains two steps on CPU.

Usage (in the TRL tool venv): python check_trl.py EXPORTS_DIR MODEL_DIR
"""

import json
import sys
import tempfile
from pathlib import Path

import trl
from datasets import concatenate_datasets, load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.data_utils import is_conversational, maybe_apply_chat_template

assert trl.__version__ == "1.16.0", trl.__version__
# The 2 CPU training steps truncate to this many tokens (truncation never drops a row; the
# preparation of every row is checked in full before).
TRAIN_MAX_LENGTH = 1024


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dataset(folder: Path):
    parts = [load_dataset("json", data_files=str(folder / f"{split}.jsonl"), split="train")
             for split in ("train", "validation") if rows(folder / f"{split}.jsonl")]
    return concatenate_datasets(parts)


def shortest_per_env(ds) -> list[int]:
    """Indices of the shortest row of each env: the 2 training steps see tool use and games, quickly on CPU."""
    best = {}
    for i, (env, n) in enumerate(zip(ds["env"], ds["num_tokens"])):
        if env not in best or n < best[env][1]:
            best[env] = (i, n)
    return sorted(i for i, _ in best.values())


def main(exports: str, model_dir: str, only: str = "") -> None:
    exports = Path(exports)
    tok = AutoTokenizer.from_pretrained(model_dir)
    out = Path(tempfile.mkdtemp(prefix="orbit-trl-"))
    common = dict(max_steps=2, per_device_train_batch_size=1, learning_rate=1e-5, report_to=[], use_cpu=True,
                  save_strategy="no", logging_steps=1, bf16=False, fp16=False,
                  gradient_checkpointing=False)

    # SFT: conversational with tools
    if only and only != "sft":
        return dpo_and_grpo(exports, model_dir, tok, out, common)
    sft = dataset(exports / "sft" / "trl")
    assert is_conversational(sft[0]) and any(r.get("tools") for r in sft)
    assert any(m.get("tool_calls") for r in sft for m in r["messages"]), "no tool use in the SFT export"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = trl.SFTTrainer(model=model, processing_class=tok, train_dataset=sft,
                             args=trl.SFTConfig(output_dir=str(out / "sft"), max_length=TRAIN_MAX_LENGTH, **common))
    assert len(trainer.train_dataset) == len(sft), (len(trainer.train_dataset), len(sft))
    trainer.train_dataset = trainer.train_dataset.select(shortest_per_env(sft))
    result = trainer.train()
    print(f"trl sft: {len(sft)} rows prepared, {result.global_step} steps, loss {result.training_loss:.3f}")

    dpo_and_grpo(exports, model_dir, tok, out, common)


def dpo_and_grpo(exports: Path, model_dir: str, tok, out: Path, common: dict) -> None:
    # DPO: prompt / chosen / rejected (the prompt holds the shared tool-call prefix)
    dpo = dataset(exports / "dpo" / "trl")
    assert set(dpo.column_names) >= {"prompt", "chosen", "rejected"}
    assert any(m.get("tool_calls") for r in dpo for m in r["prompt"] + r["chosen"]), "no tool-call pair"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = trl.DPOTrainer(model=model, processing_class=tok, train_dataset=dpo,
                             args=trl.DPOConfig(output_dir=str(out / "dpo"), max_length=None, **common))
    assert len(trainer.train_dataset) == len(dpo), (len(trainer.train_dataset), len(dpo))
    # TRL's DPO drops pairs longer than max_length, so every pair is prepared untruncated; the two
    # steps then run on the shortest pair
    trainer.train_dataset = trainer.train_dataset.select(shortest_per_env(dpo)[:1])
    result = trainer.train()
    print(f"trl dpo: {len(dpo)} pairs prepared, {result.global_step} steps, loss {result.training_loss:.3f}")

    # GRPO: prompt + task columns, rendered the way GRPOTrainer renders prompts
    grpo = dataset(exports / "grpo" / "trl")
    assert set(grpo.column_names) >= {"prompt", "env", "task_id", "task_spec", "task_history"}
    rendered = [maybe_apply_chat_template({"prompt": r["prompt"]}, tok, tools=json.loads(r["tools"]) if r.get("tools") else None)
                for r in grpo]
    assert len(rendered) == len(grpo) and all(r["prompt"] for r in rendered)
    print(f"trl grpo: {len(grpo)} prompts rendered")


if __name__ == "__main__":
    main(*sys.argv[1:4])
