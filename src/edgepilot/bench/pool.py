"""Units of benchmark and distillation work on worker processes or Ray tasks: retried, and streamed back.

A unit (one episode, one roll-out) runs in a worker as ``work(context, job, scratch)``: ``context`` is what
every unit of the run shares (settings, the policy, an adapter's bytes), sent once to each worker process (to
the object store with Ray); ``job`` is the unit's own; ``scratch`` is a private temporary folder of the
worker. The work returns a small value (a report row, an episode's result) and writes its files
(trajectories) under ``scratch``, naming them in its value relative to it. The worker packs the folder into
a gzip'd tar and sends it back with the value: the driver unpacks it under its own output folder
(:meth:`Done.unpack`), so workers on other machines need no shared filesystem. Units come back as they
finish: :func:`run_units` is a generator.

A unit is tried again, up to ``retries`` times, when its worker process dies or its work raises an error of
the infrastructure: anything but the ``fatal`` kinds, which would be the same on every try (a wrong setting,
a model that does not load) and end the run at once. An agent that fails its task is a value, not an error.
Every failed attempt is in :attr:`Done.errors`.

    units = [Unit(i.id, job_of(i)) for i in todo]
    for done in run_units(play, units, context=shared, workers=4):        # or ray="auto"
        folders = done.unpack(out / "trajectories")
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import tarfile
import tempfile
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from edgepilot.errors import ConfigError, ModelError, PolicyError, TaskError

RETRIES = 2
"""Tries after the first that a unit gets when its worker dies or raises an infrastructure error."""

FATAL: tuple[type[Exception], ...] = (ConfigError, ModelError, PolicyError, TaskError)
"""Errors that would be the same on every try: never retried; the first one ends the run."""

Work = Callable[[Any, Any, Path], Any]
"""``work(context, job, scratch)``: plays one unit in a worker; a module-level function (workers import it)."""


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``key`` names it in reports and errors, ``job`` is what its worker needs."""

    key: str
    job: Any


@dataclass
class Done:
    """A finished unit: its value and files, or (``failed``) why every attempt failed."""

    key: str
    index: int
    """Its place in the units given to :func:`run_units` (results arrive in any order)."""
    value: Any = None
    archive: bytes = b""
    attempts: int = 1
    errors: list[str] = field(default_factory=list)
    worker: str | None = None
    """``host:pid`` of the worker that finished it."""
    failed: bool = False

    def unpack(self, dest: Path) -> dict[str, Path]:
        """Write the unit's files under ``dest``; where each top-level file or folder of its scratch went.

        A name already taken in ``dest`` gets ``-2``, ``-3``... (as :meth:`TrajectoryWriter.new` names folders).
        """
        return unpack(self.archive, Path(dest))

    def record(self) -> dict[str, Any]:
        """What a report says of a unit that needed more than one attempt."""
        return {"unit": self.key, "attempts": self.attempts, "errors": list(self.errors), "failed": self.failed}


def pack(folder: Path) -> bytes:
    """Everything under ``folder`` as a gzip'd tar (no bytes when the folder is empty)."""
    entries = sorted(folder.iterdir())
    if not entries:
        return b""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:  # screenshots are PNGs already
        for entry in entries:
            tar.add(entry, arcname=entry.name)
    return buffer.getvalue()


def unpack(archive: bytes, dest: Path) -> dict[str, Path]:
    """Unpack :func:`pack`'s ``archive`` under ``dest`` (created); where each top-level entry went.

    Raises:
        ConfigError: ``dest`` cannot be written.
    """
    if not archive:
        return {}
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest))
    except OSError as exc:
        raise ConfigError(f"cannot write the results of a worker under {dest}: {exc}") from exc
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")  # no absolute paths, links out or devices
        placed = {}
        for entry in sorted(staging.iterdir()):
            target, n = dest / entry.name, 1
            while target.exists():
                n += 1
                target = dest / f"{entry.name}-{n}"
            entry.rename(target)
            placed[entry.name] = target
        return placed
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---------------------------------------------------------------- in a worker


def worker_name() -> str:
    """``host:pid`` of this process: which worker played a unit."""
    return f"{socket.gethostname()}:{os.getpid()}"


_KEPT: dict[str, tuple[Any, Any, ExitStack]] = {}


