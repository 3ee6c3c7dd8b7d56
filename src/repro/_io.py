"""Files written atomically, and caches that are never silently trusted.

A file is written to a temporary name in its folder and moved into place with :func:`os.replace`,
so an interrupted write never leaves a half-written file. A process killed during a save cannot
remove its temporary file; the next save of the same file removes it (:func:`atomic_path`). A
cache entry that is corrupt or was written for other settings is moved aside with a warning and
rebuilt (:func:`load_cached`, :func:`move_aside`). The science modules use these for their
resumable training checkpoints. The experiments cache their results in the store
(:mod:`repro.store`): a result computed in one piece with :func:`cached`, results computed one
at a time (resumable runs) with :class:`Entries`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import socket
import tempfile
import warnings
from pathlib import Path

import torch


def jsonable(obj):
    """Tuples → lists, recursively, so that a run identity compares equal after a round trip
    through JSON or a checkpoint (a cache entry is reused only for an equal identity)."""
    if isinstance(obj, dict):
        return {key: jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(value) for value in obj]
    return obj


def fingerprint(*parts) -> str:
    """16 hex digits of SHA-256 over ``parts``: the key under which a cached result is stored, so
    that it is reused only for the same inputs. A tensor counts by its shape and values (as
    float64, so one key for the same values in float32 or float64, on any device), a
    ``pathlib.Path`` by the bytes of its file, anything else by its JSON text with sorted keys."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            kind = "tensor"
            data = str(tuple(part.shape)).encode() + part.detach().cpu().to(torch.float64).contiguous().numpy().tobytes()
        elif isinstance(part, Path):
            kind, data = "file", part.read_bytes()
        else:
            try:
                kind, data = "json", json.dumps(jsonable(part), sort_keys=True).encode()
            except TypeError:
                raise ValueError(f"cannot fingerprint a {type(part).__name__}: give tensors, paths or "
                                 "JSON values (numbers, strings, lists, dicts)") from None
        # the kind and the length of each part, so that no two different sequences of parts share a text
        digest.update(f"{kind}:{len(data)}:".encode() + data)
    return digest.hexdigest()[:16]


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # it exists but belongs to someone else
        return False
    return False


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that :func:`atomic_path` left beside ``path`` in processes that
    no longer exist (killed during a save), and return them.

    A temporary file's name records the writer's host and process id; only those of this host whose
    process is gone are removed, so a concurrent writer's file (another live process, another
    machine sharing the folder) is never touched. Only on POSIX, where asking whether a process
    exists is harmless (``os.kill(pid, 0)``)."""
    path = Path(path)
    if os.name != "posix" or not path.parent.is_dir():
        return []
    removed, prefix = [], f".{path.stem}.tmp."
    for candidate in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(path.suffix)}"):
        pid, _, rest = candidate.name[len(prefix):].partition(".")
        host, _, _ = rest.partition(".")
        if pid.isdigit() and host == _host_tag() and _process_is_gone(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success move it onto ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was. The temporary
    file is named ``.<stem>.tmp.<pid>.<host>.<random><suffix>``; before writing, the temporary
    files of earlier writers of ``path`` that were killed are removed
    (:func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp.{os.getpid()}.{_host_tag()}.", suffix=path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_json(path: str | os.PathLike):
    """Read JSON written by :func:`save_json`; a corrupt file raises ``ValueError`` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to recompute") from None


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """``torch.save`` ``state`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint; an unreadable file raises ``ValueError`` naming it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for a corrupt archive
        raise ValueError(f"checkpoint {path} is corrupt or unreadable ({err}); delete it to recompute") from None


def load_cached(path: str | os.PathLike, loader=load_json, is_valid=None):
    """Return the cache entry at ``path`` read by ``loader``, or ``None`` when it must be (re)built.

    ``None`` when the file is missing, or stale: readable, but ``is_valid(obj)`` is false (written
    for another configuration or format); the caller then overwrites it. ``None`` also when it is
    corrupt (``loader`` raises ``ValueError``, as :func:`load_json` and :func:`load_checkpoint` do
    for a truncated or damaged file): a corrupt entry is never silently used, it is renamed to
    ``<name>.corrupt`` (kept for inspection, replacing an older one) with a warning, and the
    caller computes it again.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = loader(path)
    except ValueError as err:
        move_aside(path, "corrupt", f"is corrupt ({err})")
        return None
    return obj if is_valid is None or is_valid(obj) else None


def cached(path: str | os.PathLike, key, compute, loader=load_json, saver=save_json):
    """The value stored at ``path`` for ``key``; else ``compute()``, stored there with ``key``.

    The cache of a result computed in one piece (a figure's curves, a selection, a timing table):
    the file holds ``{"key": key, "value": value}``, written atomically. An entry for another key
    is recomputed and replaced; a corrupt one is moved aside first (:func:`load_cached`). The value
    is always returned as read back from the file, so that a fresh and a cached call give the same
    object (with JSON: lists for tuples, string keys). ``key``: any JSON value, usually a
    :func:`fingerprint` of the inputs; ``loader``/``saver``: :func:`load_checkpoint` and
    :func:`save_checkpoint` for tensors."""
    def is_entry(obj) -> bool:
        return isinstance(obj, dict) and set(obj) == {"key", "value"} and obj["key"] == jsonable(key)

    entry = load_cached(path, loader, is_valid=is_entry)
    if entry is None:
        saver({"key": jsonable(key), "value": compute()}, path)
        entry = loader(path)
    return entry["value"]


