"""The real-LLM trainer of the flywheel: SFT rows in, a served checkpoint with its manifest out.

One round of training (``train_llm_checkpoint``):

1. **prepare**: the round's SFT export rows (the TRL flavour's train split, ``sft_export/<r>/trl/train.jsonl``,
   read by ``orbit.stages.export.read_export``; the validation split stays held out) are filtered to the game
   envs asked for (plain system/user/assistant chats); every row is counted as used or skipped with a
   reason; at most ``max_examples`` are kept, chosen by a hash of the row (deterministic).
2. **train**: ``sft_lora.py`` runs in the training tool venv (``$ORBIT_TRAIN_PYTHON`` or
   ``<repo>/.tools/train/trl/bin/python``; ``make flywheel-llm`` builds it) as a subprocess: LoRA SFT with TRL
   from the parent checkpoint's GGUF, merged and written back as ``model.gguf``.
3. **serve**: ``python -m llama_cpp.server`` (``orbit.policies.llama_server``) on 127.0.0.1 in its own
   process group, left running for the next round; recorded in ``<checkpoints>/.servers/<round>.json``.
   The server of the round just trained on is stopped (its sampling is over).
4. **manifest**: ``orbit_checkpoint.json`` naming ``openai:http://127.0.0.1:<port>/v1#<alias>``, written
   last, so the checkpoint sensor (or ``orbit flywheel``) starts the next round with it.

Sizes are settings (``LLMTrainSettings``): the same code trains on a GPU machine with more examples,
longer sequences and more steps.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from orbit.io import lake
from orbit.policies.answers import BARE_ID_RE
from orbit.stages.export import read_export
from orbit.flywheel.checkpoints import MANIFEST, Checkpoint, next_version, read_checkpoint, write_manifest
from orbit.io.keys import round_index, round_key, validate_round

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_PYTHON_ENV = "ORBIT_TRAIN_PYTHON"
BASE_GGUF_ENV = "ORBIT_BASE_GGUF"
DEFAULT_TRAIN_PYTHON = REPO_ROOT / ".tools" / "train" / "trl" / "bin" / "python"
DEFAULT_BASE_GGUF = REPO_ROOT / ".tools" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SCRIPT = Path(__file__).with_name("sft_lora.py")
GGUF_NAME = "model.gguf"
SERVERS_DIR = ".servers"
GAME_PREFIX = "You are playing "


class TrainingFailed(RuntimeError):
    """The trainer subprocess failed; the message carries the tail of its log."""


@dataclass
class LLMTrainSettings:
    """How the LLM trainer is sized. Defaults fit minutes per round on a 2-core CPU."""

    alias: str = "smollm2"
    base_gguf: str = ""
    """The GGUF round r0000 samples and the first training starts from ($ORBIT_BASE_GGUF, else .tools/models)."""
    train_python: str = ""
    envs: tuple[str, ...] = ("tic_tac_toe", "kuhn_poker", "connect_four", "leduc_poker")
    max_examples: int = 16
    max_length: int = 768
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 4
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 32
    out_type: str = "q8_0"
    answer_key: str = "move"
    """Bare-ID game answers (self-play rows) are trained as {"<answer_key>": "<ID>"}, the shape constrained
    decoding makes the served model write; empty: train them as they are."""
    threads: int = 0
    seed: int = 0
    n_ctx: int = 2048
    timeout_s: float = 3600.0
    rows: str = "sft_export"
    """What is trained: ``sft_export`` (the round's SFT export, game envs) or ``verified`` (the cumulative verified
    policy rows of every round <= r: rejection-sampling fine-tuning on the policy's own survivors)."""
    teacher_rows: bool = False
    """``verified``: also train on the envs' teacher rows (oracle answers; counted apart either way). Off by
    default: a reasoning-gym round has a teacher row for every task, which would swamp the policy's own few
    survivors and make the run plain SFT on the oracle instead of the flywheel."""
    heldout_items: int = 0
    """``verified``: rows asking a question of the first ``heldout_items`` held-out items of their env
    (``orbit.flywheel.heldout``) are skipped (``skipped.heldout_question``), so the held-out p is never trained on."""
    extra: dict = field(default_factory=dict)

    def resolved_base(self) -> Path:
        path = Path(self.base_gguf or os.environ.get(BASE_GGUF_ENV) or DEFAULT_BASE_GGUF)
        if not path.is_file():
            raise FileNotFoundError(f"no base GGUF at {path}: run `make flywheel-llm` (it places the model) "
                                    f"or set ${BASE_GGUF_ENV}")
        return path

    def resolved_python(self) -> Path:
        path = Path(self.train_python or os.environ.get(TRAIN_PYTHON_ENV) or DEFAULT_TRAIN_PYTHON)
        if not path.exists():
            raise FileNotFoundError(f"no training Python at {path}: run `make flywheel-llm` (it builds "
                                    f".tools/train/trl) or set ${TRAIN_PYTHON_ENV}")
        return path


def checkpoint_name(alias: str, round_: str) -> str:
    return f"{alias}-{validate_round(round_)}"


def _env_of(messages: list[dict], envs: Iterable[str]) -> str | None:
    system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
    for env in envs:
        if system.startswith(f"{GAME_PREFIX}{env.replace('_', ' ')} "):
            return env
    return None


def _as_answer(content: str, answer_key: str) -> str:
    return json.dumps({answer_key: content.strip().rstrip(".").strip()}) if BARE_ID_RE.match(content) else content


def prepare_examples(rows: Iterable[Mapping[str, Any]], envs: Iterable[str], max_examples: int,
                     seed: int = 0, answer_key: str = "") -> tuple[list[dict], dict]:
    """Plain chats of the wanted game envs, at most ``max_examples`` (hash order); counts with reasons.

    With ``answer_key``, bare-ID assistant answers become ``{"<answer_key>": "<ID>"}`` (constrained shape)."""
    envs = tuple(envs)
    counts: dict[str, int] = {"rows": 0, "used": 0}
    candidates = []

    def skip(reason: str) -> None:
        counts[f"skipped.{reason}"] = counts.get(f"skipped.{reason}", 0) + 1

    for row in rows:
        counts["rows"] += 1
        messages = row.get("messages") if isinstance(row, Mapping) else None
        if not isinstance(messages, list) or not messages:
            skip("no_messages")
            continue
        if any(not isinstance(m, Mapping) or m.get("role") not in ("system", "user", "assistant")
               or not isinstance(m.get("content"), str) or m.get("tool_calls") for m in messages):
            skip("not_plain_chat")  # tool calls (LiveWeb) are not trained by this trainer
            continue
        if not any(m["role"] == "assistant" for m in messages):
            skip("no_assistant_turn")
            continue
        env = row.get("env") if isinstance(row.get("env"), str) else _env_of(messages, envs)
        if env not in envs:
            skip("other_env")
            continue
        chat = [{"role": m["role"], "content": _as_answer(m["content"], answer_key)
                 if answer_key and m["role"] == "assistant" else m["content"]} for m in messages]
        key = hashlib.sha256(json.dumps([seed, chat], sort_keys=True).encode()).hexdigest()
        candidates.append((key, env, chat))
    candidates.sort()
    for i, (_, env, chat) in enumerate(candidates):
        if i >= max_examples:
            skip("over_max_examples")
            continue
        counts["used"] += 1
        counts[f"used.{env}"] = counts.get(f"used.{env}", 0) + 1
    return [{"messages": chat} for _, _, chat in candidates[:max_examples]], counts


def _chat(messages: Any) -> list[dict] | None:
    if not isinstance(messages, list) or not messages:
        return None
    chat = []
    for m in messages:
        if not isinstance(m, Mapping) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str) or m.get("tool_calls"):
            return None
        chat.append({"role": m["role"], "content": m["content"]})
    return chat


