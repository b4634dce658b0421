#!/usr/bin/env python3
"""Latency around handoffs (issue 12): UseZeroDowntime JIT/ReadyToRun/AOT builds against Cloudflare's tableflip.

Run it through bench/latency.sh (it publishes the builds, the open-loop client and the tableflip server first).
Per configuration, all in one run and with the baseline in the same run:

  1. max:        wrk -t2 -c64 for 5 s against the first process (warm-up; its req/s is the measured maximum).
  2. open loop:  bench/OpenLoop at half that rate for STEADY + 6*HANDOFFS + STEADY seconds: steady, then HANDOFFS
                 handoffs 6 s apart (10 per minute), then steady again. Steady p50/p99/p99.9/max from both
                 steady windows (after a 3 s warm-up), handoff figures from the middle window; latency is from the
                 scheduled send time (no coordinated omission).
  3. saturation: wrk -t2 -c64: SAT s without, SAT_H s with SAT_H/6 handoffs, SAT s without (req/s and latency).

Writes bench/results/OUTPUT.json, OUTPUT.md (tables) and OUTPUT.svg (latency over time around the handoffs).
"""

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
RESULTS = os.path.join(ROOT, "bench", "results")
OPENLOOP = os.path.join(OUT, "openloop", "OpenLoop")
TABLEFLIP = os.path.join(OUT, "tableflip-server")
CGROUP = "/sys/fs/cgroup/cpu"

BUILDS = {
    "aot": ("Native AOT", [os.path.join(OUT, "aot", "WebApi")]),
    "r2r": ("JIT ReadyToRun", ["dotnet", os.path.join(OUT, "r2r", "WebApi.dll")]),
    "jit": ("JIT (no ReadyToRun)", ["dotnet", os.path.join(OUT, "sample", "WebApi.dll")]),
}
# How the bench starts a successor (only the successor's warm-up; the first process always starts plainly).
WARMUPS = {
    "plain": "started plainly, with the warm-up the sample configures (ZeroDowntime:Warmup, issue 19)",
    "nowarmup": "started plainly, library warm-up off (ZeroDowntime__Warmup__Enabled=false): the baseline of issue 19",
    "idle": "successor under chrt --idle 0 until Ready, then SCHED_OTHER (chrt --other -a -p 0; needs root)",
    "idlekeep": "successor under chrt --idle 0 for its whole life (no privilege)",
    "nice": "successor under nice -n 19 for its whole life (no privilege)",
    "cgroup": "successor in a cpu cgroup with cpu.shares=2 until Ready, then moved back (cgroup v1; needs root)",
    "tc0": "every process of the row with DOTNET_TieredCompilation=0 (one optimized JIT per method, no tier-up)",
    "pgo0": "every process of the row with DOTNET_TieredPGO=0 (no instrumented tier)",
    "ccd0": "every process of the row with DOTNET_TC_CallCountingDelayMs=0 (call counting from the first call)",
    "noprofile": "every process of the row without the JIT profile (ZeroDowntime__Warmup__JitProfile=false)",
    "passes2": "every process of the row with a second warm-up pass and the wait for a quiet JIT (ZeroDowntime__Warmup__Passes=2)",
}
# Runtime settings of a whole row (the first process too: they are a build setting, so the steady baseline has them).
RUNTIME_KNOBS = {
    "tc0": {"DOTNET_TieredCompilation": "0"},
    "pgo0": {"DOTNET_TieredPGO": "0"},
    "ccd0": {"DOTNET_TC_CallCountingDelayMs": "0"},
    "noprofile": {"ZeroDowntime__Warmup__JitProfile": "false"},
    "passes2": {"ZeroDowntime__Warmup__Passes": "2"},
}


def log(message):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


_next_port = [20000 + (os.getpid() % 2000) * 10]


def fresh_port():
    import socket
    while True:
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", _next_port[0]))
                return _next_port[0]
            except OSError:
                continue


# ------------------------------------------------------------------------------------------ processes

