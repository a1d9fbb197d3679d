"""`roomcast bench`: the load generator.

Starts (or reuses) Redis, gateways and a worker; opens N clients over the
gateway URLs; joins rooms in a layout; publishes through the real worker path
at a fixed or maximal rate; reports delivery, latency, loss, duplicates and the
CPU and memory of every process, as JSON (and a PNG chart on request).

  roomcast bench --clients 500 --layout one-room --rate 200 --duration 10 --runs 3
  roomcast bench --clients 1000 --layout small-rooms --room-size 5 --rate 0
  roomcast bench --rate 200 --compare-peer            # Socket.IO side by side (bench/)
  roomcast bench --clients 10000 --gateways 1 --layout small-rooms --connect-floor
  roomcast bench --hop-probe --rate 100 --duration 12 --runs 3   # the worker hop's cost
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

from roomcast.bench.peer import DEFAULT_PEER_DIR, PeerRunner
from roomcast.bench.report import comparison_table, human_summary
from roomcast.bench.scenario import ScenarioConfig, run_scenario
from roomcast.bench.stack import BenchStack, StackConfig
from roomcast.bench.stats import summarise

T = TypeVar("T")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roomcast bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_argument_group("scenario")
    s.add_argument("--clients", type=int, default=500, help="connections (default 500)")
    s.add_argument("--layout", choices=("one-room", "small-rooms"), default="one-room")
    s.add_argument("--room-size", type=int, default=5, help="clients per room, small-rooms")
    s.add_argument("--rate", type=float, default=100.0,
                   help="events/s over all rooms; 0 = as fast as possible (default 100)")
    s.add_argument("--duration", type=float, default=10.0, help="publishing time, s")
    s.add_argument("--drain", type=float, default=20.0,
                   help="bound on the wait for deliveries after publishing, s")
    s.add_argument("--idle", type=float, default=3.0,
                   help="the drain also ends after this long without a delivery, s")
    s.add_argument("--runs", type=int, default=1, help="repeat; report median/min/max")
    s.add_argument("--resume", action="store_true",
                   help="clients closed by the server (1012/1013/abnormal) reconnect and "
                        "resume from their last id")
    s.add_argument("--payload-bytes", type=int, default=0, help="padding in each event")
    s.add_argument("--producers", type=int, default=1,
                   help="publisher threads, each with its share of the rooms (default 1)")
    s.add_argument("--batch", type=int, default=1,
                   help="events per enqueue call (publish_many); 1 = one per call")
    s.add_argument("--from-job", action="store_true",
                   help="publish as code inside a Dramatiq job does (api.job_publisher()): "
                        "each call appends to the room's stream itself, with no hop "
                        "through the job queue and the worker")
    c = p.add_argument_group("connecting")
    c.add_argument("--connect-batch", type=int, default=100, help="connections opened at once")
    c.add_argument("--connect-steady", action="store_true",
                   help="keep --connect-batch connects in flight, each replaced as it ends "
                        "(a steady stream, as after a crash), instead of waves")
    c.add_argument("--connect-timeout", type=float, default=60.0, help="connect phase bound, s")
    c.add_argument("--connect-floor", action="store_true",
                   help="after each run, connect the same clients the same way to a bare "
                        "app served as a gateway is (no roomcast work): the server stack's "
                        "own cost per connect (roomcast/bench/connect_floor.py)")
    c.add_argument("--settle", type=float, default=1.0,
                   help="idle time after connecting, s: its CPU is reported as cpu_pct.idle")
    k = p.add_argument_group("stack")
    k.add_argument("--gateways", type=int, default=2, help="gateways to start (default 2)")
    k.add_argument("--gateway", action="append", default=[], metavar="URL",
                   help="reuse a running gateway (ws://host:port/api/v1/ws/connect); "
                        "repeatable; none started then")
    k.add_argument("--redis-url", default=None, help="reuse this Redis instead of starting one")
    k.add_argument("--no-worker", action="store_true", help="do not start a worker")
    k.add_argument("--worker-processes", type=int, default=1)
    k.add_argument("--worker-threads", type=int, default=4)
    k.add_argument("--jwt-secret", default=None,
                   help="HMAC secret of reused gateways (default: $JWT_SECRET)")
    k.add_argument("--grant", action="store_true",
                   help="grant each client its room through the worker (reused ACL gateways)")
    k.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra setting for the gateways and worker we start; repeatable")
    k.add_argument("--keep-logs", action="store_true", help="keep the stack's logs (path "
                   "printed)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="write the JSON report here (default stdout)")
    o.add_argument("--png", default=None, help="write a chart (latency and delivered rate)")
    o.add_argument("--no-timeline", action="store_true", help="leave per-second rows out")
    o.add_argument("--quiet", action="store_true", help="no progress on stderr")
    r = p.add_argument_group("peer comparison")
    r.add_argument("--compare-peer", action="store_true",
                   help="alternate each run with the equivalent peer scenario")
    r.add_argument("--peer-dir", default=str(DEFAULT_PEER_DIR),
                   help="the peer harness: the bench/ folder of a roomcast clone (default "
                        "%(default)s); its packages are installed there on first use")
    r.add_argument("--peer-stacks", default="sio", help="comma list: sio, pysio (default sio)")
    r.add_argument("--hop-probe", action="store_true",
                   help="instead of a run: time one event at a time (--rate, --duration) "
                        "over a bare XADD, a bare relay process, a publish from a job and "
                        "one through the worker (roomcast/bench/hop_probe.py)")
    return p


def _check(args: argparse.Namespace, p: argparse.ArgumentParser) -> None:
    if args.clients < 1 or args.runs < 1 or args.room_size < 1 or args.gateways < 1:
        p.error("--clients, --runs, --room-size and --gateways must be >= 1")
    if args.producers < 1 or args.batch < 1:
        p.error("--producers and --batch must be >= 1")
    if args.rate < 0 or args.duration <= 0 or args.drain < 0:
        p.error("--rate >= 0, --duration > 0, --drain >= 0")
    if args.hop_probe and (args.rate == 0 or args.gateway or args.compare_peer):
        p.error("--hop-probe needs a --rate above 0, and takes no --gateway or --compare-peer")
    if args.gateway and not args.redis_url:
        p.error("--gateway needs --redis-url (the publisher enqueues to that Redis)")
    for item in args.env:
        if "=" not in item:
            p.error(f"--env {item!r}: expected KEY=VALUE")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _log(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"[bench] {text}", file=sys.stderr, flush=True)


def _stack_config(args: argparse.Namespace, lifetime_s: float, **overrides: Any) -> StackConfig:
    """The stack the options ask for; `overrides` are what differs between modes."""
    return StackConfig(redis_url=args.redis_url, worker_processes=args.worker_processes,
                       worker_threads=args.worker_threads, jwt_secret=args.jwt_secret,
                       env=dict(item.split("=", 1) for item in args.env),
                       lifetime_s=lifetime_s, keep_logs=args.keep_logs, **overrides)


def one_run(args: argparse.Namespace, cfg: ScenarioConfig, index: int) -> dict[str, Any]:
    lifetime = (cfg.connect_timeout + cfg.warmup_timeout + cfg.duration + cfg.drain + 180)
    stack = BenchStack(_stack_config(args, lifetime, gateways=args.gateways,
                                     gateway_urls=list(args.gateway),
                                     start_worker=not args.no_worker))
    t0 = time.monotonic()
    try:
        stack.start()
        _log(args, f"run {index}: stack up in {time.monotonic() - t0:.1f} s "
                   f"({', '.join(stack.pids())}); logs in {stack.workdir}")
        report = _run(run_scenario(stack, cfg, own_stack=not args.gateway))
    except Exception as exc:  # one failed run is reported, the others still count
        _log(args, f"run {index} failed: {type(exc).__name__}: {exc}")
        return {"failed": f"{type(exc).__name__}: {exc}"[:500], "errors": stack.check_alive()}
    finally:
        stack.stop()
    report["run"] = index
    if args.keep_logs:
        report["logs"] = str(stack.workdir)
    _log(args, f"run {index}: {human_summary(report)}")
    return report


def floor_run(args: argparse.Namespace, cfg: ScenarioConfig, index: int,
              run: dict[str, Any]) -> dict[str, Any]:
    from roomcast.bench.connect_floor import measure_floor

    try:
        floor = _run(measure_floor(cfg))
    except Exception as exc:  # reported; the run's own figures still count
        _log(args, f"run {index}: connect floor failed: {type(exc).__name__}: {exc}")
        return {"failed": f"{type(exc).__name__}: {exc}"[:500]}
    gateways = ", ".join(f"{name} {ms} ms" for name, ms in
                         (run.get("cpu_ms_per_connect") or {}).items())
    _log(args, f"run {index}: connect floor: {floor['connects_per_s']} connections/s, "
               f"{floor['cpu_ms_per_connect']} ms of server CPU per connect "
               f"(the run's gateways: {gateways or 'not measured'})")
    return floor


def hop_probe_main(args: argparse.Namespace) -> int:
    from roomcast.bench.hop_probe import PATHS, ProbeConfig, measure_hop

    runs: list[dict[str, Any]] = []
    events = max(len(PATHS), round(args.rate * args.duration))
    for i in range(1, args.runs + 1):
        stack = BenchStack(_stack_config(args, args.duration * 2 + 120, gateways=0))
        try:
            stack.start()
            run: dict[str, Any] = {"run": i, **measure_hop(ProbeConfig(
                stack.redis_url, stack.jwt_secret, events=events, gap_s=1 / args.rate))}
        except Exception as exc:  # one failed run is reported, the others still count
            run = {"run": i, "failed": f"{type(exc).__name__}: {exc}"[:500]}
        finally:
            stack.stop()
        _log(args, f"run {i}: " + ", ".join(
            f"{path} p50 {run[path].get('p50_ms')} ms" for path in PATHS if path in run)
            + (f"failed: {run['failed']}" if "failed" in run else ""))
        runs.append(run)
    ok = [r for r in runs if "failed" not in r]
    summary = {path: {"p50_ms_median": statistics.median(r[path]["p50_ms"] for r in ok)}
               for path in PATHS if ok and all("p50_ms" in r[path] for r in ok)}
    _write_report(args, {"tool": "roomcast bench --hop-probe",
                         "scenario": {"events": events, "rate": args.rate, "runs": args.runs},
                         "environment": environment(), "summary": summary, "runs": runs})
    return 0 if ok else 1


def _write_report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The JSON report to --out, or to stdout."""
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
        _log(args, f"report written to {args.out}")
    else:
        print(text)


