-- wrk script: every request is one streamed chat completion whose events the mock writes back
-- to back (scenario T). BENCH_TOKENS sets the content chunks per stream.
--   BENCH_TOKENS=1000 wrk -t1 -c50 -d10s -s bench/lua/stream.lua http://127.0.0.1:8080/v1/chat/completions
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "text/event-stream"
local tokens = os.getenv("BENCH_TOKENS") or "1000"
wrk.body = '{"model":"mock-gpt","stream":true,"max_tokens":' .. tokens ..
           ',"messages":[{"role":"user","content":"hi"}]}'
