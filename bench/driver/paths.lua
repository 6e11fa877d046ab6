-- wrk script fragment, prepended to report.lua for the route-count scale
-- runs: wrk ... -s paths+report.lua URL -- N
-- Request i goes to /bench/<letters of i mod N>: N distinct paths made only
-- of letters, so that no route templating (numeric ids, UUIDs, hex) folds
-- them into one route: the worst case for per-route state. With wrk -t1 the
-- counter is global, so min(N, requests) distinct paths are sent.

local routes = 0
local counter = 0

local function letters(n)
  local s = ""
  repeat
    s = string.char(97 + n % 26) .. s
    n = math.floor(n / 26)
  until n == 0
  return s
end

function init(args)
  routes = tonumber(args[1] or "0") or 0
end

function request()
  if routes > 0 then
    local path = "/bench/" .. letters(counter % routes)
    counter = counter + 1
    return wrk.format("GET", path)
  end
  return wrk.format("GET")
end

