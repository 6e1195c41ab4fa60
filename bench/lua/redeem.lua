-- POST /v1/tickets/redeem, one pre-minted ticket per request (file from the harness).
local tickets = {}
for line in io.lines(os.getenv("BENCH_TICKETS")) do tickets[#tickets + 1] = line end
local origin = os.getenv("BENCH_ORIGIN")
local index = 0
local thread_count = 0
local threads = {}

setup = function(thread)
  thread_count = thread_count + 1
  thread:set("offset", thread_count - 1)
  table.insert(threads, thread)
end

init = function(args)
  index = offset
  step = tonumber(os.getenv("BENCH_THREADS"))
end

request = function()
  local ticket = tickets[(index % #tickets) + 1]
  index = index + step
  local body = '{"ticket":"' .. ticket .. '","origin":"' .. origin .. '"}'
  return wrk.format("POST", "/v1/tickets/redeem", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"),
  }, body)
end
