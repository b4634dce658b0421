#!/usr/bin/env python3
"""Benchmark of ZeroDowntime.Hosting: requests lost while new versions take over, against the alternatives.

Run it through bench/run.sh (it publishes the sample and the HTTP/2 client first). For every load tool
(ab, wrk, HttpClient HTTP/2, h2load) and every method (UseZeroDowntime handoff, stop-then-start restart,
SO_REUSEPORT overlap, no restart) it runs the sample under load for DURATION seconds with HANDOFFS switches
spread over the run, then writes bench/results/latest.md (the table), latest.json (the raw figures) and
latest.png (requests per 100 ms and failures over time). All traffic goes to 127.0.0.1.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
RESULTS = os.path.join(ROOT, "bench", "results")
SAMPLE_DLL = os.path.join(OUT, "sample", "WebApi.dll")
H2CLIENT_DLL = os.path.join(OUT, "h2client", "H2Client.dll")

TOOLS = ["ab", "wrk", "h2client", "h2load"]
TOOL_TITLES = {
    "ab": "ab -r -c 16 (new connection per request)",
    "wrk": "wrk -t2 -c64 (HTTP/1.1 keep-alive)",
    "h2client": "HttpClient HTTP/2 (16 connections x 10 streams)",
    "h2load": "h2load -c16 -m10 (1 s segments)",
}
METHODS = ["zerodowntime", "stopstart", "reuseport", "none"]
METHOD_TITLES = {
    "zerodowntime": "UseZeroDowntime handoff",
    "stopstart": "stop-then-start restart",
    "reuseport": "SO_REUSEPORT overlap",
    "none": "no restart",
}
BUCKET = 0.1  # seconds


def log(message):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ sample processes

class App:
    """One process of the sample app; its output lines are time-stamped and kept."""

    def __init__(self, name, method, ports, socket_path, log_dir, enabled=None):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        env = dict(os.environ)
        env.update({
            "DOTNET_ENVIRONMENT": "Production",
            "ASPNETCORE_ENVIRONMENT": "Production",
            "Logging__Console__FormatterName": "simple",
            "Logging__Console__FormatterOptions__SingleLine": "true",
            "Logging__LogLevel__Microsoft.AspNetCore": "Warning",
            "ZeroDowntime__SocketPath": socket_path,
            "Sample__LogFirstRequest": "true",
        })
        env.pop("ASPNETCORE_URLS", None)
        if enabled is None:
            enabled = method in ("zerodowntime", "none")
        env["ZeroDowntime__Enabled"] = "true" if enabled else "false"
        if method == "reuseport":
            env["Sample__ReusePort"] = "true"
        h1, h2 = ports
        args = ["dotnet", SAMPLE_DLL,
                f"--Kestrel:Endpoints:h1:Url=http://127.0.0.1:{h1}",
                f"--Kestrel:Endpoints:h2:Url=http://127.0.0.1:{h2}",
                "--Kestrel:Endpoints:h2:Protocols=Http2"]
        self.log_file = open(os.path.join(log_dir, f"{name}.log"), "w", encoding="utf-8")
        self.started = time.time()
        self.proc = subprocess.Popen(args, cwd=os.path.dirname(SAMPLE_DLL), env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.exited = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

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

    def wait_for(self, pattern, timeout=60):
        """Returns (time, line) of the first line that contains pattern, or raises."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for stamp, line in self.lines:
                    if pattern in line:
                        return stamp, line
                if self.exited is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before logging '{pattern}'")
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise RuntimeError(f"{self.name} did not log '{pattern}' within {timeout} s")
                self.cond.wait(remaining)

    def find(self, pattern):
        with self.cond:
            return next(((s, l) for s, l in self.lines if pattern in l), None)

    def wait_exit(self, timeout=60):
        deadline = time.time() + timeout
        with self.cond:
            while self.exited is None:
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise RuntimeError(f"{self.name} did not exit within {timeout} s")
                self.cond.wait(remaining)
        return self.exited

    def first_request_ms(self):
        found = self.find("[1001]")
        if not found:
            return None
        return int(re.search(r"unix ms (\d+)", found[1]).group(1)) / 1000.0

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.wait_exit(10)
        except RuntimeError:
            pass