def kept(name: str, key: Any, make: Callable[[], AbstractContextManager[Any]]) -> Any:
    """What this worker process keeps between its units under ``name`` (an open device, a loaded model).

    ``make()`` gives a context manager; it is entered on first use and again when ``key`` changes (the
    one kept before is closed first), and closed by :func:`forget` or when the worker stops.
    """
    if name in _KEPT and _KEPT[name][0] == key:
        return _KEPT[name][1]
    forget(name)
    stack = ExitStack()
    value = stack.enter_context(make())
    _KEPT[name] = (key, value, stack)
    return value


def forget(name: str | None = None) -> None:
    """Close what :func:`kept` keeps under ``name`` (everything when None): the next unit makes it afresh."""
    for kept_name in [name] if name is not None else list(_KEPT):
        entry = _KEPT.pop(kept_name, None)
        if entry is not None:
            entry[2].close()


def _describe(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)
    at = f" (at {Path(where[-1].filename).name}:{where[-1].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


def _attempt(work: Work, context: Any, job: Any, fatal: tuple[type[Exception], ...]) -> tuple[str, Any]:
    """One attempt at a unit, in the worker: ``("ok", (value, archive, worker))``, ``("error", why)`` or
    ``("fatal", (kind, message))``."""
    scratch = Path(tempfile.mkdtemp(prefix="edgepilot-unit-"))
    try:
        value = work(context, job, scratch)
        return "ok", (value, pack(scratch), worker_name())
    except fatal as exc:
        return "fatal", (next(i for i, kind in enumerate(fatal) if isinstance(exc, kind)), str(exc))
    except Exception as exc:  # an infrastructure error: the driver tries the unit again
        forget()  # a device or model in a bad state is not handed to the next unit
        return "error", _describe(exc)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _serve(conn: Connection, work: Work, context: Any, fatal: tuple[type[Exception], ...]) -> None:
    """A local worker process: plays each job it is sent, until it is sent None."""
    try:
        while (job := conn.recv()) is not None:
            conn.send(_attempt(work, context, job, fatal))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        forget()


# ---------------------------------------------------------------- in the driver


class _Tries:
    """The units still to play and each one's failed attempts; turns an attempt's outcome into a :class:`Done`."""

    def __init__(self, units: Sequence[Unit], retries: int, fatal: tuple[type[Exception], ...]) -> None:
        self.units = units
        self.retries = retries
        self.fatal = fatal
        self.todo: deque[tuple[int, int]] = deque((i, 1) for i in range(len(units)))
        self.errors: dict[int, list[str]] = {}

    def settle(self, index: int, attempt: int, kind: str, payload: Any) -> Done | None:
        """A :class:`Done`, or None when the unit goes back in the queue for another attempt.

        Raises:
            EdgepilotError: the unit's work raised one of the fatal kinds.
        """
        unit = self.units[index]
        if kind == "ok":
            value, archive, worker = payload
            return Done(unit.key, index, value, archive, attempt, self.errors.pop(index, []), worker)
        if kind == "fatal":
            which, message = payload
            raise self.fatal[which](f"{unit.key}: {message}")
        errors = self.errors.setdefault(index, [])
        errors.append(f"attempt {attempt}: {payload}")
        if attempt <= self.retries:
            self.todo.appendleft((index, attempt + 1))
            return None
        return Done(unit.key, index, attempts=attempt, errors=self.errors.pop(index), failed=True)


