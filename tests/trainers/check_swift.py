"""ms-swift 4.6.0 runs the ms-swift command of each export's own card (SFT, DPO, GRPO with Orbit's reward) on
a real round's exports, keeps every exported row, and trains two steps of each on CPU.

The command is read from the card (``README.md`` of the export folder), as a user would copy it, with
MODEL replaced by SmolLM2-135M (plus the ``--model_type``/``--template`` a local folder needs) and the
card's CPU flags appended. What this tier adds is only to make it short and observable:
``--max_steps 2`` and friends, and a subclass of ms-swift's own pipeline that records how many rows it
loaded and encoded (the rows kept) before the two steps run on the shortest rows.

Usage (in the ms-swift tool venv, from the repository's root): python check_swift.py LAKE MODEL_DIR
"""

import json
import re
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import swift
from swift.pipelines.train.rlhf import SwiftRLHF
from swift.pipelines.train.sft import SwiftSft

assert swift.__version__ == "4.6.0", swift.__version__
ROUND = "r0000"
MODEL_ARGS = ["--model_type", "llama", "--template", "chatml"]  # SmolLM2's chat format, from a local folder
TIER_ARGS = ["--max_steps", "2", "--per_device_train_batch_size", "2", "--save_strategy", "no",
             "--report_to", "none", "--logging_steps", "1", "--eval_strategy", "no", "--dataset_num_proc", "1",
             "--gradient_checkpointing", "false", "--load_from_cache_file", "false"]
GRPO_TIER_ARGS = ["--num_generations", "2", "--max_completion_length", "24", "--temperature", "1.0"]
GRPO_ENV = "leg_counting"  # a second GRPO run steps on this reasoning-gym env's rows only
STEP_ROWS = 2  # the two steps run on the shortest rows (ms-swift still loaded and encoded every row)


def shell_words(command: str, cwd: Path) -> list[str]:
    """``command`` split into argv by bash itself (quotes, ``$(...)``), as a user's shell runs it."""
    out = subprocess.run(["bash", "-c", f"printf '%s\\0' {command}"], cwd=cwd, capture_output=True, text=True,
                         check=True).stdout
    return out.split("\0")[:-1]


def card_command(folder: Path) -> tuple[list[str], list[str]]:
    """(the card's ms-swift command as argv, the card's CPU flags), read from the export's card."""
    card = (folder / "README.md").read_text()
    command = re.search(r"```bash\n(swift [^\n]+)\n```", card).group(1)
    cpu = re.search(r"flags: CPU `([^`]*)`", card).group(1)
    return shell_words(command, folder), shlex.split(cpu)


def exported(folder: Path) -> dict[str, int]:
    return {split: sum(1 for line in (folder / "swift" / f"{split}.jsonl").read_text().splitlines() if line.strip())
            for split in ("train", "validation")}


def observing(base, only_env: str | None = None):
    """ms-swift's own pipeline, recording the rows it loaded and kept before the two short steps (on the
    shortest rows, or the shortest rows of ``only_env``)."""

    class Observed(base):
        seen: dict = {}

        def _encode_dataset(self, train_dataset, val_dataset, pre_process=True):
            type(self).seen["loaded"] = [0 if d is None else len(d) for d in (train_dataset, val_dataset)]
            train, val = super()._encode_dataset(train_dataset, val_dataset, pre_process=pre_process)
            type(self).seen["kept"] = [0 if d is None else len(d) for d in (train, val)]
            column = "lengths" if "lengths" in train.column_names else "num_tokens"
            lengths = [max(n) if isinstance(n, list) else n for n in train[column]]
            rows = range(len(train))
            if only_env is not None:
                assert "env" in train.column_names, train.column_names
                rows = [i for i, env in enumerate(train["env"]) if env == only_env]
                assert len(rows) >= STEP_ROWS, f"{only_env}: {len(rows)} rows in the GRPO train split"
            shortest = sorted(rows, key=lambda i: (lengths[i], i))[:STEP_ROWS]
            type(self).seen["step_rows"] = [lengths[i] for i in shortest]
            return train.select(shortest), None

    return Observed


