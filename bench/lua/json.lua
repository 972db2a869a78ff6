-- wrk script: short non-streaming chat completions on keep-alive connections (scenario S).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"mock-gpt","stream":false,"max_tokens":16,' ..
           '"messages":[{"role":"user","content":"hi"}]}'
