-- wrk script for benches/handover.py: counts completed responses per second
-- of wall time (os.time()), and non-2xx responses apart, then prints them as
-- "persec EPOCH_SECOND RESPONSES NON2XX" lines after wrk's summary.
-- Works with any -t (each thread keeps its own table; done() adds them up).
-- Note: a response() callback makes wrk parse every response into Lua, which
-- costs client CPU: absolute req/s under this script are lower than without.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

ok = {}
bad = {}

function response(status, headers, body)
    local s = os.time()
    if status >= 200 and status < 400 then
        ok[s] = (ok[s] or 0) + 1
    else
        bad[s] = (bad[s] or 0) + 1
    end
end

function done(summary, latency, requests)
    local tot_ok, tot_bad, keys = {}, {}, {}
    for _, t in ipairs(threads) do
        for s, n in pairs(t:get("ok") or {}) do
            if not tot_ok[s] and not tot_bad[s] then table.insert(keys, s) end
            tot_ok[s] = (tot_ok[s] or 0) + n
        end
        for s, n in pairs(t:get("bad") or {}) do
            if not tot_ok[s] and not tot_bad[s] then table.insert(keys, s) end
            tot_bad[s] = (tot_bad[s] or 0) + n
        end
    end
    table.sort(keys)
    for _, s in ipairs(keys) do
        io.write(string.format("persec %d %d %d\n", s, tot_ok[s] or 0, tot_bad[s] or 0))
    end
end
