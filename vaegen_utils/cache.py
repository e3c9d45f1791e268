"""Result cache keyed by the full config: notebooks reuse trained models and derived numbers.

Every cached thing lives in a folder named after the SHA-256 of its canonical config,
`cache_dir()/runs/<key[:16]>-<slug>/`, next to a `config.json` holding that config. The same
config always maps to the same folder, a different config to a different one; a folder whose
stored config differs from the requested one raises an error naming the folder and the fix.

Three entry points:
- `config_key(config)`: the key (canonical JSON: sorted keys, dataclasses as dicts, tuples as
  lists, integral floats as ints so `1.0` and `1` agree, other floats by their shortest repr).
- `RunCache.cached_result(name, config, compute_fn)`: compute once (under a lock per entry, so two
  processes compute it once), store atomically with a `complete` marker naming the file and its
  SHA-256, return the stored value afterwards.
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
Nothing in the cache folder is ever unpickled: results are JSON or `.npz` files of plain arrays
read with `allow_pickle=False`, model weights and training states are read with
`torch.load(weights_only=True)`, so a crafted file in the cache cannot run code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from . import device as vdevice
from . import io, locks, paths, training
from .checks import file_sha256

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
            with contextlib.suppress(OSError):
                os.utime(config_path)  # "last used", for `python -m vaegen_utils.cache clean --older-than`
        else:
            io.atomic_write_json(config_path, {"key": key, "config": stored})
        return folder

    # Derived results -------------------------------------------------------------------
    def cached_result(self, name: str, config: Any, compute_fn: Callable[[], Any], *, folder: str | None = None) -> Any:
        """compute_fn() once per (config, name); later calls return the stored value.

        JSON-able values (no NaN) are stored as JSON and come back as JSON values (tuples become
        lists); anything else (tensors, numpy arrays, NaN, tuples holding them) as an `.npz` of plain
        arrays plus a JSON outline (`encode_result`), never as a pickle; every tensor is moved to the CPU first, so the first call returns what later
        calls load, whatever device computed it. The value file has a name of
        its own (`<name>.<random>.json|npz`) and the `<name>.complete` marker, written last and
        atomically, names it with its SHA-256, so a reader always sees one writer's file with that
        writer's hash. The entry is locked while it is computed: a second process asking for it
        waits and then returns the first one's value. A damaged file is recomputed after a warning.

        `folder` names the entry's folder when it is first created (`<key[:16]>-<folder>`, default
        `name`), e.g. "zhang2022-optimal-e100", so a paper's cache entries are easy to find.
        """
        label = slugify(name, max_length=80)
        folder = self.run_dir(config, name=folder or name) / RESULTS_FOLDER
        value = self._read_result(folder, label, quiet=True)  # the common case: no lock needed
        if value is not _MISSING:
            return value
        folder.mkdir(parents=True, exist_ok=True)
        with locks.file_lock(folder / f"{label}.lock", purpose=f"cached_result {name!r}"):
            value = self._read_result(folder, label)  # another process may have just written it
            if value is not _MISSING:
                return value
            value = compute_fn()
            return self._write_result(folder, label, value)

    def has_result(self, name: str, config: Any) -> bool:
        folder = self.find(config)
        return folder is not None and (folder / RESULTS_FOLDER / f"{slugify(name, max_length=80)}.complete").is_file()

    def _read_result(self, folder: Path, label: str, *, quiet: bool = False) -> Any:
        """The stored value, or _MISSING. quiet (no lock held): any failure just means "take the lock
        and look again". Otherwise a damaged entry is reported, its marker removed, and recomputed."""
        marker = folder / f"{label}.complete"
        if not marker.is_file():
            return _MISSING
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            file_format = info["format"]
            if file_format == "torch":
                raise ValueError(
                    "it was stored as a pickle by an older version; pickles are never loaded from the cache "
                    "folder, since loading one can run code"
                )
            path = folder / info.get("file", f"{label}.json")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != info["sha256"]:
                raise ValueError("its SHA-256 does not match the one recorded when it was written")
            if file_format == "json":
                return json.loads(data.decode("utf-8"))
            if file_format == "npz":
                return _read_npz_result(path)
            raise ValueError(f"unknown format {file_format!r}")
        except Exception as error:  # noqa: BLE001 - any failure means: recompute
            if quiet:
                return _MISSING
            warnings.warn(
                f"cached result {folder / label}.* is unreadable ({type(error).__name__}: {error}); "
                "recomputing it (derived results are always recomputable).",
                stacklevel=4,
            )
            marker.unlink(missing_ok=True)
            return _MISSING

    def _write_result(self, folder: Path, label: str, value: Any) -> Any:
        """Write value under a fresh name, then the marker naming it; remove superseded files.
        Call while holding the entry's lock."""
        value = vdevice.to_host(value)  # stored and returned on the CPU, like a later cache hit
        folder.mkdir(parents=True, exist_ok=True)
        try:
            text = json.dumps(value, allow_nan=False, indent=1)
        except (TypeError, ValueError):
            text = None
        token = secrets.token_hex(6)
        if text is not None:
            path, file_format = folder / f"{label}.{token}.json", "json"
            io.atomic_write_text(path, text + "\n")
        else:
            path, file_format = folder / f"{label}.{token}.npz", "npz"
            tree, arrays = encode_result(value)
            outline = np.frombuffer(json.dumps(tree).encode("utf-8"), dtype=np.uint8)

            def write(tmp: Path) -> None:
                with open(tmp, "wb") as stream:  # a file object: np.savez would append '.npz' to a name
                    np.savez(stream, **{_OUTLINE: outline}, **arrays)

            io.atomic_save(path, write)
        marker = {"format": file_format, "file": path.name, "sha256": file_sha256(path)}
        io.atomic_write_json(folder / f"{label}.complete", marker)
        pattern = re.compile(re.escape(label) + r"(\.[0-9a-f]{12})?\.(json|npz|pt)")
        for other in folder.iterdir():
            if other != path and pattern.fullmatch(other.name):
                other.unlink(missing_ok=True)
        # The value a later cache hit returns (JSON values; arrays read back from the file).
        return json.loads(text) if text is not None else _read_npz_result(path)


