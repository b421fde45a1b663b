"""The folder of a training run (paper Section 4.1 runs), all in one place: which folder a run may write
(:func:`place_run`), and every file in it (:class:`RunFolder`, rank 0 only):

``config.yaml`` (the resolved config plus derived values), ``train.log`` (the log, ending with the summary block),
``metrics.csv`` (one row per epoch, drawn as ``curves.png`` when matplotlib is installed), ``last.pt`` (every
epoch, and every ``--checkpoint-every-steps`` steps), ``best.pt`` and ``best.safetensors`` (best validation top-1;
the safetensors metadata names the model), ``epoch_<N>.pt`` (every ``--checkpoint-every`` epochs) and
``summary.json``. A folder that holds a run is never overwritten unless ``--overwrite`` says so.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hyenapixel.models.weights import save_safetensors, save_training_state
from hyenapixel.paths import atomic_write_text, folder_target_problem, held_files, numbered_folder, timestamp
from hyenapixel.train.config import ConfigError, TrainConfig
from hyenapixel.train.distributed import DistInfo, broadcast_object
from hyenapixel.train.plots import plot_training_curves
from hyenapixel.train.state import EpochMetrics, find_resume_checkpoint
from hyenapixel.train.summary import format_summary

__all__ = ["METRIC_FIELDS", "RUN_FILES", "MetricsCSV", "RunFolder", "default_output", "holds_run", "place_run"]

log = logging.getLogger("hyenapixel")

#: The files a run writes into its directory (besides ``epoch_<N>.pt``): what --overwrite removes.
RUN_FILES = (
    "config.yaml",
    "train.log",
    "metrics.csv",
    "curves.png",
    "last.pt",
    "best.pt",
    "best.safetensors",
    "summary.json",
)
#: Everything in a run folder that --overwrite removes and that marks the folder as holding a run.
RUN_PATTERNS = (*RUN_FILES, "epoch_*.pt")

#: Columns of ``metrics.csv``: the record of an epoch but its image count; the EMA columns exist only when the run
#: keeps an EMA of the weights.
METRIC_FIELDS = tuple(f.name for f in dataclasses.fields(EpochMetrics) if f.name != "val_count")
EMA_FIELDS = ("ema_top1", "ema_top5")

#: How each column is written: decimals to round to (None: 6 significant digits, for the learning rate).
_DECIMALS: dict[str, int | None] = {
    "lr": None,
    "train_loss": 5,
    "val_loss": 5,
    "val_top1": 3,
    "val_top5": 3,
    "ema_top1": 3,
    "ema_top5": 3,
    "epoch_time_s": 2,
    "images_per_s": 1,
}


# ----------------------------------------------------------------------------------------------------------------
# Which folder
# ----------------------------------------------------------------------------------------------------------------


def holds_run(path: Path) -> bool:
    """Whether a directory holds files of a training run (finished or not)."""
    return bool(held_files(path, RUN_PATTERNS))


def default_output(cfg: TrainConfig) -> Path:
    """``runs/<time>-<model>-<dataset>``; a suffix ``-2``, ``-3``, ... if that folder exists already. The dataset
    part is ``balance``, ``pathfinder-easy`` or the image folder's name."""
    if cfg.data.data is not None:
        label = Path(cfg.data.data).resolve().name or "data"
    else:
        label = cfg.data.builtin + ("" if cfg.data.difficulty == "default" else f"-{cfg.data.difficulty}")
    return numbered_folder(Path("runs") / f"{timestamp()}-{cfg.model.model}-{label}")


def _output_problem(cfg: TrainConfig, output: Path, resume_path: Path | None) -> str | None:
    """Why ``output`` must not be written by this run (a finished or unfinished run is there), or None."""
    if output.exists() and not output.is_dir():
        return f"{output} is a file; --output names the run folder"
    problem = folder_target_problem(output)
    if problem:
        return problem
    if cfg.run.overwrite or cfg.run.resume == "auto" or not holds_run(output):
        return None
    if resume_path is not None and resume_path.parent.resolve() == output.resolve():
        return None
    return (
        f"{output} already holds a run; continue it with --resume auto, or choose another --output "
        "(or pass --overwrite to replace it)"
    )


def place_run(cfg: TrainConfig, info: DistInfo) -> tuple[Path, Path | None]:
    """The run folder (rank 0 picks the default name and checks it) and the checkpoint to resume from, if any."""
    resume_path: Path | None = None
    output = cfg.run.output
    if cfg.run.resume and cfg.run.resume != "auto":
        resume_path = Path(cfg.run.resume)
        if not resume_path.is_file():
            raise ConfigError("resume", f"checkpoint not found: {resume_path}")
        output = output or str(resume_path.parent)
    if cfg.run.resume == "auto" and output is None:
        raise ConfigError("resume", "'auto' needs --output (the run directory to continue)")
    problem = None
    if info.is_main:
        chosen = Path(output) if output else default_output(cfg)
        problem = _output_problem(cfg, chosen, resume_path)
        output = str(chosen)
    output, problem = broadcast_object((output, problem), info)
    if problem:
        raise ConfigError("output", problem)
    out_dir = Path(output)
    if cfg.run.resume == "auto":
        resume_path = find_resume_checkpoint(out_dir)
        log.info("--resume auto: %s", f"continuing from {resume_path}" if resume_path else "no checkpoint, fresh run")
    return out_dir, resume_path


