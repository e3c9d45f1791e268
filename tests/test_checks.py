"""The shared argument checks: one wording, strings refused where lists are expected."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from vaegen_utils import checks


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "count must be an integer, got the bool True"),
        (2.0, "count must be an integer, got float 2.0"),
        ("3", "count must be an integer, got str '3'"),
        (0, r"count must be an integer in 1\.\.10, got 0"),
        (11, r"count must be an integer in 1\.\.10, got 11"),
    ],
)
def test_check_int_messages(value, message):
    with pytest.raises(ValueError, match=message):
        checks.check_int("count", value, minimum=1, maximum=10)


def test_check_int_accepts_numpy_integers_and_open_ranges():
    value = checks.check_int("count", np.int64(7), minimum=1, maximum=10)
    assert value == 7 and type(value) is int
    assert checks.check_int("count", 10**12, minimum=0) == 10**12
    with pytest.raises(ValueError, match="count must be an integer <= 3, got 4; fewer please"):
        checks.check_int("count", 4, maximum=3, hint="fewer please")


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        ("0.5", {}, "lr must be a number, got str '0.5'"),
        (True, {}, "lr must be a number, got bool"),
        (float("nan"), {}, "lr must be a finite number"),
        (0.0, {"positive": True}, "lr must be > 0, got 0.0"),
        (-1, {"minimum": 0}, "lr must be >= 0, got -1"),
        (2, {"maximum": 1}, "lr must be <= 1, got 2"),
        (None, {}, "lr must be a number, got NoneType None"),
    ],
)
def test_check_number_refuses_with_the_reason(value, kwargs, message):
    with pytest.raises(ValueError, match=message):
        checks.check_number("lr", value, **kwargs)


def test_check_number_returns_a_float():
    assert checks.check_number("lr", 3) == 3.0 and type(checks.check_number("lr", 3)) is float
    assert checks.check_number("lr", np.float32(0.5)) == 0.5


@pytest.mark.parametrize("value", ["15", "0.5", b"15"])
def test_check_sequence_refuses_strings_which_would_read_one_character_at_a_time(value):
    with pytest.raises(ValueError, match=r"betas must be a list such as \[0\.1, 1\.0\], got the string"):
        checks.check_sequence("betas", value, checks.check_number, example="[0.1, 1.0]")


@pytest.mark.parametrize("value", [0.5, {"a": 1}, {1.0, 2.0}, None])
def test_check_sequence_refuses_scalars_mappings_and_sets(value):
    with pytest.raises(ValueError, match="betas must be a list"):
        checks.check_sequence("betas", value, checks.check_number)


def test_check_sequence_checks_each_item_by_index_and_the_length():
    assert checks.check_sequence("betas", [1, 0.5], checks.check_number) == (1.0, 0.5)
    assert checks.check_sequence("betas", np.array([1.0, 2.0])) == (1.0, 2.0)
    with pytest.raises(ValueError, match=r"betas\[1\] must be a number, got str 'x'"):
        checks.check_sequence("betas", [1.0, "x"], checks.check_number)
    with pytest.raises(ValueError, match=r"betas needs at least 1 value\(s\), got \[\]"):
        checks.check_sequence("betas", [], checks.check_number)
    assert checks.check_sequence("betas", (), min_length=0) == ()


def test_check_choice_suggests_the_closest_valid_value():
    assert checks.check_choice("profile", "cpu", ("smoke", "cpu", "paper")) == "cpu"
    with pytest.raises(ValueError, match=r"unknown profile 'papr' \(did you mean 'paper'\?\); choose one of 'smoke', 'cpu', 'paper'"):
        checks.check_choice("profile", "papr", ("smoke", "cpu", "paper"))
    with pytest.raises(ValueError, match="unknown profile"):
        checks.check_choice("profile", ["cpu"], ("smoke", "cpu", "paper"))


def test_unknown_fields_are_named_with_a_suggestion_and_the_valid_list():
    @dataclasses.dataclass
    class Settings:
        epochs: int = 1
        batch_size: int = 2

    assert checks.dataclass_from_dict(Settings, {"epochs": 3}) == Settings(epochs=3)
    with pytest.raises(ValueError, match=r"unknown Settings field\(s\) 'epoch' \(did you mean 'epochs'\?\); valid fields: epochs, batch_size"):
        checks.dataclass_from_dict(Settings, {"epoch": 3})


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path):
    path = tmp_path / "f.bin"
    payload = bytes(range(256)) * 5000
    path.write_bytes(payload)
    assert checks.file_sha256(path) == hashlib.sha256(payload).hexdigest()
    assert checks.file_sha256(path, chunk_bytes=7) == hashlib.sha256(payload).hexdigest()


def test_profile_tables_resolve_with_overrides_where_none_keeps_the_profile_value():
    from vaegen_utils.profiles import resolve

    table = {"smoke": {"epochs": 2, "seeds": [0]}, "cpu": {"epochs": 160, "seeds": [0, 1, 2]}, "paper": {"epochs": 1000, "seeds": [0, 1, 2]}}
    assert resolve("cpu", table) == {"epochs": 160, "seeds": [0, 1, 2]}
    assert resolve("cpu", table, epochs=None, seeds=[4]) == {"epochs": 160, "seeds": [4]}
    assert resolve("paper", table, epochs=80)["epochs"] == 80
    with pytest.raises(ValueError, match=r"unknown cpu-profile setting field\(s\) 'epoch' \(did you mean 'epochs'\?\)"):
        resolve("cpu", table, epoch=3)
    with pytest.raises(ValueError, match="unknown profile"):
        resolve("gpu", table)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: __import__("vaegen_utils.training", fromlist=["x"]).TrainConfig(epoch=3),
         r"unknown TrainConfig field\(s\) 'epoch' \(did you mean 'epochs'\?\); valid fields: epochs, "),
        (lambda: __import__("vaegen_utils.models", fromlist=["x"]).MLPVAEConfig(latent=2),
         r"unknown MLPVAEConfig field\(s\) 'latent' \(did you mean 'latent_dim'\?\)"),
        (lambda: __import__("vaegen_utils.diffusion", fromlist=["x"]).DiffusionConfig(stepz=3), r"unknown DiffusionConfig field"),
        (lambda: __import__("vaegen_utils.augment", fromlist=["x"]).AugmentConfig(probability=0.1), r"unknown AugmentConfig field"),
    ],
)
def test_a_misspelt_config_field_names_the_valid_ones(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_named_fields_keeps_positional_arguments_and_replace_working():
    @checks.named_fields
    @dataclasses.dataclass(frozen=True)
    class Settings:
        epochs: int = 1
        batch_size: int = 2

    settings = Settings(5, batch_size=3)
    assert settings == Settings(epochs=5, batch_size=3)
    assert dataclasses.replace(settings, epochs=7).epochs == 7
    with pytest.raises(ValueError, match="unknown Settings field"):
        dataclasses.replace(settings, epoch=7)
