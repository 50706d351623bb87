-- wrk script for benches/webhook_load.sh: signed GitHub `push` deliveries to
-- POST /webhooks/github, each with its own X-GitHub-Delivery id.
--
--   wrk -t2 -c32 -d10s -s webhook_load.lua URL -- BODIES_FILE RUN_TAG RATE OUT_FILE THREADS
--
-- BODIES_FILE  one delivery per line: `sha256=<hex> <raw JSON body>`, the signature made
--              with the repository's webhook secret by the shell script; sent in turn
-- RUN_TAG    prefix of the delivery ids; unique per run, so runs never collide
-- RATE       total requests/s to pace at across all threads; 0 = as fast as possible
-- OUT_FILE   where done() writes the status counts and the job ids of accepted deliveries
--            (one `key value` per line) for the shell script to check against SQLite
-- THREADS    the -t given to wrk (the rate is split evenly between threads)
--
-- Pacing (RATE > 0): each thread keeps an absolute schedule (start + k * interval) and
-- delay() returns the time left until the next slot, so a slow response does not lower the
-- offered rate as long as some connection is free. wrk measures latency from the moment a
-- request is written, so a request sent after its slot (every connection was busy) hides the
-- wait; those are counted as `late` (more than 1 ms behind schedule) and reported.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- main state: one entry per thread, numbered for unique delivery ids
local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

-- per-thread state
local bodies, signatures, tag
local counter = 0
local interval, next_slot = nil, nil
local nthreads = 1

function init(args)
  bodies, signatures = {}, {}
  for line in io.lines(args[1]) do
    local sig, body = string.match(line, "^(%S+) (.+)$")
    signatures[#signatures + 1] = sig
    bodies[#bodies + 1] = body
  end
  assert(#bodies > 0, "no bodies in " .. args[1])
  tag = args[2]
  local rate = tonumber(args[3] or "0") or 0
  out_path = args[4] -- global: done() runs in the main state and reads it from a thread
  nthreads = tonumber(args[5] or "1") or 1
  -- threads start apart in the list, so concurrent pushes name different commits
  counter = math.floor(tid * #bodies / nthreads)
  if rate > 0 then
    interval = 1000.0 * nthreads / rate -- ms between this thread's requests
  end
  -- counters read back in done()
  codes = {}        -- status code -> count
  accepted = 0      -- 202 with "result":"accepted" (a delivery and its job were recorded)
  other202 = 0      -- 202 for anything else (ignored, bare202's empty body)
  job_ids = {}      -- job ids from accepted bodies
  late = 0          -- paced requests that left more than 1 ms after their slot
  sent = 0
end

function delay()
  if not interval then
    return 0
  end
  local t = now_ms()
  if not next_slot then
    next_slot = t
  end
  local wait = next_slot - t
  next_slot = next_slot + interval
  if wait < -1 then
    late = late + 1
  end
  if wait <= 0 then
    return 0
  end
  return math.floor(wait + 0.5)
end

function request()
  counter = counter + 1
  sent = sent + 1
  local i = counter % #bodies + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "GitHub-Hookshot/bench",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = tag .. "-" .. tid .. "-" .. sent,
    ["X-GitHub-Hook-ID"] = "292430182",
    ["X-Hub-Signature-256"] = signatures[i],
  }, bodies[i])
end

function response(status, headers, resp_body)
  codes[status] = (codes[status] or 0) + 1
  if status == 202 then
    local id = resp_body and string.match(resp_body, '"result":"accepted","jobs":%[(%d+)')
    if id then
      accepted = accepted + 1
      job_ids[#job_ids + 1] = id
    else
      other202 = other202 + 1
    end
  end
end

function done(summary, latency, requests)
  local total_codes, total_accepted, total_other202, total_late, total_sent = {}, 0, 0, 0, 0
  local ids = {}
  for _, t in ipairs(threads) do
    for code, n in pairs(t:get("codes") or {}) do
      total_codes[code] = (total_codes[code] or 0) + n
    end
    total_accepted = total_accepted + (t:get("accepted") or 0)
    total_other202 = total_other202 + (t:get("other202") or 0)
    total_late = total_late + (t:get("late") or 0)
    total_sent = total_sent + (t:get("sent") or 0)
    for _, id in ipairs(t:get("job_ids") or {}) do
      ids[#ids + 1] = id
    end
  end
  local secs = summary.duration / 1e6
  local lines = {
    string.format("requests %d", summary.requests),
    string.format("sent %d", total_sent),
    string.format("duration_s %.3f", secs),
    string.format("rps %.1f", summary.requests / secs),
    string.format("p50_ms %.3f", latency:percentile(50) / 1000),
    string.format("p90_ms %.3f", latency:percentile(90) / 1000),
    string.format("p99_ms %.3f", latency:percentile(99) / 1000),
    string.format("p999_ms %.3f", latency:percentile(99.9) / 1000),
    string.format("max_ms %.3f", latency.max / 1000),
    string.format("mean_ms %.3f", latency.mean / 1000),
    string.format("errors_connect %d", summary.errors.connect),
    string.format("errors_read %d", summary.errors.read),
    string.format("errors_write %d", summary.errors.write),
    string.format("errors_timeout %d", summary.errors.timeout),
    string.format("errors_status %d", summary.errors.status),
    string.format("accepted %d", total_accepted),
    string.format("other202 %d", total_other202),
    string.format("late %d", total_late),
  }
  local codes_str = {}
  for code, n in pairs(total_codes) do
    lines[#lines + 1] = string.format("status_%d %d", code, n)
    codes_str[#codes_str + 1] = string.format("%d=%d", code, n)
  end
  table.sort(codes_str)
  io.write("status codes: " .. table.concat(codes_str, " ") ..
    string.format("   accepted(202 + job id)=%d   late sends=%d\n", total_accepted, total_late))
  local out_file = threads[1] and threads[1]:get("out_path")
  if out_file and out_file ~= "" then
    local f = assert(io.open(out_file, "w"))
    f:write(table.concat(lines, "\n"), "\n")
    for _, id in ipairs(ids) do
      f:write("job ", id, "\n")
    end
    f:close()
  end
end
