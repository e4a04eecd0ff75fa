-- tests/soak/soak.lua: the wrk script of tests/soak/soak.sh.
--
-- Each thread sends its share of SOAK_REQUESTS chat completions, a fixed
-- mix by request number (of ten: four non-stream and four stream to
-- "soak", whose upstream fails 3% with 500 and falls back to
-- "soak-backup"; one stream to "soak-cut", cut mid-answer 5% of the time;
-- one non-stream to "soak-429", 429 5% of the time, without fallback),
-- and stops once it has its share of answers. Once a thread has sent its
-- share, its connections ask GET /healthz instead (a probe has no row and
-- is not counted), so that exactly `sent` chat requests reach the gateway
-- and every one of them is answered before the thread stops: the request
-- log must then hold exactly `sent` rows. Every answer is judged:
--   ok        200, and a stream ends with data: [DONE]
--   injected  an error (status or a stream's error event) on soak-cut or
--             soak-429, whose faults are scripted
--   other     any other error: must be none
-- done() prints one parseable line:
--   SOAK sent=N answered=N ok=N injected=N other=N seconds=S p50_ms=X p99_ms=Y socket_errors=N
-- and the first few "other" answers (status, model, body head).
--
-- A thread that has its share writes a file into SOAK_DONE_DIR and stops;
-- wrk itself runs until its -d, so soak.sh sends it SIGINT (which ends it
-- at once, with its summary and done()) when every thread has one.
--
-- Environment: SOAK_KEY (bearer key), SOAK_REQUESTS (total, default
-- 1000000), SOAK_THREADS (wrk -t, to split the total), SOAK_DONE_DIR.

local key = os.getenv("SOAK_KEY") or "soak"
local total = tonumber(os.getenv("SOAK_REQUESTS") or "1000000")
local nthreads = tonumber(os.getenv("SOAK_THREADS") or "2")
local done_dir = os.getenv("SOAK_DONE_DIR") or "/tmp"

local threads = {}

function setup(thread)
    table.insert(threads, thread)
    thread:set("id", #threads)
end

local function body(model, stream, i)
    return string.format(
        '{"model":"%s","messages":[{"role":"user","content":' ..
        '"Soak request %d: say something short."}],"max_tokens":16%s}',
        model, i % 997, stream and
            ',"stream":true,"stream_options":{"include_usage":true}' or '')
end

local reqs = {}

function init(args)
    quota = math.floor(total / nthreads)
    sent, answered, ok, injected, other, probes = 0, 0, 0, 0, 0, 0
    samples = {}
    local mix = {
        {"soak", false}, {"soak", true}, {"soak", false}, {"soak", true},
        {"soak", false}, {"soak", true}, {"soak", false}, {"soak", true},
        {"soak-cut", true}, {"soak-429", false},
    }
    local headers = {["Content-Type"] = "application/json",
                     ["Authorization"] = "Bearer " .. key}
    for k, m in ipairs(mix) do
        reqs[k] = wrk.format("POST", "/v1/chat/completions", headers,
                             body(m[1], m[2], k))
    end
end

local probe = wrk.format("GET", "/healthz")

-- wrk calls request() once on the first thread's state before it runs,
-- to see whether the script pipelines (script_verify_request): that call
-- sends nothing, so it is not counted.
local verified = false

function request()
    if id == 1 and not verified then
        verified = true
        return reqs[1]
    end
    if sent >= quota then
        probes = probes + 1
        return probe
    end
    sent = sent + 1
    return reqs[sent % 10 + 1]
end

local function header(headers, name)
    return headers[name] or headers[name:lower()]
end

function response(status, headers, body)
    if probes > 0 and body == '{"status":"ok"}' then
        return -- a probe sent after the share, not a chat answer
    end
    answered = answered + 1
    local model = header(headers, "x-relay-model") or "?"
    local good = status == 200
    if good and body:sub(1, 5) == "data:" then
        good = body:find("data: [DONE]", 1, true) ~= nil
    end
    if good then
        ok = ok + 1
    elseif model == "soak-cut" or model == "soak-429" then
        injected = injected + 1
    else
        other = other + 1
        if #samples < 5 then
            table.insert(samples, string.format("%d %s %s", status, model,
                                                body:sub(1, 200)))
        end
    end
    if answered == quota then
        local f = io.open(done_dir .. "/" .. tostring(wrk.thread):gsub(
                              "[^%w]", "") .. ".done", "w")
        if f then
            f:close()
        end
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local s, a, o, inj, oth = 0, 0, 0, 0, 0
    local shown = {}
    for _, t in ipairs(threads) do
        s = s + t:get("sent")
        a = a + t:get("answered")
        o = o + t:get("ok")
        inj = inj + t:get("injected")
        oth = oth + t:get("other")
        local smp = t:get("samples")
        for _, line in ipairs(smp) do
            table.insert(shown, line)
        end
    end
    local e = summary.errors
    io.write(string.format(
        "SOAK sent=%d answered=%d ok=%d injected=%d other=%d seconds=%.1f " ..
        "p50_ms=%.3f p99_ms=%.3f socket_errors=%d\n", s, a, o, inj, oth,
        summary.duration / 1e6, latency:percentile(50) / 1000,
        latency:percentile(99) / 1000,
        e.connect + e.read + e.write + e.timeout))
    for _, line in ipairs(shown) do
        io.write("SOAK-OTHER " .. line:gsub("\n", " ") .. "\n")
    end
end
