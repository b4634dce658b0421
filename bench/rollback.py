#!/usr/bin/env python3
"""Rollback versus redeploying the old release (issue 20), on the published sample.

Run it through bench/rollback.sh. Each round starts release A (the sample), hands over to release B on probation
(ZeroDowntime:Probation:Duration), then measures two ways back to A's code while a client sends requests one after
another, each on a new connection:

  rollback   SIGUSR1 to B: A, which stood by warm, serves again (B drains and exits 81);
  redeploy   what one does without probation: start A's build anew; it takes over from B (cold start, then handoff).

For each: the time from the trigger to the first answer by the process that serves A's code, and the latency of the
answers in the second after the switch (p50, p99, max) next to the steady second before the trigger. Ratios are
redeploy / rollback from the same round, so a noisy machine shifts both. Writes bench/results/rollback.md and .json.
"""
import argparse, http.client, json, os, signal, socket, statistics, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "bench", "out", "sample")


def fresh_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    def __init__(self, name, port, sock, work, extra=()):
        self.log_path = os.path.join(work, f"{name}.log")
        self.log = open(self.log_path, "w")
        args = ["dotnet", "WebApi.dll", f"--Urls=http://127.0.0.1:{port}", f"--ZeroDowntime:SocketPath={sock}",
                "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:ZeroDowntime.Hosting=Information", *extra]
        self.proc = subprocess.Popen(args, cwd=SAMPLE, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_for(self, needle, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.log_path}: exited {self.proc.returncode} before '{needle}'")
            time.sleep(0.01)
        raise RuntimeError(f"{self.log_path}: no '{needle}' within {timeout} s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Client(threading.Thread):
    """Requests one after another, each on a new connection: (start time, latency s, pid or None)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.samples, self.failures, self.running = port, [], 0, True

    def run(self):
        while self.running:
            start = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/pid")
                body = conn.getresponse().read().decode()
                conn.close()
                self.samples.append((start, time.monotonic() - start, int(body)))
            except Exception:
                self.failures += 1
                self.samples.append((start, time.monotonic() - start, None))

    def first_answer_by(self, pid, after):
        return next((s[0] + s[1] for s in self.samples if s[0] >= after and s[2] == pid), None)

    def window(self, start, end):
        return [s[1] * 1000 for s in self.samples if start <= s[0] < end]


def summary(values):
    values = sorted(values)
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    at = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return {"n": len(values), "p50": round(at(0.5), 2), "p99": round(at(0.99), 2), "max": round(values[-1], 2)}


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None:
            return value
        time.sleep(0.002)
    raise RuntimeError(f"no {what} within {timeout} s")


def one_round(index, work):
    port, sock = fresh_port(), os.path.join(work, f"r{index}.sock")
    a = App(f"r{index}-a", port, sock, work)
    a.wait_for("for the next version")
    client = Client(port)
    client.start()
    b = App(f"r{index}-b", port, sock, work, ["--ZeroDowntime:Probation:Duration=00:10:00"])
    a.wait_for("Standing by for pid")
    time.sleep(1.5)

    # rollback: A stood by, warm.
    t0 = time.monotonic()
    os.kill(b.pid, signal.SIGUSR1)
    t1 = wait_until(lambda: client.first_answer_by(a.pid, t0), 10, "answer by the standing-by process")
    b.proc.wait(60)
    time.sleep(1.2)
    rollback = {"switch_ms": round((t1 - t0) * 1000, 2), "steady": summary(client.window(t0 - 1, t0)),
                "after": summary(client.window(t1, t1 + 1)), "exit": b.proc.returncode}
    b.stop()

    # redeploy: B serves again (no probation), then A's build is started anew and takes over from it.
    b2 = App(f"r{index}-b2", port, sock, work)
    b2.wait_for("for the next version")
    a.proc.wait(60)
    a.stop()
    time.sleep(1.5)
    t0 = time.monotonic()
    a2 = App(f"r{index}-a2", port, sock, work)
    t1 = wait_until(lambda: client.first_answer_by(a2.pid, t0), 60, "answer by the redeployed process")
    time.sleep(1.2)
    redeploy = {"switch_ms": round((t1 - t0) * 1000, 2), "steady": summary(client.window(t0 - 1, t0)),
                "after": summary(client.window(t1, t1 + 1))}
    client.running = False
    client.join(15)
    for app in (b2, a2):
        app.stop()
    return {"rollback": rollback, "redeploy": redeploy, "failures": client.failures, "requests": len(client.samples)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", default="rollback")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="zdt-rollback-")
    print(f"work directory: {work} (the processes' logs)", flush=True)
    rounds = []
    for i in range(args.rounds):
        r = one_round(i, work)
        rounds.append(r)
        print(f"round {i + 1}: rollback {r['rollback']['switch_ms']} ms (exit {r['rollback']['exit']}), "
              f"redeploy {r['redeploy']['switch_ms']} ms, failed requests {r['failures']} of {r['requests']}", flush=True)

    def med(path):
        values = [v for v in (path(r) for r in rounds) if v is not None]
        return round(statistics.median(values), 2) if values else None

    rb_switch, rd_switch = med(lambda r: r["rollback"]["switch_ms"]), med(lambda r: r["redeploy"]["switch_ms"])
    rb_p99, rd_p99 = med(lambda r: r["rollback"]["after"]["p99"]), med(lambda r: r["redeploy"]["after"]["p99"])
    rb_max, rd_max = med(lambda r: r["rollback"]["after"]["max"]), med(lambda r: r["redeploy"]["after"]["max"])
    steady_p99 = med(lambda r: r["rollback"]["steady"]["p99"])
    ratio = lambda x, y: f"{x / y:.1f}x" if x and y else "-"
    lines = [
        f"# Rollback versus redeploying the old release ({args.rounds} rounds, median; load {os.getloadavg()[0]:.1f})",
        "",
        "Sequential client, a new connection per `GET /pid`. Switch: trigger to the first answer by the process that",
        "serves the old code. p99 / max: the answers in the second after the switch.",
        "",
        "| way back | switch (ms) | p99 after (ms) | max after (ms) | steady p99 before (ms) |",
        "| --- | --- | --- | --- | --- |",
        f"| rollback (probation, SIGUSR1) | {rb_switch} | {rb_p99} | {rb_max} | {steady_p99} |",
        f"| redeploy the old build (cold start + handoff) | {rd_switch} | {rd_p99} | {rd_max} | {med(lambda r: r['redeploy']['steady']['p99'])} |",
        f"| ratio redeploy / rollback | {ratio(rd_switch, rb_switch)} | {ratio(rd_p99, rb_p99)} | {ratio(rd_max, rb_max)} | |",
        "",
        f"Failed requests over all rounds: {sum(r['failures'] for r in rounds)} of {sum(r['requests'] for r in rounds)}; "
        f"exit codes of the rolled-back release: {sorted({r['rollback']['exit'] for r in rounds})}.",
    ]
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", f"{args.output}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(ROOT, "bench", "results", f"{args.output}.json"), "w") as f:
        json.dump(rounds, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
