"""Near-duplicate trajectories: exact keys and MinHash LSH clusters, the best of each kept.

Two stages, run by the filter on one partition's winners (one row per task) and by the cumulative
training set over every round's filtered rows:

1. **Exact.** Each env's family names a record's canonical trajectory (``trajectory_key``, a hook
   with its default in ``orbit.envs.base``): a game's string and action history, a tool-use
   episode's canonical tool calls and answers, a text family's prompt hash and normalised final
   answer. Rows with the same key (sha256 of env and key, ``dedup_key``) form one group.
2. **Near.** MinHash over the assistant turns only (``dedup_text``, same hook scheme): word
   ``WORD_NGRAM``-gram shingles for prose, character ``CHAR_NGRAM``-grams for code and JSON, ``BANDS``
   x ``ROWS`` = ``NUM_PERM`` permutations (rensa's ``RMinHash``, seed ``SEED``). Two rows that agree
   on all ``ROWS`` values of any one band are candidates; clusters are the connected components of
   candidate pairs. The S-curve's midpoint, the documented threshold, is
   ``THRESHOLD = (1/BANDS)^(1/ROWS)`` ~= 0.72 Jaccard: a pair at Jaccard s is a candidate with
   probability 1 - (1 - s^ROWS)^BANDS (0.5 near 0.72; 0.92 at 0.8; 0.9996 at 0.9; 0.06 at 0.5).
   The signature is stored as a column (``minhash``), so later rounds never rehash old rows.

Each group and cluster keeps its best row -- score desc, then fewer messages, then record_id (the
filter's ranking) -- never the first seen, so the result does not depend on the input order. Every
input row is counted once: kept, ``dropped_exact`` or ``dropped_near``. A kept row carries how many
rows it absorbed in each stage (``dropped_exact`` / ``dropped_near`` columns), so the counts of a
partition are the sums of its file.

Memory is flat in the size of the set: the clusterer spills its per-row data (rank, key, one
64-bit hash per band) to files and works one band at a time (``Clusterer``), holding a few 8-byte
arrays of the row count, never the signatures.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa

from orbit.io.schema import DEDUP_EXTRA_FIELDS

BANDS = 14
ROWS = 8
NUM_PERM = BANDS * ROWS
WORD_NGRAM = 5
CHAR_NGRAM = 10
SEED = 1
THRESHOLD = (1.0 / BANDS) ** (1.0 / ROWS)
# A text with fewer distinct shingles than this gets no signature (exact stage only): short answers
# ("42", a game's few moves, one 5-word sentence) say nothing about the task, and two different tasks
# answered alike are not duplicates. Prose needs MIN_SHINGLES + WORD_NGRAM - 1 words (14), code
# MIN_SHINGLES + CHAR_NGRAM - 1 characters (19).
MIN_SHINGLES = 10
MAX_SHINGLE_CHARS = 200_000  # a longer text is shingled on its first this many characters (its key is whole)

KEPT, EXACT, NEAR = 0, 1, 2
REASONS = {EXACT: "dedup.exact", NEAR: "dedup.near"}

DEDUP_FIELDS = DEDUP_EXTRA_FIELDS


@dataclass(frozen=True)
class DedupParams:
    bands: int = BANDS
    rows: int = ROWS
    word_ngram: int = WORD_NGRAM
    char_ngram: int = CHAR_NGRAM
    seed: int = SEED

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    @property
    def threshold(self) -> float:
        return (1.0 / self.bands) ** (1.0 / self.rows)

    def describe(self) -> dict:
        return {**asdict(self), "num_perm": self.num_perm, "threshold": round(self.threshold, 4),
                "library": "rensa.RMinHash"}


PARAMS = DedupParams()


# ------------------------------------------------------------------------------------- per-record hooks

def family_hooks(env: str) -> tuple[Callable[[Mapping], str], Callable[[Mapping], tuple[str, str]]]:
    """(trajectory_key, dedup_text) of an env's family, the defaults of ``orbit.envs.base`` where the
    family has none (or the env is not declared)."""
    from orbit.envs.base import default_dedup_text, default_trajectory_key

    family = None
    try:
        from orbit.envs.registry import env_spec, family_of

        family = family_of(env_spec(env))
    except Exception:  # an env this process does not know: the defaults
        family = None
    key = getattr(family, "trajectory_key", None) or default_trajectory_key
    text = getattr(family, "dedup_text", None) or default_dedup_text
    return key, text


def key_digest(env: str, key: str) -> bytes:
    """16 bytes of sha256(env, key): equal keys of one env collide, nothing else in practice."""
    return hashlib.sha256(f"{env}\x00{key}".encode("utf-8", "surrogatepass")).digest()[:16]


_WORD = re.compile(r"\w+")


def shingles(text: str, kind: str, params: DedupParams = PARAMS) -> list[str]:
    """Word n-grams of prose (lowercased words), character n-grams of code/JSON (whitespace collapsed).
    A text shorter than one n-gram is one shingle; an empty one has none."""
    text = text[:MAX_SHINGLE_CHARS]
    if kind == "code":
        s = " ".join(text.split())
        n = params.char_ngram
        if not s:
            return []
        return [s] if len(s) <= n else list({s[i:i + n] for i in range(len(s) - n + 1)})
    words = _WORD.findall(text.lower())
    n = params.word_ngram
    if not words:
        return []
    if len(words) <= n:
        return [" ".join(words)]
    return list({" ".join(words[i:i + n]) for i in range(len(words) - n + 1)})


def _safe(text: Any) -> str:
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # lone surrogates: hashed as their replacement
        return text.encode("utf-8", "replace").decode("utf-8")


def signatures(token_sets: list[list[str]], params: DedupParams = PARAMS) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures (rensa RMinHash); rows of empty sets are all 0xFFFFFFFF."""
    import rensa

    if not token_sets:
        return np.empty((0, params.num_perm), dtype=np.uint32)
    matrix = rensa.RMinHash.digest_matrix_from_token_sets(token_sets, params.num_perm, params.seed)
    return np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(token_sets), params.num_perm)


