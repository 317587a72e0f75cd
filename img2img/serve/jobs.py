"""Jobs of the local web app: one inference at a time per model, the others queued behind it.

Every model has its own worker thread and FIFO queue, so a long upscale does not hold up a face
grid. A job's files live in its own folder under the server's work folder, nothing is written
anywhere else, and a finished job (its result, its input) is removed `result_ttl` seconds
after it finished. The work runs through the same `img2img.runtime.api.Model` as the command
line; a running job reports the tiles done, and a cancelled one stops at the next tile with
nothing written (the runtime writes atomically).
"""

from __future__ import annotations

import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from img2img.errors import Img2ImgError
from img2img.serve.catalogue import OfferedModel

class JobCancelled(Exception):
    """Raised from a job's tile callback once the job was cancelled."""


class QueueFull(Img2ImgError):
    """More jobs wait than the server takes."""


@dataclass
class Job:
    """One request's work and where it got to.

    `run(job)` does the work and returns the result file; it is called on the model's worker
    thread and calls `job.tile_done(done, total)` as tiles finish.
    """

    model: OfferedModel
    run: Callable[[Job], Path]
    folder: Path
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    status: str = "queued"  # queued, running, done, failed, cancelled
    tiles_done: int = 0
    tiles_total: int = 0
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: Path | None = None
    result_size: tuple[int, int] | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    def tile_done(self, done: int, total: int) -> None:
        """The runtime's `on_tile` callback: records progress, stops a cancelled job."""
        self.tiles_done, self.tiles_total = done, total
        if self.cancel_requested.is_set():
            raise JobCancelled

    def eta_seconds(self) -> float | None:
        """Seconds left by the pace of the tiles so far; None before the first tile."""
        if self.status != "running" or not self.tiles_done or not self.started:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.tiles_done * (self.tiles_total - self.tiles_done)


class JobQueue:
    """Accepts jobs, runs each model's one at a time, and forgets finished ones after a while.

    Args:
        work_dir: the folder every job's files go under.
        max_queued: jobs that may wait or run at once, over all models; more are refused.
        result_ttl: seconds a finished job and its files are kept.
    """

    def __init__(self, work_dir: Path, *, max_queued: int = 16, result_ttl: float = 3600.0) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)
        self.max_queued = max_queued
        self.result_ttl = result_ttl
        self._jobs: dict[str, Job] = {}
        self._queues: dict[str, queue.Queue[Job | None]] = {}
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def new_folder(self) -> Path:
        """A fresh folder for a job's files, inside the work folder."""
        folder = self.work_dir / secrets.token_hex(8)
        folder.mkdir()
        return folder

    def submit(self, job: Job) -> int:
        """Queue `job` behind its model's others; returns how many jobs of that model are ahead.

        Raises:
            QueueFull: `max_queued` jobs are already waiting or running.
        """
        self.sweep()
        with self._lock:
            pending = sum(1 for other in self._jobs.values() if other.status in ("queued", "running"))
            if pending >= self.max_queued:
                raise QueueFull(
                    f"{pending} images are already waiting or running, the most this server takes; "
                    "try again when some have finished"
                )
            ahead = self.position(job.model.name)
            self._jobs[job.id] = job
            if job.model.name not in self._queues:
                self._queues[job.model.name] = queue.Queue()
                worker = threading.Thread(
                    target=self._work, args=(self._queues[job.model.name],), name=f"model {job.model.name}", daemon=True
                )
                worker.start()
                self._workers.append(worker)
            self._queues[job.model.name].put(job)
        return ahead

    def position(self, model_name: str, before: Job | None = None) -> int:
        """Jobs of that model waiting or running (ahead of `before`, when given)."""
        count = 0
        for job in self._jobs.values():
            if job is before:
                break
            if job.model.name == model_name and job.status in ("queued", "running"):
                count += 1
        return count

    def get(self, job_id: str) -> Job | None:
        self.sweep()
        return self._jobs.get(job_id)

    def cancel(self, job: Job) -> bool:
        """Stops `job`: a queued one never runs, a running one stops at its next tile. False
        when it has already finished."""
        with self._lock:
            if job.status not in ("queued", "running"):
                return False
            job.cancel_requested.set()
            if job.status == "queued":
                self._finish(job, "cancelled")
        return True

    def sweep(self) -> None:
        """Removes finished jobs older than `result_ttl`, with their files."""
        now = time.monotonic()
        with self._lock:
            expired = [job for job in self._jobs.values() if job.finished and now - job.finished > self.result_ttl]
            for job in expired:
                del self._jobs[job.id]
        for job in expired:
            shutil.rmtree(job.folder, ignore_errors=True)

    def close(self) -> None:
        """Stops the workers after their current job and removes every job's files."""
        for jobs in self._queues.values():
            jobs.put(None)
        for worker in self._workers:
            worker.join(timeout=60)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def _work(self, jobs: queue.Queue[Job | None]) -> None:
        while (job := jobs.get()) is not None:
            with self._lock:
                if job.status != "queued":  # cancelled while it waited
                    continue
                job.status, job.started = "running", time.monotonic()
            try:
                result = job.run(job)
            except JobCancelled:
                self._finish(job, "cancelled")
            except Img2ImgError as error:
                self._finish(job, "failed", " ".join(str(error).split()))
            except MemoryError:
                self._finish(job, "failed", "ran out of memory; try a smaller image or a smaller tile")
            except Exception as error:  # noqa: BLE001 - the server must outlive any one image
                self._finish(job, "failed", f"{type(error).__name__}: {error}")
            else:
                if job.cancel_requested.is_set():  # asked while its last step ran
                    self._finish(job, "cancelled")
                else:
                    job.result = result
                    self._finish(job, "done")

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        job.status, job.error, job.finished = status, error, time.monotonic()
        if status != "done":
            # Keep nothing of a job that gave no result (its upload included).
            shutil.rmtree(job.folder, ignore_errors=True)


def job_view(job: Job, queue_: JobQueue) -> dict[str, Any]:
    """A job as the page polls it."""
    return {
        "id": job.id,
        "model": job.model.name,
        "status": job.status,
        "position": queue_.position(job.model.name, before=job) if job.status == "queued" else 0,
        "progress": {"done": job.tiles_done, "total": job.tiles_total},
        "eta_seconds": job.eta_seconds(),
        "error": job.error,
        "result": None if job.result_size is None or job.status != "done" else {
            "width": job.result_size[0], "height": job.result_size[1],
        },
    }
