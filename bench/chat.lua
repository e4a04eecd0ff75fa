-- bench/chat.lua: the wrk script of bench/overhead.sh.
--
-- POSTs a small chat completion with a bearer key, and at the end prints one
-- parseable line:
--   BENCH requests=N seconds=S rps=R p50_ms=X p90_ms=Y p99_ms=Z non2xx=N socket_errors=N
--
-- Environment (wrk passes it through to Lua):
--   BENCH_KEY    bearer key (default "bench")
--   BENCH_MODEL  model field of the body (default "bench")
--   BENCH_MODE   nonstream | stream | mixed (alternates both; default nonstream)
--   BENCH_PATH   request path (default /v1/chat/completions)

local key = os.getenv("BENCH_KEY") or "bench"
local model = os.getenv("BENCH_MODEL") or "bench"
local mode = os.getenv("BENCH_MODE") or "nonstream"

local function body(stream)
    return string.format(
        '{"model":"%s","messages":[{"role":"user","content":' ..
        '"Say hello in one short sentence."}],"max_tokens":16%s}',
        model, stream and ',"stream":true' or '')
end

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key

if mode == "mixed" then
    local reqs, n
    function init(args)
        reqs = {
            wrk.format(nil, nil, nil, body(false)),
            wrk.format(nil, nil, nil, body(true)),
        }
        n = 0
    end
    function request()
        n = n + 1
        return reqs[n % 2 + 1]
    end
else
    wrk.body = body(mode == "stream")
end

function done(summary, latency, requests)
    local secs = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f " ..
        "p99_ms=%.3f non2xx=%d socket_errors=%d\n",
        summary.requests, secs, summary.requests / secs,
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, e.status,
        e.connect + e.read + e.write + e.timeout))
end