# ----------------------------------------------------------------------------------------------------------------
# The files
# ----------------------------------------------------------------------------------------------------------------


def _cell(name: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if not isinstance(value, float) or name not in _DECIMALS:
        return str(value)
    decimals = _DECIMALS[name]
    return f"{value:.6g}" if decimals is None else repr(round(value, decimals))


class MetricsCSV:
    """``metrics.csv`` with one row per epoch, rounded; on resume, rows of epochs that will be re-run are dropped."""

    def __init__(self, path: Path, keep_before_epoch: int | None = None, fields: Sequence[str] = METRIC_FIELDS):
        self.path = path
        self.fields = tuple(fields)
        rows: list[dict[str, str]] = []
        if keep_before_epoch is not None and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["epoch"]) <= keep_before_epoch]
        self.rows = rows
        self._write()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append({k: _cell(k, row.get(k)) for k in self.fields})
        self._write()

    def _write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.fields, extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


def _safetensors_metadata(state: dict[str, Any]) -> dict[str, str]:
    """What ``best.safetensors`` says about itself (JSON strings), so that it loads and validates on its own."""
    keys = ("model_spec", "num_classes", "in_chans", "input_size", "class_names", "config", "epoch")
    return {k: json.dumps(state[k]) for k in keys}


class RunFolder:
    """Rank 0's files of a running run; use as a context manager (``train.log`` is a log handler meanwhile).

    Args:
        path: The run folder (created).
        config: The run's record for ``config.yaml``.
        banner: Lines that open ``train.log`` (and the terminal log).
        replace: Remove the files of the run that is there first (``--overwrite`` of a fresh run).
        resumed_epoch: Epochs a resumed run has done: later rows of ``metrics.csv`` are dropped; None: fresh.
        ema: Whether ``metrics.csv`` has the EMA columns.
    """

    def __init__(
        self,
        path: Path,
        config: dict[str, Any],
        banner: Sequence[str],
        *,
        replace: bool,
        resumed_epoch: int | None,
        ema: bool,
    ) -> None:
        self.path = path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("output", f"cannot create the run folder {path}: {exc.strerror or exc}") from None
        if replace:
            for old in held_files(path, RUN_PATTERNS):
                old.unlink(missing_ok=True)
        self.handler = logging.FileHandler(path / "train.log")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self.handler)
        atomic_write_text(path / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        for line in banner:
            log.info("%s", line)
        fields = METRIC_FIELDS if ema else tuple(f for f in METRIC_FIELDS if f not in EMA_FIELDS)
        self.metrics = MetricsCSV(path / "metrics.csv", keep_before_epoch=resumed_epoch, fields=fields)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        log.removeHandler(self.handler)
        self.handler.close()

    def save_step(self, state: dict[str, Any]) -> None:
        """``last.pt`` in the middle of an epoch (``--checkpoint-every-steps``, or before a SIGTERM stop)."""
        save_training_state(self.path / "last.pt", state)

    def save_epoch(self, state: dict[str, Any], metrics: dict[str, Any], *, is_best: bool, keep: bool) -> None:
        """The checkpoints and the ``metrics.csv`` row of a finished epoch (``keep``: also ``epoch_<N>.pt``)."""
        save_training_state(self.path / "last.pt", state)
        if is_best:
            save_training_state(self.path / "best.pt", state)
            weights = state["ema"] if state["ema"] is not None else state["model"]
            save_safetensors(self.path / "best.safetensors", weights, _safetensors_metadata(state))
        if keep:
            save_training_state(self.path / f"epoch_{state['epoch']:04d}.pt", state)
        self.metrics.append(metrics)

    def draw_curves(self, title: str, chance: float) -> Path | None:
        """``curves.png`` from ``metrics.csv`` (None without matplotlib; a failure is a warning, never an error)."""
        try:
            return plot_training_curves(self.path / "metrics.csv", self.path / "curves.png", title=title, chance=chance)
        except Exception as e:  # a picture must never cost the results of a finished run
            log.warning("could not draw curves.png: %s", e)
            return None

    def write_summary(self, summary: dict[str, Any]) -> None:
        """``summary.json``, and the summary block at the end of ``train.log`` (the terminal gets it from the
        command)."""
        atomic_write_text(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")
        text = "\n" + format_summary(summary)
        record = logging.makeLogRecord({"name": log.name, "levelno": logging.INFO, "levelname": "INFO", "msg": text})
        self.handler.handle(record)

    def newest_checkpoint(self) -> Path | None:
        return find_resume_checkpoint(self.path)
