#!/usr/bin/env python3
"""Long-lived connections across handoffs (issue 23): how long each old generation lives after its handoff, and how
the clients' connections end, with the drain closing them (ZeroDowntime:CloseLongLivedConnections=true, the default)
against the same run without it (false: they stay until DrainTimeout, 30 s, and are aborted).

Clients: WEBSOCKETS raw WebSockets on /ws (each echoes a message every 100 ms and reconnects when its connection
ends) and EVENT_STREAMS server-sent event readers on /sse?ms=100 (reconnect with Last-Event-ID). Each end is counted
as clean (WebSocket close frame 1001/1000 answered; event stream ended with its last chunk) or abnormal (reset, EOF
without a close frame, a truncated chunked body). Run it through bench/run.sh's published sample
(bench/out/sample), or after `dotnet publish bench/BenchSample -c Release -o bench/out/sample`.
Results: bench/results/longlived.{md,json}.
"""

import argparse
import base64
import datetime
import json
import os
import socket
import struct
import tempfile
import threading
import time

import bench

WEBSOCKETS = 50
EVENT_STREAMS = 10


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.clean = 0
        self.abnormal = 0
        self.details = {}

    def add(self, clean, detail):
        with self.lock:
            if clean:
                self.clean += 1
            else:
                self.abnormal += 1
            self.details[detail] = self.details.get(detail, 0) + 1


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("end of stream")
        data += chunk
    return data


def ws_connect(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError("closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    return sock


def ws_send(sock, opcode, payload):
    mask = os.urandom(4)
    header = bytes([0x80 | opcode])
    header += bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack(">H", len(payload))
    sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def ws_receive(sock):
    b0, b1 = read_exact(sock, 2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack(">H", read_exact(sock, 2))[0]
    elif length == 127:
        length = struct.unpack(">Q", read_exact(sock, 8))[0]
    return b0 & 0x0F, read_exact(sock, length)


def websocket_client(port, stop, counts):
    """Echoes every 100 ms; on the server's close frame answers it and reconnects; counts how each connection ended."""
    while not stop.is_set():
        try:
            sock = ws_connect(port)
        except (OSError, EOFError, RuntimeError):
            time.sleep(0.05)
            continue
        try:
            while not stop.is_set():
                ws_send(sock, 0x1, b"hello")
                opcode, payload = ws_receive(sock)
                while opcode not in (0x1, 0x8):
                    opcode, payload = ws_receive(sock)
                if opcode == 0x8:
                    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                    ws_send(sock, 0x8, payload[:2])
                    counts.add(True, f"close {code}")
                    break
                stop.wait(0.1)
        except (OSError, EOFError) as ex:
            counts.add(False, f"abnormal: {type(ex).__name__}")
        finally:
            sock.close()


def event_stream_client(port, stop, counts):
    """Reads /sse?ms=100; a clean end is the last chunk (0-length); reconnects with Last-Event-ID."""
    last = None
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        except OSError:
            time.sleep(0.05)
            continue
        try:
            extra = f"Last-Event-ID: {last}\r\n" if last else ""
            sock.sendall(f"GET /sse?ms=100 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
            reader = sock.makefile("rb")
            while reader.readline() not in (b"\r\n", b""):
                pass
            while not stop.is_set():
                size_line = reader.readline()
                if not size_line:
                    raise EOFError("end of stream inside the body")
                size = int(size_line.strip() or b"0", 16)
                if size == 0:
                    counts.add(True, "end of stream")
                    break
                chunk = reader.read(size + 2)
                for line in chunk.decode().splitlines():
                    if line.startswith("id: "):
                        last = line[4:]
        except (OSError, EOFError, ValueError) as ex:
            counts.add(False, f"abnormal: {type(ex).__name__}")
        finally:
            sock.close()


def run(close_long_lived, handoffs, work):
    os.environ["ZeroDowntime__CloseLongLivedConnections"] = "true" if close_long_lived else "false"
    port = bench.free_port()
    socket_path = os.path.join(work, "handoff.sock")
    log_dir = os.path.join(work, "logs")
    os.makedirs(log_dir, exist_ok=True)
    first = bench.start_first("zerodowntime", (port, bench.free_port()), socket_path, log_dir)
    apps, lived = [first], []
    counts, stop = Counts(), threading.Event()
    clients = [threading.Thread(target=websocket_client, args=(port, stop, counts), daemon=True) for _ in range(WEBSOCKETS)]
    clients += [threading.Thread(target=event_stream_client, args=(port, stop, counts), daemon=True) for _ in range(EVENT_STREAMS)]
    for client in clients:
        client.start()
    time.sleep(2)
    waiters = []
    for version in range(2, handoffs + 2):
        old = apps[-1]
        new = bench.App(f"v{version}", "zerodowntime", (port, 0), socket_path, log_dir)
        apps.append(new)
        committed = new.wait_for("[21]")[0]

        def measure(old=old, committed=committed):
            lived.append(old.wait_exit(90) - committed)

        waiter = threading.Thread(target=measure, daemon=True)
        waiter.start()
        waiters.append(waiter)
        time.sleep(3)
    for waiter in waiters:
        waiter.join(120)
    time.sleep(1)
    stop.set()
    for client in clients:
        client.join(10)
    for app in apps:
        app.kill()
    return {"close_long_lived": close_long_lived, "lived_s": sorted(lived), "clean": counts.clean,
            "abnormal": counts.abnormal, "ends": counts.details}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handoffs", type=int, default=3)
    parser.add_argument("--output", default="longlived")
    args = parser.parse_args()
    results = []
    for close_long_lived in (False, True):
        with tempfile.TemporaryDirectory(prefix="zdt-ll-") as work:
            bench.log(f"CloseLongLivedConnections={close_long_lived}: {WEBSOCKETS} WebSockets, {EVENT_STREAMS} event streams, {args.handoffs} handoffs")
            results.append(run(close_long_lived, args.handoffs, work))
            bench.log(json.dumps(results[-1]))
    base, drained = results
    rows = [
        "| Configuration | old generation lived after its handoff (s, each) | longest | ratio | clean ends | abnormal ends |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result, title in ((base, "without the drain's close (`CloseLongLivedConnections=false`, baseline)"),
                          (drained, "with it (default)")):
        lived = result["lived_s"]
        rows.append(f"| {title} | {', '.join(f'{v:.2f}' for v in lived)} | {max(lived):.2f} | "
                    f"{max(lived) / max(base['lived_s']):.3f}x | {result['clean']} | {result['abnormal']} |")
    text = (f"# Long-lived connections across handoffs\n\n{datetime.datetime.now():%Y-%m-%d %H:%M}, {WEBSOCKETS} WebSockets "
            f"(echo every 100 ms) and {EVENT_STREAMS} event streams (10 events/s), {args.handoffs} handoffs 3 s apart, "
            f"DrainTimeout 30 s (default). Ends: {json.dumps([base['ends'], drained['ends']])}\n\n" + "\n".join(rows) + "\n")
    os.makedirs(bench.RESULTS, exist_ok=True)
    with open(os.path.join(bench.RESULTS, f"{args.output}.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(bench.RESULTS, f"{args.output}.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    print(text)


if __name__ == "__main__":
    main()