def start_first(method, ports, socket_path, log_dir, enabled=None):
    app = App("v1", method, ports, socket_path, log_dir, enabled)
    if (method in ("zerodowntime", "none")) if enabled is None else enabled:
        app.wait_for("[13]")  # ServingHandoffSocket: accepting and ready for successors
    else:
        app.wait_for("Application started")
    return app


class Switcher:
    """Performs the restarts of one method at scheduled times and measures each."""

    def __init__(self, method, ports, socket_path, log_dir, first):
        self.method = method
        self.ports = ports
        self.socket_path = socket_path
        self.log_dir = log_dir
        self.current = first
        self.apps = [first]
        self.switches = []  # dicts: start, ready, old_exit, first_request
        self.waiters = []
        self.errors = []
        self.load_done = threading.Event()

    def switch(self, version):
        old = self.current
        t0 = time.time()
        record = {"start": t0}
        if self.method == "stopstart":
            old.terminate()
            record["old_exit"] = old.wait_exit(60)
            new = App(f"v{version}", self.method, self.ports, self.socket_path, self.log_dir)
            self.apps.append(new)
            record["ready"] = new.wait_for("Application started")[0]
            record["end"] = record["ready"]
        elif self.method == "reuseport":
            new = App(f"v{version}", self.method, self.ports, self.socket_path, self.log_dir)
            self.apps.append(new)
            record["ready"] = new.wait_for("Application started")[0]
            old.terminate()
        else:  # zerodowntime
            new = App(f"v{version}", self.method, self.ports, self.socket_path, self.log_dir)
            self.apps.append(new)
            record["ready"] = new.wait_for("[21]")[0]  # Committed: the predecessor stopped accepting
        self.current = new
        self.switches.append(record)

        def finish():
            try:
                if "old_exit" not in record:
                    record["old_exit"] = old.wait_exit(90)
                    record["end"] = record["old_exit"]
                record["old_exit_code"] = old.proc.returncode
                while new.first_request_ms() is None and not self.load_done.is_set() and new.exited is None:
                    time.sleep(0.05)
                record["first_request"] = new.first_request_ms()
            except RuntimeError as ex:
                self.errors.append(str(ex))

        waiter = threading.Thread(target=finish, daemon=True)
        waiter.start()
        self.waiters.append(waiter)

    def finish(self):
        self.load_done.set()
        for waiter in self.waiters:
            waiter.join(120)
        self.current.terminate()
        try:
            self.current.wait_exit(40)
        except RuntimeError:
            pass
        for app in self.apps:
            app.kill()


# ------------------------------------------------------------------------------------------ load tools

class ProcIoSampler:
    """Polls /proc/PID/io of a load tool every 100 ms: bytes read over time (responses over time)."""

    def __init__(self, pid):
        self.pid = pid
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        path = f"/proc/{self.pid}/io"
        while not self.stop.is_set():
            try:
                with open(path) as f:
                    values = dict(line.split(": ") for line in f.read().splitlines())
                self.samples.append((time.time(), int(values["rchar"])))
            except (OSError, ValueError, KeyError):
                return
            self.stop.wait(BUCKET)

    def finish(self):
        self.stop.set()
        self.thread.join(5)


def stamped_lines(stream, sink):
    for line in stream:
        sink.append((time.time(), line.rstrip("\n")))


