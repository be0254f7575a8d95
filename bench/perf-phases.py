#!/usr/bin/env python3
"""Per-phase attribution of a `perf record -g` profile of the proxy.

    perf script -i FILE -F comm,ip,sym | python3 bench/perf-phases.py [US_PER_REQUEST]

Each sample goes to the first phase (in the order below) with a marker function anywhere in its
stack; "other" has none. With US_PER_REQUEST (the process's CPU per request, from
/proc/<pid>/stat), each share is also given in µs per request. Prints a Markdown table.
See bench/results/profile-request-path.md.
"""
import sys, re, collections
# perf script output: sample header line, then frames "addr sym (dso)", blank line between samples
PH = [
 ("logging/metrics", r"ProxyHttp>::logging|tracing_core|tracing::|prometheus|metrics::record|record_served_hit|log_access"),
 ("policy (cacheability)", r"response_cache_filter|policy::decide|http_cache_semantics|plan_compression|encoding::plan"),
 ("header build (response head, stamps)", r"response_filter|headers::stamp|classify|write_response_header|prepare_response_header|serve_fresh_hit|write_hit_fields|insert_header|append_header|ResponseHeader|h1_response_filter|fmt::"),
 ("upstream (connect/pool, send, read response)", r"connectors::|v1::client|proxy_handle_upstream|upstream_peer|HttpPeer|read_response|write_request_header|release_http_session|release_stream|reused_stream|write_request_header"),
 ("write to client (body, flush)", r"write_body|poll_flush|poll_write|write_response_tasks|write_response_body|BodyWriter|finish"),
 ("cache machinery (key, lookup, lock, predictor)", r"request_cache_filter|cache_key_callback|CacheKey|blake2|Blake2|predict|HttpCache|proxy_cache::|cache_lookup|cache::store|cache::hit|fresh_entry|hit::|Store::get|lock::|FastHits::find"),
 ("request filter (limits, URL key, forwarding)", r"request_filter|UrlKey|key::|add_forwarding|upstream_request_filter|header_block_bytes|fresh_hit|limit_error|bus_revalidation"),
 ("parse (request head)", r"read_request|httparse|parse_head"),
 ("read from client socket", r"poll_read|recvfrom|tcp_recvmsg"),
 ("runtime (tasks, timers, wake-ups, epoll)", r"tokio::runtime|pingora_timeout|epoll|mio::|futex|schedule|finish_task_switch"),
 ("allocator", r"mi_|malloc|free"),
]
PH = [(n, re.compile(p)) for n, p in PH]
counts = collections.Counter(); total = 0
frames = []
def flush():
    global total, frames
    if not frames: return
    total += 1
    for n, p in PH:  # phases in priority order, anywhere in the stack
        if any(p.search(f) for f in frames):
            counts[n] += 1; frames = []; return
    counts["other"] += 1; frames = []
for line in sys.stdin:
    s = line.strip()
    if not s:
        flush(); continue
    if line[0] not in " \t":
        flush(); continue
    parts = s.split(None, 1)
    if len(parts) == 2: frames.append(parts[1])
flush()
us = float(sys.argv[1]) if len(sys.argv) > 1 else None
print("| phase | share of samples |" + (" µs per request |" if us else ""))
print("|---|---:|" + ("---:|" if us else ""))
for n, c in counts.most_common():
    print(f"| {n} | {100*c/total:.1f} % |" + (f" {us*c/total:.1f} |" if us else ""))
print(f"\n{total} samples")