class Proc:
    """A process whose output lines are time-stamped and kept."""

    def __init__(self, name, args, env, cwd, log_dir):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.log_file = open(os.path.join(log_dir, f"{name}.log"), "w", encoding="utf-8")
        self.started = time.time()
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.pid = self.proc.pid
        self.exited = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            now = time.time()
            self.log_file.write(f"{now:.3f} {line}")
            with self.cond:
                self.lines.append((now, line.rstrip("\n")))
                self.cond.notify_all()
        self.proc.wait()
        with self.cond:
            self.exited = time.time()
            self.cond.notify_all()
        self.log_file.close()

    def wait_for(self, predicate, timeout=60, start=0):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for stamp, line in self.lines[start:]:
                    if predicate(line):
                        return stamp, line
                if self.exited is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) first")
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise RuntimeError(f"{self.name}: timeout")
                self.cond.wait(remaining)

    def wait_exit(self, timeout=60):
        deadline = time.time() + timeout
        with self.cond:
            while self.exited is None:
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise RuntimeError(f"{self.name} did not exit within {timeout} s")
                self.cond.wait(remaining)
        return self.exited

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class DotnetServer:
    """A chain of UseZeroDowntime processes of one build; each switch starts a successor the documented way."""

    def __init__(self, build, work, warmup="plain", enabled=True):
        self.build, self.work, self.warmup = build, work, warmup
        self.port = fresh_port()
        self.socket_path = os.path.join(work, f"zd-{os.getpid()}-{self.port}.sock")
        self.enabled = enabled
        self.procs = []
        self.handoffs = []
        self.current = self._start(first=True)
        self.current.wait_for(lambda l: ("[13]" in l) if enabled else ("Application started" in l))

    def _env(self):
        env = dict(os.environ)
        env.update({
            "DOTNET_ENVIRONMENT": "Production", "ASPNETCORE_ENVIRONMENT": "Production",
            "Logging__Console__FormatterName": "simple",
            "Logging__Console__FormatterOptions__SingleLine": "true",
            "Logging__LogLevel__Microsoft.AspNetCore": "Warning",
            "ZeroDowntime__SocketPath": self.socket_path,
            "ZeroDowntime__Enabled": "true" if self.enabled else "false",
            "Logs__Directory": os.path.join(self.work, "logs"),
        })
        if self.warmup == "nowarmup":
            env["ZeroDowntime__Warmup__Enabled"] = "false"
        env.update(RUNTIME_KNOBS.get(self.warmup, {}))
        env.pop("ASPNETCORE_URLS", None)
        return env

    def _start(self, first=False):
        args = BUILDS[self.build][1] + [f"--urls=http://127.0.0.1:{self.port}"]
        if not first:
            if self.warmup in ("idle", "idlekeep"):
                args = ["chrt", "--idle", "0"] + args
            elif self.warmup == "nice":
                args = ["nice", "-n", "19"] + args
            elif self.warmup == "cgroup":
                args = ["sh", "-c", f'echo $$ > {CGROUP}/bench-warmup/cgroup.procs && exec "$@"', "sh"] + args
        p = Proc(f"{self.build}-v{len(self.procs) + 1}", args, self._env(), os.path.dirname(BUILDS[self.build][1][-1]),
                 self.work)
        self.procs.append(p)
        return p

    def switch(self):
        old = self.current
        t0 = time.time()
        new = self._start()
        record = {"start": t0}
        stamp, line = new.wait_for(lambda l: "[20]" in l and "Ready" in l, timeout=90)
        record["ready_seen"] = stamp - t0
        if self.warmup == "idle":
            subprocess.run(["chrt", "--other", "-a", "-p", "0", str(new.pid)], capture_output=True)
        elif self.warmup == "cgroup":
            with open(f"{CGROUP}/cgroup.procs", "w") as f:
                f.write(str(new.pid))
        record["ready_ms"] = float(re.search(r"Ready (\d+) ms after process start", line).group(1))
        phases = {}
        with new.cond:
            for _, l in new.lines:
                m = re.search(r"Start-up phase (\w+) ([\d.]+) ms after process start", l)
                if m:
                    phases[m.group(1)] = float(m.group(2))
        record["phases"] = phases
        self.current = new

        def finish():
            try:
                record["old_exit"] = old.wait_exit(60) - t0
                record["old_rc"] = old.proc.returncode
            except RuntimeError:
                record["old_exit"] = None
        threading.Thread(target=finish, daemon=True).start()
        self.handoffs.append(record)
        return record

    def stop(self):
        time.sleep(0.1)
        for p in self.procs:
            p.stop()


