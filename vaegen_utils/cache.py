"""Result cache keyed by the full config: notebooks reuse trained models and derived numbers.

Every cached thing lives in a folder named after the SHA-256 of its canonical config,
`cache_dir()/runs/<key[:16]>-<slug>/`, next to a `config.json` holding that config. The same
config always maps to the same folder, a different config to a different one; a folder whose
stored config differs from the requested one raises an error naming the folder and the fix.

Three entry points:
- `config_key(config)`: the key (canonical JSON: sorted keys, dataclasses as dicts, tuples as
  lists, integral floats as ints so `1.0` and `1` agree, other floats by their shortest repr).
- `RunCache.cached_result(name, config, compute_fn)`: compute once, store atomically with a
  `complete` marker holding the file's SHA-256, return the stored value afterwards.
- `train_cached(model_config, train_config, data_spec, images, eval_sets)`: the one-liner the
  notebooks use; builds the model, trains it with `training.train` (resuming from the last
  checkpoint after an interruption), or returns the finished model and history at once.

Corruption policy (chosen deliberately):
- derived results (`cached_result`) are cheap relative to what produced them and always
  recomputable: a corrupt or half-written result file triggers a warning naming the file, then a
  recompute that overwrites it;
- trained runs and stored configs are expensive or identity-defining: a corrupt `config.json`
  or checkpoint raises an error naming the file and the fix (delete the folder), never a silent
  retrain.

Bump `CODE_VERSION` when a change to the training code changes what a config produces; every key
then changes and old results are simply not found (delete `cache/runs` to reclaim the space).
Cache files are trusted local files: torch-format results are loaded with full unpickling.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from . import device as vdevice
from . import io, paths, training

CODE_VERSION = "vaegen-training-1"  # salt of every key; bump when training semantics change
CONFIG_FILE = "config.json"
RESULTS_FOLDER = "results"
TRAINING_FOLDER = "training"
_MISSING = object()


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


def canonical(value: Any, *, where: str = "config") -> Any:
    """A JSON-ready copy of value with one spelling per meaning (see the module docstring)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return canonical(dataclasses.asdict(value), where=where)
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}; config keys must be strings")
            result[key] = canonical(item, where=f"{where}.{key}")
        return result
    if isinstance(value, (list, tuple)):
        return [canonical(item, where=f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}; NaN/inf cannot be part of a cache key")
        if value.is_integer() and abs(value) < 2**53:
            return int(value)  # 1.0 and 1 mean the same setting
        return float(repr(value))  # shortest round-trip repr: stable across platforms
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.dtype):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, torch.Tensor):  # numpy scalars and arrays
        return canonical(value.tolist(), where=where)
    raise TypeError(
        f"{where} has a value of type {type(value).__name__} ({value!r:.60}); a cache key can only hold "
        "JSON-like values (dicts, lists, str, numbers, bools, None, dataclasses). Describe tensors and "
        "callables by a name or a fingerprint instead."
    )


