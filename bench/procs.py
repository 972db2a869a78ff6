"""Processes under test: start pinned to CPUs, find their process tree, sample CPU and RSS."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


@functools.cache
def cpu_sets() -> tuple[set[int], set[int]]:
    """(relay CPUs, load CPUs): one core each where there are two or more, else the same.
    Kept from the first call: a runner pins itself to the load CPUs afterwards, and asked
    again it would see only those (and put the relay on the load's core)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        return {cpus[0]}, set(cpus[1:])
    return set(cpus), set(cpus)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 20, proc: Proc | None = None) -> None:
    """Wait until ``port`` accepts; with ``proc``, a process that exits first (a flag it
    lacks) fails at once, with the end of its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            log = proc.log
            tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
            raise ProcExited(f"exited at start ({proc.popen.returncode}): {tail.strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class ProcExited(RuntimeError):
    """A process under test exited before it listened."""


class Proc:
    """A started process (and its children), pinned to ``cpus``."""

    def __init__(self, argv: Sequence[str], cpus: set[int], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.argv, self.log = list(argv), log
        self._log = open(log, "ab")  # noqa: SIM115 (closed in stop())
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),
        )
        self.pid = self.popen.pid

    def tree(self) -> list[int]:
        """This process and its descendants (nginx: master and worker)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the whole process tree, from /proc/PID/stat."""
        user = system = 0.0
        for pid in self.tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            user += int(fields[11]) / TICK
            system += int(fields[12]) / TICK
        return user, system

    def cpu_seconds(self) -> float:
        return sum(self.cpu_times())

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.tree():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()


class RssSampler:
    """Samples a process tree's RSS in a thread; ``peak`` is the largest value seen."""

    def __init__(self, proc: Proc, interval: float = 0.2) -> None:
        self.proc, self.interval = proc, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.rss_bytes())
            self._stop.wait(self.interval)


def git_rev() -> str:
    """The short commit of the checkout bench/ is in ("unknown" outside git), for a run's meta."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
