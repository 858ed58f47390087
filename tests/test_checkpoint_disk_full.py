"""A full disk while a checkpoint is written is one line naming the path and "No space left on device",
not torch's "enforce fail ... unexpected pos" (regression of the hostile-user review)."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest
import torch

from tdro.errors import user_error_lines
from tdro.stages.checkpoint import torch_save


def test_a_failed_zip_write_is_told_as_the_full_disk_it_is() -> None:
    with pytest.raises(OSError) as err:
        torch_save({"x": torch.zeros(100_000)}, Path("/dev/full"))  # every write: ENOSPC
    assert err.value.errno == errno.ENOSPC
    assert user_error_lines(err.value) == ["/dev/full: cannot write (No space left on device)"]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 256 KiB tmpfs (needs the right to mount, as root in a container has; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)  # lazily: the stage may hold a file open


def test_a_stage_checkpointing_onto_a_full_disk_names_the_file(small_disk: Path, tiny_bert_dir: Path) -> None:
    from tdro.stages import train
    from tests.train_helpers import dataset_cards, model_card, stage_file

    stage = stage_file(small_disk / "run", model_card(tiny_bert_dir), dataset_cards(small_disk.parent),
                       steps=2, checkpoint_every=1)
    with pytest.raises(OSError) as err:
        train.run(stage)
    assert err.value.errno == errno.ENOSPC
    (line,) = user_error_lines(err.value)
    assert line.startswith(str(small_disk / "run")) and line.endswith("(No space left on device)")
