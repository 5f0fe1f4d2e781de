"""erpauth benchmark: the hot paths under load, against what the machine allows.

Starts erpauth as in production (several worker processes, PostgreSQL, Redis when it
answers), loads it over loopback with wrk, and prints a table. Usage:

    python bench/run.py [--quick] [--workers N] [--duration S] [--only STEP ...]

See docs/benchmarks.md for what each line measures and the recorded results.
"""

import argparse
import json
import multiprocessing
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import postgres_database  # noqa: E402

from bench.setup_data import (  # noqa: E402
    count_access_tokens,
    grow_to_scale,
    mint_refresh_tokens,
    open_call_limit,
)
from bench.wrk import WrkResult, header_script, rotating_body_script, run_wrk  # noqa: E402
from erpauth.config import Settings  # noqa: E402
from erpauth.security.passwords import PasswordHasher  # noqa: E402
from erpauth.services import build_services  # noqa: E402

TOKEN_PATH = "/authentication/v1/authentication/token"
REVOKE_PATH = "/authentication/v1/authentication/revoke"
# auth: bearer check vs open twin; two: two instances; scale: 1M tokens.
STEPS = ("auth", "password", "refresh", "two", "scale")
ROUNDS = 3  # runs of each twin in step 1


@dataclass
class Row:
    name: str
    result: str
    target: str
    met: bool | None

    def markdown(self) -> str:
        verdict = {True: "yes", False: "**no**", None: "n/a"}[self.met]
        return f"| {self.name} | {self.result} | {self.target} | {verdict} |"


