// The relay's demo page: a streamed completion with fetch + ReadableStream, and a channel
// with EventSource. No framework: the mechanics stay visible.
"use strict";
const $ = (id) => document.getElementById(id);

// -- chat: POST, then read the event stream as it arrives -------------------------------------
async function send() {
  const answer = $("answer");
  answer.textContent = "";
  answer.dataset.done = "0";
  $("ttft").textContent = "-";
  $("reads").textContent = "0";
  $("chat-status").textContent = "streaming";
  const started = performance.now();
  let first = null, reads = 0, buffer = "";
  const response = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: $("model").value, stream: true,
                           messages: [{ role: "user", content: $("prompt").value }] }),
  });
  if (!response.ok) {
    $("chat-status").textContent = `error ${response.status}: ${await response.text()}`;
    answer.dataset.done = "1";
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const onEvent = (event) => {
    for (const line of event.split("\n")) {  // comments (heartbeats) are skipped
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trimStart();
      if (data === "[DONE]") return;
      const doc = JSON.parse(data);
      if (doc.error) { $("chat-status").textContent = `error: ${doc.error.message}`; return; }
      const delta = doc.choices && doc.choices[0] && doc.choices[0].delta.content;
      if (delta) {
        if (first === null) {
          first = performance.now();
          $("ttft").textContent = `${Math.round(first - started)} ms`;
        }
        answer.textContent += delta;
      }
    }
  };
  for (;;) {
    const { value, done } = await reader.read();  // each read: what one network read brought
    if (done) break;
    $("reads").textContent = String(++reads);
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {  // an event ends with a blank line
      onEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
  $("chat-status").textContent = "done";
  answer.dataset.done = "1";
}

// -- channel: EventSource reconnects by itself, with Last-Event-ID ----------------------------
let source = null;
function subscribe() {
  if (source) source.close();
  const channel = $("channel").value;
  $("channel-name").textContent = channel;
  $("events").textContent = "";
  source = new EventSource(`/events/${encodeURIComponent(channel)}`);
  const show = (text, id) => {
    const item = document.createElement("li");
    item.textContent = id ? `${id} · ${text}` : text;
    item.dataset.id = id;
    item.dataset.data = text;
    $("events").appendChild(item);
    if (id) $("last-id").textContent = id;
  };
  source.onopen = () => { $("channel-status").textContent = "open"; };
  source.onerror = () => { $("channel-status").textContent = "reconnecting"; };
  source.onmessage = (e) => show(e.data, e.lastEventId);
  source.addEventListener("relay.reset", () => show("(reset: some events were lost)", ""));
}

async function publish() {
  const channel = $("channel").value;
  await fetch(`/events/${encodeURIComponent(channel)}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ data: $("message").value }),
  });
}

$("send").addEventListener("click", send);
$("subscribe").addEventListener("click", subscribe);
$("publish").addEventListener("click", publish);
subscribe();