def record_columns(records: list[Mapping[str, Any]], env_of: Callable[[Mapping], str],
                   params: DedupParams = PARAMS) -> tuple[list[str], list[tuple[str, str]]]:
    """Per record: its ``dedup_key`` (hex) and its near-duplicate text and kind.

    A hook that raises on a hostile record falls back to the default rules; one that raises again
    gives the record a key of its own (its record_id) and no text, so nothing is merged on a failure."""
    from orbit.envs.base import default_dedup_text, default_trajectory_key

    hooks: dict[str, tuple] = {}
    keys, texts = [], []
    for r in records:
        env = str(env_of(r))
        if env not in hooks:
            hooks[env] = family_hooks(env)
        key_fn, text_fn = hooks[env]
        key = None
        for fn in (key_fn, default_trajectory_key):
            try:
                key = _safe(fn(r))
                break
            except Exception:
                continue
        if key is None:
            key = f"unkeyed\x00{r.get('record_id')}"
        text, kind = "", "prose"
        for fn in (text_fn, default_dedup_text):
            try:
                text, kind = fn(r)
                text = _safe(text)
                break
            except Exception:
                continue
        keys.append(key_digest(env, key).hex())
        texts.append((text, "code" if kind == "code" else "prose"))
    return keys, texts


_K = np.uint64(0x9E3779B97F4A7C15)


