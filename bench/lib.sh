# Shared helpers of the benchmark scripts (sourced, not run).

# Builds a Go program from bench/peers (GOPATH mode, Debian packages only) into $2.
build_go_peer() {
    GO111MODULE=off GOPATH="$ROOT/bench/peers:$ROOT/Tests/Interop/go:/usr/share/gocode" GOFLAGS= GOPROXY=off \
        GOCACHE="$WORK/gocache" go build -o "$2" "$1"
}

# Runs a server command in the background; waits for it to write its port to $WORK/port.
# Sets SERVER_PID and SERVER_PORT.
start_server() {
    rm -f "$WORK/port"
    "$@" --port-file "$WORK/port" > "$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1200); do
        if [ -s "$WORK/port" ]; then SERVER_PORT="$(cat "$WORK/port")"; return 0; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "server did not start: $*" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# h2load against PATH with body FILE: prints requests per second; fails on any error.
run_h2load() { # port path body calls
    h2load -n "$4" -c "$CONNECTIONS" -m "$STREAMS" -t 1 \
        -H 'content-type: application/grpc' -H 'te: trailers' -d "$3" \
        "http://127.0.0.1:$1$2" > "$WORK/h2load.out" 2>&1
    if ! grep -q " 0 failed, 0 errored" "$WORK/h2load.out"; then
        cat "$WORK/h2load.out" >&2
        echo "h2load saw failures" >&2
        exit 1
    fi
    awk '/^finished in/ { gsub(",", "", $4); print $4 }' "$WORK/h2load.out"
}

# CPU seconds (user + system) the server process has used so far, from /proc.
server_cpu_seconds() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$SERVER_PID/stat"
}

# run_h2load, also measuring the server's CPU time per call. Sets RATE (calls/s) and CPU_US
# (server CPU microseconds per call). CPU time per call moves far less with the machine's
# load than calls/s, so it is the figure to compare two builds or settings by.
measure_h2load() { # port path body calls
    local before after
    before="$(server_cpu_seconds)"
    RATE="$(run_h2load "$@")"
    after="$(server_cpu_seconds)"
    CPU_US="$(echo "($after - $before) * 1000000 / $4" | bc -l)"
}

# Median of the numbers on standard input (one per line or space-separated).
median() {
    tr ' ' '\n' | grep -v '^$' | sort -g |
        awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
