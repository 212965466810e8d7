"""Training-set exports that ms-swift 4.x and TRL train on without conversion.

Checked against the trainer contract ``TRAINER_CONTRACT`` (ms-swift 4.6.0, TRL 1.16.0; ``make
test-trainers`` loads every export with their own loaders and trains two steps). Messages keep the
OpenAI chat shape, which both read natively: an assistant turn carries ``tool_calls``
(``[{"id", "type": "function", "function": {"name", "arguments": "<JSON>"}}]``), a tool result is
``{"role": "tool", "content", "tool_call_id", "name"}``; ``tools`` is the JSON string of the
OpenAI function schemas (both trainers parse it; a string keeps Arrow from padding schemas with
nulls).

Every export folder has two flavours, ``swift/`` and ``trl/``, each ``train.jsonl`` +
``validation.jsonl``:

- SFT (both flavours): ``{"messages", "tools"?}``: the whole episode; a closing tool message (the
  reply to LiveWeb's ``stop`` call) is cut, so the last trained turn is the assistant's ``stop`` call.
- DPO: a passed and a failed sample of one task, cut at the first assistant turn where they
  differ. ms-swift: ``{"messages": [... chosen turn], "rejected_response": [messages]}`` where
  ``rejected_response`` is everything the failed sample says after the last user message (ms-swift
  rebuilds the rejected side as ``messages[:last user + 1] + rejected_response``, so the shared
  tool-call prefix is repeated there). TRL: ``{"prompt": [shared prefix], "chosen": [turn],
  "rejected": [turn]}``.
- GRPO: the prompt plus ``env``, ``task_id``, ``task_spec`` and ``task_history`` for the reward
  function (``orbit.rewards``). ms-swift: ``messages``; TRL: ``prompt``.

Every row also has ``env``, ``task_id`` and ``num_tokens``. Nothing is dropped silently: a row
that cannot be exported, or that is longer than ``max_tokens``, is counted with its reason.
"""

import hashlib
import json
import math
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import duckdb
import numpy as np
import pyarrow as pa

from orbit.io import lake
from orbit.stages.filter import RANKING
from orbit.io.schema import FILTERED_SCHEMA, VERIFIED_SCHEMA, prompt_of
from orbit.stages.dedup import KEPT, PARAMS, Clusterer, DedupParams, absorbed, dedup_card, minhash_matrix

TRAINER_CONTRACT = {"ms-swift": "4.6.0", "trl": "1.16.0"}
FLAVOURS = ("swift", "trl")
SPLITS = ("train", "validation")
OVER_MAX_TOKENS = "export.over_max_tokens"
# The length estimate when no tokenizer is named: UTF-8 bytes / 1.8 (rounded up), plus 4 tokens per
# message and 64 for the chat template. Measured with SmolLM2's tokenizer on Orbit's exports, text
# takes 1.95-3.7 bytes per token (LiveWeb pages full of numbers and link ids are the densest), so the
# estimate over-counts: a max_tokens cut on it never keeps a row the trainer finds too long.
ESTIMATE_BYTES_PER_TOKEN = 1.8
ESTIMATE_TOKENS_PER_MESSAGE = 4
ESTIMATE_TEMPLATE_TOKENS = 64


