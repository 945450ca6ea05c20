"""Run the public HTTP caching test suite (npm `http-cache-tests`, cache-tests.fyi) against a cache.

    uv run python scripts/conformance.py                  # our edge
    uv run python scripts/conformance.py --target nginx   # nginx proxy_cache, as a reference
    uv run python scripts/conformance.py --target both    # both, same run
    uv run python scripts/conformance.py --repeat 3       # three runs: stable vs flaky failures
    uv run python scripts/conformance.py --id freshness-max-age   # one test, with its exchange

Installs the suite with npm into bench/.work/cache-tests (gitignored), starts its origin server
bound to 127.0.0.1, puts the cache in front of it (`madbwpu-r edge --origin ...`, or nginx with
bench/nginx/proxy-cache.conf.in), runs the suite's CLI runner against the cache and prints the
REQUIRED tests passed (and optional ones) out of the total. Failing required test ids, with the
suite's reason, go to bench/.work/conformance-<target>-failures.txt (or --failures PATH); the raw
results to bench/.work/conformance-<target>.json, the servers' logs to
bench/.work/conformance-logs/<target>/. The last line is one JSON object.

"Required passed" counts tests whose result is a pass, as cache-tests.fyi's totals do (nginx 100,
Varnish 123, ATS 123 of 165 in the suite's own published results); "strict" also requires every
test it depends on to pass (what the site's table shows).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
SUITE_VERSION = "0.4.5"
SUITE_DIR = WORK / "cache-tests"
PACKAGE = SUITE_DIR / "node_modules" / "http-cache-tests"
RUN_TIMEOUT = 300  # one run takes ~20-30 s here; bounded all the same

# The suite's server listens on every interface; this preload makes it bind 127.0.0.1 only.
BIND_LOCALHOST_JS = """\
const net = require('net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\\d+$/.test(args[0]))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args)
}
"""

# Dumps id, kind and dependencies of every test, the way cli.mjs assembles the suite.
META_MJS = """\
import tests from './node_modules/http-cache-tests/tests/index.mjs'
import surrogate from './node_modules/http-cache-tests/tests/surrogate-control.mjs'
tests.push(surrogate)
const out = []
for (const suite of tests) {
  for (const t of suite.tests) {
    out.push({ id: t.id, suite: suite.id, name: t.name, kind: t.kind || 'required',
               depends_on: t.depends_on || [], browser_only: t.browser_only === true })
  }
}
console.log(JSON.stringify(out))
"""


def _load_bench_edge():
    spec = importlib.util.spec_from_file_location("bench_edge", ROOT / "bench" / "edge.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_bench_edge()
BenchError = bench.BenchError


# ---------------------------------------------------------------------------------------------
# Scoring (mirrors lib/display.mjs determineTestResult)

PASS_TYPES = ("pass", "yes")


@dataclass
class Summary:
    target: str
    required_total: int = 0
    required_passed: int = 0
    required_passed_strict: int = 0
    optional_total: int = 0
    optional_passed: int = 0
    check_total: int = 0
    check_yes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failing_required: list[tuple[str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "target": self.target,
            "required_passed": self.required_passed,
            "required_passed_strict": self.required_passed_strict,
            "required_total": self.required_total,
            "optional_passed": self.optional_passed,
            "optional_total": self.optional_total,
            "check_yes": self.check_yes,
            "check_total": self.check_total,
            "outcomes": dict(sorted(self.outcomes.items())),
            "failing_required": [test_id for test_id, _, _ in self.failing_required],
        }


def outcome(test_id: str, meta: dict[str, dict], results: dict) -> str:
    """One test's symbol name as the suite's display computes it, dependencies honoured."""
    test = meta[test_id]
    result = results.get(test_id)
    if result is None:
        return "untested"
    for dependency in test["depends_on"]:
        if outcome(dependency, meta, results) not in PASS_TYPES:
            return "dependency_fail"
    if isinstance(result, list) and result and result[0] == "Setup":
        return "retry" if len(result) > 1 and result[1] == "retry" else "setup_fail"
    if test["kind"] == "required":
        return "pass" if result is True else "fail"
    if test["kind"] == "optimal":
        return "pass" if result is True else "optional_fail"
    return "yes" if result is True else "no"


def reason(result: object) -> str:
    if result is None:
        return "not run"
    if isinstance(result, list):
        return ": ".join(str(part) for part in result if part not in (None, ""))
    return str(result)


def summarise(target: str, tests: list[dict], results: dict) -> Summary:
    """Count results of the tests a proxy runs (browser-only ones are skipped by the runner)."""
    meta = {test["id"]: test for test in tests}
    summary = Summary(target)
    for test in tests:
        if test["browser_only"]:
            continue
        test_id, kind = test["id"], test["kind"]
        result = results.get(test_id)
        state = outcome(test_id, meta, results)
        summary.outcomes[f"{kind}:{state}"] += 1
        if kind == "required":
            summary.required_total += 1
            summary.required_passed += result is True
            summary.required_passed_strict += state == "pass"
            if result is not True:
                summary.failing_required.append((test_id, state, reason(result)))
        elif kind == "optimal":
            summary.optional_total += 1
            summary.optional_passed += result is True
        else:
            summary.check_total += 1
            summary.check_yes += result is True
    return summary


def failures_text(runs: list[Summary], tests: list[dict]) -> str:
    """Failing required tests over one or more runs; a test failing in only some runs is flaky."""
    names = {test["id"]: test["name"] for test in tests}
    counts = ", ".join(
        f"{run.required_passed} (strict {run.required_passed_strict})" for run in runs
    )
    lines = [
        f"# cache-tests {SUITE_VERSION} against {runs[-1].target}: required passed of "
        f"{runs[-1].required_total}, per run: {counts}; failing required tests:",
        "# id | failed in runs | outcome | reason (latest failing run) | test name",
    ]
    latest: dict[str, tuple[str, str]] = {}
    failed_in: dict[str, int] = {}
    for run in runs:
        for test_id, state, why in run.failing_required:
            latest[test_id] = (state, why)
            failed_in[test_id] = failed_in.get(test_id, 0) + 1
    order = sorted(latest, key=lambda test_id: -failed_in[test_id])
    for test_id in order:
        state, why = latest[test_id]
        lines.append(
            f"{test_id} | {failed_in[test_id]}/{len(runs)} | {state} | {why} | "
            f"{names.get(test_id, '')}"
        )
    return "\n".join(lines) + "\n"


def aggregate(runs: list[Summary]) -> dict:
    """The latest run's figures, with medians and per-run counts when there were several."""
    figures = runs[-1].as_dict()
    for key in ("required_passed", "required_passed_strict", "optional_passed", "check_yes"):
        values = [run.as_dict()[key] for run in runs]
        figures[key] = statistics.median(values)
        figures[f"{key}_runs"] = values
    every = set.intersection(*({t for t, _, _ in run.failing_required} for run in runs))
    figures["failing_required_every_run"] = sorted(every)
    figures["runs"] = len(runs)
    return figures