def text_signatures(texts: list[tuple[str, str]], params: DedupParams = PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (n, num_perm) uint32, valid) of (text, kind) pairs; a text under MIN_SHINGLES
    shingles is not valid (its row is zeros).

    Prose: lowercased words (``\\w+``) hashed by rensa, their ``word_ngram``-grams combined in numpy
    (no shingle string is built), MinHashed from the flat hashes in one call. Code/JSON: character
    ``char_ngram``-grams of the whitespace-collapsed text."""
    import itertools

    import rensa

    n, p = len(texts), params.num_perm
    out = np.zeros((n, p), dtype=np.uint32)
    valid = np.zeros(n, dtype=bool)
    prose_rows, prose_words, code_rows, code_sets = [], [], [], []
    w = params.word_ngram
    for i, (text, kind) in enumerate(texts):
        text = text[:MAX_SHINGLE_CHARS]
        if kind == "code":
            sh = shingles(text, "code", params)
            if len(sh) >= MIN_SHINGLES:
                code_rows.append(i)
                code_sets.append(sh)
        else:
            words = _WORD.findall(text.lower())
            if len(words) - w + 1 >= MIN_SHINGLES:
                prose_rows.append(i)
                prose_words.append(words)
    if prose_rows:
        lens = np.fromiter((len(x) for x in prose_words), dtype=np.int64, count=len(prose_words))
        hashed = rensa.RMinHash.hash_token_sets(prose_words)
        flat = np.fromiter(itertools.chain.from_iterable(hashed), dtype=np.uint64, count=int(lens.sum()))
        del hashed
        starts = np.r_[0, np.cumsum(lens)[:-1]]
        windows = lens - w + 1
        idx = np.repeat(starts - np.r_[0, np.cumsum(windows)[:-1]], windows) + np.arange(int(windows.sum()))
        with np.errstate(over="ignore"):
            g = _mix(flat[idx] ^ _K)
            for j in range(1, w):
                g = _mix(g * _K + flat[idx + j])
        offsets = np.r_[0, np.cumsum(windows)].astype(np.uint64)
        matrix = rensa.RMinHash.digest_matrix_from_flat_token_hashes(g, offsets, p, params.seed)
        out[prose_rows] = np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(prose_rows), p)
        valid[prose_rows] = True
    if code_rows:
        out[code_rows] = signatures(code_sets, params)
        valid[code_rows] = True
    return out, valid


def dedup_columns(table: pa.Table, params: DedupParams = PARAMS) -> tuple[pa.Array, pa.Array]:
    """The ``dedup_key`` and ``minhash`` columns of verified rows (a null minhash: no assistant text
    of MIN_SHINGLES shingles)."""
    records = table.select([c for c in ("record_id", "env", "messages", "metadata", "tools")
                            if c in table.column_names]).to_pylist()
    keys, texts = record_columns(records, lambda r: r.get("env") or "", params)
    sig, valid = text_signatures(texts, params)
    n, p = len(records), params.num_perm
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * p)
    minhash = pa.ListArray.from_arrays(offsets, pa.array(sig.reshape(-1)), type=pa.list_(pa.uint32()),
                                       mask=pa.array(~valid))
    return pa.array(keys, pa.string()), minhash


# ------------------------------------------------------------------------------------------- band hashes

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def band_hashes(sig: np.ndarray, params: DedupParams = PARAMS) -> np.ndarray:
    """(n, bands) uint64: one hash of each band's ``rows`` values (equal bands, equal hashes)."""
    n = sig.shape[0]
    if n == 0:
        return np.empty((0, params.bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        v = sig.reshape(n, params.bands, params.rows).astype(np.uint64)
        h = np.full((n, params.bands), np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
        for j in range(params.rows):
            h = _mix(h ^ v[:, :, j])
    return h


def minhash_matrix(column: pa.Array | pa.ChunkedArray, params: DedupParams = PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (n, num_perm) uint32, valid mask) from a ``minhash`` column; a null or malformed
    entry (wrong length) is not valid."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n, p = len(column), params.num_perm
    if n == 0:
        return np.empty((0, p), dtype=np.uint32), np.zeros(0, dtype=bool)
    import pyarrow.compute as pc

    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    valid = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool) & (np.nan_to_num(lengths) == p)
    out = np.zeros((n, p), dtype=np.uint32)
    if valid.all():
        out[:] = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.uint32).reshape(n, p)
    elif valid.any():
        idx = np.flatnonzero(valid)
        taken = column.take(pa.array(idx))
        out[idx] = pc.list_flatten(taken).to_numpy(zero_copy_only=False).astype(np.uint32).reshape(len(idx), p)
    return out, valid


def key_words(keys: pa.Array | pa.ChunkedArray | list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(high, low, valid) uint64 words of hex ``dedup_key`` values; a null or malformed key is not valid."""
    values = keys.to_pylist() if hasattr(keys, "to_pylist") else list(keys)
    hi = np.zeros(len(values), dtype=np.uint64)
    lo = np.zeros(len(values), dtype=np.uint64)
    valid = np.zeros(len(values), dtype=bool)
    for i, k in enumerate(values):
        if isinstance(k, str) and len(k) == 32:
            try:
                hi[i], lo[i] = int(k[:16], 16), int(k[16:], 16)
                valid[i] = True
            except ValueError:
                pass
    return hi, lo, valid


# --------------------------------------------------------------------------------------------- clusterer

@dataclass
class DedupCounts:
    rows_in: int = 0
    kept: int = 0
    dropped_exact: int = 0
    dropped_near: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


class Clusterer:
    """Exact groups and MinHash LSH clusters over rows added batch by batch; memory flat in their number.

    ``add(rank, key_hi, key_lo, key_valid, bands, band_valid)`` for a batch of rows (positions follow
    in the order added). ``rank`` orders the rows best first (unique: smaller is better). Everything
    is spilled to files in a temporary directory as it arrives; ``finish`` reads one array at a time:
    the exact stage sorts (key, rank), the near stage propagates the least rank through each band's
    buckets until no label changes (the connected components of candidate pairs), one band in memory
    at a time. Peak memory is a few 8-byte arrays of the row count (about 60 bytes a row), never the
    signatures. The result depends on the rows, their keys, bands and ranks, not their order.
    """

    def __init__(self, params: DedupParams = PARAMS, spill_dir: str | Path | None = None):
        self.params = params
        self.n = 0
        self.tmp = tempfile.TemporaryDirectory(prefix="orbit-dedup-", dir=spill_dir)
        self.dir = Path(self.tmp.name)
        names = ["rank", "key_hi", "key_lo", "key_valid", "band_valid"] + [f"band{b}" for b in range(params.bands)]
        self.files = {name: open(self.dir / name, "wb") for name in names}
        self.dtypes = {"rank": np.int64, "key_hi": np.uint64, "key_lo": np.uint64, "key_valid": np.bool_,
                       "band_valid": np.bool_, **{f"band{b}": np.uint64 for b in range(params.bands)}}

    def add(self, rank: np.ndarray, key_hi: np.ndarray, key_lo: np.ndarray, key_valid: np.ndarray,
            bands: np.ndarray, band_valid: np.ndarray) -> None:
        m = len(rank)
        if m == 0:
            return
        arrays = {"rank": rank, "key_hi": key_hi, "key_lo": key_lo, "key_valid": key_valid,
                  "band_valid": band_valid}
        for name, a in arrays.items():
            np.ascontiguousarray(a, dtype=self.dtypes[name]).tofile(self.files[name])
        bands = np.asarray(bands, dtype=np.uint64)
        for b in range(self.params.bands):
            np.ascontiguousarray(bands[:, b]).tofile(self.files[f"band{b}"])
        self.n += m

    def add_signatures(self, rank: np.ndarray, keys, sig: np.ndarray, sig_valid: np.ndarray) -> None:
        """``add`` from hex keys (or (hi, lo, valid) words) and (m, num_perm) signatures."""
        hi, lo, kv = keys if isinstance(keys, tuple) else key_words(keys)
        self.add(rank, hi, lo, kv, band_hashes(sig, self.params), sig_valid)

    def _load(self, name: str) -> np.ndarray:
        return np.fromfile(self.dir / name, dtype=self.dtypes[name])

    def finish(self) -> tuple[np.ndarray, np.ndarray, DedupCounts]:
        """(status per position: KEPT / EXACT / NEAR, the position of the kept row each row went to
        (itself when kept), the counts)."""
        try:
            for f in self.files.values():
                f.close()
            return self._finish()
        finally:
            self.tmp.cleanup()

    def _finish(self) -> tuple[np.ndarray, np.ndarray, DedupCounts]:
        n = self.n
        counts = DedupCounts(rows_in=n)
        if n == 0:
            return np.zeros(0, np.uint8), np.zeros(0, np.int64), counts
        rank = self._load("rank")
        order = np.argsort(rank, kind="stable")  # best first
        dense = np.empty(n, dtype=np.int64)
        dense[order] = np.arange(n, dtype=np.int64)  # 0 = the best row
        by_dense = order  # position of the row of each dense rank
        del rank
        # exact: sort by (key, rank); the first of each key keeps it
        hi, lo, kv = self._load("key_hi"), self._load("key_lo"), self._load("key_valid")
        ex = np.flatnonzero(kv)
        root = np.arange(n, dtype=np.int64)
        if len(ex):
            o = np.lexsort((dense[ex], lo[ex], hi[ex]))
            sorted_pos = ex[o]
            hs, ls = hi[sorted_pos], lo[sorted_pos]
            new = np.ones(len(sorted_pos), dtype=bool)
            new[1:] = (hs[1:] != hs[:-1]) | (ls[1:] != ls[:-1])
            del hs, ls, o
            group = np.cumsum(new) - 1
            root[sorted_pos] = sorted_pos[new][group]
            del sorted_pos, new, group
        del hi, lo, kv, ex
        status = np.where(root != np.arange(n), EXACT, KEPT).astype(np.uint8)
        # near: over rows that survived the exact stage and have a signature
        cand = np.flatnonzero((status == KEPT) & self._load("band_valid"))
        label = dense[cand].copy()  # the least dense rank reachable through shared buckets
        changed = len(cand) > 1
        while changed:
            changed = False
            for b in range(self.params.bands):
                h = self._load(f"band{b}")[cand]
                o = np.argsort(h, kind="stable")
                hs = h[o]
                del h
                starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
                del hs
                sizes = np.diff(np.r_[starts, len(o)])
                if (sizes > 1).any():
                    lab = label[o]
                    mins = np.repeat(np.minimum.reduceat(lab, starts), sizes)
                    better = mins < lab
                    if better.any():
                        label[o[better]] = mins[better]
                        changed = True
                    del lab, mins, better
                del o, starts, sizes
        near_root = by_dense[label]
        moved = near_root != cand
        status[cand[moved]] = NEAR
        root[cand] = near_root
        del label, near_root, moved, cand, dense, by_dense
        # a row dropped exactly whose group's winner was dropped as near goes to that winner's winner
        root = root[root]
        counts.kept = int((status == KEPT).sum())
        counts.dropped_exact = int((status == EXACT).sum())
        counts.dropped_near = int((status == NEAR).sum())
        return status, root, counts


def absorbed(status: np.ndarray, root: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per position, how many rows it absorbed as exact and as near duplicates (0 for dropped rows)."""
    n = len(status)
    exact = np.bincount(root[status == EXACT], minlength=n).astype(np.int32)
    near = np.bincount(root[status == NEAR], minlength=n).astype(np.int32)
    return exact, near


# --------------------------------------------------------------------------------------- partition stage

class PartitionDedup:
    """The dedup of a stream of candidate rows (verified schema, one per task), best rank kept.

    ``add(table, ranks)`` computes each row's ``dedup_key`` and ``minhash`` (or takes them when the
    table has them), feeds the clusterer and holds the widened table (in memory up to
    ``MEMORY_BYTES``, beyond that spilled to an Arrow IPC file); ``kept()`` then yields the kept rows
    in the order added, each with the counts of the rows it absorbed."""

    MEMORY_BYTES = 64 * 2**20

    def __init__(self, schema: pa.Schema, params: DedupParams = PARAMS):
        self.params = params
        self.schema = schema  # the output schema: input columns + DEDUP_FIELDS
        self.clusterer = Clusterer(params)
        self.held: list[pa.Table] = []
        self.bytes = 0
        self.spill: tempfile.TemporaryDirectory | None = None
        self.writer = None
        self.counts = DedupCounts()

    def add(self, table: pa.Table, ranks: np.ndarray) -> None:
        if table.num_rows == 0:
            return
        if "minhash" in table.column_names and "dedup_key" in table.column_names:
            keys, minhash = table.column("dedup_key"), table.column("minhash")
        else:
            keys, minhash = dedup_columns(table, self.params)
        table = table.drop_columns([c.name for c in DEDUP_FIELDS if c.name in table.column_names])
        sig, valid = minhash_matrix(minhash, self.params)
        self.clusterer.add_signatures(np.asarray(ranks, dtype=np.int64), keys, sig, valid)
        zeros = pa.array(np.zeros(table.num_rows, dtype=np.int32))
        wide = table.append_column(DEDUP_FIELDS[0], keys).append_column(DEDUP_FIELDS[1], minhash) \
            .append_column(DEDUP_FIELDS[2], zeros).append_column(DEDUP_FIELDS[3], zeros)
        wide = wide.cast(self.schema)
        self.bytes += wide.nbytes
        if self.writer is None and self.bytes > self.MEMORY_BYTES:
            self.spill = tempfile.TemporaryDirectory(prefix="orbit-dedup-rows-")
            self.writer = pa.ipc.new_file(str(Path(self.spill.name) / "rows.arrow"), self.schema)
            for t in self.held:
                self.writer.write_table(t)
            self.held = []
        if self.writer is not None:
            self.writer.write_table(wide)
        else:
            self.held.append(wide)

    def _tables(self) -> Iterator[pa.Table]:
        if self.writer is None:
            while self.held:
                yield self.held.pop(0)
            return
        self.writer.close()
        with pa.memory_map(str(Path(self.spill.name) / "rows.arrow")) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield pa.Table.from_batches([reader.get_batch(i)])

    def kept(self) -> Iterator[pa.Table]:
        """The kept rows, in the order added, with ``dropped_exact`` / ``dropped_near`` filled in."""
        status, root, self.counts = self.clusterer.finish()
        exact, near = absorbed(status, root)
        at = 0
        try:
            for t in self._tables():
                n = t.num_rows
                keep = status[at:at + n] == KEPT
                if keep.any():
                    idx = pa.array(np.flatnonzero(keep))
                    out = t.take(idx)
                    out = out.set_column(out.schema.get_field_index("dropped_exact"), DEDUP_FIELDS[2],
                                         pa.array(exact[at:at + n][keep]))
                    out = out.set_column(out.schema.get_field_index("dropped_near"), DEDUP_FIELDS[3],
                                         pa.array(near[at:at + n][keep]))
                    yield out
                at += n
        finally:
            if self.spill is not None:
                self.spill.cleanup()


def dedup_table(table: pa.Table, schema: pa.Schema, ranks: np.ndarray | None = None,
                params: DedupParams = PARAMS) -> tuple[pa.Table, DedupCounts]:
    """The kept rows of an in-memory table (its rows' order kept), ranked by ``ranks`` (default: the
    filter's ranking: score desc, fewer messages, record_id)."""
    if ranks is None:
        ranks = ranking(table)
    d = PartitionDedup(schema, params)
    d.add(table, ranks)
    parts = list(d.kept())
    out = pa.concat_tables(parts) if parts else schema.empty_table()
    return out, d.counts


def ranking(table: pa.Table) -> np.ndarray:
    """Each row's place in the filter's ranking (score desc, fewer messages, record_id): 0 is the best."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    score = pc.fill_null(table.column("score").cast(pa.float64()), float("-inf"))  # nulls last, as DuckDB sorts
    t = pa.table({"neg": pc.negate(score), "n": pc.list_value_length(table.column("messages")).cast(pa.int64()).fill_null(2**62),
                  "id": table.column("record_id")})
    order = pc.sort_indices(t, sort_keys=[("neg", "ascending"), ("n", "ascending"), ("id", "ascending")]).to_numpy()
    ranks = np.empty(table.num_rows, dtype=np.int64)
    ranks[order] = np.arange(table.num_rows, dtype=np.int64)
    return ranks


def dedup_card(params: DedupParams = PARAMS) -> str:
    """The dedup rules and thresholds, as the training set's card and the export cards state them."""
    p = params
    return (f"Deduplicated: one row per (env, task_id); then one per canonical trajectory (exact: the env family's "
            f"`trajectory_key`, sha256); then one per near-duplicate cluster: MinHash (rensa RMinHash, "
            f"{p.num_perm} permutations, seed {p.seed}) over the assistant turns only, word {p.word_ngram}-gram "
            f"shingles for prose and character {p.char_ngram}-grams for code/JSON (texts under {MIN_SHINGLES} "
            f"shingles: exact only), LSH with {p.bands} bands x {p.rows} rows: threshold (1/{p.bands})^(1/{p.rows}) "
            f"= {p.threshold:.3f} Jaccard (a pair at Jaccard 0.8 is caught with probability "
            f"{1 - (1 - 0.8 ** p.rows) ** p.bands:.2f}, at 0.9 with {1 - (1 - 0.9 ** p.rows) ** p.bands:.4f}); "
            f"clusters are connected components of candidate pairs. Each keeps its best row: score desc, then fewer "
            f"messages, then record_id.")
