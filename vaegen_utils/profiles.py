"""The one switch that sizes every notebook: PROFILE in {smoke, cpu, paper}.

- smoke: seconds per notebook; CI and nbval. Same code path, tiny sizes.
- cpu:   the default; every claim reproduced at reduced scale on 2 CPU cores.
- paper: the papers' own settings; meant for a GPU.

A profile changes sizes only, never which code runs. Notebooks read it with
`PROFILE = current_profile()` in their parameters cell, so `VAEGEN_PROFILE=smoke` (what nbval and
CI set) and papermill's `-p PROFILE paper` both work.
"""

from __future__ import annotations

import os
from typing import Mapping, TypeVar

PROFILES = ("smoke", "cpu", "paper")
DEFAULT_PROFILE = "cpu"
PROFILE_ENV_VAR = "VAEGEN_PROFILE"

T = TypeVar("T")


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)} "
            f"(set {PROFILE_ENV_VAR}=<profile> or pass -p PROFILE <profile> to papermill)"
        )
    return profile


def current_profile() -> str:
    """The profile named by $VAEGEN_PROFILE, or 'cpu' when unset."""
    return check_profile(os.environ.get(PROFILE_ENV_VAR, DEFAULT_PROFILE) or DEFAULT_PROFILE)


def by_profile(profile: str, values: Mapping[str, T]) -> T:
    """Pick the value for `profile` from {'smoke': ..., 'cpu': ..., 'paper': ...}.

    Used in parameters cells: `EPOCHS = by_profile(PROFILE, {"smoke": 2, "cpu": 60, "paper": 1000})`.
    """
    check_profile(profile)
    missing = [name for name in PROFILES if name not in values]
    if missing:
        raise ValueError(f"by_profile needs a value for every profile; missing {missing}")
    return values[profile]


def resolve(profile: str, table: Mapping[str, Mapping[str, T]], **overrides: T | None) -> dict[str, T]:
    """The settings of a named run for `profile`, with the caller's overrides applied.

    `table` maps each profile to its settings, e.g. {"smoke": {"epochs": 2}, "cpu": {"epochs": 160},
    "paper": {"epochs": 1000}}; an override whose value is None keeps the profile's value, so a
    notebook's parameters cell can hold `EPOCHS = None  # None: the profile's value` and
    `papermill -p EPOCHS 80` just works. An override the table does not know is refused with the
    list of valid names (a misspelt parameter must not be silently ignored).
    """
    from .checks import check_fields

    settings = dict(by_profile(profile, table))
    check_fields(f"{profile}-profile setting", overrides, settings)
    settings.update({name: value for name, value in overrides.items() if value is not None})
    return settings
