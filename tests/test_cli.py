"""The command line and configuration: real processes, flags and RELAY_* variables."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from relay.cli import config_from_args, parser
from relay.config import ChannelLimits, Config, Origin, api_key_from_env
from relay.mock import completion_text

from .conftest import ScriptedFactory
from .support import (
    OK_JSON,
    H11Client,
    ScriptedUpstream,
    UpstreamConn,
    chat_body,
    connect,
    publish,
    sse_data,
    wait_until,
)
from .support.processes import spawn


def test_origin_parse() -> None:
    assert Origin.parse("https://api.openai.com") == Origin("https", "api.openai.com", 443)
    assert Origin.parse("http://127.0.0.1:9000/").host_header == b"127.0.0.1:9000"
    assert Origin.parse("https://h:443").host_header == b"h"
    assert Origin.parse("http://[::1]:81").host_header == b"[::1]:81"
    for bad in ("ftp://x", "https://", "https://u:p@h", "https://h/v1", "https://h?q=1"):
        with pytest.raises(ValueError):
            Origin.parse(bad)


def test_api_key_env() -> None:
    assert api_key_from_env(None, {"OPENAI_API_KEY": "sk-1"}) == "sk-1"
    assert api_key_from_env(None, {"RELAY_API_KEY_ENV": "MY_KEY", "MY_KEY": "k2",
                                   "OPENAI_API_KEY": "sk-1"}) == "k2"
    assert api_key_from_env(None, {}) is None
    assert "sk-secret" not in repr(Config(api_key="sk-secret"))


def test_env_variables_configure_every_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_PORT", "9999")
    monkeypatch.setenv("RELAY_UPSTREAM", "https://example.org")
    monkeypatch.setenv("RELAY_FIRST_BYTE_TIMEOUT", "7.5")
    monkeypatch.setenv("RELAY_POOL_SIZE", "3")
    monkeypatch.setenv("RELAY_LOOP", "asyncio")
    monkeypatch.setenv("RELAY_UPSTREAM_RCVBUF", "0")
    cfg = config_from_args(parser().parse_args(["serve"]))
    assert cfg.port == 9999 and cfg.upstream == Origin("https", "example.org", 443)
    assert cfg.timeouts.first_byte == 7.5 and cfg.limits.pool_size == 3 and cfg.loop == "asyncio"
    assert cfg.limits.upstream_rcvbuf == 0
    cfg = config_from_args(parser().parse_args(["serve", "--port", "1234"]))
    assert cfg.port == 1234  # the flag wins over the environment


def test_request_body_deadline_flag_and_env(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert config_from_args(parser().parse_args(["serve"])).timeouts.request_body_deadline == 60
    cfg = config_from_args(parser().parse_args(["serve", "--request-body-deadline", "2.5"]))
    assert cfg.timeouts.request_body_deadline == 2.5
    monkeypatch.setenv("RELAY_REQUEST_BODY_DEADLINE", "0")
    assert config_from_args(parser().parse_args(["serve"])).timeouts.request_body_deadline == 0
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            parser().parse_args(["serve", "--request-body-deadline", bad])
        assert "--request-body-deadline" in capsys.readouterr().err
    monkeypatch.setenv("RELAY_REQUEST_BODY_DEADLINE", "-5")
    with pytest.raises(SystemExit):
        parser().parse_args(["serve"])


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_serve_with_embedded_mock(loop: str) -> None:
    with spawn("serve", "--port", "0", "--loop", loop, env={"RELAY_UPSTREAM": ""}) as (
            _proc, port, lines):
        assert wait_until(lambda: any("built-in mock upstream" in line for line in lines))
        client = H11Client(connect(port))
        client.send(b"POST", b"/v1/chat/completions", chat_body(3))
        assert sse_data(client.read_reply().body)[-1] == b"[DONE]"


def test_banner_has_curl_and_sdk_snippets() -> None:
    with spawn("serve", "--port", "0") as (_proc, port, lines):
        assert wait_until(lambda: len(lines) >= 14)
        text = "\n".join(lines)
        assert f"curl -N http://127.0.0.1:{port}/v1/chat/completions" in text
        assert f'OpenAI(base_url="http://127.0.0.1:{port}/v1"' in text


def test_the_banner_names_the_demo_page_and_the_channel_endpoints() -> None:
    """What it names answers: the page at /, a publish to the channel URL it shows."""
    with spawn("serve", "--port", "0") as (_proc, port, lines):
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: any("publish with curl" in line for line in lines))
        text = "\n".join(lines)
        assert f"the demo page at {url}/ " in text
        assert f"curl -N {url}/events/NAME" in text and f"curl {url}/events/NAME -H" in text
        page = H11Client(connect(port))
        page.send(b"GET", b"/")
        reply = page.read_reply()
        assert reply.status == 200 and b"<html" in reply.body.lower()
        assert publish(port, "NAME", "hello").status == 200


@pytest.mark.parametrize(("args", "warned"), [
    (("--host", "0.0.0.0"), True), (("--host", "0.0.0.0", "--allowed-host", "relay.example"),
                                    False), ((), False),
])
def test_the_banner_says_when_the_host_check_is_off(args: tuple[str, ...], warned: bool) -> None:
    """Off a loopback address without --allowed-host, any Host is answered (a DNS-rebinding
    page's request reaches the upstream with the key): one line of the banner says so, and
    how to turn the check on."""
    with spawn("serve", "--port", "0", *args) as (_proc, _port, lines):
        assert wait_until(lambda: "try it:" in lines)
        said = [line for line in lines if "Host check" in line]
        assert len(said) == (1 if warned else 0), lines
        if warned:
            assert "off" in said[0] and "--allowed-host" in said[0] and "0.0.0.0" in said[0]


def test_key_from_environment_is_injected_and_never_printed(scripted: ScriptedFactory) -> None:
    async def script(c: UpstreamConn) -> None:
        await c.read_request()
        c.write(OK_JSON)
        await c.watch_close()

    up: ScriptedUpstream = scripted(script)
    with spawn("serve", "--port", "0", "--upstream", up.url,
               env={"OPENAI_API_KEY": "sk-live-SECRET"}) as (proc, port, banner):
        client = H11Client(connect(port))
        client.send(b"GET", b"/v1/models", headers=[(b"authorization", b"Bearer mine")])
        assert client.read_reply().status == 200
        assert up.connections[0].headers[b"authorization"] == b"Bearer sk-live-SECRET"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert "SECRET" not in "\n".join(banner) + out
        assert proc.returncode == 0


def test_console_script_and_module_entry_points() -> None:
    relay = shutil.which("relay", path=str(Path(sys.executable).parent))
    assert relay is not None
    out = subprocess.run([relay, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("relay ")
    out = subprocess.run([sys.executable, "-m", "relay", "serve", "--help"],
                         capture_output=True, text=True, check=True)
    assert "RELAY_UPSTREAM" in out.stdout


def test_bad_upstream_url_is_a_clear_error() -> None:
    out = subprocess.run([sys.executable, "-m", "relay", "serve", "--upstream", "ftp://x"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "http:// or https://" in out.stderr


def test_make_run_starts_the_relay_in_front_of_the_mock() -> None:
    """The README's first command (on a free port so it can run beside anything)."""
    make = shutil.which("make")
    assert make is not None
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([make, "-s", "run", "ARGS=--port 0"], cwd=root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]  # a first run installs .venv before the banner
        while "listening on" not in lines[-1]:
            assert lines[-1], "make run exited:\n" + "".join(lines)
            lines.append(proc.stdout.readline())
        port = int(lines[-1].split("http://127.0.0.1:")[1].split()[0])
        assert "built-in mock upstream" in proc.stdout.readline()
        client = H11Client(connect(port))
        client.send(b"POST", b"/v1/chat/completions", chat_body(2))
        assert sse_data(client.read_reply().body)[-1] == b"[DONE]"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_reference_configuration_table_lists_every_serve_flag() -> None:
    reference = (Path(__file__).resolve().parent.parent / "docs" / "reference.md").read_text()
    table = reference.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    serve = next(a for a in parser()._subparsers._group_actions[0].choices.items()  # type: ignore[union-attr]
                 if a[0] == "serve")[1]
    flags = [opt for action in serve._actions for opt in action.option_strings
             if opt.startswith("--") and opt != "--help"]
    assert flags
    for flag in flags:
        assert f"| `{flag}` |" in table, flag


def _one_line_exit_2(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True,
                         timeout=30, env={**os.environ, **(env or {})})
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("relay: ")
    return out.stderr


def test_startup_errors_are_one_clear_line_and_exit_2() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "address already in use" in _one_line_exit_2("serve", "--port", str(port))
        assert "address already in use" in _one_line_exit_2("mock", "--port", str(port))
        assert "in use" in _one_line_exit_2("serve", "--port", str(port), "--workers", "2")
    assert "cannot assign requested address" in _one_line_exit_2(
        "serve", "--host", "10.255.255.1", "--port", "0")
    assert "--tls-key" in _one_line_exit_2("mock", "--tls-cert", "cert.pem")
    assert "http:// or https://" in _one_line_exit_2("serve", "--upstream", "ftp://x")


def test_help_and_banner_say_what_the_relay_does() -> None:
    out = subprocess.run([sys.executable, "-m", "relay", "serve", "--help"],
                         capture_output=True, text=True, check=True).stdout
    flat = " ".join(out.split())
    api_key_help = flat.split("--api-key-env API_KEY_ENV the")[1].split("--allowed-host")[0]
    assert "default OPENAI_API_KEY" in api_key_help and "None" not in api_key_help
    with spawn("serve", "--port", "0", "--upstream", "http://127.0.0.1:9") as (_p, _port, lines):
        assert wait_until(lambda: any("print(chunk" in line for line in lines))
        banner = "\n".join(lines)
        assert "mock-gpt" not in banner  # a real upstream needs a model it serves
        assert "pip install openai" in banner
        assert "clients' own Authorization goes upstream" in banner


def test_the_readme_sdk_snippet_runs_as_written() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    snippet = quick.split("```python\n", 1)[1].split("```", 1)[0]
    assert "pip install openai" in quick  # how to get the SDK, in one line
    with spawn("serve", "--port", "0") as (_p, port, _):
        code = snippet.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == completion_text(16)


def test_the_wheel_holds_every_module_and_builds_without_a_warning(tmp_path: Path) -> None:
    """``pip install .`` (not editable) must get the whole package: with setuptools and
    ``packages = ["relay"]`` the wheel held the top-level modules only, and the first
    ``make run`` printed ~40 lines of deprecation warnings. Now neither."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-w", str(tmp_path), str(root)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    noise = [line for line in out.stdout.splitlines() + out.stderr.splitlines()
             if "arning" in line and "pypi-more" not in line]  # (not the sandbox's pip config)
    assert noise == []
    [wheel] = tmp_path.glob("relay-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    modules = {str(p.relative_to(root)) for p in (root / "relay").rglob("*.py")}
    assert modules <= names, modules - names


def test_an_api_key_that_would_split_a_header_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="API key holds characters"):
        Config(api_key="sk-abc\r\nx-injected: 1")
    proc = subprocess.run([sys.executable, "-m", "relay", "serve", "--port", "0"],
                          env={**os.environ, "OPENAI_API_KEY": "sk-a b"}, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "API key holds characters" in proc.stderr
    assert "sk-a b" not in proc.stderr + proc.stdout  # (never the key itself)


def test_channel_byte_caps_refuse_negative_values() -> None:
    for flag in ("--channel-history-bytes", "--channels-memory"):
        assert f"{flag}: '-1': must be a whole number >= 0" in _one_line_exit_2(
            "serve", flag, "-1")
        with pytest.raises(ValueError, match=f"{flag} must not be negative"):
            ChannelLimits(**{"history_bytes" if "history" in flag else "memory": -1})


def test_a_ca_file_that_cannot_be_loaded_is_named_with_the_reason(tmp_path: Path) -> None:
    """Both were reported as ``cannot listen on 127.0.0.1:PORT: ...``, the listener's words."""
    https = ("serve", "--port", "0", "--upstream", "https://x.example")
    said = _one_line_exit_2(*https, "--upstream-ca", "/nonexistent")
    assert "--upstream-ca /nonexistent" in said and "No such file" in said
    assert "listen" not in said
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    said = _one_line_exit_2(*https, "--upstream-ca", str(bad))
    assert f"--upstream-ca {bad}" in said and "X509" in said and "listen" not in said
    said = _one_line_exit_2(*https, "--upstream-ca", str(bad), "--workers", "2")
    assert f"--upstream-ca {bad}" in said  # refused by the supervisor, not by each worker


def test_a_redis_url_without_its_scheme_is_one_line() -> None:
    """``--redis localhost:6379`` was a 35-line ValueError traceback from redis-py."""
    for url in ("localhost:6379", "http://localhost:6379", "redis://"):
        said = _one_line_exit_2("serve", "--port", "0", "--redis", url)
        assert "--redis" in said and "redis://" in said and "rediss://" in said
    assert "port" in _one_line_exit_2("serve", "--redis", "redis://localhost:99999")
    said = _one_line_exit_2("serve", "--redis", "localhost:6379", env={"RELAY_REDIS": ""})
    assert "redis://" in said


def test_redis_without_the_extra_says_how_to_install_it(tmp_path: Path) -> None:
    """A ModuleNotFoundError traceback and exit code 1 before: now the extra to install."""
    fake = tmp_path / "redis"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'redis'\", "
                                      "name='redis')\n")
    for extra in ((), ("--workers", "2")):
        said = _one_line_exit_2("serve", "--port", "0", "--redis", "redis://127.0.0.1:1",
                                *extra, env={"PYTHONPATH": str(tmp_path)})
        assert "relay[redis]" in said and ".venv/bin/pip install -e '.[redis]'" in said


