"""The teacher's rows: each item's oracle answer in the answer format, no model involved.

Task ``i`` of a partition gives ``samples_per_task`` rows (``sample_idx`` 0..N-1, the same
trajectory): the system prompt, the question, and ``<answer>{oracle}</answer>``, claimed score 1.0.
An item without an oracle answer (a few tasks only check answers: their ``answer`` is None) gives
rows with no assistant turn, score 0 and ``metadata.sample_error = "teacher.no_oracle_answer"``.

Rows are written as columns (``batch_from_columns``): the metadata texts and task ids are formatted
from the spec's parts encoded once (``items.Partition``), the record ids hashed from the JSON that
``make_record_id`` hashes, its fixed parts encoded once, and the messages column taken from the
distinct texts with Arrow (the system prompt converted once); the batch equals ``records_to_batch`` of
the rows ``make_record`` makes.
"""

import hashlib
from json.encoder import encode_basestring
from typing import Sequence

import numpy as np
import pyarrow as pa

from orbit.envs.reasoning_gym.items import Partition
from orbit.envs.reasoning_gym.prompts import SYSTEM_PROMPT, oracle_completion
from orbit.io.schema import MESSAGE_TYPE, SCHEMA_VERSION, batch_from_columns, message, plain_chat_array

TEACHER_POLICY = "teacher:oracle"
NO_ORACLE = "teacher.no_oracle_answer"
_SOURCE = "teacher"
_ROLES = {3: ("system", "user", "assistant"), 2: ("system", "user")}
_ROLE_ARRAY = pa.array(_ROLES[3], pa.string())


def _oracle_chats(questions: list, completions: list, samples: int) -> pa.ListArray | None:
    """The messages column of rows [system, question, completion], each task's row ``samples`` times: made
    with Arrow ``take`` from the distinct texts (the system prompt once), equal to ``plain_chat_array``'s.
    None when a text is not a string."""
    try:
        texts = pa.concat_arrays([pa.array([SYSTEM_PROMPT], pa.string()), pa.array(questions, pa.string()),
                                  pa.array(completions, pa.string())])
    except (pa.ArrowException, TypeError, ValueError):
        return None
    tasks = len(questions)
    task_of_row = np.repeat(np.arange(tasks, dtype=np.int64), samples)
    rows = len(task_of_row)
    which = np.empty(3 * rows, dtype=np.int64)
    which[0::3] = 0
    which[1::3] = 1 + task_of_row
    which[2::3] = 1 + tasks + task_of_row
    roles = _ROLE_ARRAY.take(pa.array(np.tile(np.arange(3, dtype=np.int64), rows)))
    children = [roles, texts.take(pa.array(which))]
    children += [pa.nulls(3 * rows, MESSAGE_TYPE.field(key).type) for key in ("tool_calls", "tool_call_id", "name")]
    structs = pa.StructArray.from_arrays(children, fields=list(MESSAGE_TYPE))
    offsets = pa.array(np.arange(0, 3 * rows + 1, 3, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, structs, type=pa.list_(MESSAGE_TYPE))


def teacher_batch(part: Partition, entries: Sequence[tuple[dict, str]], first_index: int, *, env_name: str,
                  round_key: str, samples: int) -> pa.RecordBatch:
    """The rows of items ``first_index, first_index + 1, ...`` (``entries``: (item, task id) each),
    ``samples`` rows each."""
    sha256 = hashlib.sha256
    # make_record_id: stable_hash("record", env, round, task_id, source, policy, sample_idx)
    id_head = f'["record",{encode_basestring(env_name)},{encode_basestring(round_key)},'
    id_mid = f',{encode_basestring(_SOURCE)},{encode_basestring(TEACHER_POLICY)},'
    prefixes = [f"{id_head}{encode_basestring(task_id)}{id_mid}" for _, task_id in entries]
    specs = [part.metadata_spec(i) for i in range(first_index, first_index + len(entries))]
    answers = [entry.get("answer") for entry, _ in entries]
    messages = None
    if all(type(a) is str for a in answers):  # every item has its oracle: one shape for every row
        metadata = [f'{{"task": {spec}}}' for spec in specs]
        scores: list | float = 1.0
        messages = _oracle_chats([entry["question"] for entry, _ in entries],
                                 [f"<answer>{answer}</answer>" for answer in answers], samples)
        texts = None
    else:
        metadata = [f'{{"task": {spec}}}' if type(a) is str else f'{{"sample_error": "{NO_ORACLE}", "task": {spec}}}'
                    for spec, a in zip(specs, answers)]
        scores = [1.0 if type(a) is str else 0.0 for a in answers]
    if messages is None:
        texts = [(SYSTEM_PROMPT, entry["question"], oracle_completion(a)) if type(a) is str else
                 (SYSTEM_PROMPT, entry["question"]) for (entry, _), a in zip(entries, answers)]
    if samples == 1:
        record_id = [sha256(f"{p}0]".encode("utf-8", "surrogatepass")).hexdigest()[:20] for p in prefixes]
        task_ids = [task_id for _, task_id in entries]
        sample_idx: list | int = 0
    else:
        record_id = [sha256(f"{p}{s}]".encode("utf-8", "surrogatepass")).hexdigest()[:20]
                     for p in prefixes for s in range(samples)]
        task_ids = [task_id for _, task_id in entries for _ in range(samples)]
        sample_idx = list(range(samples)) * len(entries)
        metadata = [m for m in metadata for _ in range(samples)]
        if texts is not None:
            texts = [t for t in texts for _ in range(samples)]
        if type(scores) is list:
            scores = [x for x in scores for _ in range(samples)]
    if messages is None:
        roles = [role for row in texts for role in _ROLES[len(row)]]
        contents = [text for row in texts for text in row]
        offsets = [0]
        total = 0
        for row in texts:
            total += len(row)
            offsets.append(total)
        messages = plain_chat_array(roles, contents, offsets)
        if messages is None:  # a question that is not text: the column from the rows (make_record's values)
            rows = [[message(roles[i], contents[i]) for i in range(a, z)] for a, z in zip(offsets, offsets[1:])]
            messages = pa.array(rows, pa.list_(MESSAGE_TYPE))
    n = len(record_id)
    columns = {"record_id": record_id, "env": env_name, "task_id": task_ids, "round": round_key,
               "sample_idx": sample_idx, "source": _SOURCE, "policy": TEACHER_POLICY, "seed": part.seed,
               "messages": messages, "tools": None, "score": scores, "metadata": metadata,
               "schema_version": SCHEMA_VERSION}
    return batch_from_columns(columns, n)
