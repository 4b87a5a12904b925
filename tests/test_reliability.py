"""Faults: batch runs and training runs killed with SIGKILL and run again, leftover temporary and
damaged files, and model names from untrusted streams. See RELIABILITY.md."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY, assert_one_error_line, cli_env, run_cli, synthetic_photo
from PIL import Image

from edgecodec import atomic, cli, zoo
from edgecodec.codec.api import decode_array
from edgecodec.codec.container import Container
from edgecodec.errors import UnknownModelError
from edgecodec.train.config import load_config
from edgecodec.train.trainer import Trainer, latest_checkpoint, run


def _popen_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgecodec.cli", *map(str, args)], cwd=str(cwd), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; True if it was still running then."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (code {proc.returncode}) before the kill point:\n"
                        f"{out[-2000:]}{err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail("kill point not reached in time")
        time.sleep(0.005)
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return running


# --- batch runs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("jobs", ["1", "3"])
def test_folder_run_killed_then_resumed_with_skip_existing(tiny_models, tmp_path, jobs):
    """`compress DIR -o OUT` killed (SIGKILL) after its first outputs: every visible .edc is
    complete; the rerun with --skip-existing removes our stale temporary files (only those), keeps
    the finished files untouched, writes the rest, reports the bad inputs and exits 10. With
    --jobs 3 the kill lands while several files are being written."""
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:128, 0:160] / 160.0
    good = []
    for i in range(30):
        base = np.stack([np.sin(xx * (i + 1)), yy, (xx + yy) / 2], axis=-1) * 0.5 + 0.25
        arr = np.clip(base * 255 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(src / f"img{i:02d}.png")
        good.append(f"img{i:02d}.edc")
    (src / "sub" / "corrupt.png").write_bytes(rng.bytes(2000))
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    frames[0].save(src / "sub" / "anim.png", save_all=True, append_images=frames[1:])  # refused: 2 frames
    env = cli_env(tiny_models["a"])

    proc = _popen_cli("compress", src, "-o", out, "--model", "tiny", "-q", "--jobs", jobs, cwd=tmp_path, env=env)
    visible = lambda: sorted(p for p in out.rglob("*.edc") if not p.name.startswith("."))  # noqa: E731
    assert _kill_when(proc, lambda: out.is_dir() and visible()), "the run ended before the kill"
    assert proc.returncode == -signal.SIGKILL
    done = visible()
    assert 1 <= len(done) < 30, f"{len(done)} outputs at the kill: the kill did not interrupt the run"
    for path in done:  # complete files only: they parse (CRC included) and decode
        container = Container.from_bytes(path.read_bytes())
        assert (container.header.width, container.header.height) == (160, 128)
        assert decode_array(path.read_bytes())[0].shape == (128, 160, 3)
    mtimes = {p: p.stat().st_mtime_ns for p in done}

    # Leftovers as a kill in the middle of atomic_path leaves them (ours), and files that only
    # look alike (not ours: kept).
    (out / "sub").mkdir(exist_ok=True)
    ours = [out / ".img29.edc.k3x_9a0q.tmp", out / "sub" / ".corrupt.edc.abcdefgh.tmp"]
    theirs = [out / ".img29.edc.tmp", out / "img29.edc.k3x_9a0q.tmp", out / ".img29.png.k3x_9a0q.tmp",
              out / ".img29.edc.TOOLONG99.tmp", out / "notes.txt"]
    for path in ours + theirs:
        path.write_bytes(b"partial")

    result = run_cli("compress", src, "-o", out, "--model", "tiny", "-q", "--skip-existing", "--jobs", jobs,
                     cwd=tmp_path, env=env)
    assert result.returncode == 10, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert f"{30 - len(done)} written, {len(done)} skipped (existing), 2 failed" in result.stdout, result.stdout
    removed = re.search(r"removed (\d+) temporary file", result.stdout)
    assert removed and int(removed[1]) >= 2, result.stdout  # a real one, if the kill hit a write
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 2 and any("corrupt.png" in f for f in failed) and any("anim.png" in f for f in failed)
    assert not [p for p in out.rglob("*") if re.fullmatch(atomic.TEMP_PATTERN, p.name) and p not in theirs]
    assert all(p.read_bytes() == b"partial" for p in theirs)
    assert sorted(p.name for p in out.glob("*.edc")) == good
    assert not list((out / "sub").glob("*.edc"))
    for path, mtime in mtimes.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was redone"
    for name in good:
        assert decode_array((out / name).read_bytes())[0].shape == (128, 160, 3)


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
    """The one way files are written: the old content stays until the block ends without an
    error; a failing block leaves the old file and no temporary file; a new file gets the mode
    that open() would give under the umask (not mkstemp's 0600)."""
    target = tmp_path / "log.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            assert target.read_text() == "old\n" and re.fullmatch(atomic.TEMP_PATTERN, tmp.name)
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]

    mask = os.umask(0o027)
    try:
        assert atomic.umask() == 0o027  # read from /proc, where the umask is left untouched
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("new\n")
        with atomic.atomic_path(tmp_path / "fresh.bin") as tmp:
            tmp.write_bytes(b"\0")
    finally:
        os.umask(mask)
    assert target.read_text() == "new\n"
    assert (tmp_path / "fresh.bin").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.bin", "log.csv"]

    # overwrite=False keeps a file that took the name meanwhile, and says so.
    with pytest.raises(FileExistsError):
        with atomic.atomic_path(tmp_path / "fresh.bin", overwrite=False) as tmp:
            tmp.write_bytes(b"ours")
    assert (tmp_path / "fresh.bin").read_bytes() == b"\0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.bin", "log.csv"]


