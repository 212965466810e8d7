"""TRL 1.16.0 runs the TRL script of each export's own card (SFT, DPO, GRPO with Orbit's reward) on a real
round's exports, keeps every exported row, and trains two steps of each on CPU.

The script is read from the card (``README.md`` of the export folder) and run as a user would, in the
export folder, with EXPORT = that folder, MODEL = SmolLM2-135M and DEVICE = the card's CPU settings. Its last line,
``trainer.train()``, is run after this tier checks the rows the trainer prepared (every exported row)
and narrows the two steps to the shortest rows.

Usage (in the TRL tool venv): python check_trl.py LAKE MODEL_DIR
"""

import os
import re
import sys
from pathlib import Path

import trl

assert trl.__version__ == "1.16.0", trl.__version__
ROUND = "r0000"
STEP_ROWS = 2


def card_script(folder: Path) -> tuple[str, str]:
    """(the card's TRL script, the card's CPU DEVICE expression)."""
    card = (folder / "README.md").read_text()
    script = re.search(r"```python\n(.*?)\n```", card, re.S).group(1)
    device = re.search(r"DEVICE: CPU `([^`]*)`", card).group(1)
    return script, device


def exported(folder: Path) -> dict[str, int]:
    return {split: sum(1 for line in (folder / "trl" / f"{split}.jsonl").read_text().splitlines() if line.strip())
            for split in ("train", "validation")}


def run(kind: str, lake: Path, model_dir: str, only_env: str | None = None) -> None:
    folder = lake / f"{kind}_export" / ROUND
    script, device = card_script(folder)
    body, last = script.rsplit("\n", 1)
    assert last == "trainer.train()", last
    want = exported(folder)
    # the card's CPU settings, plus this tier's short run (settings the card's script leaves at TRL's defaults)
    short = dict(max_steps=2, logging_steps=1, save_strategy="no", report_to=[],
                 per_device_train_batch_size=2 if kind == "grpo" else 1)
    if kind == "grpo":
        short.update(num_generations=2, max_completion_length=24)
    scope = {"EXPORT": str(folder), "MODEL": model_dir, "DEVICE": {**eval(device, {}), **short}}  # noqa: S307
    cwd = os.getcwd()
    os.chdir(folder)  # where a user runs it (the trainers write their output_dir here)
    try:
        exec(compile(body, f"{folder}/README.md#python", "exec"), scope)  # noqa: S102 (the card's script)
        trainer = scope["trainer"]
        train, evaluation = trainer.train_dataset, trainer.eval_dataset
        assert len(train) == want["train"], f"{kind}: TRL prepared {len(train)} of {want['train']} train rows"
        if kind != "grpo":
            assert (len(evaluation) if evaluation is not None else 0) == want["validation"], \
                f"{kind}: TRL prepared {evaluation} for {want['validation']} validation rows"
        lengths = [len(r["input_ids"]) if "input_ids" in r else
                   len(r.get("prompt_input_ids") or []) + len(r.get("chosen_input_ids") or []) or r.get("num_tokens", 0)
                   for r in train]
        rows = range(len(train))
        if only_env is not None:
            rows = [i for i, env in enumerate(train["env"]) if env == only_env]
            assert len(rows) >= STEP_ROWS, f"{only_env}: {len(rows)} rows in the GRPO train split"
        shortest = sorted(rows, key=lambda i: (lengths[i], i))[:STEP_ROWS]
        trainer.train_dataset = train.select(shortest)
        result = trainer.train()
    finally:
        os.chdir(cwd)
    history = trainer.state.log_history
    assert result.global_step == 2, result
    if kind == "grpo":  # the reward ran on every step
        means = [h[k] for h in history for k in h if k.startswith("rewards/reward_func") and k.endswith("/mean")]
        assert len(means) == 2 and all(0.0 <= m <= 1.0 for m in means), history
        if only_env is not None:  # the reward scored these rows with the env's own verifier
            from orbit import rewards

            reasons = {r.split(":", 1)[0] for rs in rewards.LAST_REASONS for r in rs}
            assert rewards.LAST_REASONS and all(not r.startswith("reward.") for r in reasons), rewards.LAST_REASONS
            print(f"trl grpo on {only_env}: the reward's reasons {sorted(reasons) or ['(passed)']}")
    print(f"trl {kind}: prepared {len(train)} train rows (exported {want['train']}), trained 2 steps on rows of "
          f"{[lengths[i] for i in shortest]} tokens, loss {result.training_loss:.3f}")


def main(lake: str, model_dir: str, only: str = "") -> None:
    for kind in ("sft", "dpo", "grpo"):
        if not only or only == kind:
            run(kind, Path(lake), model_dir)
    if not only or only == "grpo":
        run("grpo", Path(lake), model_dir, only_env="leg_counting")  # the reward on a reasoning-gym env


if __name__ == "__main__":
    main(*sys.argv[1:4])
