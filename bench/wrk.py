"""Running wrk and reading its report."""

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx answers plus socket errors

    @property
    def summary(self) -> str:
        return (
            f"{self.requests_per_second:9.0f} req/s  p50 {self.p50_ms:7.2f} ms  "
            f"p99 {self.p99_ms:7.2f} ms  errors {self.errors}"
        )


def run_wrk(
    url: str,
    *,
    duration: int,
    connections: int,
    threads: int = 1,
    script: str | None = None,
) -> WrkResult:
    """Loads ``url`` for ``duration`` seconds; ``script`` is Lua that sets up each request."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "--timeout",
            "10s",
        ]
        if script:
            path = Path(folder) / "script.lua"
            path.write_text(script)
            command += ["-s", str(path)]
        done = subprocess.run(
            [*command, url], capture_output=True, text=True, timeout=duration + 60, check=True
        )
    return parse(done.stdout)


def parse(report: str) -> WrkResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
    requests = int(re.search(r"(\d+) requests in", report).group(1))
    percentiles = {
        int(p): float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", report, re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", report)
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return WrkResult(rps, percentiles.get(50, 0.0), percentiles.get(99, 0.0), requests, errors)


def header_script(headers: dict[str, str], method: str = "GET", body: str | None = None) -> str:
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    if body is not None:
        lines.append(f'wrk.body = "{body}"')
    return "\n".join(lines) + "\n"


def rotating_body_script(headers: dict[str, str], bodies_file: Path) -> str:
    """POSTs the lines of ``bodies_file`` in turn, each once (e.g. one refresh token each).

    Meant for one wrk thread: the counter lives in that thread's Lua state.
    """
    head = header_script(headers, method="POST")
    return (
        head
        + f"""
local bodies = {{}}
for line in io.lines("{bodies_file}") do bodies[#bodies + 1] = line end
local counter = 0

request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[((counter - 1) % #bodies) + 1])
end
"""
    )
