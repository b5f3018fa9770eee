"""The data dir is private: created 0700 (an existing one that others can enter is tightened, with
a warning), and the secrets generated into it are 0600."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from budrt.settings import RuntimeSettings, private_dir
from tests.support.files import file_mode

pytestmark = pytest.mark.usefixtures("usual_umask")


def test_a_fresh_data_dir_and_its_secrets_are_owner_only(tmp_path: Path) -> None:
    conf = RuntimeSettings(data_dir=tmp_path / "deep" / "data")
    secret = conf.secret("jwt_secret")
    assert secret and conf.secret("jwt_secret") == secret  # generated once, then read back
    assert file_mode(tmp_path / "deep") == 0o700  # the parents this created too
    assert file_mode(conf.data_dir) == 0o700
    assert file_mode(conf.data_dir / "secrets") == 0o700
    assert file_mode(conf.data_dir / "secrets" / "jwt_secret") == 0o600


def test_an_existing_world_readable_data_dir_is_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    assert file_mode(data_dir) == 0o755
    with caplog.at_level(logging.WARNING, logger="budrt.settings"):
        assert RuntimeSettings(data_dir=data_dir).ensure_data_dir() == data_dir
    assert file_mode(data_dir) == 0o700
    assert [r.message for r in caplog.records] == ["tightened a private directory to owner-only access"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="budrt.settings"):
        private_dir(data_dir)  # already private: nothing to say
    assert not caplog.records


def test_tighten_false_leaves_an_existing_directory_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    private_dir(shared, tighten=False)
    assert file_mode(shared) == 0o755
    assert file_mode(private_dir(shared / "new", tighten=False)) == 0o700  # what it creates is private
