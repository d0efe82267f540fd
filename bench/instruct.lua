-- POST /voice/instruct as AT does while a call is active: a menu step's first render.
local counter = 0
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local token = os.getenv("BENCH_TOKEN") or ""
local run = os.getenv("BENCH_RUN") or "0"
request = function()
  counter = counter + 1
  local body = "isActive=1&direction=Inbound&callSessionState=Active&callerNumber=%2B254712345678" ..
    "&destinationNumber=%2B254711000000&sessionId=ATVId_bench" .. string.format("%s_%d_%d", run, id, counter)
  return wrk.format("POST", "/voice/instruct?token=" .. token,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
