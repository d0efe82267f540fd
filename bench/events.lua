-- POST /voice/events with AT's end-of-call notification; a new call each time, so each is stored.
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
  local body = "isActive=0&direction=Inbound&callSessionState=Completed&status=Success" ..
    "&callerNumber=%2B254712345678&destinationNumber=%2B254711000000&durationInSeconds=42&amount=2.5000" ..
    "&currencyCode=KES&hangupCause=NORMAL_CLEARING&callerCountryCode=254&callerCarrierName=Safaricom" ..
    "&callStartTime=2026-11-27+08%3A00%3A00&sessionId=ATVId_ev" .. string.format("%s_%d_%d", run, id, counter)
  return wrk.format("POST", "/voice/events?token=" .. token,
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
