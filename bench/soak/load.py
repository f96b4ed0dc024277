#!/usr/bin/env python3
"""The soak's load: mixed legitimate calls, cancellations and resets against one curecd.

    load.py ADDRESS PID SECONDS OUT_DIR GO_CLIENT

Runs for SECONDS, then prints a summary and writes OUT_DIR/rss.csv and OUT_DIR/summary.json.
What runs at once (each its own thread, grpcio through the curec_client package unless said):

  score       Score (100 candidates) then Recommend (k=10), back to back
  generate    GenerateReason, read to the end (max 24 tokens): legitimate generation
  cancel      GenerateReason cut short: alternately cancelled after the first piece (the
              client resets the stream) and given a 0.3 s deadline; CANCELLED and
              DEADLINE_EXCEEDED are what these calls expect
  jobs        an evaluate job waited to completion, then a train job cancelled while it runs,
              every JOB_INTERVAL seconds (default 5)
  go          the grpc-go client (bench/peers latencyclient): 2,000 Recommend calls per run
  health      Health/Check once a second; its latency, and the daemon's RSS from /proc

A legitimate call is every call of score, generate, jobs and go, and the health checks; any
error on one counts as a failure. A cut-short call fails only if it ends with another code.
"""
import json
import os
import subprocess
import sys
import threading
import time

import grpc
from curec_client import Client, CurecError
from curec_client._proto.curec.v1 import recommend_pb2  # noqa: F401  (the package must import)
from grpc_health.v1 import health_pb2, health_pb2_grpc

ADDRESS, PID, SECONDS, OUT, GO_CLIENT = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
STOP = threading.Event()
LOCK = threading.Lock()
COUNTS = {}      # name -> calls
FAILURES = {}    # name -> failed legitimate calls
EXAMPLES = []    # the first few failure messages


def record(name, ok=True, detail=""):
    with LOCK:
        COUNTS[name] = COUNTS.get(name, 0) + 1
        if not ok:
            FAILURES[name] = FAILURES.get(name, 0) + 1
            if len(EXAMPLES) < 20:
                EXAMPLES.append("%s: %s" % (name, detail[:300]))


def rss_kib():
    """(total, anonymous, file-backed) resident KiB of the daemon: file-backed pages are mostly
    the mapped model files, anonymous ones the heap."""
    values = {}
    with open("/proc/%d/status" % PID) as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("RssAnon", 0), values.get("RssFile", 0)


def users_and_items(client):
    ranked = client.recommend("196", k=100, exclude_seen=False)
    return ["1", "10", "100", "196", "200", "305", "405", "500", "600", "900"], [item.item_id for item in ranked]


def score_loop(client, users, items):
    index = 0
    while not STOP.is_set():
        user = users[index % len(users)]
        index += 1
        try:
            scores = client.score(user, items)
            record("score", len(scores) == len(items), "wrong number of scores")
        except CurecError as error:
            record("score", False, str(error))
        try:
            ranked = client.recommend(user, k=10)
            record("recommend", len(ranked) == 10, "got %d items" % len(ranked))
        except CurecError as error:
            record("recommend", False, str(error))


def generate_loop(client, users, items):
    index = 0
    while not STOP.is_set():
        user, item = users[index % len(users)], items[index % len(items)]
        index += 1
        try:
            text = "".join(client.generate_reason(user, item, max_tokens=24, timeout=120))
            record("generate", bool(text.strip()), "empty reason")
        except CurecError as error:
            record("generate", False, str(error))


def cancel_loop(client, users, items):
    index = 0
    while not STOP.is_set():
        user, item = users[index % len(users)], items[(index * 7) % len(items)]
        index += 1
        if index % 2:
            # Reset: the generator's finally cancels the call after the first piece.
            try:
                stream = client.generate_reason(user, item, max_tokens=64, timeout=120)
                next(stream, None)
                stream.close()
                record("reset")
            except CurecError as error:
                record("reset", False, str(error))
        else:
            try:
                "".join(client.generate_reason(user, item, max_tokens=64, timeout=0.3))
                record("deadline")
            except CurecError as error:
                expected = error.code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
                record("deadline", expected, str(error))