class TrainingCheckpoint:
    """Where a resumable training run keeps its state: one run, named by its ``identity`` (its
    configuration, seed and data: a dict of plain values).

    :meth:`save` writes ``{"run": identity, "step", "history", **state}`` to ``path`` atomically
    and the loss curves, ``{"run", "step", "history"}``, as JSON to ``history_path`` (default:
    ``path`` with ``.json``), readable while the run goes on. ``path=None``: nothing is saved or
    resumed. A run that resumes from :meth:`load` and replays steps that are pure functions of
    (seed, step) computes what an uninterrupted one would."""

    def __init__(self, path: str | os.PathLike | None, identity, history_path: str | os.PathLike | None = None):
        self.path = None if path is None else Path(path)
        self.identity = identity  # compared with the saved one as torch.save keeps it
        self.history_path = (None if self.path is None else
                             Path(history_path) if history_path is not None else self.path.with_suffix(".json"))

    def load(self, map_location="cpu", needs=("model", "optimizer", "step"), other_run: str = "raise") -> dict | None:
        """The saved state of this run, or None: no file, or a corrupt one (moved aside, with a
        warning). A state without the fields ``needs`` counts as corrupt. A state of another
        run raises ``ValueError`` naming the file (``other_run="raise"``), or is moved aside as
        ``.stale`` with a warning and None returned (``"aside"``: a profile's run retrained
        after its settings changed)."""
        if self.path is None:
            return None
        state = load_cached(self.path, lambda p: load_checkpoint(p, map_location=map_location))
        if state is not None and not (isinstance(state, dict) and set(needs) <= set(state)):
            move_aside(self.path, "corrupt", f"is not a training checkpoint (no {', '.join(needs)})")
            return None
        if state is not None and state.get("run") != self.identity:
            if other_run == "raise":
                raise ValueError(f"checkpoint {self.path} was written for another run ({state.get('run')}), not "
                                 f"{self.identity}; delete it or pass resume=False")
            move_aside(self.path, "stale", "was written for other settings of this run")
            return None
        return state

    def save(self, step: int, history: list, **state) -> None:
        """Save the run at ``step``: its ``state`` (model, optimiser, ...) and loss curves."""
        if self.path is not None:
            save_checkpoint({"run": self.identity, "step": step, "history": history, **state}, self.path)
            save_json({"run": self.identity, "step": step, "history": history}, self.history_path)


class Entries:
    """Results computed one at a time and kept in one file, each with the key it was computed for,
    so that a long run resumes after a kill and recomputes only what is missing or changed.

    The file holds ``{"format": format, "entries": {name: entry}}``, each entry a dict with a
    ``"key"``; :meth:`put` rewrites it atomically. A corrupt file is moved aside as ``.corrupt``,
    one of another format (written by an older version) as ``.stale``, each with a warning, and
    the run starts empty. ``loader``/``saver``: :func:`load_checkpoint` and
    :func:`save_checkpoint` for entries that hold tensors."""

    def __init__(self, path: str | os.PathLike, format: str, loader=load_json, saver=save_json):
        self.path, self.format, self._saver = Path(path), format, saver
        stored = load_cached(self.path, loader)
        if stored is not None and not (isinstance(stored, dict) and stored.get("format") == format
                                       and isinstance(stored.get("entries"), dict)):
            move_aside(self.path, "stale", f"is not of format {format}")
            stored = None
        self.entries: dict[str, dict] = {} if stored is None else stored["entries"]

    def get(self, name: str, key) -> dict | None:
        """The entry ``name`` if it was stored for ``key``, else None."""
        entry = self.entries.get(name)
        return entry if entry is not None and entry["key"] == jsonable(key) else None

    def put(self, name: str, key, entry: dict) -> dict:
        """Store ``entry`` under ``name`` for ``key`` and rewrite the file; return the stored entry."""
        self.entries[name] = {**entry, "key": jsonable(key)}
        self._saver({"format": self.format, "entries": self.entries}, self.path)
        return self.entries[name]


def move_aside(path: str | os.PathLike, suffix: str, why: str) -> Path:
    """Rename the cache entry ``path`` to ``<name>.<suffix>`` (kept for inspection, replacing an
    older one) with a warning that says ``why``, so that the caller rebuilds it; returns the new path.
    Used for a corrupt entry, and for a training checkpoint written for another configuration of
    its profile (``"stale"``), which is retrained rather than resumed or refused."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.{suffix}")
    os.replace(path, aside)
    warnings.warn(f"cache entry {path} {why}; moved to {aside.name} and rebuilt", stacklevel=3)
    return aside
