"""Anonymize a folder on a Ray cluster (``anonymize.py ... --ray``, :func:`anonymize_dataset`).

The driver lists the files and sends them through Ray Data to a fixed pool of actors: images in
batches, videos one per task, the longest videos first. Each actor builds the pipeline once
(:class:`dp2.dataset.DatasetWorker`: the CLI's own wiring, so the same detector, generators,
settings hash and per-file seeds as a single-machine run) and returns one record per file. The
driver is the only writer of the manifest: it appends each record as it arrives, so a run killed
at any point resumes without losing or repeating a finished file. Outputs are written
atomically by the workers.

Failures, bounded:

* an error that may pass (I/O, out of memory) is retried in the worker ``max_retries`` times;
  bad input fails at once and is recorded ``failed``;
* a worker process that dies (segfault, OOM kill, lost node) is restarted by Ray and its task
  retried ``max_retries`` times; the files of a task that never completes are sent again one by
  one, then recorded ``failed`` if their worker keeps dying.

Ray is imported only when a run starts: ``import dp2`` never needs it.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..dataset import (DatasetJob, DatasetSummary, DatasetWorker, FolderPlan, failed_record, open_manifest, plan_folder,
                       progress_bar, remove_partials)
from ..io.lock import output_lock
from ..io.sources import InputKind, classify_path
from ..weights import WeightsError

__all__ = ["WorkerSetupError", "anonymize_dataset", "run_dataset"]

logger = logging.getLogger(__name__)


class WorkerSetupError(RuntimeError):
    """Workers could not build the pipeline (bad option for this config, missing weights).

    Attributes:
        usage: the options or the config are wrong (the CLI exits with 2), not the machine.
    """

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def anonymize_dataset(config: str | Path, input_dir: str | Path, output_dir: str | Path, *,
                      overrides: Sequence[str] = (), seed: int = 0, address: str | None = None,
                      num_workers: int | None = None, num_gpus_per_worker: float | None = None,
                      num_cpus_per_worker: float = 1.0, batch_size: int = 8, max_retries: int = 2,
                      resume: bool = True, on_record: Callable[[Mapping[str, Any]], None] | None = None,
                      **options: Any) -> DatasetSummary:
    """Anonymize every image and video under ``input_dir`` into the same tree under ``output_dir``.

    The same run as ``anonymize.py CONFIG -i INPUT_DIR -o OUTPUT_DIR --ray ADDRESS``, with the
    same bytes per file as the single-machine folder mode.

    Args:
        config: config file (``configs/anonymizers/...``).
        overrides: ``key=value`` config overrides (``--opt``).
        seed: the run's seed; each file's latents come from it and the file's relative path.
        address: Ray cluster to use when Ray is not initialized in this process yet: None
            (``$RAY_ADDRESS``, else a new local cluster), ``"auto"`` (the running cluster),
            ``"local"`` (always a new local one) or ``host:port`` / ``ray://host:port``. A Ray
            session started here is shut down at the end; an existing one is left as it is.
        num_workers: actors, each holding the models once. Default: one per GPU slot when
            workers use GPUs, else one per CPU slot.
        num_gpus_per_worker: GPUs per actor (fractions share a GPU). Default: 1 when the
            cluster has GPUs and ``device`` is not ``cpu``, else 0 (workers then run on CPU).
        num_cpus_per_worker: CPUs reserved per actor.
        batch_size: images per task; videos go one per task.
        max_retries: bound on retries per file (errors that may pass, worker deaths).
        resume: skip files the manifest (``dp2_manifest.jsonl``) says are done with the same
            input and settings.
        on_record: called on the driver with each file's record as it arrives.
        **options: any other option of ``anonymize.py`` by its parameter name, e.g.
            ``max_res=1024``, ``truncation_value=0.5``, ``device="cuda"``, ``weights_dir=...``.

    Returns:
        Counts, detections per kind, and the files that failed with their reasons.

    Raises:
        TypeError, ValueError: unknown or bad options, bad folders (FolderError), config errors.
        OutputBusyError: another run holds the output folder.
        WorkerSetupError: the workers could not build the pipeline.
    """
    from ..run import RunOptions, dataset_job, load_anonymizer_config

    if options.get("export_detections") is not None:
        raise TypeError("export_detections does not combine with Ray (workers run in other processes)")
    run_options = RunOptions.from_dict({"opts": tuple(overrides), "seed": seed, "max_retries": max_retries,
                                        "resume": resume, **options})
    load_anonymizer_config(config, run_options.opts)  # config errors here, not in every worker
    return run_dataset(dataset_job(config, input_dir, output_dir, run_options), address=address,
                       num_workers=num_workers, num_gpus_per_worker=num_gpus_per_worker,
                       num_cpus_per_worker=num_cpus_per_worker, batch_size=batch_size, on_record=on_record)


def run_dataset(job: DatasetJob, *, address: str | None = None, num_workers: int | None = None,
                num_gpus_per_worker: float | None = None, num_cpus_per_worker: float = 1.0, batch_size: int = 8,
                on_record: Callable[[Mapping[str, Any]], None] | None = None) -> DatasetSummary:
    """Run a :class:`~dp2.dataset.DatasetJob` on Ray (arguments as :func:`anonymize_dataset`).

    Raises:
        FolderError: the folders cannot be used (see :func:`dp2.dataset.plan_folder`).
        OutputBusyError: another run holds the output folder.
    """
    output_dir = Path(job.output_dir)
    plan = plan_folder(Path(job.input_dir), output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(output_dir):  # the driver holds the output folder for the whole run
        return _run_locked(job, plan, address=address, num_workers=num_workers,
                           num_gpus_per_worker=num_gpus_per_worker, num_cpus_per_worker=num_cpus_per_worker,
                           batch_size=batch_size, on_record=on_record)


def _run_locked(job: DatasetJob, plan: FolderPlan, *, address, num_workers, num_gpus_per_worker,
                num_cpus_per_worker, batch_size, on_record) -> DatasetSummary:
    import ray

    input_dir, output_dir, relatives = plan.input_dir, plan.output_dir, plan.relatives
    summary = DatasetSummary(files=len(relatives) + len(plan.failed), not_read=plan.skipped)
    manifest = open_manifest(output_dir)
    for relative, error in plan.failed:  # entries that must not be opened (FIFOs, devices, loops)
        record = failed_record(relative, error)
        summary.add(record)
        manifest.append(record)
        if on_record is not None:
            on_record(record)
    previous = {rel: manifest.records.get(rel) for rel in relatives} if job.resume else {}
    pending = dict.fromkeys(relatives)  # insertion-ordered set of files without a record yet

    def finish(record: dict[str, Any]) -> None:
        del pending[record["input"]]
        summary.add(record)
        if record["status"] != "skipped":
            manifest.append(record)
        if on_record is not None:
            on_record(record)
        bar.update(1)

    started = False
    if not ray.is_initialized():
        verbose = logger.isEnabledFor(logging.DEBUG)
        ray.init(address=address, logging_level=logging.DEBUG if verbose else logging.WARNING)
        started = True
    bar = progress_bar(total=len(relatives), desc="files", unit="file", leave=True)
    try:
        job, num_workers, num_gpus_per_worker = _placement(job, num_workers, num_gpus_per_worker,
                                                           num_cpus_per_worker, ray.cluster_resources())
        logger.info("Ray: %d file(s), %d worker(s) with %g CPU and %g GPU each", len(relatives), num_workers,
                    num_cpus_per_worker, num_gpus_per_worker)
        # First every file in tasks of batch_size images or one video; then, one by one, the files
        # of tasks whose worker kept dying (one bad file must not take its batch down with it).
        for unit_size in (batch_size, 1):
            if not pending:
                break
            units = _units(input_dir, list(pending), unit_size, previous)
            for record in _execute(units, job, num_workers=num_workers, num_gpus=num_gpus_per_worker,
                                   num_cpus=num_cpus_per_worker):
                if record["input"] not in pending:
                    continue  # a repeated task's second answer
                if "fatal" in record:
                    raise WorkerSetupError(record["fatal"]["message"], usage=record["fatal"]["usage"])
                finish(record)
        for relative in list(pending):
            finish({"input": relative, "status": "failed", "input_sha256": None, "output": relative,
                    "detections": {}, "frames": 0,
                    "error": f"the worker process died on every try ({job.max_retries + 1} with its batch, "
                             f"{job.max_retries + 1} alone; see the Ray worker logs)"})
    finally:
        bar.close()
        if started:
            ray.shutdown()
    remove_partials(output_dir, relatives)
    return summary


def _placement(job: DatasetJob, num_workers: int | None, num_gpus: float | None, num_cpus: float,
               resources: Mapping[str, float]) -> tuple[DatasetJob, int, float]:
    """Workers and GPUs per worker, defaulting to what the cluster has; CPU workers get device cpu."""
    gpus = resources.get("GPU", 0)
    options = job.params.get("options", {})
    device = options.get("device")
    if num_gpus is None:
        num_gpus = 1.0 if gpus >= 1 and not (device or "").startswith("cpu") else 0.0
    if num_gpus == 0 and device is None:
        # A worker without a GPU slot must not pick up a GPU of its node on its own.
        job = replace(job, params={**job.params, "options": {**options, "device": "cpu"}})
    if num_workers is None:
        slots = gpus / num_gpus if num_gpus > 0 else resources.get("CPU", 1) / num_cpus
        num_workers = max(1, int(slots))
    return job, num_workers, num_gpus


def _units(input_dir: Path, relatives: list[str], batch_size: int,
           previous: Mapping[str, Any]) -> list[dict[str, str]]:
    """Rows for Ray Data, one per task: a video alone (largest first) or up to batch_size images."""
    def size(relative: str) -> int:
        try:
            return (input_dir / relative).stat().st_size
        except OSError:
            return 0

    videos = sorted((r for r in relatives if classify_path(input_dir / r) is InputKind.VIDEO), key=size, reverse=True)
    images = [r for r in relatives if classify_path(input_dir / r) is not InputKind.VIDEO]
    units = [[r] for r in videos] + [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    return [{"unit": json.dumps([{"input": r, "previous": previous.get(r)} for r in unit])} for unit in units]


def _execute(units: list[dict[str, str]], job: DatasetJob, *, num_workers: int, num_gpus: float,
             num_cpus: float) -> Iterator[dict[str, Any]]:
    """Records of the files in ``units``, as workers finish them (any order)."""
    import ray.data

    # dp2 reports progress and per-file results itself; Ray Data's per-run log lines would
    # interleave with them (they stay in Ray's session logs).
    context = ray.data.DataContext.get_current()
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    if not logger.isEnabledFor(logging.DEBUG):
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    dataset = ray.data.from_items(units, override_num_blocks=len(units))
    with warnings.catch_warnings():
        # Ray Data restarts dead actors and retries their tasks without bound by default; only
        # these (deprecated, unnamed) remote arguments bound the retries.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        dataset = dataset.map_batches(
            _RayWorker, fn_constructor_args=(job,), batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(num_workers, len(units)), max_tasks_in_flight_per_actor=1),
            num_cpus=num_cpus, num_gpus=num_gpus or None,
            max_restarts=-1, max_task_retries=job.max_retries)
    # A task whose worker died on every retry is dropped instead of failing the run; the driver
    # sees its files without a record and sends them again.
    dataset.context.max_errored_blocks = -1
    for row in dataset.iter_rows():
        yield json.loads(row["record"])


class _RayWorker:
    """Ray Data's callable class: one per actor, holding the built pipeline."""

    def __init__(self, job: DatasetJob) -> None:
        from ..config import ConfigError
        from ..options import RunUsageError

        self.worker: DatasetWorker | None = None
        self.fatal: dict[str, Any] | None = None
        try:
            self.worker = DatasetWorker(job)
        except RunUsageError as e:
            self.fatal = {"message": e.format_message(), "usage": True}
        except ConfigError as e:
            self.fatal = {"message": str(e), "usage": True}
        except WeightsError as e:
            self.fatal = {"message": str(e), "usage": False}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        records = []
        for unit in batch["unit"]:
            for item in json.loads(unit):
                records.append(json.dumps(self._one(item)))
        return {"record": records}

    def _one(self, item: Mapping[str, Any]) -> dict[str, Any]:
        if self.fatal is None:
            try:
                return self.worker(item["input"], previous=item["previous"])
            except WeightsError as e:  # weights load lazily: missing on this node
                self.fatal = {"message": str(e), "usage": False}
        return {"input": item["input"], "fatal": self.fatal}