def run_ab(url, duration, work):
    # -v 1 prints one line per socket error (line-buffered by stdbuf, so that each is stamped when it happens).
    args = ["stdbuf", "-oL", "-eL", "ab", "-v", "1", "-r", "-c", "16", "-t", str(duration), "-n", "100000000", "-s", "30", url]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            stdin=subprocess.DEVNULL)
    sampler = ProcIoSampler(proc.pid)
    out, err = [], []
    threads = [threading.Thread(target=stamped_lines, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=stamped_lines, args=(proc.stderr, err), daemon=True)]
    for t in threads:
        t.start()
    return proc, lambda: finish_ab(proc, sampler, threads, out, err, work)


def finish_ab(proc, sampler, threads, out, err, work):
    proc.wait(duration_guard(work))
    for t in threads:
        t.join(5)
    sampler.finish()
    text = "\n".join(l for _, l in out)
    with open(os.path.join(work, "ab.txt"), "w") as f:
        f.write(text + "\n--- stderr\n" + "\n".join(f"{s:.3f} {l}" for s, l in err))
    r = {"tool_output_tail": text[-3000:]}
    complete = re.search(r"Complete requests:\s+(\d+)", text)
    if complete is None:
        # ab gives up after 10 connect errors in a row ("Test aborted after 10 failures"), as a plain restart's
        # outage makes it do: report the run as aborted rather than crash the benchmark.
        errors = [s for s, l in err + out if re.match(r"apr_\w+", l)]
        nan = float("nan")
        r.update(requests=0, failed=len(errors), failed_kinds={"ab aborted after connect errors": len(errors)},
                 rps=nan, p50_ms=nan, p99_ms=nan, max_ms=nan, ok_series=series_from_bytes(sampler.samples, 0),
                 fail_times=errors)
        return r
    r["requests"] = int(complete.group(1))
    m = re.search(r"Failed requests:\s+(\d+)", text)
    failed = int(m.group(1)) if m else 0
    kinds = {}
    m = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", text)
    if m:
        for name, value in zip(["connect", "receive", "length", "exceptions"], m.groups()):
            if int(value):
                kinds[name] = int(value)
    m = re.search(r"Non-2xx responses:\s+(\d+)", text)
    non2xx = int(m.group(1)) if m else 0
    if non2xx:
        kinds["non-2xx"] = non2xx
    r["failed"] = failed + non2xx
    r["failed_kinds"] = kinds
    r["rps"] = float(re.search(r"Requests per second:\s+([\d.]+)", text).group(1))
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\d+)", text, re.M))
    r["p50_ms"], r["p99_ms"], r["max_ms"] = float(pct.get("50", "nan")), float(pct.get("99", "nan")), float(pct.get("100", "nan"))
    r["ok_series"] = series_from_bytes(sampler.samples, r["requests"] - failed)
    r["fail_times"] = [s for s, l in err + out if re.match(r"apr_\w+: ", l)]
    return r


def run_wrk(url, duration, work):
    args = ["wrk", "-t2", "-c64", f"-d{duration}s", "--latency", "--timeout", "30s", url]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    sampler = ProcIoSampler(proc.pid)
    return proc, lambda: finish_wrk(proc, sampler, work)


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def finish_wrk(proc, sampler, work):
    text, _ = proc.communicate(timeout=duration_guard(work))
    sampler.finish()
    with open(os.path.join(work, "wrk.txt"), "w") as f:
        f.write(text)
    r = {"tool_output_tail": text[-3000:]}
    r["requests"] = int(re.search(r"(\d+) requests in", text).group(1))
    kinds = {}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        for name, value in zip(["connect", "read", "write", "timeout"], m.groups()):
            if int(value):
                kinds[name] = int(value)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m and int(m.group(1)):
        kinds["non-2xx"] = int(m.group(1))
    r["failed"] = sum(kinds.values())
    r["failed_kinds"] = kinds
    r["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    dist = dict((p, to_ms(v, u)) for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M))
    r["p50_ms"], r["p99_ms"] = dist.get("50", float("nan")), dist.get("99", float("nan"))
    m = re.search(r"Latency\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m)", text)
    r["max_ms"] = to_ms(*m.groups()) if m else float("nan")
    r["ok_series"] = series_from_bytes(sampler.samples, r["requests"] - kinds.get("non-2xx", 0))
    r["fail_times"] = None  # wrk reports socket errors only as totals
    return r


def run_h2client(url, duration, work):
    samples = os.path.join(work, "h2client.tsv")
    args = ["dotnet", H2CLIENT_DLL, url, str(duration), "16", "10", samples]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            stdin=subprocess.DEVNULL)
    return proc, lambda: finish_h2client(proc, samples, work)