def exported_envs(folder: Path) -> set[str]:
    return {json.loads(line).get("env") for split in ("train", "validation")
            for line in (folder / "swift" / f"{split}.jsonl").read_text().splitlines() if line.strip()}


def run(kind: str, lake: Path, model_dir: str, out: Path, only_env: str | None = None) -> None:
    folder = lake / f"{kind}_export" / ROUND
    argv, cpu = card_command(folder)
    assert argv[0] == "swift" and argv[argv.index("--model") + 1] == "MODEL", argv
    argv[argv.index("--model") + 1] = model_dir
    argv = argv[:argv.index("--model") + 2] + MODEL_ARGS + argv[argv.index("--model") + 2:]
    args = argv[2:] + cpu + TIER_ARGS + ["--output_dir", str(out / (kind + (only_env or "")))]
    if kind == "grpo":
        args = [a for a in args] + GRPO_TIER_ARGS
        # the card's last --max_completion_length counts: the tier's short one comes last
    want = exported(folder)
    print(f"ms-swift {kind}: {' '.join(argv[:2])} ... ({want['train']} train, {want['validation']} validation rows)")
    pipeline_cls = observing(SwiftSft if argv[1] == "sft" else SwiftRLHF, only_env)
    cwd = os.getcwd()
    os.chdir(folder)  # the card's paths are relative to the export folder, where a user runs it
    try:
        result = pipeline_cls(args).main()
    finally:
        os.chdir(cwd)
    seen = pipeline_cls.seen
    rows = [want["train"], want["validation"] if "--val_dataset" in argv else 0]
    assert seen["loaded"] == rows, f"{kind}: ms-swift loaded {seen['loaded']} of the exported {rows} rows"
    assert seen["kept"] == rows, f"{kind}: ms-swift kept {seen['kept']} of the exported {rows} rows (encoding dropped some)"
    history = result.get("log_history") if isinstance(result, dict) else None
    assert history and [h.get("step") for h in history if "loss" in h] == [1, 2], f"{kind}: not 2 steps: {history}"
    if kind == "grpo":  # the reward ran: ms-swift logs each reward function's mean per step
        means = [h["rewards/OrbitVerifierORM/mean"] for h in history if "rewards/OrbitVerifierORM/mean" in h]
        assert len(means) == 2 and all(0.0 <= m <= 1.0 for m in means), history
        if only_env is not None:  # the reward scored these rows with the env's own verifier
            from swift.rewards import orms  # the plugin module ms-swift loaded from the card's path

            last = orms["orbit_verifier"].__call__.__globals__["LAST_REASONS"]
            reasons = {r.split(":", 1)[0] for rs in last for r in rs}
            assert last and all(not r.startswith("reward.") for r in reasons), last
            print(f"ms-swift grpo on {only_env}: the reward's reasons {sorted(reasons) or ['(passed)']}")
    print(f"ms-swift {kind}: loaded {seen['loaded']}, kept {seen['kept']} of {rows}; trained 2 steps on rows of "
          f"{seen['step_rows']} tokens ({json.dumps(history)[:300] if history else 'ok'})")


def main(lake: str, model_dir: str, only: str = "") -> None:
    lake = Path(lake)
    out = Path(tempfile.mkdtemp(prefix="orbit-swift-"))
    sft_envs = exported_envs(lake / "sft_export" / ROUND)
    assert {"leg_counting", "tictactoe_ta", "math_sample", "code_sample"} <= sft_envs, sft_envs  # these envs' rows are in the exports
    for kind in ("sft", "dpo", "grpo"):
        if not only or only == kind:
            run(kind, lake, model_dir, out)
    if not only or only == "grpo":
        run("grpo", lake, model_dir, out, only_env=GRPO_ENV)


if __name__ == "__main__":
    main(*sys.argv[1:4])