class TableflipServer:
    """Cloudflare's tableflip HTTP example server; each switch is a SIGHUP to the serving process."""

    def __init__(self, work):
        self.work = work
        self.port = fresh_port()
        self.pid_file = os.path.join(work, f"tableflip-{self.port}.pid")
        self.first = Proc("tableflip", [TABLEFLIP, "-listen", f"127.0.0.1:{self.port}", "-pid-file", self.pid_file],
                          dict(os.environ), work, work)
        stamp, line = self.first.wait_for(lambda l: " ready " in l)
        self.current_pid = self.first.pid
        self.handoffs = []
        self.pids = [self.first.pid]

    def switch(self):
        old = self.current_pid
        t0 = time.time()
        mark = len(self.first.lines)
        os.kill(old, signal.SIGHUP)
        stamp, line = self.first.wait_for(lambda l: " ready " in l and not l.startswith(f"{old} "), timeout=90,
                                          start=mark)
        new = int(line.split()[0])
        record = {"start": t0, "ready_seen": stamp - t0,
                  "ready_ms": float(re.search(r"ready (\d+) ms", line).group(1)), "phases": {}}
        self.current_pid = new
        self.pids.append(new)

        def finish():
            deadline = time.time() + 60
            while pid_alive(old) and time.time() < deadline:
                time.sleep(0.01)
            record["old_exit"] = time.time() - t0
        threading.Thread(target=finish, daemon=True).start()
        self.handoffs.append(record)
        return record

    def stop(self):
        time.sleep(0.1)
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        try:
            self.first.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.first.proc.kill()


def make_server(config, work, enabled=True):
    if config["build"] == "tableflip":
        return TableflipServer(work)
    return DotnetServer(config["build"], work, config.get("warmup", "plain"), enabled)


# ------------------------------------------------------------------------------------------ load

def wrk(port, seconds, latency=True):
    args = ["wrk", "-t2", "-c64", f"-d{seconds}s"] + (["--latency"] if latency else []) + [f"http://127.0.0.1:{port}/"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out):
    r = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
         "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        r[f"p{pct}"] = to_ms(*m.groups()) if m else None
    m = re.search(r"Latency\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m)", out)
    r["max"] = to_ms(*m.groups()) if m else None
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(int(x) for x in errors.groups()) if errors else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return r


def run_with_switches(server, load_proc, times, t0):
    """Performs a switch at each of the times (s after t0) while load_proc runs."""
    for t in times:
        delay = t0 + t - time.time()
        if delay > 0:
            time.sleep(delay)
        rec = server.switch()
        rec["at"] = rec["start"] - t0
        log(f"  handoff at {rec['at']:.1f} s: Ready {rec['ready_ms']:.0f} ms after process start "
            f"(seen {rec['ready_seen'] * 1000:.0f} ms after the switch began)")


def percentiles(values):
    values = sorted(values)
    if not values:
        return {"n": 0}

    def at(p):
        return values[min(len(values) - 1, int(p * len(values)))]
    return {"n": len(values), "p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": values[-1]}