def read_verified(lake_root: Path | str, round_: str) -> list[dict]:
    """Every verified row of rounds <= ``round_`` (env, round, task_id, source, passed, messages)."""
    import duckdb

    files = lake.asset_glob(lake_root, "verified_samples", 2)
    if not lake.glob_files(files):
        return []
    con = lake.duckdb_lake(duckdb.connect(config={"threads": 1}), files)
    try:
        return con.sql(f"SELECT env, round, task_id, source, passed, messages FROM read_parquet("
                       f"{lake.sql_literal(files)}, hive_partitioning = false) WHERE round <= "
                       f"{lake.sql_literal(validate_round(round_))} ORDER BY round, env, task_id, record_id"
                       ).to_arrow_table().to_pylist()
    finally:
        con.close()


def prepare_verified(rows: Iterable[Mapping[str, Any]], envs: Iterable[str], max_examples: int, seed: int = 0,
                     teacher_rows: bool = False, heldout: Mapping[str, set[str]] | None = None
                     ) -> tuple[list[dict], dict]:
    """The cumulative clean set: passed policy rows (and teacher rows if asked) of the envs, one per distinct
    conversation, none asking a held-out question, at most ``max_examples`` (hash order). Every row is counted:
    ``used.<env>`` or ``skipped.<reason>`` (they add up to ``rows``); besides, ``trained.round.<r>`` and
    ``trained.source.<s>`` split the used rows, ``teacher.passed`` counts the teacher rows that passed."""
    envs = tuple(envs)
    heldout = heldout or {}
    counts: dict[str, int] = {"rows": 0, "used": 0}
    seen: set[str] = set()
    candidates = []

    def bump(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    for row in rows:
        counts["rows"] += 1
        env = row.get("env")
        if env not in envs:
            bump("skipped.other_env")
            continue
        source = row.get("source")
        if source not in ("policy", "teacher"):
            bump(f"skipped.source_{source}")  # self-play bots and other sources are not the policy's survivors
            continue
        if not row.get("passed"):
            bump(f"skipped.failed_verification.{source}")
            continue
        if source == "teacher":
            bump("teacher.passed")
            if not teacher_rows:
                bump("skipped.teacher_off")
                continue
        chat = _chat(row.get("messages"))
        if chat is None or not any(m["role"] == "assistant" for m in chat):
            bump("skipped.not_plain_chat")
            continue
        if any(m["role"] == "user" and m["content"] in heldout.get(env, ()) for m in chat):
            bump("skipped.heldout_question")
            continue
        text = json.dumps(chat, sort_keys=True, ensure_ascii=False)
        if text in seen:
            bump("skipped.duplicate")  # best-of-K often repeats the same right answer
            continue
        seen.add(text)
        key = hashlib.sha256(json.dumps([seed, chat], sort_keys=True).encode()).hexdigest()
        candidates.append((key, env, str(row.get("round")), source, chat))
    candidates.sort()
    for i, (_, env, r, source, _) in enumerate(candidates):
        if i >= max_examples:
            bump("skipped.over_max_examples")
            continue
        counts["used"] += 1
        for key in (f"used.{env}", f"trained.round.{r}", f"trained.source.{source}"):
            bump(key)
    return [{"messages": chat} for *_, chat in candidates[:max_examples]], counts


def run_trainer(examples: list[dict], parent_gguf: Path, out_dir: Path, settings: LLMTrainSettings) -> dict:
    """Run sft_lora.py in the training venv; returns its train_stats.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "train.jsonl"
    lake.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples), data)
    config = {
        "base_gguf": str(parent_gguf), "data": str(data), "out_dir": str(out_dir), "max_length": settings.max_length,
        "epochs": settings.epochs, "max_steps": settings.max_steps, "batch_size": settings.batch_size,
        "learning_rate": settings.learning_rate, "lora_r": settings.lora_r, "lora_alpha": settings.lora_alpha,
        "out_type": settings.out_type, "threads": settings.threads, "seed": settings.seed, **settings.extra,
    }
    config_path = lake.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n", out_dir / "train_config.json")
    log_path = out_dir / "train.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "HF_ENDPOINT": "http://127.0.0.1:9", "MODELSCOPE_ENDPOINT": "http://127.0.0.1:9",
                "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true", "DO_NOT_TRACK": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"})
    with open(log_path, "wb") as log:
        proc = subprocess.run([str(settings.resolved_python()), str(SCRIPT), str(config_path)], stdin=subprocess.DEVNULL,
                              stdout=log, stderr=subprocess.STDOUT, env=env, timeout=settings.timeout_s,
                              start_new_session=True)
    if proc.returncode != 0 or not (out_dir / "train_stats.json").is_file() or not (out_dir / GGUF_NAME).is_file():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise TrainingFailed(f"trainer exited with {proc.returncode} (log {log_path}):\n{tail}")
    return json.loads((out_dir / "train_stats.json").read_text(encoding="utf-8"))


# --- serving -----------------------------------------------------------------------------------------------


def _server_record(checkpoints: Path, round_: str) -> Path:
    return Path(checkpoints) / SERVERS_DIR / f"{validate_round(round_)}.json"


def serve_gguf(gguf: Path, checkpoints: Path, round_: str, alias: str, settings: LLMTrainSettings,
               log_dir: Path | None = None, port: int = 0) -> dict:
    """Start a llama.cpp server for the GGUF the round samples from; it keeps running after this returns.

    ``port``: 0 picks a free one; a resumed run passes the port its round was registered with."""
    from orbit.policies.llama_server import start_llama_server

    log_dir = Path(log_dir or gguf.parent)
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    server = start_llama_server(gguf, alias=alias, n_ctx=settings.n_ctx, n_threads=settings.threads or None,
                                log_path=log_dir / f"server-{round_}.log", port=port)
    record = {"round": round_, "pid": server.process.pid, "url": server.url, "alias": alias, "gguf": str(gguf),
              "policy": server.policy_uri, "log": str(server.log_path),
              "ready_seconds": round(time.perf_counter() - t0, 2)}
    server._log_file.close()  # the child keeps its own descriptor; the server outlives this process
    server._log_file = None
    lake.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", _server_record(checkpoints, round_))
    return record


def _is_our_server(pid: int, gguf: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"llama_cpp.server" in cmdline and gguf.encode() in cmdline


def stop_server(checkpoints: Path, round_: str, grace_s: float = 10.0) -> bool:
    """Stop the server recorded for a round (only if that pid is still the llama.cpp server of that GGUF)."""
    path = _server_record(checkpoints, round_)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    pid = int(record.get("pid", 0))
    stopped = False
    if pid > 0 and _is_our_server(pid, record.get("gguf", "")):
        try:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and _is_our_server(pid, record.get("gguf", "")):
                time.sleep(0.2)
            if _is_our_server(pid, record.get("gguf", "")):
                os.killpg(pid, signal.SIGKILL)
            stopped = True
        except ProcessLookupError:
            pass
    path.unlink(missing_ok=True)
    return stopped


def stop_all_servers(checkpoints: Path) -> list[str]:
    folder = Path(checkpoints) / SERVERS_DIR
    stopped = []
    for record in sorted(folder.glob("r*.json")) if folder.is_dir() else []:
        if stop_server(checkpoints, record.stem):
            stopped.append(record.stem)
    return stopped


def serve_base(checkpoints: Path, settings: LLMTrainSettings, round_: str = "r0000") -> dict:
    """Serve the untrained base model for the first round."""
    base = settings.resolved_base()
    log_dir = Path(checkpoints) / SERVERS_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    return serve_gguf(base, Path(checkpoints), round_, f"{settings.alias}-base", settings, log_dir=log_dir)


def parent_gguf(checkpoints: Path, round_: str, settings: LLMTrainSettings) -> Path:
    """The GGUF the round sampled from (its server record), else the base model."""
    try:
        record = json.loads(_server_record(checkpoints, round_).read_text(encoding="utf-8"))
        if Path(record["gguf"]).is_file():
            return Path(record["gguf"])
    except (OSError, ValueError, KeyError):
        pass
    previous = Path(checkpoints) / checkpoint_name(settings.alias, round_) / GGUF_NAME
    return previous if previous.is_file() else settings.resolved_base()


def train_llm_checkpoint(lake_root: Path | str, checkpoints: Path | str, round_: str,
                         settings: LLMTrainSettings | None = None, log=print) -> tuple[Checkpoint, dict]:
    """Train on round ``round_``'s SFT rows, serve the result for the next round, write its manifest."""
    settings = settings or LLMTrainSettings()
    r = validate_round(round_)
    checkpoints = Path(checkpoints)
    nxt = round_key(round_index(r) + 1)
    out_dir = checkpoints / checkpoint_name(settings.alias, nxt)
    if (out_dir / MANIFEST).exists():
        # a finished checkpoint (a round may have sampled from it) is never rewritten: training again for this
        # round (a re-materialization upstream) writes the next version, <name>.v2, ...
        out_dir = next_version(checkpoints, out_dir.name)
    name = out_dir.name
    if settings.rows == "verified":
        sft = lake.partition_dir(lake_root, "verified_samples", r).parent
        heldout = None
        if settings.heldout_items:
            from orbit.flywheel.heldout import heldout_prompts

            heldout = heldout_prompts(settings.envs, settings.heldout_items)
        examples, counts = prepare_verified(read_verified(lake_root, r), settings.envs, settings.max_examples,
                                            settings.seed, settings.teacher_rows, heldout)
        what = "verified rows of rounds <= " + r
    elif settings.rows == "sft_export":
        sft = lake.partition_dir(lake_root, "sft_export", r)
        rows = read_export(sft, "trl", ("train",))  # the validation split stays held out
        examples, counts = prepare_examples(rows, settings.envs, settings.max_examples, settings.seed,
                                            settings.answer_key)
        what = f"SFT conversations of {r}"
    else:
        raise ValueError(f"rows must be 'verified' or 'sft_export', got {settings.rows!r}")
    lake.write_text(json.dumps(counts, indent=1, sort_keys=True) + "\n", out_dir / "examples_counts.json")
    if not examples:
        raise TrainingFailed(f"round {r}: no rows of {', '.join(settings.envs)} to train on ({counts}; {sft})")
    parent = parent_gguf(checkpoints, r, settings)
    log(f"{name}: training on {len(examples)} {what} from {parent.name}")
    t0 = time.perf_counter()
    stats = run_trainer(examples, parent, out_dir, settings)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    server = serve_gguf(out_dir / GGUF_NAME, checkpoints, nxt, name, settings)
    serve_s = time.perf_counter() - t1
    stop_server(checkpoints, r)  # round r has been sampled: its server is no longer needed
    timing = {"train_wall_seconds": round(train_s, 2), "serve_wall_seconds": round(serve_s, 2)}
    write_manifest(out_dir, server["policy"], parent_round=r,
                   note=f"LoRA SFT of {parent.name} on {len(examples)} {what}",
                   extra={"trainer": "trl-sft-lora", "gguf": str(out_dir / GGUF_NAME), "parent_gguf": str(parent),
                          "examples": counts, "train": stats, "server_pid": server["pid"], **timing,
                          "settings": {k: v for k, v in asdict(settings).items() if k != "extra"}})
    return read_checkpoint(out_dir), {"counts": counts, "train": stats, "server": server, **timing}


def main(argv: list[str] | None = None) -> int:  # python -m orbit.training.llm LAKE CHECKPOINTS ROUND
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 3:
        print("usage: python -m orbit.training.llm LAKE CHECKPOINTS ROUND", file=sys.stderr)
        return 2
    checkpoint, info = train_llm_checkpoint(argv[0], argv[1], argv[2])
    print(json.dumps({"checkpoint": str(checkpoint.path), "policy": checkpoint.policy, **info}, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