# Results that are not JSON: plain arrays in an .npz plus a JSON outline ------------------------
#
# The outline mirrors the value: JSON scalars as themselves, other floats as {"$float": "nan"},
# containers as {"$dict": [[key, value], ...]} / {"$list": [...]} / {"$tuple": [...]}, arrays and
# tensors as {"$ndarray": "a3"} / {"$tensor": "a3", "dtype": ...} / {"$numpy_scalar": "a3"} naming
# an entry of the .npz. Loading uses np.load(allow_pickle=False): nothing in the file can run code.

_OUTLINE = "__outline__"


def encode_result(value: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """(outline, arrays) of a result value; TypeError naming the part that cannot be stored."""
    arrays: dict[str, np.ndarray] = {}

    def add(array: np.ndarray, where: str) -> str:
        if array.dtype.hasobject:
            raise TypeError(f"cached result{where} is a numpy array of Python objects, which cannot be stored without pickle")
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(array, order="C")  # (ascontiguousarray would turn 0-d into 1-d)
        return name

    def encode(item: Any, where: str) -> Any:
        if item is None or isinstance(item, (bool, str)):
            return item
        if isinstance(item, int):
            return int(item)
        if isinstance(item, float):
            return item if math.isfinite(item) else {"$float": repr(item)}
        if isinstance(item, dict):
            return {"$dict": [[encode(key, f"{where} key"), encode(entry, f"{where}[{key!r}]")] for key, entry in item.items()]}
        if isinstance(item, (list, tuple)):
            kind = "$list" if isinstance(item, list) else "$tuple"
            return {kind: [encode(entry, f"{where}[{index}]") for index, entry in enumerate(item)]}
        if isinstance(item, torch.Tensor):
            tensor = item.detach().cpu().contiguous()
            dtype = str(tensor.dtype).removeprefix("torch.")
            if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: store the bits
                tensor = tensor.view(torch.int16)
            return {"$tensor": add(tensor.numpy(), where), "dtype": dtype}
        if isinstance(item, np.ndarray):
            return {"$ndarray": add(item, where)}
        if isinstance(item, np.generic):
            return {"$numpy_scalar": add(np.asarray(item), where)}
        raise TypeError(
            f"cached result{where} is a {type(item).__module__}.{type(item).__name__}; cached results hold JSON "
            "values, floats (NaN included), numpy arrays and tensors, in dicts, lists and tuples. Return plain "
            "data from compute_fn (e.g. dataclasses.asdict(...))."
        )

    return encode(value, ""), arrays


def decode_result(outline: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The value `encode_result` was given, from its outline and arrays."""
    if not isinstance(outline, dict):
        return outline
    if "$float" in outline:
        return float(outline["$float"])
    if "$dict" in outline:
        return {_hashable(decode_result(key, arrays)): decode_result(entry, arrays) for key, entry in outline["$dict"]}
    if "$list" in outline:
        return [decode_result(entry, arrays) for entry in outline["$list"]]
    if "$tuple" in outline:
        return tuple(decode_result(entry, arrays) for entry in outline["$tuple"])
    if "$ndarray" in outline:
        return arrays[outline["$ndarray"]]
    if "$numpy_scalar" in outline:
        return arrays[outline["$numpy_scalar"]][()]
    if "$tensor" in outline:
        tensor = torch.from_numpy(np.array(arrays[outline["$tensor"]]))
        return tensor.view(torch.bfloat16) if outline["dtype"] == "bfloat16" else tensor
    raise ValueError(f"unknown entry in a cached result's outline: {sorted(outline)}")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(item) for item in key) if isinstance(key, (list, tuple)) else key


def _read_npz_result(path: Path) -> Any:
    with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    outline = json.loads(arrays.pop(_OUTLINE).tobytes().decode("utf-8"))
    return decode_result(outline, arrays)


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


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m vaegen_utils.cache du | clean [--keep-final] [--older-than DAYS] [--dry-run]`
    (vaegen_utils.cache_usage)."""
    from .cache_usage import main as usage_main

    return usage_main(argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