class NotExportable(ValueError):
    """A row that cannot become a training example; ``reason`` is its named reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ExportCounts:
    rows_in: int = 0
    exported: int = 0
    skipped: Counter = field(default_factory=Counter)
    splits: dict = field(default_factory=dict)
    lengths: list = field(default_factory=list)
    envs: Counter = field(default_factory=Counter)
    rounds: set = field(default_factory=set)
    verifiers: set = field(default_factory=set)
    closing_tool_messages_cut: int = 0
    dropped: Counter = field(default_factory=Counter)  # rows the exported rows absorbed in the dedup stage

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    def length_stats(self) -> dict:
        values = sorted(self.lengths)
        if not values:
            return {"rows": 0}

        def pct(q: float) -> int:
            return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

        return {"rows": len(values), "min": values[0], "mean": round(sum(values) / len(values), 1),
                "p50": pct(0.5), "p95": pct(0.95), "max": values[-1],
                **{f"over_{n}": sum(v > n for v in values) for n in (2048, 4096, 8192, 16384)}}

    def as_metadata(self) -> dict:
        return {"rows_in": self.rows_in, "exported": self.exported,
                "skipped": sum(self.skipped.values()), "skipped_reasons": dict(sorted(self.skipped.items())),
                "splits": dict(self.splits), "envs": dict(sorted(self.envs.items())),
                "verifiers": sorted(self.verifiers), "num_tokens": self.length_stats(),
                "closing_tool_messages_cut": self.closing_tool_messages_cut,
                **({"dedup_dropped": dict(sorted(self.dropped.items()))} if self.dropped else {})}


# ---------------------------------------------------------------------------------------------- lengths

class TokenCounter:
    """Counts a row's tokens: with a named tokenizer, or the documented estimate otherwise.

    ``tokenizer`` is a ``tokenizer.json`` file (or a folder holding one) read with the
    ``tokenizers`` package, or any name ``transformers.AutoTokenizer`` loads (then the model's chat
    template renders the row exactly as a trainer would). Without one, ``estimate`` is used.
    """

    def __init__(self, tokenizer: str | None = None):
        self.name = tokenizer or "estimate"
        self._encode: Callable[[str], int] | None = None
        self._chat = None
        if tokenizer:
            path = Path(tokenizer)
            if path.is_dir() and (path / "tokenizer.json").is_file():
                path = path / "tokenizer.json"
            if path.is_file() and path.suffix == ".json":
                from tokenizers import Tokenizer  # optional: pip install tokenizers

                tok = Tokenizer.from_file(str(path))
                self._encode = lambda text: len(tok.encode(text, add_special_tokens=False).ids)
            else:
                from transformers import AutoTokenizer  # optional: pip install transformers

                kwargs = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
                source = str(path.parent) if kwargs else tokenizer
                self._chat = AutoTokenizer.from_pretrained(source, **kwargs)

    def count(self, messages: list[Mapping[str, Any]], tools: str | None = None) -> int:
        if self._chat is not None and getattr(self._chat, "chat_template", None):
            ids = self._chat.apply_chat_template(list(messages), tools=json.loads(tools) if tools else None,
                                                 tokenize=True)
            return len(ids["input_ids"] if isinstance(ids, Mapping) else ids)
        text = [tools or ""] + [_message_text(m) for m in messages]
        if self._chat is not None:
            return len(self._chat.encode("".join(text), add_special_tokens=False)) + \
                ESTIMATE_TOKENS_PER_MESSAGE * len(messages)
        if self._encode is not None:
            return self._encode("".join(text)) + ESTIMATE_TOKENS_PER_MESSAGE * len(messages)
        return estimate_tokens(messages, tools)


def _message_text(m: Mapping[str, Any]) -> str:
    parts = [m.get("role") or "", m.get("content") or ""]
    for call in m.get("tool_calls") or []:
        fn = call.get("function") or {}
        parts += [fn.get("name") or "", fn.get("arguments") or ""]
    return "\n".join(parts)


def estimate_tokens(messages: Iterable[Mapping[str, Any]], tools: str | None = None) -> int:
    messages = list(messages)
    size = len((tools or "").encode()) + sum(len(_message_text(m).encode()) for m in messages)
    return (math.ceil(size / ESTIMATE_BYTES_PER_TOKEN) + ESTIMATE_TOKENS_PER_MESSAGE * len(messages)
            + ESTIMATE_TEMPLATE_TOKENS)


# --------------------------------------------------------------------------------------------- messages

def openai_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Record messages as clean OpenAI chat messages (no null fields), validated for training."""
    out: list[dict] = []
    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("system", "user"):
            out.append({"role": role, "content": m.get("content") or ""})
        elif role == "assistant":
            calls = []
            for k, call in enumerate(m.get("tool_calls") or []):
                fn = call.get("function") or {}
                arguments = fn.get("arguments") or ""
                try:
                    parsed = json.loads(arguments)
                except (ValueError, TypeError, RecursionError):
                    raise NotExportable(f"export.tool_arguments_not_json:{i}") from None
                if not isinstance(parsed, dict):
                    raise NotExportable(f"export.tool_arguments_not_object:{i}")
                if not fn.get("name"):
                    raise NotExportable(f"export.tool_call_without_name:{i}")
                calls.append({"id": call.get("id") or f"call_{i}_{k}", "type": "function",
                              "function": {"name": fn["name"], "arguments": arguments}})
            if not m.get("content") and not calls:
                raise NotExportable(f"export.empty_assistant_turn:{i}")
            message = {"role": "assistant", "content": m.get("content") or ""}
            if calls:
                message["tool_calls"] = calls
            out.append(message)
        elif role == "tool":
            message = {"role": "tool", "content": m.get("content") or ""}
            if m.get("tool_call_id"):
                message["tool_call_id"] = m["tool_call_id"]
            if m.get("name"):
                message["name"] = m["name"]
            out.append(message)
        else:
            raise NotExportable(f"export.unknown_role:{i}")
    return out


def trained_episode(messages: Iterable[Mapping[str, Any]]) -> tuple[list[dict], int]:
    """The whole episode up to its last assistant turn, and how many closing tool messages were cut.

    A LiveWeb episode ends with the ``stop`` call and the environment's reply to it
    ("Episode finished with 2 answer(s)."): nothing to learn from, and trainers want the
    assistant to speak last.
    """
    out = openai_messages(messages)
    cut = 0
    while out and out[-1]["role"] == "tool":
        out.pop()
        cut += 1
    if not out or out[-1]["role"] != "assistant":
        raise NotExportable("export.no_final_assistant_turn")
    return out, cut


def _same_turn(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a == b


def _split_for(env: str, task_id: str, validation_fraction: float) -> str:
    """The split of a task: a hash of (env, task_id), so a task never straddles splits and keeps its
    split across rounds and re-exports."""
    digest = hashlib.sha256(f"{env}\x00{task_id}".encode()).digest()
    return "validation" if int.from_bytes(digest[:8], "big") / 2**64 < validation_fraction else "train"


# --------------------------------------------------------------------------------------------- examples

def sft_example(record: Mapping[str, Any]) -> dict:
    messages, _ = trained_episode(record.get("messages") or [])
    example: dict[str, Any] = {"messages": messages}
    if record.get("tools"):
        example["tools"] = record["tools"]
    return example


def dpo_pair(chosen: Mapping[str, Any], rejected: Mapping[str, Any]) -> tuple[list[dict], dict, dict]:
    """(shared prefix, chosen turn, rejected turn) at the first assistant turn where two samples differ."""
    a, _ = trained_episode(chosen.get("messages") or [])
    b = openai_messages(rejected.get("messages") or [])
    for i, (ma, mb) in enumerate(zip(a, b)):
        if _same_turn(ma, mb):
            continue
        if ma["role"] != "assistant" or mb["role"] != "assistant":
            raise NotExportable("dpo.observation_divergence")  # the env answered differently first
        return a[:i], ma, mb
    raise NotExportable("dpo.no_divergence")


def _last_user(messages: list[dict]) -> int:
    return max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)