def finish_h2client(proc, samples_path, work):
    text, _ = proc.communicate(timeout=duration_guard(work))
    with open(os.path.join(work, "h2client.txt"), "w") as f:
        f.write(text)
    summary = json.loads(text.strip().splitlines()[-1])
    rows = read_tsv(samples_path)  # end_us, latency_us, ok
    r = {"tool_output_tail": text[-3000:]}
    r["requests"] = summary["succeeded"] + summary["failed"]
    r["failed"] = summary["failed"]
    r["failed_kinds"] = summary["failuresByKind"]
    r["failures"] = summary["failures"][:10]
    r["rps"] = r["requests"] / summary["elapsedSeconds"]
    latencies = sorted(row[1] / 1000.0 for row in rows)
    r.update(percentiles(latencies))
    r["ok_points"] = [row[0] / 1e6 for row in rows if row[2] == 1]
    r["fail_times"] = [row[0] / 1e6 for row in rows if row[2] == 0]
    return r


def run_h2load(url, duration, work):
    """h2load does not reconnect after GOAWAY: run it in segments of about one second (-n sized to the rate of the
    previous clean segment) for the whole duration. A client that gets GOAWAY counts every request it could not
    start afterwards as failed; those are reported apart from streams that were started and did not complete."""
    state = {"segments": [], "stop": threading.Event()}

    def loop():
        end = time.time() + duration
        n, requests = 0, 20000
        while time.time() < end - 0.3 and not state["stop"].is_set():
            n += 1
            path = os.path.join(work, f"h2load-{n:03}.tsv")
            started = time.time()
            try:
                done = subprocess.run(["h2load", "-c16", "-m10", "-n", str(requests), f"--log-file={path}", url],
                                      capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
                out = done.stdout + "\n" + done.stderr
            except subprocess.TimeoutExpired as ex:
                out = (ex.stdout.decode() if isinstance(ex.stdout, bytes) else ex.stdout or "") + "\n(segment timed out)"
            ended = time.time()
            state["segments"].append((started, ended, out, path))
            if re.search(r"requests: \d+ total, 0 started", out) and ended - started < 1.0:
                # Nothing listens: a segment fails at once. Keep segments one second long, as if it ran.
                state["stop"].wait(1.0 - (ended - started))
            m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
            if m and int(m.group(5)) == 0 and ended > started:
                requests = max(2000, int(int(m.group(4)) / (ended - started)))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread, lambda: finish_h2load(thread, state, work)


def finish_h2load(thread, state, work):
    thread.join(duration_guard(work))
    with open(os.path.join(work, "h2load.txt"), "w") as f:
        for started, ended, out, _ in state["segments"]:
            f.write(f"=== segment {started:.3f}-{ended:.3f}\n{out}\n")
    r = {"requests": 0, "segments": len(state["segments"]), "segment_failures": []}
    kinds = {"not started after GOAWAY": 0, "could not connect": 0, "sent, not answered": 0, "timeout": 0, "non-2xx": 0}
    latencies, ok_points, fail_times = [], [], []
    elapsed = 0.0
    for started, ended, out, path in state["segments"]:
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
        if not m:
            r.setdefault("broken_segments", []).append(out[-500:])
            continue
        total, started_n, done, succeeded, failed, errored, timeout = map(int, m.groups())
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        non2xx = sum(map(int, codes.groups()[1:])) if codes else 0
        r["requests"] += total
        if started_n == 0:
            # No client could start a stream: nothing accepted the connections (h2load says no more).
            kinds["could not connect"] += total - started_n
        else:
            kinds["not started after GOAWAY"] += total - started_n
        kinds["sent, not answered"] += started_n - succeeded
        kinds["timeout"] += timeout
        kinds["non-2xx"] += non2xx
        if failed:
            r["segment_failures"].append({"start": started, "end": ended, "total": total, "started": started_n,
                                          "done": done, "failed": failed})
            fail_times += [ended] * failed
        m = re.search(r"finished in ([\d.]+)(ms|s)", out)
        elapsed += float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0) if m else (ended - started)
        for start_us, status, dur_us in read_tsv(path):
            end = (start_us + max(dur_us, 0)) / 1e6
            if 200 <= status < 300:
                ok_points.append(end)
                latencies.append(dur_us / 1000.0)
    r["failed_kinds"] = {k: v for k, v in kinds.items() if v}
    r["failed"] = sum(kinds.values())
    r["rps"] = len(ok_points) / elapsed if elapsed else 0.0
    r.update(percentiles(sorted(latencies)))
    r["ok_points"] = ok_points
    r["fail_times"] = fail_times
    return r


