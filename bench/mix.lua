-- AT's proportions for a menu call: answered + a digits callback on /voice/instruct, then the final
-- notification on /voice/instruct and the same on /voice/events: 2 instruct (XML), 2 final (stored).
local counter = 0
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local token = os.getenv("BENCH_TOKEN") or ""
local run = os.getenv("BENCH_RUN") or "0"
local form = "application/x-www-form-urlencoded"
request = function()
  counter = counter + 1
  local call = math.floor(counter / 4)
  local session = "ATVId_mix" .. string.format("%s_%d_%d", run, id, call)
  local common = "direction=Inbound&callerNumber=%2B254712345678&destinationNumber=%2B254711000000&sessionId=" .. session
  local phase = counter % 4
  if phase == 0 then
    return wrk.format("POST", "/voice/instruct?token=" .. token, {["Content-Type"] = form},
      "isActive=1&callSessionState=Answered&" .. common)
  elseif phase == 1 then
    return wrk.format("POST", "/voice/instruct?step=welcome&attempt=1&token=" .. token, {["Content-Type"] = form},
      "isActive=1&dtmfDigits=1&" .. common)
  end
  local final = "isActive=0&callSessionState=Completed&durationInSeconds=30&amount=2.0&currencyCode=KES" ..
    "&hangupCause=NORMAL_CLEARING&" .. common
  local path = phase == 2 and "/voice/instruct?token=" or "/voice/events?token="
  return wrk.format("POST", path .. token, {["Content-Type"] = form}, final)
end
