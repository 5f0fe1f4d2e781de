"""Files erpauth writes on its own: only their owner may read them."""

import os
import stat
import subprocess
import sys
from pathlib import Path


def _init(data_dir: Path, **env: str) -> None:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ERPAUTH_")}
    done = subprocess.run(
        [sys.executable, "-m", "erpauth.cli", "init", "--demo", "--json"],
        env=inherited | {"ERPAUTH_DATA_DIR": str(data_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _others_may_read(path: Path) -> bool:
    return bool(stat.S_IMODE(path.stat().st_mode) & 0o077)


def test_the_default_sqlite_database_and_its_folder_are_private(tmp_path: Path) -> None:
    """It holds every operator's password hash and the audit trail, whatever the umask."""
    data_dir = tmp_path / "data"
    old_umask = os.umask(0o022)
    try:
        _init(data_dir)
    finally:
        os.umask(old_umask)

    files = sorted(data_dir.iterdir())
    assert data_dir / "erpauth.db" in files
    assert not _others_may_read(data_dir)
    assert [path.name for path in files if _others_may_read(path)] == []


def test_a_sqlite_database_named_in_the_url_is_private(tmp_path: Path) -> None:
    database = tmp_path / "elsewhere" / "erp.db"
    old_umask = os.umask(0o022)
    try:
        _init(tmp_path / "data", ERPAUTH_DATABASE_URL=f"sqlite:///{database}")
    finally:
        os.umask(old_umask)

    assert not _others_may_read(database)
    assert not _others_may_read(database.parent)