def read_tsv(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
    except FileNotFoundError:
        pass
    return rows


def percentiles(sorted_ms):
    if not sorted_ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}

    def at(p):
        return sorted_ms[min(len(sorted_ms) - 1, int(p * len(sorted_ms)))]

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": sorted_ms[-1]}


def series_from_bytes(samples, responses):
    """(time, cumulative bytes read) -> [(time, responses in that interval)], calibrated on the total."""
    if len(samples) < 2 or samples[-1][1] == samples[0][1] or responses <= 0:
        return []
    per_response = (samples[-1][1] - samples[0][1]) / responses
    return [(t1, (b1 - b0) / per_response) for (t0, b0), (t1, b1) in zip(samples, samples[1:])]


_GUARD = {}


def duration_guard(work):
    return _GUARD.get("timeout", 180)


RUNNERS = {"ab": run_ab, "wrk": run_wrk, "h2client": run_h2client, "h2load": run_h2load}


# ------------------------------------------------------------------------------------------ one run

def run_one(tool, method, duration, handoffs, work_root):
    work = os.path.join(work_root, f"{tool}-{method}")
    os.makedirs(work, exist_ok=True)
    ports = (free_port(), free_port())
    socket_path = os.path.join(work, "handoff.sock")
    url = f"http://127.0.0.1:{ports[1] if tool.startswith('h2') else ports[0]}/"
    first = start_first(method, ports, socket_path, work)
    switcher = Switcher(method, ports, socket_path, work, first)
    _GUARD["timeout"] = duration + 120
    try:
        t0 = time.time()
        proc, finish = RUNNERS[tool](url, duration, work)
        times = [] if method == "none" else [t0 + 3 + i * (duration - 6) / max(1, handoffs - 1) for i in range(handoffs)]
        for version, at in enumerate(times, start=2):
            delay = at - time.time()
            if delay > 0:
                time.sleep(delay)
            switcher.switch(version)
        result = finish()
    finally:
        switcher.finish()
    result.update(tool=tool, method=method, t0=t0, duration=duration, errors=switcher.errors)
    result["switches"] = [{k: (v - t0 if isinstance(v, float) and k != "old_exit_code" else v) for k, v in s.items()}
                          for s in switcher.switches]
    result["old_exit_codes"] = [s.get("old_exit_code") for s in switcher.switches]
    handoff = [s["end"] - s["start"] for s in switcher.switches if "end" in s]
    first_req = [s["first_request"] - s["start"] for s in switcher.switches if s.get("first_request")]
    result["handoff_s"] = handoff
    result["first_request_s"] = first_req
    result["series"] = bucketize(result, t0, duration)
    result.pop("ok_points", None)
    result.pop("ok_series", None)
    fail_times = result.pop("fail_times", None)
    result["fail_series"] = None if fail_times is None else bucket_counts(fail_times, t0, duration)
    return result