# ---------------------------------------------------------------------------------------------
# Running


def node_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("npm_")}
    env.update(extra)
    return env


def install_suite() -> None:
    if (PACKAGE / "package.json").exists():
        installed = json.loads((PACKAGE / "package.json").read_text()).get("version")
        if installed == SUITE_VERSION:
            return
    npm = shutil.which("npm")
    if not npm:
        raise BenchError("npm not found: install Node.js (>= 14.8) with npm")
    SUITE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing http-cache-tests@{SUITE_VERSION} into {SUITE_DIR}", flush=True)
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error",
         f"http-cache-tests@{SUITE_VERSION}"],
        cwd=SUITE_DIR, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"npm install failed: {done.stderr.strip()[-2000:]}")


def test_metadata() -> list[dict]:
    (SUITE_DIR / "meta.mjs").write_text(META_MJS)
    done = subprocess.run(
        ["node", "--no-warnings", "meta.mjs"],
        cwd=SUITE_DIR, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"could not read the suite's test list: {done.stderr.strip()}")
    return json.loads(done.stdout)


def start_suite_server(procs, port: int) -> str:
    preload = SUITE_DIR / "bind-localhost.cjs"
    preload.write_text(BIND_LOCALHOST_JS)
    env = node_env(
        npm_config_protocol="http",
        npm_config_port=str(port),
        npm_config_pidfile=str(procs.logdir / "cache-tests-server.pid"),
    )
    argv = ["node", "--no-warnings", "--require", str(preload), "server/server.mjs"]
    procs.start("cache-tests-server", argv, env=env, cwd=PACKAGE)
    return f"http://127.0.0.1:{port}"