def test_folder_run_removes_only_its_own_stale_temp_files(tmp_path, capsys):
    """Decompress folder mode removes .NAME.png.XXXXXXXX.tmp files, not the compress ones."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    arr = np.random.RandomState(1).randint(0, 256, (32, 48, 3), dtype=np.uint8)
    import edgecodec

    (src / "a.edc").write_bytes(edgecodec.compress(arr, model="tiny"))
    (out / "deep").mkdir(parents=True)
    stale = out / "deep" / ".a.png.zzzz0000.tmp"
    other = out / ".a.edc.zzzz0000.tmp"
    stale.write_bytes(b"x")
    other.write_bytes(b"x")
    assert cli.main(["decompress", str(src), "-o", str(out), "-q"]) == 0
    assert "removed 1 temporary file(s)" in capsys.readouterr().out
    assert not stale.exists() and other.exists() and (out / "a.png").exists()


def test_folder_runs_into_one_output_folder_keep_each_others_files(tmp_path, monkeypatch, capsys):
    """Two runs writing into one output folder: the cleanup at a folder run's start removes only
    temporary files no live process holds locked (a killed run's), and an output that appears
    while another run computed it is kept, not replaced (exit 8 for a single file)."""
    import fcntl

    import edgecodec

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    arr = np.random.RandomState(2).randint(0, 256, (32, 48, 3), dtype=np.uint8)
    (src / "a.edc").write_bytes(edgecodec.compress(arr, model="tiny"))
    live, stale = out / ".b.png.live0000.tmp", out / ".c.png.dead0000.tmp"
    live.write_bytes(b"being written by another run")
    stale.write_bytes(b"left by a killed run")
    with open(live, "rb") as held:  # as _locked_temp holds it while writing
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert cli.main(["decompress", str(src), "-o", str(out), "-q"]) == 0
    assert "removed 1 temporary file(s)" in capsys.readouterr().out
    assert live.read_bytes() == b"being written by another run" and not stale.exists()

    # The output appears after this run's last check, while it writes: the other run's file stays,
    # and nothing is left behind.
    target = tmp_path / "race.png"
    real_temp = atomic._locked_temp

    def temp_then_race(path):
        opened = real_temp(path)
        path.write_bytes(b"the other run's output")
        return opened
    monkeypatch.setattr(atomic, "_locked_temp", temp_then_race)
    assert cli.main(["decompress", str(src / "a.edc"), "-o", str(target)]) == 8
    assert_one_error_line(capsys.readouterr().err, "appeared while it was computed", "kept it")
    assert target.read_bytes() == b"the other run's output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "race.png"]
    # With --force the new output replaces it, as before.
    monkeypatch.setattr(atomic, "_locked_temp", real_temp)
    assert cli.main(["decompress", str(src / "a.edc"), "-o", str(target), "--force"]) == 0
    assert Image.open(target).size == (48, 32)


# --- training faults -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def train_images(tmp_path_factory) -> Path:
    """Six 96x96 synthetic images (never Kodak: it is the evaluation set)."""
    root = tmp_path_factory.mktemp("train_images")
    rng = np.random.RandomState(3)
    for i in range(6):
        Image.fromarray(synthetic_photo(rng)).save(root / f"img{i}.png")
    return root


def _overrides(images: Path, steps: int, ckpt_every: int) -> list[str]:
    return ["model.overrides={" + ", ".join(f"{k}: {v}" for k, v in TINY.items()) + "}",
            f"data.root={images}", "data.crop=64", "data.val_crop=64", "data.val_images=2",
            "train.batch_size=2", f"train.steps={steps}", f"train.ckpt_every={ckpt_every}", "train.threads=1",
            "train.log_every=5", "train.val_every=100000", "train.val_lpips=false", "train.log_lpips=false",
            "train.tensorboard=false", "train.progress=false"]


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _differing(a: dict, b: dict) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def _same_optimizer(a: dict, b: dict) -> bool:
    sa, sb = a["state"], b["state"]
    return sa.keys() == sb.keys() and all(
        torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) and torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"])
        for k in sa)


def test_training_killed_then_resumed_equals_uninterrupted(train_images, tmp_path):
    """`edgecodec train` SIGKILLed after its first checkpoint, then `train --resume RUN` (the run's
    own config.yaml): it ends at the last step with the weights and optimizer state of a run that
    was never interrupted (resume is exact: RNG states are checkpointed)."""
    steps, every = 60, 5
    overrides = _overrides(train_images, steps, every)
    run_dir = tmp_path / "run"
    env = cli_env()
    env["OMP_NUM_THREADS"] = "1"
    proc = _popen_cli("train", "--config", REPO / "edgecodec" / "configs" / "crb.yaml", "--out", run_dir, *overrides,
                      cwd=tmp_path, env=env)
    assert _kill_when(proc, lambda: (run_dir / "ckpt-00000005.pt").exists()), "training ended before the kill"
    assert proc.returncode == -signal.SIGKILL
    killed_at = latest_checkpoint(run_dir)
    assert killed_at is not None and _state(killed_at)["step"] < steps

    result = run_cli("train", "--resume", run_dir, cwd=tmp_path, env=env, timeout=170)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr
    final = _state(run_dir / f"ckpt-{steps:08d}.pt")
    assert final["step"] == steps
    assert not list(run_dir.glob("*.tmp"))
    steps_logged = [int(line.split(",")[0]) for line in (run_dir / "log.csv").read_text().splitlines()[1:]]
    assert steps_logged == list(range(5, steps + 1, 5))  # rows past the checkpoint were redone, once

    straight = run(load_config(REPO / "edgecodec" / "configs" / "crb.yaml", overrides), tmp_path / "straight")
    reference = _state(tmp_path / "straight" / f"ckpt-{steps:08d}.pt")
    assert straight.step == steps
    differing = _differing(reference["model"], final["model"])
    assert not differing, differing
    assert _same_optimizer(reference["optimizer"], final["optimizer"])
    assert _same_optimizer(reference["aux_optimizer"], final["aux_optimizer"])


def test_resume_ignores_half_written_and_damaged_checkpoints(train_images, tmp_path, caplog):
    """A kill during a checkpoint write leaves .ckpt-STEP.pt.XXXXXXXX.tmp (os.replace makes the real name
    appear only complete): resume never picks it, and removes it. A damaged ckpt-STEP.pt (disk
    trouble, a bad copy: atomic_save cannot produce one) is skipped with a warning for the one
    before; resume being exact, the run still ends with the uninterrupted run's weights."""
    config = load_config(REPO / "edgecodec" / "configs" / "crb.yaml", _overrides(train_images, 8, 2))
    run_dir = tmp_path / "run"
    run(config, run_dir, steps=4)
    good = run_dir / "ckpt-00000004.pt"
    data = good.read_bytes()
    (run_dir / ".ckpt-00000006.pt.k3x_9a0q.tmp").write_bytes(data[: len(data) // 2])  # half-written, newer step
    (run_dir / "ckpt-00000005.pt").write_bytes(data[: len(data) // 3])  # damaged
    assert latest_checkpoint(run_dir).name == "ckpt-00000005.pt"

    trainer = Trainer(config, run_dir)
    with caplog.at_level(logging.WARNING, logger="edgecodec.train.trainer"):
        assert trainer.resume() is True
    assert trainer.step == 4
    assert "ckpt-00000005.pt" in caplog.text and "previous checkpoint" in caplog.text
    assert not (run_dir / ".ckpt-00000006.pt.k3x_9a0q.tmp").exists()
    trainer.fit()
    assert trainer.step == 8

    straight = Trainer(config, tmp_path / "straight")
    for _ in range(8):
        straight.train_step()
    assert not _differing(straight.model.state_dict(), trainer.model.state_dict())

    # Nothing readable at all: a clear error, never a silent fresh start.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ckpt-00000002.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="no readable checkpoint"):
        Trainer(config, broken).resume()


def test_resume_without_config_needs_a_run_folder(tmp_path, capsys):
    assert cli.main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert_one_error_line(capsys.readouterr().err, "no such run folder")
    # With --config too, a mistyped RUN is refused: it used to start a new run there from step 0.
    assert cli.main(["train", "--resume", str(tmp_path / "nothing"), "--config", str(REPO / "edgecodec/configs/crb.yaml")]) == 2
    assert_one_error_line(capsys.readouterr().err, "no such run folder")
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "run").mkdir()  # a folder without config.yaml still needs --config
    assert cli.main(["train", "--resume", str(tmp_path / "run")]) == 2
    assert_one_error_line(capsys.readouterr().err, "--config")


def test_resume_refuses_what_it_cannot_do_before_writing(train_images, tmp_path, capsys):
    """`--resume RUN train.steps=4` on a run at step 6 trained nothing, exited 0 and wrote steps: 4
    (and a learning-rate drop at step 4 on the card) into the run's config.yaml; `--resume RUN
    --out OTHER` trained RUN in place; `train.device=gpu` trained on the CPU."""
    run_dir = tmp_path / "run"
    assert cli.main(["--threads", "1", "train", "--config", str(REPO / "edgecodec" / "configs" / "crb.yaml"), "--out", str(run_dir),
                     *_overrides(train_images, 6, 3)]) == 0
    capsys.readouterr()
    config = (run_dir / "config.yaml").read_text()
    for args, fragment in (
            (["train.steps=4"], "at step 6, beyond the 4 steps"),
            (["--steps", "4"], "at step 6, beyond the 4 steps"),
            (["--out", str(tmp_path / "other")], "drop --out")):
        assert cli.main(["--threads", "1", "train", "--resume", str(run_dir), *args]) == 2, args
        assert_one_error_line(capsys.readouterr().err, fragment)
    assert (run_dir / "config.yaml").read_text() == config
    assert not (tmp_path / "other").exists()
    assert cli.main(["--threads", "1", "train", "--config", str(REPO / "edgecodec" / "configs" / "crb.yaml"), "--out",
                     str(tmp_path / "gpu"), *_overrides(train_images, 2, 2), "train.device=gpu"]) == 2
    assert_one_error_line(capsys.readouterr().err, "train.device must be auto, cpu or cuda")
    assert not (tmp_path / "gpu").exists()


def test_resuming_a_finished_run_trains_and_records_nothing(train_images, tmp_path, capsys):
    """`--resume RUN` of a run already at its last step (scripts/ablation.sh re-run, a resume too
    many) appended a launch that trained nothing to launches.jsonl (and so to the model card), and
    with changed settings (`train.lr=1e-5`, `--data`) rewrote the run's config.yaml, though no step
    trained with them. It now leaves the folder as it is: exit 0 when nothing changed, a usage
    error naming the changed settings otherwise. Asked for more steps, it continues as before."""
    run_dir = tmp_path / "run"
    assert cli.main(["--threads", "1", "train", "--config", str(REPO / "edgecodec" / "configs" / "crb.yaml"), "--out", str(run_dir),
                     *_overrides(train_images, 4, 2)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    for args in ([], ["--steps", "4"], ["train.steps=4"]):
        assert cli.main(["--threads", "1", "train", "--resume", str(run_dir), *args]) == 0, args
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    capsys.readouterr()
    assert cli.main(["--threads", "1", "train", "--resume", str(run_dir), "train.lr=1e-5", "train.seed=3"]) == 2
    assert_one_error_line(capsys.readouterr().err, "nothing would train with the changed settings",
                          "train.lr 0.0003 -> 1e-05", "train.seed 0 -> 3")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert cli.main(["--threads", "1", "train", "--resume", str(run_dir), "train.steps=6"]) == 0
    assert _state(latest_checkpoint(run_dir))["step"] == 6
    assert len((run_dir / "launches.jsonl").read_text().splitlines()) == 2
    steps_logged = [int(line.split(",")[0]) for line in (run_dir / "log.csv").read_text().splitlines()[1:]]
    assert steps_logged == [4, 5, 6]  # log_every 5, and each launch's last step


def test_resume_with_a_config_refuses_a_folder_that_is_no_run(train_images, tmp_path, capsys):
    """`--resume FOLDER --config C` of a folder no training wrote (a parent of the runs, a project
    folder) started a new run in it, and its own log.csv lost its rows; it is refused untouched."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "log.csv").write_text("step,x\n1,2\n5,3\n")
    (folder / "notes.txt").write_text("mine\n")
    for name in ("project", "empty"):
        (tmp_path / name).mkdir(exist_ok=True)
        before = sorted(p.name for p in (tmp_path / name).iterdir())
        assert cli.main(["--threads", "1", "train", "--resume", str(tmp_path / name), "--config",
                         str(REPO / "edgecodec" / "configs" / "crb.yaml"), *_overrides(train_images, 2, 2)]) == 2
        assert_one_error_line(capsys.readouterr().err, "not a run folder", "a new run takes --out")
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == before
    assert (folder / "log.csv").read_text() == "step,x\n1,2\n5,3\n"


def test_a_run_folder_trains_one_training_at_a_time(train_images, tmp_path, capsys):
    """`train --resume RUN` of a run still training, or a second launch with the same --out before
    the first logged anything, trained into the same folder (every step logged twice, each other's
    checkpoints overwritten). The training holds RUN/.training.lock; the second is refused (exit 8)
    before it touches the folder, and the run resumes once the first has ended."""
    run_dir = tmp_path / "run"
    crb = str(REPO / "edgecodec" / "configs" / "crb.yaml")
    assert cli.main(["--threads", "1", "train", "--config", crb, "--out", str(run_dir),
                     *_overrides(train_images, 6, 3)]) == 0
    lock = (run_dir / ".training.lock").resolve()
    assert lock not in atomic._HELD  # released when the run ended
    starting = tmp_path / "starting"  # a run still loading its images: nothing in it but the lock
    starting.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from edgecodec.atomic import hold_lock\n"
         "for d in sys.argv[1:]: hold_lock(Path(d) / '.training.lock')\nprint('held', flush=True); time.sleep(120)",
         str(run_dir), str(starting)], stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
        capsys.readouterr()
        assert cli.main(["--threads", "1", "train", "--resume", str(run_dir), "train.steps=9"]) == 8
        assert_one_error_line(capsys.readouterr().err, f"{run_dir} is in use by another training (process ")
        assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
        assert cli.main(["--threads", "1", "train", "--config", crb, "--out", str(starting),
                         *_overrides(train_images, 6, 3)]) == 8
        assert_one_error_line(capsys.readouterr().err, "is in use by another training")
        assert [p.name for p in starting.iterdir()] == [".training.lock"]
    finally:
        holder.kill()
        holder.wait()
    assert cli.main(["--threads", "1", "train", "--resume", str(run_dir), "train.steps=9"]) == 0
    assert _state(latest_checkpoint(run_dir))["step"] == 9
    assert lock not in atomic._HELD
    trainer = Trainer(load_config(run_dir / "config.yaml"), run_dir, defer_warm_start=True)
    trainer.resume()
    assert lock in atomic._HELD
    trainer.close()
    assert lock not in atomic._HELD
    trainer.fit(10)  # fitted again after close(): the folder is its own again until the next close
    assert lock in atomic._HELD
    assert _state(latest_checkpoint(run_dir))["step"] == 10
    del trainer  # a Trainer never closed gives the lock back when it is collected
    gc.collect()
    assert lock not in atomic._HELD


def test_a_run_folder_lock_where_the_file_system_has_none(tmp_path, monkeypatch):
    """flock failing otherwise than "held" (ENOLCK, EOPNOTSUPP on some network mounts) left the
    file open and made every training there exit 11; the lock is then held unlocked, as the
    temporary files are (atomic._locked_temp), and given back by the path it returned."""
    import errno

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(atomic.fcntl, "flock", no_locks)
    key = atomic.hold_lock(tmp_path / "lock")
    assert atomic._HELD[key][1] == 1 and (tmp_path / "lock").read_text().startswith("process ")
    monkeypatch.chdir(tmp_path)  # the working folder changing meanwhile does not lose it
    atomic.release_lock(key)
    assert key not in atomic._HELD


# --- untrusted files -----------------------------------------------------------------------------
BAD_NAMES = ["../x", "/etc/passwd", "a/b", "..", ".", ".hidden", "a\\b", "a b", "x" * 65, "tiny\x00",
             "-rf", "é"]


def test_model_names_cannot_name_a_path(tiny_models, tiny_stream, tmp_path):
    """The model name of a stream header selects a model by name; it can never reach a path,
    even one that leads to real weights."""
    c = Container.from_bytes(tiny_stream)
    traversal = f"../{tiny_models['a'].name}/tiny"  # resolves, relative to the model folder, to tiny
    for name in [*BAD_NAMES, traversal]:
        crafted = Container(dataclasses.replace(c.header, model=name), c.streams).to_bytes()  # valid CRC
        with pytest.raises(UnknownModelError, match="invalid model name"):
            decode_array(crafted)
        with pytest.raises(UnknownModelError, match="invalid model name"):
            zoo.find_model(name)
    for ok in ("tiny", "fidelity", "a.b-c_1", "x" * 64):
        assert zoo.valid_model_name(ok)
    assert decode_array(tiny_stream)[0].shape == (40, 70, 3)

    # The CLI: one error line, exit code 9.
    crafted = Container(dataclasses.replace(c.header, model="../../etc/passwd"), c.streams).to_bytes()
    (tmp_path / "evil.edc").write_bytes(crafted)
    result = run_cli("decompress", "evil.edc", "-o", "evil.png", cwd=tmp_path)
    assert result.returncode == 9, (result.returncode, result.stderr)
    assert_one_error_line(result.stderr, "invalid model name")
    assert not (tmp_path / "evil.png").exists()


def test_save_and_list_refuse_invalid_names(tmp_path):
    from conftest import make_tiny

    model = make_tiny(0)
    for name in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="invalid model name"):
            zoo.save_model(model, tmp_path, name, {})
    assert not list(tmp_path.iterdir())
    # A card whose file name is no valid model name (copied in by hand) is not listed.
    weights = zoo.save_model(model, tmp_path, "ok", {})
    (tmp_path / "bad name.safetensors").write_bytes(weights.read_bytes())
    (tmp_path / "bad name.json").write_text((tmp_path / "ok.json").read_text())
    old = os.environ["EDGECODEC_MODEL_PATH"]
    try:
        os.environ["EDGECODEC_MODEL_PATH"] = str(tmp_path)
        names = [e.name for e in zoo.list_models()]
    finally:
        os.environ["EDGECODEC_MODEL_PATH"] = old
    assert "ok" in names and "bad name" not in names


def test_outputs_are_written_where_files_cannot_be_locked(tmp_path, monkeypatch, capsys):
    """Some network file systems refuse flock (ENOLCK): outputs are still written, and a folder
    run's cleanup leaves temporary files it cannot lock."""
    import errno
    import fcntl

    import edgecodec

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    arr = np.random.RandomState(4).randint(0, 256, (32, 48, 3), dtype=np.uint8)
    (src / "a.edc").write_bytes(edgecodec.compress(arr, model="tiny"))
    unknown = out / ".b.png.zzzz0000.tmp"
    unknown.write_bytes(b"x")
    assert cli.main(["decompress", str(src), "-o", str(out), "-q"]) == 0
    assert (out / "a.png").is_file() and unknown.exists()
    assert "removed" not in capsys.readouterr().out


def test_threads_share_one_single_thread_section_and_restore_the_apps_count(tiny_stream):
    """torch's thread count is one setting for the process. Each single_thread() section saved and
    restored its own: a section that ended first put the count back under another still running
    (its float order, which the entropy coder's tables depend on, then changed), and the other,
    having saved 1, left an app's thread pool on one thread."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import edgecodec
    from edgecodec.models.codec_model import single_thread

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        inside, leave, left = threading.Event(), threading.Event(), threading.Event()

        def first_section():
            with single_thread():
                inside.set()
                leave.wait(10)
            left.set()

        worker = threading.Thread(target=first_section)
        worker.start()
        assert inside.wait(10)
        with single_thread():  # a second section, which outlives the first
            leave.set()
            assert left.wait(10)
            assert torch.get_num_threads() == 1
        worker.join()
        assert torch.get_num_threads() == 2
        for _ in range(3):  # an app's pool decoding at once, then a thread started afterwards
            with ThreadPoolExecutor(6) as pool:
                list(pool.map(lambda _: edgecodec.decompress(tiny_stream), range(24)))
            seen = []
            later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
            later.start()
            later.join()
            assert seen == [2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