def dpo_example(chosen: Mapping[str, Any], rejected: Mapping[str, Any]) -> dict:
    """The ms-swift DPO row: ``messages`` ending in the chosen turn, ``rejected_response`` as messages."""
    prefix, good, bad = dpo_pair(chosen, rejected)
    cut = _last_user(prefix) + 1
    example: dict[str, Any] = {"messages": prefix + [good], "rejected_response": prefix[cut:] + [bad]}
    if chosen.get("tools"):
        example["tools"] = chosen["tools"]
    return example


def trl_dpo_example(chosen: Mapping[str, Any], rejected: Mapping[str, Any]) -> dict:
    prefix, good, bad = dpo_pair(chosen, rejected)
    example: dict[str, Any] = {"prompt": prefix, "chosen": [good], "rejected": [bad]}
    if chosen.get("tools"):
        example["tools"] = chosen["tools"]
    return example


def grpo_fields(record: Mapping[str, Any]) -> dict:
    """What a reward function needs to replay the task: env, task id, task spec, replay history."""
    prompt = list(prompt_of(record.get("messages") or []))
    if not prompt or prompt[-1].get("role") != "user":
        raise NotExportable("grpo.no_user_prompt")
    meta = json.loads(record.get("metadata") or "{}")
    from orbit.envs.openspiel.tasks import history_before_first_turn

    fields = {
        "prompt": openai_messages(prompt),
        "env": record["env"],
        "task_id": record["task_id"],
        "task_spec": json.dumps(meta.get("task", {}), sort_keys=True, ensure_ascii=False),
        "task_history": json.dumps(history_before_first_turn(record["env"], meta), ensure_ascii=False),
    }
    if record.get("tools"):
        fields["tools"] = record["tools"]
    return fields


def grpo_example(record: Mapping[str, Any]) -> dict:
    fields = grpo_fields(record)
    return {"messages": fields.pop("prompt"), **fields}


def trl_grpo_example(record: Mapping[str, Any]) -> dict:
    return grpo_fields(record)


# ------------------------------------------------------------------------------------------------ round

@dataclass
class ExportOptions:
    max_tokens: int | None = None
    tokenizer: str | None = None
    validation_fraction: float = 0.05
    license: str = "other"


class SpooledRows:
    """Both flavours' rows per split as their JSONL lines (``_jsonl_line``), spooled to local temporary
    files as they are made, so an export of any size holds one row at a time in memory. ``lines`` is a
    split's bytes, written as they are; ``rows()`` reads the rows back as dicts (tests, small exports)."""

    def __init__(self):
        self.files = {(flavour, split): tempfile.TemporaryFile(prefix="orbit-export-")
                      for flavour in FLAVOURS for split in SPLITS}
        self.counts = {key: 0 for key in self.files}

    def add(self, flavour: str, split: str, line: bytes) -> None:
        self.files[(flavour, split)].write(line)
        self.counts[(flavour, split)] += 1

    def count(self, flavour: str, split: str) -> int:
        return self.counts[(flavour, split)]

    def copy_to(self, flavour: str, split: str, out) -> None:
        """Write a split's lines to the binary file ``out``."""
        fh = self.files[(flavour, split)]
        fh.flush()
        fh.seek(0)
        shutil.copyfileobj(fh, out, 2**20)
        fh.seek(0, 2)

    def rows(self) -> dict:
        """flavour -> split -> list of rows (dicts), read back from the lines."""
        out: dict = {}
        for (flavour, split), fh in self.files.items():
            fh.flush()
            fh.seek(0)
            out.setdefault(flavour, {})[split] = [json.loads(line) for line in fh]
            fh.seek(0, 2)
        return out


@dataclass
class Export:
    """One export as written: both flavours' rows per split (spooled as JSONL lines), and the counts."""
    kind: str
    round: str
    counts: ExportCounts
    spool: SpooledRows
    counter: str = "estimate"

    @property
    def rows(self) -> dict:
        """flavour -> split -> list of rows (read back from the spool: for small exports and tests)."""
        return self.spool.rows()

    def files(self, folder: Path) -> dict[str, Path]:
        return {f"{flavour}/{split}": folder / flavour / f"{split}.jsonl" for flavour in FLAVOURS for split in SPLITS}