def run_suite(base: str, test_id: str, timeout: int) -> str:
    env = node_env(npm_config_base=base.rstrip("/"), npm_config_id=test_id)
    env["npm_package_config_id"] = test_id  # cli.mjs falls back to it when the id is empty
    try:
        done = subprocess.run(
            ["node", "--no-warnings", "cli.mjs"],
            cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BenchError(f"the suite did not finish within {timeout} s") from None
    if done.returncode != 0 or (not test_id and not done.stdout.strip().startswith("{")):
        raise BenchError(
            f"the suite's runner failed: {(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return done.stdout


def run_target(target: str, test_id: str, timeout: int) -> str:
    """Start origin and cache for one target, run the suite, return the runner's stdout.

    The servers' logs (and nginx's prefix) stay in bench/.work/conformance-logs/<target>/.
    """
    logdir = WORK / "conformance-logs" / target
    if logdir.exists():
        shutil.rmtree(logdir)
    logdir.mkdir(parents=True)
    with bench.Processes(logdir) as procs:
        origin_port = bench.free_port()
        origin = start_suite_server(procs, origin_port)
        bench.wait_http(f"{origin}/index.html", procs)
        if target == "edge":
            base = bench.start_edge(procs, bench.free_port(), origin)
            bench.wait_http(f"{base}/healthz", procs)
        else:
            base = bench.start_nginx(
                procs, logdir, bench.free_port(), origin_port, cache_lock=False
            )
            bench.wait_http(f"{base}/index.html", procs)
        print(f"{target} at {base} in front of the suite's server at {origin}", flush=True)
        out = run_suite(base + "/", test_id, timeout)
        procs.check_alive()
        return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="cache-tests.fyi suite against our edge or nginx.")
    parser.add_argument("--target", choices=["edge", "nginx", "both"], default="edge")
    parser.add_argument("--id", default="", help="run one test id and show its exchange")
    parser.add_argument(
        "--failures", type=Path, help="failing required ids file (one target; default in work dir)"
    )
    parser.add_argument("--timeout", type=int, default=RUN_TIMEOUT, help="seconds per run")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per target (1..10), to tell flaky from stable"
    )
    args = parser.parse_args(argv)
    if not 10 <= args.timeout <= 3600:
        parser.error("--timeout must be within 10..3600")
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat must be within 1..10")
    if args.id and args.repeat != 1:
        parser.error("--id runs one test once")
    if args.failures and args.target == "both":
        parser.error("--failures names one file; use it with --target edge or nginx")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, bench.raise_exit)
    targets = ["edge", "nginx"] if args.target == "both" else [args.target]
    figures: dict = {"suite": f"http-cache-tests@{SUITE_VERSION}"}
    try:
        install_suite()
        tests = test_metadata()
        for target in targets:
            if args.id:
                print(run_target(target, args.id, args.timeout))
                continue
            runs: list[Summary] = []
            for number in range(1, args.repeat + 1):
                results = json.loads(run_target(target, "", args.timeout))
                (WORK / f"conformance-{target}.json").write_text(json.dumps(results, indent=1))
                summary = summarise(target, tests, results)
                runs.append(summary)
                print(
                    f"{target} run {number}/{args.repeat}: required "
                    f"{summary.required_passed}/{summary.required_total} passed (strict, "
                    f"dependencies honoured: {summary.required_passed_strict}); optional "
                    f"{summary.optional_passed}/{summary.optional_total}; checks yes "
                    f"{summary.check_yes}/{summary.check_total}",
                    flush=True,
                )
            failures = args.failures or WORK / f"conformance-{target}-failures.txt"
            failures.write_text(failures_text(runs, tests))
            figures[target] = aggregate(runs)
            print(
                f"{target}: required passed median {figures[target]['required_passed']}"
                f"/{runs[-1].required_total} over {len(runs)} run(s) "
                f"{figures[target]['required_passed_runs']}; failing in every run: "
                f"{len(figures[target]['failing_required_every_run'])}; list -> {failures}",
                flush=True,
            )
    except BenchError as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("conformance: interrupted", file=sys.stderr)
        return 130
    if not args.id:
        print(json.dumps(figures, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
