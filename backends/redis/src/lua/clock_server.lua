-- Time from the server: integer microseconds (exact in a double until about the year 2255).
local function tg_time()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