def _jsonl_line(example: dict) -> bytes:
    """One row of an export file: its JSON (keys sorted, UTF-8) and a newline."""
    return (json.dumps(example, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def _jsonl(examples: Iterable[dict]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in examples)


def write_jsonl(examples: list[dict], path: Path) -> Path:
    return lake.write_text(_jsonl(examples), path)


def read_export(folder: Path | str, flavour: str = "trl", splits: Iterable[str] = ("train",)) -> list[dict]:
    """The rows of an export folder as ``write_export`` wrote them: ``<folder>/<flavour>/<split>.jsonl``
    (the trainers' files, the one reader of them). A missing split file is no rows; a line that is not a
    JSON object comes back as ``{}``, so the caller counts it rather than losing it."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown export flavour {flavour!r} (one of {', '.join(FLAVOURS)})")
    rows = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown export split {split!r} (one of {', '.join(SPLITS)})")
        path = lake.lake_path(folder) / flavour / f"{split}.jsonl"
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError):
                    row = {}
                rows.append(row if isinstance(row, dict) else {})
    return rows


ROUND_BATCH_ROWS = 4096  # source rows made into dicts at a time by the export builders


def _round_files(lake_root: Path, asset: str, round_key: str) -> str | None:
    """The glob of every env's partition of a round of ``asset``; None when there are none."""
    files = str(lake.partition_dir(lake_root, asset, round_key) / "*" / lake.PART_NAME)
    return files if lake.glob_files(files) else None


# The filter's RANKING as one comparable key (verified scores are never null; a null list of messages
# sorts last, as ORDER BY puts NULLs)
RANKING_KEY = "(-score, coalesce(len(messages), 9223372036854775807), record_id)"


def _best_per_task(where: str, key: str) -> str:
    """SELECT over ``{src}`` of the ``__file``, ``file_row_number``, env and task_id of each (env, task_id)'s
    row with the least ``key`` among the rows ``where`` holds for: a grouped aggregate (DuckDB spills it
    beyond its memory cap), the same rows as ``QUALIFY row_number() OVER (PARTITION BY env, task_id ORDER BY
    key) = 1``, which holds every row's columns in memory at once."""
    return ("SELECT w.f AS __file, w.rn AS file_row_number, env, task_id FROM (SELECT env, task_id, "
            f"arg_min(struct_pack(f := __file, rn := file_row_number), {key}) AS w FROM {{src}} WHERE {where} "
            "GROUP BY env, task_id)")


def _round_rows(files: str, winners: str, order: str = "env, task_id", extra: tuple[str, ...] = ()) -> Iterator[dict]:
    """The source rows of a round (``files``) that ``winners`` picks, as dicts, ``ROUND_BATCH_ROWS`` at a time.

    ``winners`` is a SELECT over ``{src}`` (the files, with ``__file`` and ``file_row_number``) of the rows'
    ``__file``, ``file_row_number``, the ``order`` columns and the ``extra`` ones. The picking reads narrow
    columns only and numbers the winners in ``order``; the whole rows are then read once (in file order),
    joined by file row, and put in order through the filter's spill buckets (``_Buckets``: one bucket of
    rows in memory at a time), so memory stays flat in the round's size. Every column of the files comes
    out, as ``SELECT *`` gives them, then the ``extra`` ones."""
    from orbit.stages.filter import _Buckets, _database

    con = lake.duckdb_lake(_database(2), files)
    reader = None
    try:
        src = (f"read_parquet({lake.sql_literal(files)}, hive_partitioning = false, filename = '__file', "
               "file_row_number = true)")
        con.execute("CREATE OR REPLACE TEMP TABLE __export_winners AS SELECT *, "
                    f"row_number() OVER (ORDER BY {order}) - 1 AS __pos FROM ({winners.format(src=src)})")
        total = con.sql("SELECT count(*) FROM __export_winners").fetchall()[0][0]
        more = "".join(f", w.{c}" for c in extra)
        reader = con.sql(f"SELECT t.* EXCLUDE (__file, file_row_number){more}, w.__pos FROM {src} t "
                         "JOIN __export_winners w ON t.__file = w.__file AND t.file_row_number = w.file_row_number"
                         ).to_arrow_reader(ROUND_BATCH_ROWS)
        buckets = _Buckets(total, reader.schema, ROUND_BATCH_ROWS)
        for batch in reader:
            buckets.add(batch)
        reader.close()
        for table in buckets.ordered():
            yield from table.to_pylist()
    finally:
        try:
            if reader is not None:
                reader.close()
            con.execute("DROP TABLE IF EXISTS __export_winners")
        finally:
            con.close()


def _build(kind: str, round_key: str, items: Iterable[tuple], makers: dict, length_of, options: ExportOptions,
           counts: ExportCounts) -> Export:
    """Turn source rows into both flavours' rows, counting every skip; ``items`` are (key record, *args)."""
    counter = TokenCounter(options.tokenizer)
    spool = SpooledRows()
    for item in items:
        record = item[0]
        counts.rows_in += 1
        try:
            made = {flavour: make(*item) for flavour, make in makers.items()}
            for example in made.values():
                json.dumps(example, ensure_ascii=False)  # what write_jsonl will write: it must serialize
            n = length_of(counter, made)
        except NotExportable as exc:
            counts.skip(exc.reason.split(":")[0])
            continue
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            counts.skip(f"export.unrenderable:{type(exc).__name__}")  # one record never fails the asset
            continue
        if options.max_tokens is not None and n > options.max_tokens:
            counts.skip(OVER_MAX_TOKENS)
            continue
        counts.lengths.append(n)
        counts.envs[record["env"]] += 1
        counts.rounds.add(record["round"])
        if record.get("verifier"):
            counts.verifiers.add(record["verifier"])
        if kind == "sft":
            counts.closing_tool_messages_cut += trained_episode(record.get("messages") or [])[1]
            for column in ("dropped_exact", "dropped_near"):
                counts.dropped[column] += int(record.get(column) or 0)
        split = _split_for(record["env"], record["task_id"], options.validation_fraction)
        for flavour, example in made.items():
            spool.add(flavour, split, _jsonl_line({**example, "env": record["env"], "task_id": record["task_id"],
                                                   "num_tokens": n}))
    counts.exported = sum(spool.count(FLAVOURS[0], split) for split in SPLITS)
    counts.splits = {split: spool.count(FLAVOURS[0], split) for split in SPLITS}
    return Export(kind, round_key, counts, spool, counter.name)


def build_sft(lake_root: Path, round_key: str, options: ExportOptions | None = None) -> Export:
    """Every filtered row of the round (all envs), whole episodes."""
    options = options or ExportOptions()
    files = _round_files(lake_root, "filtered_dataset", round_key)
    rows = _round_rows(files, "SELECT __file, file_row_number, env, task_id FROM {src}") if files else ()
    return _build("sft", round_key, ((r,) for r in rows), {"swift": sft_example, "trl": sft_example},
                  lambda c, made: c.count(made["swift"]["messages"], made["swift"].get("tools")),
                  options, ExportCounts())


def build_dpo(lake_root: Path, round_key: str, options: ExportOptions | None = None) -> Export:
    """One pair per task that has both a passed and a failed sample: best pass vs best-ranked failure."""
    options = options or ExportOptions()
    counts = ExportCounts()
    files = _round_files(lake_root, "verified_samples", round_key)

    def pairs():
        if files is None:
            return
        from orbit.stages.filter import _database

        con = lake.duckdb_lake(_database(2), files)
        try:
            src = f"read_parquet({lake.sql_literal(files)}, hive_partitioning = false)"
            unsolved = con.sql(f"SELECT count(*) FROM (SELECT env, task_id FROM {src} GROUP BY ALL "
                               "HAVING NOT bool_or(passed))").fetchall()[0][0]
        finally:
            con.close()
        counts.rows_in = unsolved
        counts.skip("dpo.no_chosen", unsolved)
        # each task's best pass (its number __task in (env, task_id) order) and, for the tasks with one, the
        # best-ranked failure, picked on narrow columns, then read in one stream: pass, then failure, by task
        best = _best_per_task("%s", RANKING_KEY)
        winners = (f"WITH c AS (SELECT *, row_number() OVER (ORDER BY env, task_id) AS __task FROM ({best % 'passed'})) "
                   "SELECT __file, file_row_number, __task, 0 AS __side FROM c UNION ALL "
                   f"SELECT f.__file, f.file_row_number, c.__task, 1 AS __side FROM ({best % 'NOT passed'}) f "
                   "JOIN c ON f.env = c.env AND f.task_id = c.task_id")
        chosen = None
        for row in _round_rows(files, winners, "__task, __side", ("__task", "__side")):
            del row["__task"]
            if row.pop("__side") == 0:
                if chosen is not None:
                    counts.rows_in += 1
                    counts.skip("dpo.no_rejected")
                chosen = row
            else:
                yield chosen, row
                chosen = None
        if chosen is not None:
            counts.rows_in += 1
            counts.skip("dpo.no_rejected")

    def length(c: TokenCounter, made: dict) -> int:
        trl = made["trl"]
        return max(c.count(trl["prompt"] + trl[side], trl.get("tools")) for side in ("chosen", "rejected"))

    return _build("dpo", round_key, pairs(), {"swift": dpo_example, "trl": trl_dpo_example}, length, options, counts)


def build_grpo(lake_root: Path, round_key: str, options: ExportOptions | None = None) -> Export:
    """One prompt per task of the round, solved or not, with what the reward function needs."""
    options = options or ExportOptions()
    files = _round_files(lake_root, "verified_samples", round_key)
    rows = _round_rows(files, _best_per_task("true", "record_id")) if files else ()
    return _build("grpo", round_key, ((r,) for r in rows),
                  {"swift": grpo_example, "trl": trl_grpo_example},
                  lambda c, made: c.count(made["trl"]["prompt"], made["trl"].get("tools")),
                  options, ExportCounts())


BUILDERS = {"sft": build_sft, "dpo": build_dpo, "grpo": build_grpo}


def _write_spooled(export: Export, flavour: str, split: str, path: Path) -> Path:
    """Write one split's spooled lines to ``path`` atomically (the bytes ``write_jsonl`` writes of its rows)."""
    with lake.atomic_path(path) as tmp, open(tmp, "wb") as out:
        export.spool.copy_to(flavour, split, out)
    return lake.lake_path(path)


def write_export(export: Export, folder: Path | str, options: ExportOptions | None = None) -> dict[str, Path]:
    """Write the Hub-ready folder: ``README.md`` (dataset card) and ``<flavour>/<split>.jsonl``."""
    options = options or ExportOptions()
    folder = lake.lake_path(folder)
    files = export.files(folder)
    for key, path in files.items():
        flavour, split = key.split("/")
        _write_spooled(export, flavour, split, path)
    features = {flavour: file_schema([files[f"{flavour}/{split}"] for split in SPLITS]) for flavour in FLAVOURS}
    lake.write_text(dataset_card(export, options, features), folder / "README.md")
    return files


def config_name(export: "Export", flavour: str) -> str:
    """The card's config of one flavour: ``<kind>_<round>_<flavour>`` (``sft_r0004_trl``). Every export
    and round has its own, so the ``datasets`` cache (keyed by folder name and config name) never hands
    one export's rows to another (``sft_export/r0004`` and ``dpo_export/r0004`` share the folder name)."""
    return f"{export.kind}_{export.round}_{flavour}"


def file_schema(paths: Iterable[Path]) -> pa.Schema | None:
    """The schema of a flavour's JSONL files together: every key any row of any split has (a split
    without tool use lacks ``tools``), so the card can declare one set of features for all splits."""
    import pyarrow.json as pajson

    def read(p) -> Iterator[pa.Schema]:
        # block by block (whole lines, SCHEMA_BLOCK_BYTES or more each), so a large file is never held whole;
        # a file of one block is read as one
        with lake.open_input(p) as fh:
            while True:
                block = fh.read(SCHEMA_BLOCK_BYTES)
                if not block:
                    return
                if not block.endswith(b"\n"):
                    block += fh.readline()
                yield pajson.read_json(pa.BufferReader(block)).schema

    schemas = [schema for p in paths if lake.lake_path(p).stat().st_size for schema in read(p)]
    return pa.unify_schemas(schemas, promote_options="permissive") if schemas else None


SCHEMA_BLOCK_BYTES = 32 * 2**20  # JSONL bytes file_schema reads at a time


_DTYPES = {pa.string(): "string", pa.large_string(): "string", pa.int64(): "int64", pa.int32(): "int32",
           pa.float64(): "float64", pa.float32(): "float32", pa.bool_(): "bool", pa.null(): "'null'"}


def _feature_yaml(name: str, type_: pa.DataType, indent: str) -> list[str]:
    """One field as the ``dataset_info.features`` YAML of a Hugging Face card (what
    ``datasets.Features._to_yaml_list`` writes: ``dtype``, ``list``, ``struct``)."""
    head = f"{indent}- name: {json.dumps(name)}"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        item = type_.value_type
        if pa.types.is_struct(item):
            return [head, f"{indent}  list:"] + [line for f in item for line in _feature_yaml(f.name, f.type, indent + "  ")]
        return [head, f"{indent}  list: {_DTYPES[item]}"]
    if pa.types.is_struct(type_):
        return [head, f"{indent}  struct:"] + [line for f in type_ for line in _feature_yaml(f.name, f.type, indent + "  ")]
    return [head, f"{indent}  dtype: {_DTYPES[type_]}"]


def export_round(kind: str, lake_root: Path | str, round_key: str, folder: Path | str,
                 options: ExportOptions | None = None) -> Export:
    export = BUILDERS[kind](Path(lake_root), round_key, options)
    write_export(export, folder, options)
    return export


# Kept for callers of the single-file API: the ms-swift train split of one export kind.
def _single(kind: str, lake_root: Path, round_key: str, out: Path) -> ExportCounts:
    export = BUILDERS[kind](Path(lake_root), round_key, ExportOptions(validation_fraction=0.0))
    _write_spooled(export, "swift", "train", out)
    return export.counts


def export_sft(lake_root: Path, round_key: str, out: Path) -> ExportCounts:
    return _single("sft", lake_root, round_key, out)


def export_dpo(lake_root: Path, round_key: str, out: Path) -> ExportCounts:
    return _single("dpo", lake_root, round_key, out)


def export_grpo(lake_root: Path, round_key: str, out: Path) -> ExportCounts:
    return _single("grpo", lake_root, round_key, out)


# ------------------------------------------------------------------------------------------------- card

# The train commands, one source for the dataset card, the README and `make test-trainers` (which runs them
# on a real round's exports). MODEL is the model to train: a hub name, or a local folder (a model ms-swift
# cannot identify from its folder also needs `--model_type` and `--template`). Device settings are kept
# apart: DEVICE_FLAGS / DEVICE_CONFIGS hold the CPU and the GPU ones.
SWIFT_COMMANDS = {
    "sft": "swift sft --model {model} --tuner_type lora --agent_template hermes "
           "--dataset {folder}/swift/train.jsonl{val} --split_dataset_ratio 0 --max_length {max_length}",
    "dpo": "swift rlhf --rlhf_type dpo --model {model} --tuner_type lora --agent_template hermes "
           "--dataset {folder}/swift/train.jsonl{val} --split_dataset_ratio 0 --max_length {max_length}",
    "grpo": "swift rlhf --rlhf_type grpo --model {model} --tuner_type lora --agent_template hermes "
            "--dataset {folder}/swift/train.jsonl --split_dataset_ratio 0 --max_length {max_length} "
            "--max_completion_length 512 --external_plugins \"$(python -c 'import orbit.rewards as m; print(m.__file__)')\" "
            "--reward_funcs orbit_verifier",
}
SWIFT_DEVICE_FLAGS = {
    "cpu": {"sft": "--torch_dtype float32", "dpo": "--torch_dtype float32",
            "grpo": "--torch_dtype float32 --use_vllm false"},
    "gpu": {"sft": "--torch_dtype bfloat16", "dpo": "--torch_dtype bfloat16",
            "grpo": "--torch_dtype bfloat16 --use_vllm true --vllm_mode colocate"},
}
_TRL_TRAINERS = {"sft": ("SFTTrainer", "SFTConfig"), "dpo": ("DPOTrainer", "DPOConfig"), "grpo": ("GRPOTrainer", "GRPOConfig")}
TRL_DEVICE_CONFIGS = {"cpu": "dict(use_cpu=True, bf16=False)", "gpu": "dict(bf16=True)"}


def trl_snippet(kind: str, folder: str | None, config: str, max_length: int) -> str:
    """The TRL script of an export: MODEL and DEVICE (``TRL_DEVICE_CONFIGS``) are the user's, and so is
    EXPORT (the export folder's path) when ``folder`` is None; the last line is ``trainer.train()``."""
    trainer, cfg = _TRL_TRAINERS[kind]
    where = "EXPORT" if folder is None else json.dumps(folder)
    if kind == "grpo":
        return (f"import orbit.rewards\nfrom datasets import load_dataset\nfrom trl import {cfg}, {trainer}\n\n"
                f"data = load_dataset({where}, {json.dumps(config)})\n"
                f"trainer = {trainer}(model=MODEL, reward_funcs=orbit.rewards.reward_func, train_dataset=data[\"train\"],\n"
                f"    args={cfg}(output_dir=\"{kind}-out\", **DEVICE))\n"
                "trainer.train()")
    return (f"from datasets import load_dataset\nfrom trl import {cfg}, {trainer}\n\n"
            f"data = load_dataset({where}, {json.dumps(config)})\n"
            f"trainer = {trainer}(model=MODEL, train_dataset=data[\"train\"], eval_dataset=data.get(\"validation\"),\n"
            f"    args={cfg}(output_dir=\"{kind}-out\", max_length={max_length}, **DEVICE))\n"
            "trainer.train()")


def train_commands(export: "Export", folder: str, model: str = "MODEL", max_tokens: int | None = None) -> tuple[str, str]:
    """(the ms-swift command, the TRL script) of one export in ``folder``. ``max_length`` is the longest
    row's ``num_tokens`` (an over-count unless a tokenizer counted them) or ``max_tokens`` when the export
    cut at it, so no row is longer than the trainers' limit and none is dropped."""
    max_length = max_tokens or max(export.counts.length_stats().get("max", 0), 1)
    val = f" --val_dataset {folder}/swift/validation.jsonl" if export.counts.splits.get("validation") else ""
    swift = SWIFT_COMMANDS[export.kind].format(model=model, folder=folder, val=val, max_length=max_length)
    return swift, trl_snippet(export.kind, None if folder == "." else folder, config_name(export, "trl"), max_length)


def dataset_card(export: Export, options: ExportOptions, features: Mapping[str, pa.Schema | None] | None = None) -> str:
    c = export.counts
    configs, infos = [], []
    for flavour in FLAVOURS:
        data_files = "".join(f"  - split: {split}\n    path: {flavour}/{split}.jsonl\n"
                             for split in SPLITS if c.splits.get(split))
        if data_files:
            name = config_name(export, flavour)
            configs.append(f"- config_name: {name}\n" + ("  default: true\n" if flavour == "trl" else "")
                           + "  data_files:\n" + data_files)
            schema = (features or {}).get(flavour)
            if schema is not None:  # one set of features for every split: a split may lack a key others have
                infos.append("\n".join([f"- config_name: {name}", "  features:"]
                                       + [line for f in schema for line in _feature_yaml(f.name, f.type, "  ")]))
    front = ["---", f"license: {options.license}", f"pretty_name: Orbit {export.kind} export {export.round}",
             "tags:", "- orbit", "- synthetic", "- verified", f"- {export.kind}"]
    if configs:
        front += ["configs:", "".join(configs).rstrip("\n")]
    if infos:
        front += ["dataset_info:", "\n".join(infos)]
    front.append("---")
    stats = c.length_stats()
    swift_cmd, trl_cmd = train_commands(export, ".", max_tokens=options.max_tokens)
    lines = [
        f"# Orbit {export.kind.upper()} export, round {export.round}", "",
        "Verified synthetic data from Orbit: every row was rescored by its environment's verifier "
        "(replay of the trajectory), never trusting the generator.", "",
        f"- rows: {c.exported} (train {c.splits.get('train', 0)}, validation {c.splits.get('validation', 0)}); "
        f"rows in: {c.rows_in}; skipped: {sum(c.skipped.values())}",
        f"- skipped by reason: {json.dumps(dict(sorted(c.skipped.items())))}",
        f"- envs: {json.dumps(dict(sorted(c.envs.items())))}",
        f"- rounds: {', '.join(sorted(c.rounds)) or export.round}",
        f"- verifier versions: {', '.join(sorted(c.verifiers)) or 'n/a'}",
        f"- tokens per row ({export.counter}): {json.dumps(stats)}",
        f"- max_tokens: {options.max_tokens if options.max_tokens is not None else 'none'}",
        f"- split: validation = tasks whose sha256(env, task_id) falls in the first "
        f"{options.validation_fraction:.0%} (deterministic, stable across rounds)",
        f"- checked against: ms-swift {TRAINER_CONTRACT['ms-swift']}, trl {TRAINER_CONTRACT['trl']}",
        *([f"- dedup: {dedup_card()} Dropped in this round's filter: exact {c.dropped.get('dropped_exact', 0)}, "
           f"near {c.dropped.get('dropped_near', 0)}."] if export.kind == "sft" else []),
        "", "## Files", "",
        "- `swift/train.jsonl`, `swift/validation.jsonl`: ms-swift's format",
        "- `trl/train.jsonl`, `trl/validation.jsonl`: TRL's format", "",
        "## Train", "",
        "ms-swift (MODEL: a hub name, or a local folder plus `--model_type` and `--template`), then the device "
        f"flags: CPU `{SWIFT_DEVICE_FLAGS['cpu'][export.kind]}`, GPU `{SWIFT_DEVICE_FLAGS['gpu'][export.kind]}`:", "",
        "```bash", swift_cmd, "```", "",
        f"TRL (EXPORT: this folder's path; MODEL: a hub name or a local folder; DEVICE: CPU `{TRL_DEVICE_CONFIGS['cpu']}`, "
        f"GPU `{TRL_DEVICE_CONFIGS['gpu']}`):", "",
        "```python", trl_cmd, "```", "",
    ]
    if export.kind == "grpo":
        lines += ["The reward needs `orbit.rewards` where the trainer runs: `pip install ./packaging/orbit-reward` "
                  "from Orbit's repository (only the verifiers' dependencies, no Dagster); `--external_plugins` "
                  "then names the installed file.", ""]
    return "\n".join(front) + "\n\n" + "\n".join(lines)


# ----------------------------------------------------------------------------------------- training set

def cumulative_training_set(lake_root: Path, round_key: str, params: DedupParams = PARAMS,
                            threads: int = 2) -> lake.ArrowStream:
    """Filtered rows of every round <= round_key: the best per (env, task_id), then one per canonical
    trajectory and one per MinHash cluster across rounds (``orbit.stages.dedup``), the best kept.

    Works on the stored ``dedup_key`` and ``minhash`` columns (no row is rehashed) in three DuckDB
    passes with capped memory: rank the task winners (narrow columns), stream their keys and
    signatures into the spilling clusterer, then stream the kept rows out in (env, task_id) order.
    The kept rows' ``dropped_exact`` / ``dropped_near`` count the rows they absorbed in this
    cumulative stage; the summary adds up: rows_in = kept + superseded + dropped_exact + dropped_near.
    """
    files = lake.asset_glob(lake_root, "filtered_dataset", 2)
    summary: dict[str, Any] = {}

    def batches():
        if not lake.glob_files(files):
            return
        from orbit.stages.filter import _database

        con = lake.duckdb_lake(_database(threads), files)
        try:
            src = (f"read_parquet({lake.sql_literal(files)}, hive_partitioning = false, union_by_name = true, "
                   "filename = '__file', file_row_number = true)")
            where = f"WHERE round <= {lake.sql_literal(round_key)}"
            summary["rows_in"], summary["rounds"] = con.execute(
                f"SELECT count(*), count(DISTINCT round) FROM {src} {where}").fetchall()[0]
            ranking = RANKING.replace("len(messages)", "n")  # the filter's ranking, on the narrow columns
            con.execute(
                "CREATE OR REPLACE TEMP TABLE __winners AS "
                f"SELECT __file, file_row_number AS __rn, row_number() OVER (ORDER BY {ranking}) - 1 AS __rank "
                f"FROM (SELECT __file, file_row_number, env, task_id, score, len(messages) AS n, record_id "
                f"FROM {src} {where} QUALIFY row_number() OVER (PARTITION BY env, task_id ORDER BY {ranking}) = 1)")
            clusterer = Clusterer(params)
            ranks = []
            reader = con.sql(
                f"SELECT w.__rank, t.dedup_key, t.minhash FROM {src} t "
                "JOIN __winners w ON t.__file = w.__file AND t.file_row_number = w.__rn").to_arrow_reader(65_536)
            for batch in reader:
                rank = batch.column(0).to_numpy().astype(np.int64)
                sig, valid = minhash_matrix(batch.column(2), params)
                clusterer.add_signatures(rank, batch.column(1), sig, valid)
                ranks.append(rank)
            status, root, counts = clusterer.finish()
            ranks = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
            exact, near = absorbed(status, root)
            keep = status == KEPT
            con.register("__kept", pa.table({"__rank": ranks[keep], "__ex": exact[keep], "__nr": near[keep]}))
            summary["superseded"] = summary["rows_in"] - len(ranks)
            summary["dropped_exact"], summary["dropped_near"] = counts.dropped_exact, counts.dropped_near
            kept = 0
            columns = ", ".join(f't."{c}"' for c in VERIFIED_SCHEMA.names) + ", t.dedup_key, t.minhash"
            sql = (f"SELECT {columns}, k.__ex::INTEGER AS dropped_exact, k.__nr::INTEGER AS dropped_near FROM {src} t "
                   "JOIN __winners w ON t.__file = w.__file AND t.file_row_number = w.__rn "
                   "JOIN __kept k ON w.__rank = k.__rank ORDER BY t.env, t.task_id")
            for batch in con.sql(sql).to_arrow_reader(8192):
                kept += batch.num_rows
                yield pa.Table.from_batches([batch]).cast(FILTERED_SCHEMA).to_batches()[0]
            summary["kept"] = kept
            if kept + summary["superseded"] + counts.dropped_exact + counts.dropped_near != summary["rows_in"]:
                raise AssertionError(f"training set lost rows: {summary}")
            summary["dedup"] = params.describe()
        finally:
            try:
                con.execute("DROP TABLE IF EXISTS __winners")
            finally:
                con.close()

    return lake.ArrowStream(FILTERED_SCHEMA, batches(), summary=lambda: dict(summary))