def jobs_loop(client):
    # One evaluate and one cancelled train job every JOB_INTERVAL seconds (default 5), the
    # pace of an operator's scripts rather than a flood of records.
    interval = float(os.environ.get("JOB_INTERVAL", "5"))
    while not STOP.wait(interval):
        try:
            job = client.submit_job("evaluate", plugin="bpr")
            finished = client.wait_job(job.id, timeout=300)
            record("evaluate-job", finished.state.name == "SUCCEEDED", "evaluate ended %s: %s"
                   % (finished.state.name, getattr(finished, "error", "")))
        except CurecError as error:
            record("evaluate-job", False, str(error))
        if STOP.is_set():
            break
        try:
            job = client.submit_job("train", library="CURecBPR", name="soak-bpr", serve="false",
                                    config='{"factors": 16, "epochs": 200}')
            for event in client.watch(job.id, timeout=300):
                if event.state.name == "RUNNING" or event.final:
                    break
            client.cancel_job(job.id)
            finished = client.wait_job(job.id, timeout=300)
            record("cancelled-job", finished.state.name == "CANCELLED", "cancelled job ended %s" % finished.state.name)
        except CurecError as error:
            record("cancelled-job", False, str(error))


def go_loop():
    while not STOP.is_set():
        result = subprocess.run([GO_CLIENT, "--address", ADDRESS, "--calls", "2000"], capture_output=True, text=True)
        # The client makes 200 warm-up calls and the measured ones; it exits non-zero on any error.
        record("go-recommend", result.returncode == 0, result.stderr.strip())
        with LOCK:
            COUNTS["go-recommend-calls"] = COUNTS.get("go-recommend-calls", 0) + 2200


def monitor(samples):
    channel = grpc.insecure_channel(ADDRESS)
    health = health_pb2_grpc.HealthStub(channel)
    start = time.monotonic()
    while not STOP.wait(1.0):
        began = time.monotonic()
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            ok = reply.status == health_pb2.HealthCheckResponse.SERVING
            record("health", ok, "status %s" % reply.status)
        except grpc.RpcError as error:
            record("health", False, str(error))
        latency = time.monotonic() - began
        samples.append((round(began - start, 1), *rss_kib(), round(latency * 1000, 1)))
    channel.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    client = Client(ADDRESS, timeout=60)
    client.wait_until_ready(30)
    users, items = users_and_items(client)
    samples = [(0.0, *rss_kib(), 0.0)]
    threads = [
        threading.Thread(target=score_loop, args=(client, users, items)),
        threading.Thread(target=generate_loop, args=(client, users, items)),
        threading.Thread(target=cancel_loop, args=(client, users, items)),
        threading.Thread(target=jobs_loop, args=(client,)),
        threading.Thread(target=go_loop),
        threading.Thread(target=monitor, args=(samples,)),
    ]
    for thread in threads:
        thread.start()
    STOP.wait(SECONDS)
    STOP.set()
    for thread in threads:
        thread.join()
    # The daemon at rest again: let finished work be released, then the last sample.
    time.sleep(5)
    samples.append((round(SECONDS + 5, 1), *rss_kib(), 0.0))
    client.close()

    with open(os.path.join(OUT, "rss.csv"), "w") as csv:
        csv.write("seconds,rss_kib,anon_kib,file_kib,health_ms\n")
        for row in samples:
            csv.write("%s,%s,%s,%s,%s\n" % row)

    def median(column, rows):
        values = sorted(row[column] for row in rows) or [0]
        return round(values[len(values) // 2] / 1024, 1)

    rss = [row[1] for row in samples]
    # Start: the first minute's median, when the daemon has warmed up under the load.
    first_minute = [row for row in samples if row[0] <= 60] or samples
    last_minute = [row for row in samples if row[0] >= SECONDS - 60] or samples
    health_ms = sorted(row[4] for row in samples[1:-1]) or [0.0]
    legitimate = sum(n for name, n in COUNTS.items() if name not in ("reset", "deadline", "go-recommend"))
    summary = {
        "seconds": SECONDS,
        "rss_mib": {"before_load": round(rss[0] / 1024, 1), "first_minute_median": median(1, first_minute),
                    "peak": round(max(rss) / 1024, 1), "last_minute_median": median(1, last_minute),
                    "end_at_rest": round(rss[-1] / 1024, 1)},
        "anon_mib": {"first_minute_median": median(2, first_minute), "last_minute_median": median(2, last_minute)},
        "file_mib": {"first_minute_median": median(3, first_minute), "last_minute_median": median(3, last_minute)},
        "health_ms": {"median": health_ms[len(health_ms) // 2], "max": health_ms[-1]},
        "calls": COUNTS,
        "legitimate_calls": legitimate,
        "failures": FAILURES,
        "failure_examples": EXAMPLES,
    }
    with open(os.path.join(OUT, "summary.json"), "w") as out:
        json.dump(summary, out, indent=2)
    print(json.dumps(summary, indent=2))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
