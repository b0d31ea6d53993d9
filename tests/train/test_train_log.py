"""What `comptk train` writes to a log: outside a terminal one line per epoch and no \\r frames; in a
terminal a progress bar; folds counted 1..K in both. And NAME may be left out."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.conftest import make_tiny

from comptk.cli import main

ROOT = Path(__file__).resolve().parents[2]
EPOCH = re.compile(r"^fold (\d)/2 epoch (\d)/2: loss [\d.]+, valid loss [\d.]+, valid accuracy [\d.]+, lr \S+, "
                   r"[\d.]+ s, \d+ images/s$")


def _train_args(root: Path, name: str) -> list[str]:
    return ["-m", "comptk", "train", str(root), "--workdir", str(root), "--folds", "2", "--epochs", "2",
            "--name", name, "--no-plots"]


def test_log_outside_a_terminal_has_one_line_per_epoch_and_no_carriage_return(tmp_path):
    root = make_tiny(tmp_path / "tiny")
    log = tmp_path / "nohup.out"
    with open(log, "wb") as out:  # a file, as nohup, CI or a saved notebook log give: not a TTY
        subprocess.run([sys.executable, *_train_args(root, "plain")], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, timeout=300)
    text = log.read_bytes().decode()
    assert "\r" not in text
    lines = text.splitlines()
    epochs = [tuple(map(int, m.groups())) for m in map(EPOCH.match, lines) if m]
    assert epochs == [(1, 1), (1, 2), (2, 1), (2, 2)], text
    # the fold lines count folds as the epoch lines (and the bar) do
    assert [line.split(":")[0] for line in lines if re.match(r"^fold \d/2: accuracy", line)] == ["fold 1/2", "fold 2/2"]
    assert lines[-2].startswith("run plain: CV accuracy ") and lines[-1].startswith("submission: ")


def test_quiet_outside_a_terminal_has_no_epoch_lines(tiny):
    result = CliRunner().invoke(main, ["train", str(tiny), "--workdir", str(tiny), "--folds", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not re.search(r" epoch \d+/\d+:", result.output) and "fold 2/2: accuracy" in result.output


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_in_a_terminal_a_progress_bar_replaces_the_epoch_lines(tmp_path):
    import fcntl
    import struct
    import termios

    root = make_tiny(tmp_path / "tiny")
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, *_train_args(root, "tty")], stdout=subprocess.DEVNULL, stderr=follower,
                            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    os.close(follower)
    chunks = []
    while True:  # read while it runs, so a full terminal buffer never blocks it
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=300) == 0
    os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    # bar frames, counting folds as the log lines do (the terminal itself turns \n into \r\n)
    assert re.search(r"\rfold 1/2: +\d+%\|", shown) and re.search(r"\rfold 2/2: +\d+%\|", shown), shown
    assert not any(EPOCH.match(line.strip("\r")) for line in shown.splitlines())
    run_log = (root / "runs" / "tty" / "log.txt").read_text()
    assert len(re.findall(r"fold \d/2 epoch \d/2: loss", run_log)) == 4  # epoch lines still reach the run's log


def test_train_without_a_name_uses_the_only_declared_competition(tmp_path, monkeypatch):
    work = make_tiny(tmp_path / "w")
    (work / "competitions" / "tiny").mkdir(parents=True)
    shutil.move(work / "competition.toml", work / "competitions" / "tiny" / "competition.toml")
    monkeypatch.chdir(work)
    result = CliRunner().invoke(main, ["train", "--folds", "2", "--name", "auto", "--quiet", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (work / "submissions" / "auto.csv").is_file()
    second = work / "competitions" / "other"
    shutil.copytree(work / "competitions" / "tiny", second)
    for command in ("train", "tune", "sweep", "inspect"):
        result = CliRunner().invoke(main, [command, "--quiet"] if command in ("train", "sweep") else [command])
        assert result.exit_code == 2, (command, result.output)
        assert result.output.strip().splitlines() == [
            "error: no competition NAME given and competitions declares 2: other, tiny; pass one of them as NAME"]
