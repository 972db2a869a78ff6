"""The relays under test: how to check each is installed, and how to start it."""

from __future__ import annotations

import importlib.util
import resource
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .procs import Proc, wait_port

HERE = Path(__file__).resolve().parent
THIS_TREE = HERE.parent  # this checkout (a relay@PATH names another)


@dataclass(frozen=True)
class RelaySpec:
    name: str
    python: bool  # a Python peer (for the "best Python peer" ratio)
    tree: Path | None = None  # "relay@PATH": the relay of another checkout, as "relay" runs

    @property
    def slug(self) -> str:
        """The name as a file name (``relay@PATH`` holds slashes)."""
        return self.name.replace("/", "_")

    def headers(self) -> tuple[str, ...]:
        """Headers (``name:value``) the load must send to this relay: LiteLLM's master key."""
        return (f"authorization:Bearer {LITELLM_KEY}",) if self.name == "litellm" else ()

    def missing(self) -> str | None:
        """Why this relay cannot run here (None when it can)."""
        if self.tree is not None and not (self.tree / "relay" / "__main__.py").exists():
            return f"{self.tree} is not a checkout of the relay"
        if self.name == "litellm" and not litellm_exe().exists():
            return "litellm not installed (make bench-deps: .venv-litellm)"
        if self.name == "nginx" and shutil.which("nginx") is None:
            return "nginx not installed (make bench-deps)"
        modules = {"aiohttp": ["aiohttp"], "fastapi": ["fastapi", "sse_starlette", "httpx",
                                                       "uvicorn"]}.get(self.name, [])
        for mod in modules:
            if importlib.util.find_spec(mod) is None:
                return f"python package {mod} not installed (make bench-deps)"
        return None

    def start(self, port: int, upstream_port: int, cpus: set[int], workdir: Path) -> Proc | None:
        """Start the relay on ``port`` in front of the mock; None for the direct baseline."""
        upstream = f"http://127.0.0.1:{upstream_port}"
        log = workdir / f"{self.slug}.log"
        if self.name == "direct":
            return None
        if self.name in ("relay", "relay-log") or self.tree is not None:
            # "relay": as nginx's peer config (access_log off); "relay-log": the access log
            # on, into a file (its cost: bench.per_stream --relays relay,relay-log).
            where = str(workdir / "access.log") if self.name == "relay-log" else "off"
            argv = [sys.executable, "-m", "relay", "serve", "--port", str(port),
                    "--upstream", upstream, "--log-level", "warning", "--access-log", where]
            if self.tree is not None:  # (the other checkout's package first on the path)
                proc = Proc(argv, cpus, log, env={"PYTHONPATH": str(self.tree)})
                wait_port(port, proc=proc)
                return proc
        elif self.name == "aiohttp":
            argv = [sys.executable, "-m", "bench.peers.aiohttp_relay", "--port", str(port),
                    "--upstream", upstream]
        elif self.name == "fastapi":
            argv = [sys.executable, "-m", "bench.peers.fastapi_relay", "--port", str(port),
                    "--upstream", upstream]
        elif self.name == "pipe":
            argv = [sys.executable, "-m", "bench.peers.pipe", "--port", str(port),
                    "--upstream-port", str(upstream_port)]
        elif self.name == "litellm":
            argv = [str(litellm_exe()), "--config", str(litellm_conf(upstream, workdir)),
                    "--host", "127.0.0.1", "--port", str(port)]
            proc = Proc(argv, cpus, log, env=LITELLM_ENV)
            wait_port(port, timeout=120, proc=proc)  # (it takes seconds to start)
            return proc
        elif self.name == "nginx":
            argv = ["nginx", "-c", str(nginx_conf(port, upstream_port, workdir)),
                    "-p", str(workdir)]
        else:
            raise ValueError(self.name)
        proc = Proc(argv, cpus, log)
        wait_port(port)
        return proc


def nofile_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nginx_conf(port: int, upstream_port: int, workdir: Path) -> Path:
    prefix = workdir / "nginx"
    prefix.mkdir(exist_ok=True)
    limit = nofile_limit()
    text = (HERE / "peers" / "nginx.conf").read_text()
    for key, value in {"PREFIX": prefix, "PORT": port, "UPSTREAM_PORT": upstream_port,
                       "NOFILE": limit, "CONNECTIONS": limit - 100}.items():
        text = text.replace("{" + key + "}", str(value))
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


# LiteLLM, the proxy users pick: in its own venv (make bench-deps), as its dependencies pin
# versions the relay's tests use too. It never fetches its cost map, and needs a master key.
LITELLM_KEY = "sk-bench"
LITELLM_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": LITELLM_KEY}


def litellm_exe() -> Path:
    return Path(__file__).resolve().parents[1] / ".venv-litellm" / "bin" / "litellm"


def litellm_conf(upstream: str, workdir: Path) -> Path:
    """One model, ``openai/mock-gpt``, whose api_base is the mock."""
    conf = workdir / "litellm.yaml"
    conf.write_text("model_list:\n  - model_name: mock-gpt\n    litellm_params:\n"
                    f"      model: openai/mock-gpt\n      api_base: {upstream}/v1\n"
                    "      api_key: unused\n")
    return conf


def spec(name: str) -> RelaySpec:
    """The relay called ``name``: one of :data:`RELAYS`, or ``relay@PATH`` for the relay of the
    checkout at PATH (a tree before a change, beside this one in the same run)."""
    if name.startswith("relay@"):
        return RelaySpec(name, python=False, tree=Path(name.removeprefix("relay@")).resolve())
    return RELAYS[name]


RELAYS = {
    "relay": RelaySpec("relay", python=False),
    "relay-log": RelaySpec("relay-log", python=False),
    "nginx": RelaySpec("nginx", python=False),
    "aiohttp": RelaySpec("aiohttp", python=True),
    "fastapi": RelaySpec("fastapi", python=True),
    "pipe": RelaySpec("pipe", python=False),
    "litellm": RelaySpec("litellm", python=True),
    "direct": RelaySpec("direct", python=False),
}