def bucketize(result, t0, duration):
    if result.get("ok_points") is not None:
        return bucket_counts(result["ok_points"], t0, duration)
    counts = [0.0] * int(duration / BUCKET + 20)
    for t, n in result.get("ok_series", []):
        i = int((t - t0) / BUCKET)
        if 0 <= i < len(counts):
            counts[i] += n
    return [round(c, 1) for c in counts]


def bucket_counts(times, t0, duration):
    counts = [0] * int(duration / BUCKET + 20)
    for t in times:
        i = int((t - t0) / BUCKET)
        if 0 <= i < len(counts):
            counts[i] += 1
    return counts


# ------------------------------------------------------------------------------------------ overhead

def overhead(pairs, seconds, work_root):
    """Throughput of the sample with ZeroDowntime:Enabled=true against false, alternating runs (wrk keep-alive)."""
    figures = {"true": [], "false": []}
    for i in range(pairs):
        for enabled in ([True, False] if i % 2 == 0 else [False, True]):
            work = os.path.join(work_root, f"overhead-{i}-{enabled}")
            os.makedirs(work, exist_ok=True)
            ports = (free_port(), free_port())
            app = start_first("none", ports, os.path.join(work, "handoff.sock"), work, enabled=enabled)
            try:
                url = f"http://127.0.0.1:{ports[0]}/"
                subprocess.run(["wrk", "-t2", "-c64", "-d2s", url], capture_output=True, timeout=30)  # warm-up
                out = subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", url], capture_output=True, text=True,
                                     timeout=seconds + 30).stdout
                rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                figures["true" if enabled else "false"].append(rps)
                log(f"overhead pair {i + 1}: Enabled={str(enabled).lower()} {rps:,.0f} req/s")
            finally:
                app.terminate()
                try:
                    app.wait_exit(40)
                except RuntimeError:
                    app.kill()
    ratio = statistics.mean(figures["true"]) / statistics.mean(figures["false"])
    # The two runs of a pair are adjacent in time and share the machine's background load: their ratio is the
    # steadier figure on a shared machine.
    pair_ratios = [t / f for t, f in zip(figures["true"], figures["false"])]
    return {"enabled_rps": figures["true"], "disabled_rps": figures["false"], "ratio": ratio,
            "median_pair_ratio": statistics.median(pair_ratios), "pair_ratios": pair_ratios, "seconds": seconds}


# ------------------------------------------------------------------------------------------ report

def fmt_ms(v):
    if v != v:  # NaN
        return "-"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def fmt_span(values):
    if not values:
        return "-"
    return f"{statistics.median(values) * 1000:.0f} / {max(values) * 1000:.0f}"