def canonical_json(config: Any) -> str:
    """Canonical JSON text of a config: sorted keys, no whitespace, ASCII."""
    return json.dumps(canonical(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def config_key(config: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of `config` (a dict or a dataclass)."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def data_fingerprint(images: torch.Tensor, max_images: int = 1024) -> dict:
    """A cheap identity of an image tensor for cache keys: shape, dtype, sums and a sample hash.

    Hashing all of MNIST costs a noticeable fraction of a second per call; instead we hash up to
    `max_images` evenly spaced images and add float64 sums of all values, which together catch a
    different split, subset, binarization or scaling. Computed on a CPU copy, so the key does not
    depend on the device the images live on (a GPU's float64 sum reduces in another order).
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"expected an image tensor, got {type(images).__name__}")
    count = images.shape[0]
    stride = max(1, count // max_images) if count else 1
    images = vdevice.to_host(images)
    sample = images[::stride][:max_images].contiguous()
    digest = hashlib.sha256(sample.numpy().tobytes()).hexdigest()
    as_double = images.double()
    return {
        "shape": list(images.shape),
        "dtype": str(images.dtype),
        "sum": float(as_double.sum()),
        "sum_of_squares": float(as_double.pow(2).sum()),
        "sample_sha256": digest,
    }


def slugify(text: str, max_length: int = 48) -> str:
    """A folder-name-safe, readable label: letters, digits, '.', '_' and '-' only."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-.")
    return (slug or "run")[:max_length]


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


class RunCache:
    """Folders keyed by config under `root` (default `cache_dir()/runs`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else paths.cache_dir() / "runs"

    def __repr__(self) -> str:
        return f"RunCache({str(self.root)!r})"

    # Folders ---------------------------------------------------------------------------
    def find(self, config: Any) -> Path | None:
        """The existing folder of `config`, or None."""
        key = config_key(config)
        if not self.root.is_dir():
            return None
        matches = sorted(path for path in self.root.glob(f"{key[:16]}-*") if path.is_dir())
        return matches[0] if matches else None

    def run_dir(self, config: Any, name: str | None = None) -> Path:
        """The folder of `config`, created with its `config.json` on first use.

        `name` only makes the folder readable (`<key[:16]>-<name>`); the key decides identity, so
        an existing folder for the same config is found whatever its name.
        """
        stored = canonical(config)
        key = config_key(stored)
        folder = self.find(stored)
        if folder is None:
            label = name if name is not None else (stored.get("name") if isinstance(stored, dict) else None)
            folder = self.root / f"{key[:16]}-{slugify(label or 'run')}"
            folder.mkdir(parents=True, exist_ok=True)
        config_path = folder / CONFIG_FILE
        if config_path.is_file():
            try:
                existing = io.read_json(config_path)
            except ValueError as error:
                raise ValueError(
                    f"{error} The cache folder is {folder}: delete it to recompute its contents."
                ) from error
            if existing.get("config") != stored:
                raise ValueError(
                    f"cache folder {folder} holds a different config than the one requested (key prefix "
                    f"collision or a hand-edited config.json). Delete {folder} and rerun."
                )
        else:
            io.atomic_write_json(config_path, {"key": key, "config": stored})
        return folder

    # Derived results -------------------------------------------------------------------
    def cached_result(self, name: str, config: Any, compute_fn: Callable[[], Any]) -> Any:
        """compute_fn() once per (config, name); later calls return the stored value.

        JSON-able values (no NaN) are stored as `<name>.json` and come back as JSON values
        (tuples become lists); anything else (tensors, NaN, numpy arrays) as `<name>.pt`, with
        every tensor (in dicts, lists and tuples) moved to the CPU first: the first call returns
        exactly what later calls load, CPU tensors, whatever device computed them. A
        `<name>.complete` marker with the file's SHA-256 is written last, so a half-written or
        altered file is detected; it is then recomputed after a warning.
        """
        label = slugify(name, max_length=80)
        folder = self.run_dir(config, name=name) / RESULTS_FOLDER
        value = self._read_result(folder, label)
        if value is not _MISSING:
            return value
        value = compute_fn()
        return self._write_result(folder, label, value)

    def has_result(self, name: str, config: Any) -> bool:
        folder = self.find(config)
        return folder is not None and (folder / RESULTS_FOLDER / f"{slugify(name, max_length=80)}.complete").is_file()

    def _read_result(self, folder: Path, label: str) -> Any:
        marker = folder / f"{label}.complete"
        if not marker.is_file():
            return _MISSING
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            path = folder / f"{label}.{'json' if info['format'] == 'json' else 'pt'}"
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != info["sha256"]:
                raise ValueError("its SHA-256 does not match the one recorded when it was written")
            if info["format"] == "json":
                return json.loads(data.decode("utf-8"))
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 - any failure means: recompute
            warnings.warn(
                f"cached result {folder / label}.* is unreadable ({type(error).__name__}: {error}); "
                "recomputing it and overwriting the file (derived results are always recomputable).",
                stacklevel=3,
            )
            marker.unlink(missing_ok=True)
            return _MISSING

    def _write_result(self, folder: Path, label: str, value: Any) -> Any:
        value = vdevice.to_host(value)  # stored and returned on the CPU, like a later cache hit
        folder.mkdir(parents=True, exist_ok=True)
        try:
            text = json.dumps(value, allow_nan=False, indent=1)
        except (TypeError, ValueError):
            text = None
        if text is not None:
            path, file_format = folder / f"{label}.json", "json"
            io.atomic_write_text(path, text + "\n")
            returned = json.loads(text)  # the same value a later cache hit returns
        else:
            path, file_format = folder / f"{label}.pt", "torch"
            io.atomic_save(path, lambda tmp: torch.save(value, tmp))
            returned = value
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        io.atomic_write_json(folder / f"{label}.complete", {"format": file_format, "sha256": digest})
        return returned


def cached_result(
    name: str, config: Any, compute_fn: Callable[[], Any], *, root: str | os.PathLike | None = None
) -> Any:
    """`RunCache(root).cached_result(name, config, compute_fn)`."""
    return RunCache(root).cached_result(name, config, compute_fn)


# --------------------------------------------------------------------------------------------
# Trained models
# --------------------------------------------------------------------------------------------


def training_key_config(
    model_config: Any,
    train_config: training.TrainConfig,
    data_spec: Mapping[str, Any],
    images: torch.Tensor,
    eval_sets: Mapping[str, torch.Tensor] | None = None,
    *,
    model_seed: int | Sequence[int] = 0,
    data_source: Callable | None = None,
    batch_transform: Callable | None = None,
) -> dict:
    """Everything that decides what `train_cached` produces, as one canonical config dict."""
    return canonical(
        {
            "kind": "train",
            "code_version": CODE_VERSION,
            "model_config": _model_config_dict(model_config),
            "model_seed": list(model_seed) if isinstance(model_seed, (list, tuple)) else model_seed,
            "train_config": train_config.to_dict(),
            "data_spec": dict(data_spec),
            "train_images": data_fingerprint(images),
            "eval_sets": {name: data_fingerprint(tensor) for name, tensor in (eval_sets or {}).items()},
            "data_source": training.describe_callable(data_source),
            "batch_transform": training.describe_callable(batch_transform),
        }
    )


def train_cached(
    model_config: Any,
    train_config: training.TrainConfig,
    data_spec: Mapping[str, Any],
    images: torch.Tensor,
    eval_sets: Mapping[str, torch.Tensor] | None = None,
    *,
    model_seed: int | Sequence[int] = 0,
    data_source: Callable | None = None,
    batch_transform: Callable | None = None,
    progress: bool | None = None,
    cache: RunCache | None = None,
    name: str | None = None,
    device: str | torch.device | None = None,
) -> training.TrainResult:
    """Train once, then reuse: the model + history for (model, training, data, code version).

    model_config  a model config dataclass (built with `models.build_model(config, seed=model_seed)`)
                  or a list of MLP (or conv) configs with a list of seeds (an `EnsembleMLPVAE` /
                  `EnsembleConvVAE` of those members, e.g. a beta sweep with
                  `train_config.beta=[...]`).
    data_spec     a JSON-able description of the data, e.g. {"dataset": "binary_mnist",
                  "split": "train", "n_train": 1000, "subset_seed": 0}; a fingerprint of `images`
                  and of every eval set is added to the key as a safety net.
    The run lives in `<cache folder>/training/` (config.json + checkpoints); an interrupted run
    resumes from its last checkpoint, a finished one returns without training.
    device        where the model trains and is returned (default `device.resolve()`: $VAEGEN_DEVICE,
                  else CUDA when available, else CPU). Not part of the key: a run trained on a GPU
                  is reused on the CPU and vice versa (training.ProvenanceWarning names both; the
                  run's config.json records every session's device and thread count).
    """
    cache = cache or RunCache()
    key_config = training_key_config(
        model_config,
        train_config,
        data_spec,
        images,
        eval_sets,
        model_seed=model_seed,
        data_source=data_source,
        batch_transform=batch_transform,
    )
    folder = cache.run_dir(key_config, name=name or _default_name(model_config, data_spec, train_config))
    model = _build(model_config, model_seed).to(vdevice.resolve(device))  # initialised on the CPU, then moved
    return training.train(
        model,
        images,
        train_config,
        eval_sets=eval_sets,
        run_dir=folder / TRAINING_FOLDER,
        data_source=data_source,
        batch_transform=batch_transform,
        progress=progress,
    )


def _model_config_dict(model_config: Any) -> Any:
    if isinstance(model_config, (list, tuple)):
        return [_model_config_dict(item) for item in model_config]
    if hasattr(model_config, "to_dict"):  # models' configs: includes the family name
        return {"class": type(model_config).__name__, **model_config.to_dict()}
    if dataclasses.is_dataclass(model_config) and not isinstance(model_config, type):
        return {"class": type(model_config).__name__, **dataclasses.asdict(model_config)}
    if isinstance(model_config, Mapping):
        return dict(model_config)
    raise TypeError(
        f"model_config must be a config dataclass (e.g. MLPVAEConfig) or a list of them, "
        f"got {type(model_config).__name__}"
    )


def _build(model_config: Any, model_seed: int | Sequence[int]) -> torch.nn.Module:
    from . import models

    if isinstance(model_config, (list, tuple)):
        from .ensemble import ensemble_class_for

        seeds = list(model_seed) if isinstance(model_seed, (list, tuple)) else None
        if seeds is None or len(seeds) != len(model_config):
            raise ValueError(
                f"an ensemble of {len(model_config)} model configs needs model_seed as a list of "
                f"{len(model_config)} seeds, got {model_seed!r}"
            )
        members = [models.build_model(config, seed=seed) for config, seed in zip(model_config, seeds)]
        # MLP configs -> EnsembleMLPVAE, ConvVAEConfigs -> EnsembleConvVAE (paper C's CNN sweeps).
        return ensemble_class_for(model_config[0]).from_members(members)
    if isinstance(model_seed, (list, tuple)):
        raise ValueError(f"a single model config needs one int model_seed, got {model_seed!r}")
    return models.build_model(model_config, seed=model_seed)


def _default_name(model_config: Any, data_spec: Mapping[str, Any], train_config: training.TrainConfig) -> str:
    first = model_config[0] if isinstance(model_config, (list, tuple)) and model_config else model_config
    model_name = type(first).__name__.replace("Config", "")
    if isinstance(model_config, (list, tuple)):
        model_name = f"{model_name}x{len(model_config)}"
    dataset = data_spec.get("dataset") or data_spec.get("name") or "data"
    return f"{model_name}-{dataset}-e{train_config.epochs}"