@pytest.mark.parametrize("args", [
    ("serve", "--port", "99999"), ("serve", "--port", "65536"), ("serve", "--port", "-5"),
    ("serve", "--loop", "asyncio", "--port", "99999"), ("mock", "--port", "65536"),
    ("serve", "--heartbeat", "-1"), ("serve", "--max-body-size", "-1"),
])
def test_the_issues_bad_numbers_are_refused(args: tuple[str, ...]) -> None:
    """``--port 99999`` listened on 34463 (the kernel's modulo), 65536 on a random port, -5
    said ``Servname not supported``, ``--loop asyncio`` overflowed; negatives were taken."""
    said = _one_line_exit_2(*args)
    assert args[-2] in said and repr(args[-1]) in said


def _numeric_flags() -> list[tuple[str, str, str]]:
    """(subcommand, flag, a value it must refuse) for every flag that takes a number, read
    from the parser: a new one is covered, and one with a bare int/float type fails here."""
    from relay.cli import amount, port_number, seconds, worker_count

    refused = {port_number: ("-5", "65536"), seconds: ("-1",), amount: ("-1",),
               worker_count: ("0",)}
    subs = parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    found = []
    for name, sub in subs.items():
        for action in sub._actions:
            if action.type is None or not action.option_strings:
                continue
            assert action.type in refused, (name, action.option_strings)
            found += [(name, action.option_strings[0], bad) for bad in refused[action.type]]
    return found


@pytest.mark.parametrize(("command", "flag", "bad"), _numeric_flags())
def test_every_port_duration_and_size_refuses_a_bad_value(command: str, flag: str,
                                                           bad: str) -> None:
    said = _one_line_exit_2(command, flag, bad)
    assert flag in said and repr(bad) in said
    env = "RELAY_" + flag.lstrip("-").replace("-", "_").upper()
    if flag != "--worker-of":  # (set by --workers, the one without a variable)
        said = _one_line_exit_2(command, env={env: bad})
        assert flag in said and repr(bad) in said


def test_the_numeric_flags_include_every_port() -> None:
    flags = {(c, f) for c, f, _ in _numeric_flags()}
    assert {("serve", "--port"), ("serve", "--admin-port"), ("mock", "--port"),
            ("serve", "--heartbeat"), ("serve", "--max-body-size"),
            ("serve", "--drain-timeout"), ("serve", "--mock-delay-ms")} <= flags