def table(results):
    lines = [
        "| tool | method | requests | failed | failed by kind | req/s | p50 ms | p99 ms | max ms | handoff ms (median / max) | first request by successor ms (median / max) |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["failed_kinds"].items())) or "-"
        failed = f"**{r['failed']}**" if r["method"] == "zerodowntime" else str(r["failed"])
        lines.append(
            f"| {r['tool']} | {METHOD_TITLES[r['method']]} | {r['requests']:,} | {failed} | {kinds} | {r['rps']:,.0f} | "
            f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | {fmt_ms(r['max_ms'])} | "
            f"{fmt_span(r['handoff_s'])} | {fmt_span(r['first_request_s'])} |")
    return "\n".join(lines)


def report(results, over, args, started, png_name):
    text = [f"# Benchmark results ({started:%Y-%m-%d %H:%M} UTC)", ""]
    text.append(f"{args.duration} s per run, {args.handoffs} restarts per run (none for 'no restart'), sample app "
                f"published in Release, all on one 2-core machine, traffic to 127.0.0.1 only. "
                f"Command: `bench/run.sh{' --quick' if args.quick else ''}`.")
    text += ["", table(results), ""]
    text.append("- handoff: from the start of the switch (successor started; for stop-then-start the SIGTERM to the old "
                "process) to its end (old process exited; for stop-then-start the new process started).")
    text.append("- first request by successor: from the start of the switch to the first response the new process served.")
    text.append("- h2load: run in 1 s segments (it does not reconnect after GOAWAY); see docs/benchmark.md for what its "
                "failures mean.")
    bad_exits = [(r["tool"], r["method"], c) for r in results for c in r["old_exit_codes"] if c not in (0, None)]
    if bad_exits:
        text.append(f"- old processes that exited non-zero: {bad_exits}")
    if over:
        text += ["", "## Steady-state overhead", "",
                 f"wrk -t2 -c64, {over['seconds']} s per run, alternating: Enabled=true "
                 f"{', '.join(f'{v:,.0f}' for v in over['enabled_rps'])} req/s; Enabled=false "
                 f"{', '.join(f'{v:,.0f}' for v in over['disabled_rps'])} req/s; "
                 f"**ratio {over['ratio']:.3f}** (mean true / mean false); ratio within each pair "
                 f"{', '.join(f'{v:.3f}' for v in over['pair_ratios'])}, **median {over['median_pair_ratio']:.3f}**."]
    text += ["", f"![requests per 100 ms]({png_name})", ""]
    return "\n".join(text)


def draw(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tools = [t for t in TOOLS if any(r["tool"] == t for r in results)]
    methods = [m for m in METHODS if any(r["method"] == m for r in results)]
    fig, axes = plt.subplots(len(tools), len(methods), figsize=(5.2 * len(methods), 3.1 * len(tools)),
                             squeeze=False, sharex=True)
    for i, tool in enumerate(tools):
        ymax = max((max(r["series"]) for r in results if r["tool"] == tool and r["series"]), default=1) * 1.15
        for j, method in enumerate(methods):
            ax = axes[i][j]
            r = next((r for r in results if r["tool"] == tool and r["method"] == method), None)
            if r is None:
                ax.axis("off")
                continue
            xs = [k * BUCKET for k in range(len(r["series"]))]
            ax.fill_between(xs, r["series"], step="post", color="#3b7dd8", alpha=0.35, linewidth=0)
            ax.step(xs, r["series"], where="post", color="#1f5fb0", linewidth=0.6)
            for s in r["switches"]:
                ax.axvspan(s["start"], s.get("end", s["start"]), color="#f0a030", alpha=0.25, linewidth=0)
                ax.axvline(s["start"], color="#d07000", linewidth=0.8)
            ax.set_ylim(0, ymax)
            ax.set_xlim(0, r["duration"] + 1)
            if r["fail_series"] is not None and any(r["fail_series"]):
                ax2 = ax.twinx()
                fx = [k * BUCKET for k, v in enumerate(r["fail_series"]) if v]
                fy = [v for v in r["fail_series"] if v]
                ax2.bar(fx, fy, width=BUCKET * 2, color="#d62728", align="edge")
                ax2.set_ylim(0, max(fy) * 1.3)
                ax2.tick_params(axis="y", colors="#d62728", labelsize=7)
            color = "#d62728" if r["failed"] else "#2a8a2a"
            ax.set_title(f"{METHOD_TITLES[method]}: {r['failed']:,} failed", fontsize=9, color=color)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(f"{tool}\nrequests / 100 ms", fontsize=8)
            if i == len(tools) - 1:
                ax.set_xlabel("seconds", fontsize=8)
    fig.suptitle("Requests per 100 ms (blue), failures per 100 ms (red, right axis; wrk reports its socket errors only as a "
                 "total, in the panel title; h2load's are put at the end of their 1 s segment), restarts (orange: start of "
                 "the switch to old process exit)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 s runs with 3 restarts, short overhead check")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--duration", type=int, default=None)
    parser.add_argument("--handoffs", type=int, default=None)
    parser.add_argument("--overhead-pairs", type=int, default=None)
    parser.add_argument("--output", default="latest", help="name of the result files in bench/results")
    parser.add_argument("--overhead-only", action="store_true", help="only the Enabled=true/false throughput check")
    parser.add_argument("--overhead-seconds", type=int, default=None)
    parser.add_argument("--redraw", action="store_true", help="only draw bench/results/OUTPUT.png again from OUTPUT.json")
    args = parser.parse_args()
    if args.redraw:
        with open(os.path.join(RESULTS, f"{args.output}.json")) as f:
            draw(json.load(f)["results"], os.path.join(RESULTS, f"{args.output}.png"))
        return 0
    args.duration = args.duration or (20 if args.quick else 60)
    args.handoffs = args.handoffs or (3 if args.quick else 10)
    pairs = args.overhead_pairs if args.overhead_pairs is not None else (2 if args.quick else 4)

    for exe in ["ab", "wrk", "h2load", "dotnet"]:
        if not shutil.which(exe):
            sys.exit(f"{exe} is not on PATH: run bench/run.sh, which installs it")
    for dll in [SAMPLE_DLL, H2CLIENT_DLL]:
        if not os.path.exists(dll):
            sys.exit(f"{dll} is missing: run bench/run.sh, which publishes it")

    started = datetime.datetime.now(datetime.timezone.utc)
    work_root = tempfile.mkdtemp(prefix="zdt-bench-")
    log(f"work directory (logs of every process and tool): {work_root}")
    results = []
    if args.overhead_only:
        over = overhead(pairs, args.overhead_seconds or 10, work_root)
        log(f"overhead: ratio {over['ratio']:.3f}, median of pair ratios {over['median_pair_ratio']:.3f}")
        os.makedirs(RESULTS, exist_ok=True)
        with open(os.path.join(RESULTS, f"{args.output}.json"), "w") as f:
            json.dump({"started": started.isoformat(), "args": vars(args), "overhead": over}, f)
        return 0
    for tool in args.tools.split(","):
        for method in args.methods.split(","):
            log(f"{tool} / {method}: {args.duration} s" + ("" if method == "none" else f", {args.handoffs} restarts"))
            r = run_one(tool, method, args.duration, args.handoffs, work_root)
            log(f"  {r['requests']:,} requests, {r['failed']} failed {r['failed_kinds']}, {r['rps']:,.0f} req/s, "
                f"handoff {fmt_span(r['handoff_s'])} ms, first request {fmt_span(r['first_request_s'])} ms"
                + (f", errors: {r['errors']}" if r["errors"] else ""))
            results.append(r)
    over = overhead(pairs, args.overhead_seconds or (5 if args.quick else 10), work_root) if pairs > 0 else None
    if over:
        log(f"overhead: ratio {over['ratio']:.3f}, median of pair ratios {over['median_pair_ratio']:.3f}")

    os.makedirs(RESULTS, exist_ok=True)
    png = os.path.join(RESULTS, f"{args.output}.png")
    draw(results, png)
    md = report(results, over, args, started, os.path.basename(png))
    with open(os.path.join(RESULTS, f"{args.output}.md"), "w") as f:
        f.write(md)
    with open(os.path.join(RESULTS, f"{args.output}.json"), "w") as f:
        json.dump({"started": started.isoformat(), "args": vars(args), "results": results, "overhead": over}, f)
    print(md)
    zdt_failed = sum(r["failed"] for r in results if r["method"] == "zerodowntime")
    log(f"UseZeroDowntime: {zdt_failed} failed requests in total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