def cpu_model() -> str:
    """The processor's name: figures of one session are compared only with figures
    from the same hardware (the same kind of VM is not always the same CPU)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    load1, load5, _ = psutil.getloadavg()
    return {"python": platform.python_version(), "cpus": psutil.cpu_count(),
            "cpu_model": cpu_model(),
            "loadavg_1m_at_start": round(load1, 2), "loadavg_5m_at_start": round(load5, 2),
            "platform": platform.platform()}


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    rest = list(argv) if argv is not None else sys.argv[1:]
    if rest[:1] == ["--"]:  # `roomcast bench -- --clients 10` (see cli/main.py's REMAINDER)
        rest = rest[1:]
    args = p.parse_args(rest)
    _check(args, p)
    if args.hop_probe:
        return hop_probe_main(args)
    cfg = ScenarioConfig(
        clients=args.clients, layout=args.layout, room_size=args.room_size, rate=args.rate,
        duration=args.duration, drain=args.drain, idle=args.idle,
        connect_batch=args.connect_batch, connect_steady=args.connect_steady,
        connect_timeout=args.connect_timeout,
        settle=args.settle, resume=args.resume, payload_bytes=args.payload_bytes,
        producers=args.producers, batch=args.batch, from_job=args.from_job, grant=args.grant)
    peer = None
    if args.compare_peer:
        # before any run: a comparison that cannot happen should not cost minutes first
        peer = PeerRunner(Path(args.peer_dir), [s.strip() for s in args.peer_stacks.split(",")
                                                if s.strip()], cfg, log=lambda t: _log(args, t))
        problem = peer.problem()
        if problem:
            print(f"roomcast bench: --compare-peer: {problem}", file=sys.stderr)
            return 2
        problem = peer.install()
        if problem:
            print(f"roomcast bench: --compare-peer: {problem}", file=sys.stderr)
            return 1
    env = environment()
    runs: list[dict[str, Any]] = []
    for i in range(1, args.runs + 1):
        runs.append(one_run(args, cfg, i))
        if args.connect_floor:
            runs[-1]["connect_floor"] = floor_run(args, cfg, i, runs[-1])
        if peer is not None:
            peer.run(i)
    ok = [r for r in runs if "failed" not in r]
    result: dict[str, Any] = {
        "tool": "roomcast bench",
        "scenario": {**vars(cfg), "rooms": cfg.rooms, "gateways": len(args.gateway) or
                     args.gateways, "runs": args.runs},
        "environment": env,
        "summary": summarise(ok),
        "runs": runs,
    }
    if peer is not None:
        result["peer"] = peer.results()
        result["comparison"] = comparison_table(ok, peer.results())
        print(result["comparison"], file=sys.stderr)
    if args.png and ok:
        from roomcast.bench.chart import write_chart

        try:
            write_chart(args.png, ok, title=_title(cfg))
            _log(args, f"chart written to {args.png}")
        except OSError as exc:
            _log(args, f"chart not written: {exc}")
    if args.no_timeline:
        for r in runs:
            r.pop("timeline", None)
    _write_report(args, result)
    return 0 if ok else 1


def _title(cfg: ScenarioConfig) -> str:
    rate = "MAX" if cfg.rate == 0 else f"{cfg.rate:g}/S"
    layout = "1 ROOM" if cfg.layout == "one-room" else f"ROOMS OF {cfg.room_size}"
    return f"ROOMCAST {cfg.clients} CLIENTS {layout} RATE {rate}"


if __name__ == "__main__":
    raise SystemExit(main())