def analyse_openloop(csv_path, steady, handoff_window, duration):
    steady_lat, handoff_lat = [], []
    counts = {"steady": {"ok": 0, "failed": 0, "retried": 0}, "handoff": {"ok": 0, "failed": 0, "retried": 0}}
    buckets = {}
    with open(csv_path) as f:
        next(f)
        for line in f:
            due, lat, status, retried, _pid = line.rstrip("\n").split(",")
            t = float(due)
            if t < 3.0:
                continue
            lat = float(lat)
            status = int(status)
            b = int(t * 10)
            buckets.setdefault(b, []).append(lat)
            window = "handoff" if handoff_window[0] <= t < handoff_window[1] else "steady"
            c = counts[window]
            c["ok" if 200 <= status < 300 else "failed"] += 1
            c["retried"] += int(retried)
            (handoff_lat if window == "handoff" else steady_lat).append(lat)
    series = []
    for b in sorted(buckets):
        v = sorted(buckets[b])
        series.append([b / 10, v[len(v) // 2], v[min(len(v) - 1, int(0.99 * len(v)))], v[-1]])
    return {"steady": dict(percentiles(steady_lat), **counts["steady"]),
            "handoff": dict(percentiles(handoff_lat), **counts["handoff"]), "series": series}


def run_config(config, args, work_root):
    name = config["name"]
    work = os.path.join(work_root, name)
    os.makedirs(work, exist_ok=True)
    result = {"config": config, "load_before": loadavg()}
    log(f"{name}: load {result['load_before']}")

    # 1 + 2: the maximum, then the open-loop run at half of it.
    server = make_server(config, work)
    try:
        out = wrk(server.port, 5).communicate()[0]
        result["max_rps"] = parse_wrk(out)["rps"]
        rate = min(args.max_rate, round(result["max_rps"] * args.rate_fraction))
        result["rate"] = rate
        duration = 2 * args.steady + 6 * args.handoffs
        csv_path = os.path.join(work, "openloop.csv")
        log(f"  max {result['max_rps']:,.0f} req/s; open loop at {rate:,} req/s for {duration} s")
        t0 = time.time()
        client = subprocess.Popen([OPENLOOP, "--port", str(server.port), "--rate", str(rate), "--duration",
                                   str(duration), "--workers", str(args.workers), "--out", csv_path],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        times = [args.steady + 6 * k for k in range(args.handoffs)]
        run_with_switches(server, client, times, t0)
        summary = client.communicate()[0]
        result["openloop_summary"] = json.loads(summary.strip().splitlines()[-1])
        result["openloop"] = analyse_openloop(csv_path, args.steady, (args.steady, args.steady + 6 * args.handoffs),
                                              duration)
        result["handoff_times"] = times
        result["handoffs"] = list(server.handoffs)
        result["load_openloop"] = loadavg()
        o = result["openloop"]
        log(f"  open loop: steady p99 {o['steady']['p99']:.1f} ms, handoff p99 {o['handoff']['p99']:.1f} ms, "
            f"failed {o['steady']['failed']}+{o['handoff']['failed']}, load {result['load_openloop']}")

        # 3: saturation, without / with / without handoffs.
        if args.saturation:
            sat = {}
            for phase in ("before", "with", "after"):
                seconds = args.sat_handoff_seconds if phase == "with" else args.sat_seconds
                before = len(server.handoffs)
                p = wrk(server.port, seconds)
                t1 = time.time()
                if phase == "with":
                    run_with_switches(server, p, [3 + 6 * k for k in range(args.sat_handoff_seconds // 6)], t1)
                sat[phase] = parse_wrk(p.communicate()[0])
                sat[phase]["handoffs"] = len(server.handoffs) - before
                log(f"  wrk {phase}: {sat[phase]['rps']:,.0f} req/s, p99 {sat[phase]['p99']} ms, "
                    f"errors {sat[phase]['socket_errors']}, non-2xx {sat[phase]['non2xx']}")
            sat["ratio"] = sat["with"]["rps"] / statistics.mean([sat["before"]["rps"], sat["after"]["rps"]])
            result["saturation"] = sat
            result["saturation_handoffs"] = server.handoffs[len(result["handoffs"]):]
        result["load_after"] = loadavg()
    finally:
        server.stop()
    return result


def overhead(args, work_root):
    """Steady throughput with ZeroDowntime:Enabled=true against false (wrk -t2 -c64), alternating, same build."""
    fig = {"true": [], "false": []}
    load = [loadavg()]
    for i in range(args.overhead_pairs):
        for enabled in ([True, False] if i % 2 == 0 else [False, True]):
            work = os.path.join(work_root, f"overhead-{i}-{enabled}")
            os.makedirs(work, exist_ok=True)
            server = DotnetServer(args.overhead_build, work, enabled=enabled)
            try:
                wrk(server.port, 2, latency=False).communicate()
                r = parse_wrk(wrk(server.port, args.overhead_seconds, latency=False).communicate()[0])
                fig[str(enabled).lower()].append(r["rps"])
                log(f"overhead pair {i + 1}: Enabled={str(enabled).lower()} {r['rps']:,.0f} req/s")
            finally:
                server.stop()
    load.append(loadavg())
    pair = [t / f for t, f in zip(fig["true"], fig["false"])]
    return {"build": args.overhead_build, "enabled_rps": fig["true"], "disabled_rps": fig["false"],
            "ratio": statistics.mean(fig["true"]) / statistics.mean(fig["false"]),
            "median_pair_ratio": statistics.median(pair), "pair_ratios": pair, "seconds": args.overhead_seconds,
            "load": load}


# ------------------------------------------------------------------------------------------ report

def f(v):
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def title(config):
    if config["build"] == "tableflip":
        return "tableflip (Go, SIGHUP)"
    t = BUILDS[config["build"]][0]
    w = config.get("warmup", "plain")
    return t if w == "plain" else f"{t}, {w}"


def report(data):
    lines = [f"Run {data['started']} UTC, {data['args']['steady']} s steady + {data['args']['handoffs']} handoffs "
             f"6 s apart + {data['args']['steady']} s steady per configuration; open-loop rate "
             f"{data['args']['rate_fraction']} x the measured maximum (wrk -t2 -c64, 5 s), capped at "
             f"{data['args'].get('max_rate', 30000):,} req/s.", ""]
    lines += ["### Latency, open loop (ms from the scheduled send time)", "",
              "| configuration | rate req/s (max) | steady p50 | p99 | p99.9 | max | with handoffs p50 | p99 | p99.9 | max "
              "| p99 ratio | failed (steady / handoffs) | retried | load avg |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in data["results"]:
        s, h = r["openloop"]["steady"], r["openloop"]["handoff"]
        lines.append(f"| {title(r['config'])} | {r['rate']:,} ({r['max_rps']:,.0f}) | {f(s['p50'])} | {f(s['p99'])} | "
                     f"{f(s['p999'])} | {f(s['max'])} | {f(h['p50'])} | {f(h['p99'])} | {f(h['p999'])} | "
                     f"{f(h['max'])} | **{h['p99'] / s['p99']:.2f}** | {s['failed']} / {h['failed']} | "
                     f"{s['retried'] + h['retried']} | {r['load_before']} / {r['load_openloop']} |")
    if any("saturation" in r for r in data["results"]):
        lines += ["", "### Saturation, wrk -t2 -c64 (closed loop: measures queueing)", "",
                  "| configuration | without req/s (before / after) | with handoffs req/s | **ratio** | p50 without / with "
                  "| p99 without / with | max without / with | socket errors, non-2xx | load avg |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in data["results"]:
            if "saturation" not in r:
                continue
            a, w, b = r["saturation"]["before"], r["saturation"]["with"], r["saturation"]["after"]
            lines.append(f"| {title(r['config'])} | {a['rps']:,.0f} / {b['rps']:,.0f} | {w['rps']:,.0f} "
                         f"({w['handoffs']} handoffs in {data['args']['sat_handoff_seconds']} s) | "
                         f"**{r['saturation']['ratio']:.3f}** | {f(a['p50'])} / {f(w['p50'])} | "
                         f"{f(a['p99'])}, {f(b['p99'])} / {f(w['p99'])} | {f(a['max'])} / {f(w['max'])} | "
                         f"{a['socket_errors'] + w['socket_errors'] + b['socket_errors']}, "
                         f"{a['non2xx'] + w['non2xx'] + b['non2xx']} | {r['load_openloop']} / {r['load_after']} |")
    lines += ["", "### Handoff timing (medians over the open-loop run's handoffs, min-max in brackets; ms)", "",
              "| configuration | n | HostStarting | FdsReceived | KestrelBound | Started | WarmedUp | **Ready** (min-max) "
              "| switch to old exit | Ready under wrk (n, median) | worst 100 ms p99 while the successor starts | worst 100 ms p99 "
              "in the 1 s after Ready | steady: worst 100 ms p99 per 1 s, median |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    effect = {}
    for r in data["results"]:
        hs = r["handoffs"]
        med = lambda key: statistics.median([h["phases"][key] for h in hs if key in h["phases"]]) \
            if any(key in h["phases"] for h in hs) else None
        ready = [h["ready_ms"] for h in hs]
        exits = [h["old_exit"] * 1000 for h in hs if h.get("old_exit")]
        sat = [h["ready_ms"] for h in r.get("saturation_handoffs", [])]
        sat = f"{len(sat)}, {f(statistics.median(sat))}" if sat else "-"
        during, after = [], []
        for h in hs:
            ready_at = h["at"] + h["ready_seen"]
            b1 = [x[2] for x in r["openloop"]["series"] if h["at"] <= x[0] < ready_at - 0.1]
            b2 = [x[2] for x in r["openloop"]["series"] if ready_at - 0.1 <= x[0] < ready_at + 1.0]
            during += [max(b1)] if b1 else []
            after += [max(b2)] if b2 else []
        spans = lambda v: f"{f(statistics.median(v))} ({f(min(v))}-{f(max(v))})" if v else "-"
        a = data["args"]
        per_second = {}
        for x in r["openloop"]["series"]:
            if x[0] < a["steady"] or x[0] >= a["steady"] + 6 * a["handoffs"]:
                per_second[int(x[0])] = max(per_second.get(int(x[0]), 0), x[2])
        steady_typical = f(statistics.median(per_second.values())) if per_second else "-"
        lines.append(f"| {title(r['config'])} | {len(hs)} | {f(med('HostStarting'))} | {f(med('FdsReceived'))} | "
                     f"{f(med('KestrelBound'))} | {f(med('Started'))} | {f(med('WarmedUp'))} | **{f(statistics.median(ready))}** "
                     f"({f(min(ready))}-{f(max(ready))}) | {f(statistics.median(exits)) if exits else '-'} | {sat} | "
                     f"{spans(during)} | {spans(after)} | {steady_typical} |")
        s_, h_ = r["openloop"]["steady"], r["openloop"]["handoff"]
        effect.setdefault(r["config"]["build"], {})[r["config"].get("warmup", "plain")] = (
            h_["p99"] / s_["p99"], statistics.median(after) if after else None, statistics.median(ready))
    pairs = {b: v for b, v in effect.items() if "plain" in v and "nowarmup" in v}
    if pairs:
        # Issue 19: the same build with and without the library's warm-up, in this run.
        lines += ["", "### Warm-up (issue 19): the same build without / with `ZeroDowntime:Warmup`, this run", "",
                  "| build | p99 ratio (handoffs / steady) without / with | worst 100 ms p99 in the 1 s after Ready, ms, "
                  "without / with | Ready ms without / with |", "| --- | ---: | ---: | ---: |"]
        for b, v in pairs.items():
            (r0, a0, y0), (r1, a1, y1) = v["nowarmup"], v["plain"]
            lines.append(f"| {BUILDS[b][0]} | {r0:.2f} / **{r1:.2f}** | {f(a0)} / **{f(a1)}** | {f(y0)} / {f(y1)} |")
    if data.get("overhead"):
        o = data["overhead"]
        lines += ["", f"### Steady-state overhead ({BUILDS[o['build']][0]}, wrk -t2 -c64, {o['seconds']} s runs, "
                      f"pairs in alternating order, load {o['load'][0]} / {o['load'][1]})", "",
                  f"Enabled=true: {', '.join(f'{x / 1000:.1f}' for x in o['enabled_rps'])} k req/s; Enabled=false: "
                  f"{', '.join(f'{x / 1000:.1f}' for x in o['disabled_rps'])} k req/s; ratio of the means "
                  f"**{o['ratio']:.3f}**, pair ratios {', '.join(f'{x:.2f}' for x in o['pair_ratios'])}, median "
                  f"**{o['median_pair_ratio']:.3f}**."]
    for msg in data.get("skipped", []):
        lines += ["", f"Skipped: {msg}"]
    return "\n".join(lines) + "\n"


def svg(data, path):
    """Latency over time (p50 and p99 per 100 ms, log scale) per configuration, handoffs marked."""
    rows = [r for r in data["results"] if r["config"].get("warmup", "plain") == "plain"]
    W, PH, L, R, T = 900, 150, 60, 20, 30
    H = T + len(rows) * (PH + 40) + 20
    lo, hi = 0.1, 3000.0
    import math
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{L}" y="18" font-size="13">Open-loop latency per 100 ms (ms, log scale): '
           f'<tspan fill="#1f77b4">p50</tspan>, <tspan fill="#d62728">p99</tspan>; '
           f'<tspan fill="#ff7f0e">handoff start to Ready</tspan></text>']
    for i, r in enumerate(rows):
        top = T + i * (PH + 40) + 20
        series = r["openloop"]["series"]
        dur = 2 * data["args"]["steady"] + 6 * data["args"]["handoffs"]
        x = lambda t: L + (W - L - R) * t / dur
        y = lambda v: top + PH - PH * (math.log10(max(lo, min(hi, v))) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        out.append(f'<text x="{L}" y="{top - 5}" font-size="12" font-weight="bold">{title(r["config"])} at '
                   f'{r["rate"]:,} req/s (steady p99 {f(r["openloop"]["steady"]["p99"])} ms, with handoffs '
                   f'{f(r["openloop"]["handoff"]["p99"])} ms)</text>')
        out.append(f'<rect x="{L}" y="{top}" width="{W - L - R}" height="{PH}" fill="none" stroke="#999"/>')
        for v in (0.1, 1, 10, 100, 1000):
            out.append(f'<line x1="{L}" x2="{W - R}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
                       f'<text x="{L - 5}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        for h in r["handoffs"]:
            x0 = x(h["at"])
            w = max(1.0, x(h["at"] + h["ready_seen"]) - x0)
            out.append(f'<rect x="{x0:.1f}" y="{top}" width="{w:.1f}" height="{PH}" fill="#ff7f0e" opacity="0.35"/>')
        for col, color in ((1, "#1f77b4"), (2, "#d62728")):
            pts = " ".join(f"{x(s[0]):.1f},{y(s[col]):.1f}" for s in series)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1"/>')
        for t in range(0, dur + 1, 10):
            out.append(f'<text x="{x(t):.1f}" y="{top + PH + 13}" text-anchor="middle">{t} s</text>')
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="jit:nowarmup,jit,r2r:nowarmup,r2r,aot:nowarmup,aot,tableflip",
                   help="comma-separated: aot, r2r, jit, tableflip, and BUILD:WARMUP with WARMUP one of "
                        + ", ".join(WARMUPS))
    p.add_argument("--steady", type=int, default=15, help="seconds of steady load before and after the handoffs")
    p.add_argument("--handoffs", type=int, default=10, help="handoffs, 6 s apart")
    p.add_argument("--rate-fraction", type=float, default=0.5)
    p.add_argument("--max-rate", type=int, default=10000,
                   help="cap of the open-loop rate (at 0.5 x the wrk maximum, 17-25 k req/s, the client's queue ran away "
                        "under this machine's background load before the first handoff)")
    p.add_argument("--workers", type=int, default=128)
    p.add_argument("--no-saturation", dest="saturation", action="store_false")
    p.add_argument("--sat-seconds", type=int, default=20)
    p.add_argument("--sat-handoff-seconds", type=int, default=30)
    p.add_argument("--overhead-pairs", type=int, default=0)
    p.add_argument("--overhead-seconds", type=int, default=8)
    p.add_argument("--overhead-build", default="r2r")
    p.add_argument("--output", default="latency")
    p.add_argument("--redraw", action="store_true", help="only write OUTPUT.md and OUTPUT.svg again from OUTPUT.json")
    args = p.parse_args()
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, args.output)
    if args.redraw:
        with open(base + ".json") as fh:
            data = json.load(fh)
    else:
        work_root = os.path.join("/tmp", f"zd-latency-{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}")
        os.makedirs(work_root)
        log(f"work directory {work_root}")
        data = {"started": f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M}", "args": vars(args), "results": [],
                "skipped": []}
        for spec in args.configs.split(","):
            build, _, warmup = spec.partition(":")
            config = {"name": spec.replace(":", "-"), "build": build, "warmup": warmup or "plain"}
            if build == "tableflip" and not os.path.exists(TABLEFLIP):
                data["skipped"].append("tableflip: no Go toolchain (apt-get install golang-go "
                                       "golang-github-cloudflare-tableflip-dev), row left out")
                log(data["skipped"][-1])
                continue
            if config["warmup"] == "cgroup":
                os.makedirs(f"{CGROUP}/bench-warmup", exist_ok=True)
                with open(f"{CGROUP}/bench-warmup/cpu.shares", "w") as fh:
                    fh.write("2")
            data["results"].append(run_config(config, args, work_root))
            with open(base + ".json", "w") as fh:
                json.dump(data, fh)
        if args.overhead_pairs:
            data["overhead"] = overhead(args, work_root)
        with open(base + ".json", "w") as fh:
            json.dump(data, fh)
    with open(base + ".md", "w") as fh:
        fh.write(report(data))
    svg(data, base + ".svg")
    print(report(data))


if __name__ == "__main__":
    main()
