"""ms-swift 4.6.0 reads Orbit's ms-swift exports with its own loader (strict preprocessing) and
template encoder, drops nothing, and trains two steps of SFT and DPO (LoRA, CPU).

Usage (in the ms-swift tool venv): python check_swift.py EXPORTS_DIR MODEL_DIR
"""

import json
import sys
import tempfile
from pathlib import Path

import swift
from swift.dataset import EncodePreprocessor, load_dataset
from swift.model import get_model_processor
from swift.template import get_template

assert swift.__version__ == "4.6.0", swift.__version__
TEMPLATE = "chatml"  # SmolLM2's chat format
AGENT_TEMPLATE = "hermes"  # how tool calls are rendered: <tool_call>{"name", "arguments"}</tool_call>


def files(folder: Path) -> list[str]:
    return [str(folder / f"{s}.jsonl") for s in ("train", "validation")
            if (folder / f"{s}.jsonl").read_text().strip()]


def n_rows(paths: list[str]) -> int:
    return sum(len(Path(p).read_text().splitlines()) for p in paths)


def check_load_and_encode(kind: str, exports: Path, processor, mode: str) -> list[str]:
    paths = files(exports / kind / "swift")
    train, _ = load_dataset(paths, strict=True, load_from_cache_file=False)
    assert len(train) == n_rows(paths), f"{kind}: ms-swift dropped rows ({len(train)} of {n_rows(paths)})"
    if kind == "sft":
        roles = {m["role"] for row in train for m in row["messages"]}
        # ms-swift turns assistant tool_calls into tool_call messages; 'tool' and 'tool_response' are one role
        assert "tool_call" in roles and roles & {"tool", "tool_response"}, f"no tool use reached ms-swift: {roles}"
    template = get_template(processor, template_type=TEMPLATE, max_length=1 << 20, agent_template=AGENT_TEMPLATE)
    template.set_mode(mode)
    if kind == "dpo":
        template.set_mode("rlhf")
    encoded = EncodePreprocessor(template)(train, strict=True, load_from_cache_file=False)
    assert len(encoded) == len(train), f"{kind}: encoding dropped rows ({len(encoded)} of {len(train)})"
    if "length" in encoded.column_names:
        estimated = [json.loads(line)["num_tokens"] for p in paths for line in Path(p).read_text().splitlines()]
        ratio = max(e / n for e, n in zip(encoded["length"], estimated))
        print(f"ms-swift {kind}: longest encoded row {max(encoded['length'])} tokens; "
              f"encoded/num_tokens at most {ratio:.2f}")
    print(f"ms-swift {kind}: {len(train)} rows loaded (strict) and encoded")
    return paths


def shortest_per_env(paths: list[str], out: Path) -> str:
    """A file with the shortest row of each env: the 2 training steps see tool use, quickly on CPU."""
    best = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            row = json.loads(line)
            if row["env"] not in best or row["num_tokens"] < best[row["env"]]["num_tokens"]:
                best[row["env"]] = row
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(best[env]) + "\n" for env in sorted(best)))
    return str(out)


def train(kind: str, paths: list[str], model_dir: str, out: Path) -> None:
    paths = [shortest_per_env(paths, out / f"{kind}-train.jsonl")]
    common = ["--model", model_dir, "--model_type", "llama", "--template", TEMPLATE, "--agent_template", AGENT_TEMPLATE,
              "--tuner_type", "lora",
              "--dataset", *paths, "--max_steps", "2", "--per_device_train_batch_size", "1",
              "--save_strategy", "no", "--report_to", "none", "--output_dir", str(out / kind),
              "--dataset_num_proc", "1", "--strict", "true", "--split_dataset_ratio", "0",
              "--torch_dtype", "float32", "--logging_steps", "1", "--eval_strategy", "no",
              # two CPU steps: truncate (keeping the end, the trained turns) rather than wait
              "--max_length", "1024", "--truncation_strategy", "left", "--gradient_checkpointing", "false"]
    if kind == "sft":
        from swift.pipelines.train.sft import sft_main

        result = sft_main(common)
    else:
        from swift.pipelines.train.rlhf import rlhf_main

        result = rlhf_main(["--rlhf_type", "dpo", *common])
    print(f"ms-swift {kind}: trained 2 steps ({json.dumps(result.get('last_model_checkpoint') if isinstance(result, dict) else None)})")


def main(exports: str, model_dir: str) -> None:
    exports = Path(exports)
    _, processor = get_model_processor(model_dir, load_model=False, model_type="llama")
    paths = {kind: check_load_and_encode(kind, exports, processor, "train") for kind in ("sft", "dpo")}
    grpo_paths = files(exports / "grpo" / "swift")
    grpo, _ = load_dataset(grpo_paths, strict=True, load_from_cache_file=False, remove_unused_columns=False)
    assert len(grpo) == n_rows(grpo_paths)
    assert {"env", "task_id", "task_spec", "task_history"} <= set(grpo.column_names), grpo.column_names
    print(f"ms-swift grpo: {len(grpo)} prompts loaded with the reward columns")
    out = Path(tempfile.mkdtemp(prefix="orbit-swift-"))
    for kind in ("sft", "dpo"):
        train(kind, paths[kind], model_dir, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