class _Process:
    """One local worker process and the unit it is playing."""

    def __init__(self, work: Work, context: Any, fatal: tuple[type[Exception], ...]) -> None:
        spawn = get_context("spawn")  # a fork would copy the driver's threads and open devices
        self.conn, child = spawn.Pipe()
        self.process = spawn.Process(target=_serve, args=(child, work, context, fatal), name="edgepilot-worker")
        self.process.start()
        child.close()
        self.busy: tuple[int, int] | None = None

    def give(self, index: int, attempt: int, job: Any) -> bool:
        try:
            self.conn.send(job)
        except OSError:  # it died between units
            return False
        self.busy = (index, attempt)
        return True

    def take(self) -> tuple[str, Any]:
        """The outcome of its unit, or ``("died", why)``."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        self.process.join(timeout=5)
        code = self.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return "died", f"the worker process died ({how})"

    def stop(self, *, now: bool = False) -> None:
        if not now:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()


def _run_local(work: Work, units: Sequence[Unit], context: Any, workers: int, tries: _Tries) -> Iterator[Done]:
    pool: list[_Process] = []
    finished = False
    try:
        while tries.todo or any(p.busy for p in pool):
            while tries.todo:
                idle = next((p for p in pool if p.busy is None), None)
                if idle is None and len(pool) < workers:
                    idle = _Process(work, context, tries.fatal)
                    pool.append(idle)
                if idle is None:
                    break
                index, attempt = tries.todo.popleft()
                if not idle.give(index, attempt, units[index].job):  # it died before it took the unit
                    pool.remove(idle)
                    idle.stop(now=True)
                    done = tries.settle(index, attempt, "error", "the worker process died before it began")
                    if done is not None:
                        yield done
            busy = [p for p in pool if p.busy is not None]
            ready = set(wait([p.conn for p in busy] + [p.process.sentinel for p in busy]))
            for p in busy:
                if p.conn not in ready and p.process.sentinel not in ready:
                    continue
                index, attempt = p.busy
                p.busy = None
                kind, payload = p.take()
                if kind == "died":
                    pool.remove(p)
                    p.stop(now=True)
                done = tries.settle(index, attempt, "error" if kind == "died" else kind, payload)
                if done is not None:
                    yield done
        finished = True
    finally:
        for p in pool:
            p.stop(now=not finished)


def _connect(address: str) -> tuple[Any, bool]:
    """Ray, connected to ``address`` (``local``: a cluster of this machine's own); whether this call started it.

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--ray needs the ray package on this machine and on every node: "
                          "pip install 'ray[default]'") from exc
    if ray.is_initialized():
        return ray, False
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError... for an unreachable cluster
        raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {exc}; start one with `ray start --head` "
                          "and pass --ray auto on a node of it, or ray://HEAD:10001 from elsewhere "
                          "(--ray local starts one on this machine)") from exc
    return ray, True


def _run_ray(work: Work, units: Sequence[Unit], context: Any, address: str, limit: int | None,
             tries: _Tries) -> Iterator[Done]:
    ray, started = _connect(address)
    pending: dict[Any, tuple[int, int]] = {}
    try:
        remote = ray.remote(_attempt).options(max_retries=0, num_cpus=1)  # retried here, where it is recorded
        shared = ray.put(context)
        while tries.todo or pending:
            while tries.todo and (limit is None or len(pending) < limit):
                index, attempt = tries.todo.popleft()
                pending[remote.remote(work, shared, units[index].job, tries.fatal)] = (index, attempt)
            ready, _ = ray.wait(list(pending), num_returns=1)
            index, attempt = pending.pop(ready[0])
            try:
                kind, payload = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the worker or its node died, the object was lost...
                kind, payload = "error", f"the Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            done = tries.settle(index, attempt, kind, payload)
            if done is not None:
                yield done
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def run_units(work: Work, units: Sequence[Unit], *, context: Any = None, workers: int = 2, ray: str | None = None,
              retries: int = RETRIES, fatal: tuple[type[Exception], ...] = FATAL) -> Iterator[Done]:
    """Play every unit on ``workers`` local processes, or as Ray tasks on the cluster at ``ray``; yield each
    unit as it finishes.

    Args:
        work: ``work(context, job, scratch)``, a module-level function (each worker imports it).
        units: what to play; :attr:`Done.index` says which one finished.
        context: what every unit shares, sent once to each worker.
        workers: local worker processes (spawned); with ``ray``, the most units in flight at once when above 1
            (else Ray runs as many as the cluster has CPUs for).
        ray: ``local`` (a Ray cluster of this machine's own), ``auto`` (the cluster this machine is a node
            of), ``ray://HOST:10001`` (a cluster's client server) or ``HOST:6379``.
        retries: tries after the first for a unit whose worker died or raised an infrastructure error.
        fatal: errors never retried: the first ends the run (re-raised here, naming the unit).

    Raises:
        ConfigError: Ray is asked for and missing, or its cluster cannot be reached.
        EdgepilotError: one of ``fatal``, raised by a unit's work.
    """
    tries = _Tries(units, retries, fatal)
    if not units:
        return iter(())
    if ray:
        return _run_ray(work, units, context, ray, workers if workers > 1 else None, tries)
    return _run_local(work, units, context, max(1, workers), tries)