def main() -> int:
    args = _arguments()
    rows: list[Row] = []
    with postgres_database() as database_url, tempfile.TemporaryDirectory() as folder:
        env = _server_env(args, database_url, Path(folder))
        settings = Settings(**_settings_from(env))
        services = build_services(settings, migrate=True)
        demo = _erpauth_json(env, "init", "--demo")
        open_call_limit(services, "DEMO")
        grow_to_scale(services, "DEMO", operators=100, tokens=1000, start=1)
        _log(f"issued tokens before the load: {count_access_tokens(services)}")

        with _server(env, args.port, args.workers) as first:
            grant = _password_form(demo)
            token = _token(first, demo, grant)
            wanted = set(args.only or STEPS)
            if wanted & {"auth", "two", "scale"}:
                rows += _auth_overhead(args, first, token)
                protected = rows[-1]
            if "password" in wanted:
                rows += _password_grant(args, first, demo, grant, settings)
            if "refresh" in wanted:
                rows.append(_refresh_grant(args, first, demo, services, Path(folder)))
            rows.append(_memory(first))
            if "two" in wanted:
                with _server(env, args.port + 1, args.workers) as second:
                    rows += _two_instances(args, first, second, demo, grant, protected)
            if "scale" in wanted:
                rows += _scale(args, env, first, token, services)
        services.close()

    _report(args, rows)
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--tokens", type=int, default=1_000_000, help="issued tokens at scale")
    parser.add_argument("--operators", type=int, default=100_000, help="operators at scale")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (CI)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument(
        "--only",
        action="append",
        choices=STEPS,
        help="run only this step (repeatable); memory is always read",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.tokens, args.operators = 2, 20_000, 2_000
    return args


def _server_env(args: argparse.Namespace, database_url: str, folder: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "ERPAUTH_DATABASE_URL": database_url,
        "ERPAUTH_DATA_DIR": str(folder / "data"),
        "ERPAUTH_PUBLIC_URL": f"http://127.0.0.1:{args.port}",
        "ERPAUTH_LOG_LEVEL": "WARNING",
        "ERPAUTH_BENCHMARK_ROUTES": "1",
        # The defences would otherwise throttle the load generator itself.
        "ERPAUTH_TOKEN_REQUESTS_PER_IP_PER_MINUTE": "100000000",
        "ERPAUTH_TOKEN_REQUESTS_PER_CLIENT_PER_MINUTE": "100000000",
        "ERPAUTH_HASHING_QUEUE": "1000",
        "ERPAUTH_LIMITS_KEY_PREFIX": "bench-" + secrets.token_hex(4),
    }
    if _redis_answers():
        env["ERPAUTH_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    return env


def _settings_from(env: dict[str, str]) -> dict[str, str]:
    return {
        key.removeprefix("ERPAUTH_").lower(): value
        for key, value in env.items()
        if key.startswith("ERPAUTH_")
    }


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _erpauth_json(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "erpauth.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(done.stdout)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (not multiprocessing's resource tracker beside them)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [
            int(pid)
            for pid in children.read_text().split()
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the workers have used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.worker_pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks


@contextmanager
def _server(env: dict[str, str], port: int, workers: int) -> Iterator[Server]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "erpauth.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.url + "/health/ready", timeout=1).status_code == 200:
                time.sleep(1)  # let every worker finish starting
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"erpauth at {server.url} did not become ready")


def _password_form(demo: dict) -> dict[str, str]:
    return {
        "grant_type": "password",
        "username": demo["operator_username"],
        "password": demo["operator_password"],
    }


def _token(server: Server, demo: dict, form: dict[str, str]) -> str:
    response = httpx.post(
        server.url + TOKEN_PATH, auth=(demo["client_id"], demo["client_secret"]), data=form
    )
    response.raise_for_status()
    return response.json()["access_token"]


def _basic(demo: dict) -> str:
    return httpx.BasicAuth(demo["client_id"], demo["client_secret"])._auth_header


def _load(
    args: argparse.Namespace, server: Server, path: str, script: str | None = None, **kw
) -> tuple[WrkResult, float]:
    """wrk's result, and the workers' CPU time per request in microseconds.

    The CPU time per request does not depend on what else shares the cores (wrk, PostgreSQL,
    other programs) the way requests per second does.
    """
    cpu_before = server.cpu_seconds()
    result = run_wrk(
        server.url + path,
        duration=args.duration,
        connections=kw.get("connections", args.connections),
        script=script,
    )
    cpu = (server.cpu_seconds() - cpu_before) / max(result.requests, 1) * 1e6
    _log(f"{path}: {result.summary}  worker CPU {cpu:.0f} µs/request")
    return result, cpu


def _auth_overhead(args: argparse.Namespace, server: Server, token: str) -> list[Row]:
    bearer = header_script({"Authorization": f"Bearer {token}"})
    _load(args, server, "/benchmark/protected", bearer)  # warm-up, both twins
    _load(args, server, "/benchmark/open")
    # Taken in turns, three times each, and the middle run of each kept: on shared cores one
    # run can be slowed by anything else on the machine.
    opens, protecteds = [], []
    for _ in range(ROUNDS):
        opens.append(_load(args, server, "/benchmark/open"))
        protecteds.append(_load(args, server, "/benchmark/protected", bearer))
    open_, open_cpu = _median_run(opens)
    protected, protected_cpu = _median_run(protecteds)
    ratio = protected.requests_per_second / open_.requests_per_second
    return [
        Row(
            "1. unprotected endpoint",
            f"{open_.summary}, {open_cpu:.0f} µs CPU/request",
            "reference",
            None,
        ),
        Row(
            f"1. bearer-protected twin (ratio {ratio:.2f}; CPU per request "
            f"{open_cpu / protected_cpu:.2f})",
            f"{protected.summary}, {protected_cpu:.0f} µs CPU/request",
            "≥ 0.85 × unprotected",
            ratio >= 0.85 and all(run.errors == 0 for run, _ in protecteds),
        ),
    ]


def _median_run(runs: list[tuple[WrkResult, float]]) -> tuple[WrkResult, float]:
    """The run with the median requests per second, and the median CPU time per request."""
    by_rate = sorted(runs, key=lambda run: run[0].requests_per_second)
    return by_rate[len(by_rate) // 2][0], statistics.median(cpu for _, cpu in runs)


def _password_grant(
    args: argparse.Namespace, server: Server, demo: dict, form: dict[str, str], settings: Settings
) -> list[Row]:
    hasher = PasswordHasher(settings)
    stored = hasher.hash(form["password"])
    # Timed alone, before and after the load: the machine's speed drifts over a run.
    timings = _verifications(hasher, stored, form["password"], 30)

    body = httpx.QueryParams(form)
    script = header_script(
        {"Authorization": _basic(demo), "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
        body=str(body),
    )
    result, _ = _load(args, server, TOKEN_PATH, script, connections=args.workers * 4)
    timings += _verifications(hasher, stored, form["password"], 30)
    verify = statistics.median(timings)
    limit = args.workers / verify
    ratio = result.requests_per_second / limit
    seconds = 1.0 if args.quick else 3.0
    together = _verifications_at_once(
        args.workers, stored, form["password"], settings, round(seconds / verify)
    )
    return [
        Row(
            f"2. password grant (one verification {verify * 1000:.1f} ms, "
            f"limit {limit:.0f}/s, ratio {ratio:.2f})",
            result.summary,
            "≥ 0.85 × workers ÷ verification time",
            ratio >= 0.85 and result.errors == 0,
        ),
        Row(
            f"2. hashing alone, {args.workers} processes at once, nothing else "
            f"(ratio {together / limit:.2f})",
            f"{together:.0f} verifications/s; the grant reached "
            f"{result.requests_per_second / together:.2f} of it",
            "what the cores allow, for reference",
            None,
        ),
    ]


def _verifications(hasher: PasswordHasher, stored: str, password: str, count: int) -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        hasher.verify(stored, password)
        timings.append(time.perf_counter() - started)
    return timings


def _verifications_at_once(
    processes: int, stored: str, password: str, settings: Settings, each: int
) -> float:
    """Verifications per second with every process checking passwords, and nothing else.

    Hashes running side by side share the memory bus and caches (and, on many virtual
    machines, a physical core), so this is what the grant's limit can at best become.
    """
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        # Each process hashes once before the clock starts, so imports are not timed.
        pool.starmap(_verify_in_turn, [(stored, password, settings, 1)] * processes)
        started = time.perf_counter()
        pool.starmap(_verify_in_turn, [(stored, password, settings, each)] * processes)
        elapsed = time.perf_counter() - started
    return processes * each / elapsed


def _verify_in_turn(stored: str, password: str, settings: Settings, count: int) -> None:
    _verifications(PasswordHasher(settings), stored, password, count)


def _refresh_grant(
    args: argparse.Namespace, server: Server, demo: dict, services, folder: Path
) -> Row:
    bodies = folder / "refresh-bodies.txt"
    mint_refresh_tokens(
        services, demo["operator_username"], demo["client_id"], 2000 * args.duration, bodies
    )
    script = rotating_body_script(
        {"Authorization": _basic(demo), "Content-Type": "application/x-www-form-urlencoded"},
        bodies,
    )
    result, cpu = _load(args, server, TOKEN_PATH, script, connections=args.workers * 4)
    per_core = result.requests_per_second / (os.cpu_count() or 1)
    return Row(
        f"3. refresh grant ({per_core:.0f}/s per core)",
        f"{result.summary}, {cpu:.0f} µs worker CPU/request",
        "≥ 500/s per core",
        per_core >= 500 and result.errors == 0,
    )


def _memory(server: Server) -> Row:
    sizes = []
    for pid in server.worker_pids():
        status = Path(f"/proc/{pid}/status").read_text()
        kib = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
        sizes.append(kib / 1024)
    worst = max(sizes)
    listed = ", ".join(f"{size:.0f}" for size in sizes)
    return Row(
        "5. resident memory per worker after the load", f"{listed} MB", "≤ 150 MB", worst <= 150
    )


def _two_instances(
    args: argparse.Namespace,
    first: Server,
    second: Server,
    demo: dict,
    form: dict[str, str],
    single: Row,
) -> list[Row]:
    token = _token(first, demo, form)
    script = header_script({"Authorization": f"Bearer {token}"})
    half = max(args.connections // 2, 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.lua"
        path.write_text(script)
        command = ["wrk", "-t1", f"-c{half}", f"-d{args.duration}s", "--latency", "-s", str(path)]
        runs = [
            subprocess.Popen(
                [*command, server.url + "/benchmark/protected"], stdout=subprocess.PIPE, text=True
            )
            for server in (first, second)
        ]
        from bench.wrk import parse

        results = [parse(run.communicate(timeout=args.duration + 60)[0]) for run in runs]
    total = sum(result.requests_per_second for result in results)
    one = float(single.result.split("req/s")[0].replace(",", ""))

    crossover = _revocation_crossover(first, second, demo, form)
    return [
        Row(
            f"6. two instances, protected endpoint (total vs one: {total / one:.2f}×)",
            f"{total:.0f} req/s total, errors {sum(r.errors for r in results)}",
            "throughput scales (bounded by the cores both share here)",
            None,
        ),
        Row(
            "6. revocation through one instance seen by the other",
            f"{crossover * 1000:.1f} ms",
            "≤ 1 s",
            crossover <= 1.0,
        ),
    ]


def _revocation_crossover(first: Server, second: Server, demo: dict, form: dict) -> float:
    token = _token(first, demo, form)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=5) as http:
        assert http.get(second.url + "/benchmark/protected", headers=headers).status_code == 200
        revoked = time.perf_counter()
        http.post(
            first.url + REVOKE_PATH,
            auth=(demo["client_id"], demo["client_secret"]),
            data={"token": token},
        ).raise_for_status()
        while time.perf_counter() - revoked < 5:
            if http.get(second.url + "/benchmark/protected", headers=headers).status_code == 401:
                return time.perf_counter() - revoked
            time.sleep(0.005)
    return float("inf")


def _scale(
    args: argparse.Namespace, env: dict[str, str], first: Server, token: str, services
) -> list[Row]:
    """p99 of the bearer check at ~1,000 and at 1,000,000 tokens, reading the database.

    A kept standing needs no query at all, so the comparison is made on a second instance
    with the standing cache off (``ERPAUTH_STANDING_CACHE_SECONDS=0``): every request reads
    its token's standing, as a token's first request in a process does. Three runs each, the
    median p99 of each compared.
    """
    bearer = header_script({"Authorization": f"Bearer {token}"})
    cold_env = {**env, "ERPAUTH_STANDING_CACHE_SECONDS": "0"}
    with _server(cold_env, args.port + 2, args.workers) as cold:
        _load(args, cold, "/benchmark/protected", bearer)  # warm-up
        before = [_load(args, cold, "/benchmark/protected", bearer) for _ in range(ROUNDS)]
        _log(f"growing to {args.tokens} tokens and {args.operators} operators …")
        grow_to_scale(
            services, "DEMO", operators=args.operators, tokens=args.tokens, start=10_000_000
        )
        issued = count_access_tokens(services)
        after = [_load(args, cold, "/benchmark/protected", bearer) for _ in range(ROUNDS)]
    kept = [_load(args, first, "/benchmark/protected", bearer) for _ in range(ROUNDS)]

    p99_before = statistics.median(run.p99_ms for run, _ in before)
    p99_after = statistics.median(run.p99_ms for run, _ in after)
    growth = p99_after / p99_before - 1
    middle, _ = _median_run(after)
    kept_middle, _ = _median_run(kept)
    return [
        Row(
            f"4. validation reading the database, {issued:,} issued tokens "
            f"(median p99 {p99_before:.1f} → {p99_after:.1f} ms, {growth:+.0%})",
            middle.summary,
            "p99 grows ≤ 20%",
            growth <= 0.20 and all(run.errors == 0 for run, _ in before + after),
        ),
        Row(
            f"4. validation with the standing kept, {issued:,} issued tokens",
            kept_middle.summary,
            "for the record",
            None,
        ),
    ]


def _report(args: argparse.Namespace, rows: list[Row]) -> None:
    print()
    print(
        f"erpauth benchmark: {args.workers} workers, wrk {args.connections} connections, "
        f"{args.duration} s per run, {'quick' if args.quick else 'full'}"
    )
    print(f"machine: {_machine()}")
    print()
    print("| measurement | result | target | met |")
    print("|---|---|---|---|")
    for row in rows:
        print(row.markdown())
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2))


def _machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory_kib / 1024 / 1024:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
