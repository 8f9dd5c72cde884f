-- The second half of the benchmark's wrk script (fdbench/wrk.py puts the request first).
-- done() runs once, in wrk's main Lua state, after the report is printed. wrk's Lua API hands
-- out the latency histogram only one bucket at a time, each lookup scanning it from the start
-- (quadratic), so this reads wrk's `stats` struct through LuaJIT's FFI (wrk 4.x: count, limit,
-- min, max, then one counter per microsecond) and prints the non-empty buckets on one line.
-- Any failure prints "nohist": the text report is the fallback. MARK is replaced by wrk.py.
done = function(summary, latency, requests)
  local e = summary.errors
  local line = string.format("%s duration_us=%d requests=%d bytes=%d errors=%d,%d,%d,%d,%d",
    "MARK", summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout)
  local ok, hist = pcall(function()
    local ffi = require("ffi")
    ffi.cdef("typedef struct { uint64_t count, limit, min, max; uint64_t data[?]; } fdbench_stats;")
    local s = ffi.cast("fdbench_stats **", latency)[0]
    local parts = {}
    if s.count > 0 then
      for us = tonumber(s.min), tonumber(s.max) do
        local n = tonumber(s.data[us])
        if n > 0 then parts[#parts + 1] = us .. ":" .. n end
      end
    end
    return table.concat(parts, ",")
  end)
  io.write(line, ok and (" hist=" .. hist) or " nohist", "\n")
end
