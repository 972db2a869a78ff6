"""``relay serve --workers N``: N relay processes on one port, supervised by the parent.

Each worker is an ordinary ``relay serve`` process that binds the port with SO_REUSEPORT; the
kernel then spreads new connections over the workers' listening sockets (by a hash of the
connection's addresses), so no process hands sockets to another. The parent serves nothing. It:

* reserves the port first when ``--port 0`` asks for any free one: it binds a socket with
  SO_REUSEPORT but never listens on it, so the kernel sends it no connections;
* starts the workers and restarts one that dies (at most once a second per slot, so a worker
  that cannot start does not spin);
* prints the banner once, when the first worker listens (a worker, started with ``--worker-of``,
  prints none and tells its parent it listens with SIGUSR1);
* on SIGTERM or SIGINT, passes SIGTERM to every worker (each drains, see ``--drain-timeout``),
  waits for them, and exits 0 when they all did. A second signal during that wait is passed
  on as a second SIGTERM, which ends each worker's drain at once (their streams get the
  shutdown event); a worker still there 5 s later is killed. The workers ignore SIGINT
  themselves: a Ctrl-C reaches the terminal's whole process group, supervisor and workers,
  and counted twice it would cut at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

_RESTART_GAP = 1.0  # seconds between two starts of one worker slot
_HURRIED = 5.0  # seconds a worker has to end after the second signal, before it is killed


def ready(supervisor: int) -> None:
    """In a worker: tell the supervisor this worker listens (it then prints the banner)."""
    if os.getppid() == supervisor:  # (never another process: SIGUSR1 would end most)
        os.kill(supervisor, signal.SIGUSR1)


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening SO_REUSEPORT socket holding ``port`` (0: any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Supervisor:
    """Starts, restarts and stops the worker processes (see the module docstring)."""

    def __init__(self, argv: Sequence[str], workers: int, host: str, port: int,
                 banner: Callable[[int], str]) -> None:
        self._reserved = reserve_port(host, port)
        self.port: int = self._reserved.getsockname()[1]
        self._argv = [sys.executable, "-m", "relay", "serve", *argv, "--port", str(self.port),
                      "--reuse-port", "--workers", "1", "--worker-of", str(os.getpid())]
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * workers
        self._started = [0.0] * workers
        self._signals = 0  # SIGTERM/SIGINT received
        self._banner: Callable[[int], str] | None = banner  # None once printed

    @property
    def _stopping(self) -> bool:
        return self._signals > 0

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGUSR1, self._on_ready)
        while not self._stopping:
            for slot, proc in enumerate(self._procs):
                if proc is not None and proc.poll() is None:
                    continue
                if proc is not None:
                    print(f"relay supervisor: worker {proc.pid} exited with "
                          f"{proc.returncode}; restarting", file=sys.stderr, flush=True)
                if time.monotonic() - self._started[slot] >= _RESTART_GAP:
                    self._start(slot)
            time.sleep(0.1)
        return self._stop_all()

    def _start(self, slot: int) -> None:
        self._started[slot] = time.monotonic()
        self._procs[slot] = subprocess.Popen(self._argv)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1

    def _on_ready(self, signum: int, frame: FrameType | None) -> None:
        # Taken before it is printed: the second worker's SIGUSR1 can run this handler again
        # in the middle of the first one's print (Python runs a handler between bytecodes).
        banner, self._banner = self._banner, None
        if banner is not None:  # the first worker listens; a restarted one: nothing
            print(banner(self.port), flush=True)

    def _stop_all(self) -> int:
        procs = [p for p in self._procs if p is not None and p.poll() is None]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        hurried = 0.0  # when the second signal was passed on
        while any(p.poll() is None for p in procs):
            live = [p for p in procs if p.poll() is None]
            if self._signals > 1 and not hurried:
                hurried = time.monotonic()
                print(f"relay supervisor: second signal: ending {len(live)} workers now",
                      file=sys.stderr, flush=True)
                for proc in live:
                    proc.send_signal(signal.SIGTERM)
            elif hurried and time.monotonic() - hurried > _HURRIED:
                for proc in live:
                    proc.kill()
            time.sleep(0.05)
        self._reserved.close()
        return 1 if any(p.returncode != 0 for p in procs) else 0
