// The relay's demo page: a streamed completion with fetch + ReadableStream, and a channel
// with EventSource. No framework: the mechanics stay visible.
"use strict";
const $ = (id) => document.getElementById(id);

// -- chat: POST, then read the event stream as it arrives; resume it if the connection drops --
// The request asks for a resumable stream (X-Relay-Resumable: 1): the relay numbers the events
// (id: 1, 2, ...) and keeps them, so when a read fails the page asks GET /v1/streams/{id} with
// the last id it saw and carries on: no token lost, none repeated.
let streamId = null;
let current = null;  // the state of the stream being read (Stop marks it)

async function send() {
  const answer = $("answer");
  answer.textContent = "";
  answer.dataset.done = "0";
  for (const id of ["ttft", "stream-id"]) $(id).textContent = "-";
  for (const id of ["reads", "resumes"]) $(id).textContent = "0";
  $("chat-status").textContent = "streaming";
  $("raw").textContent = "";
  const state = { started: performance.now(), first: null, reads: 0, lastId: "0", done: false,
                  failed: false, stopped: false };
  current = state;
  let response = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", "x-relay-resumable": "1" },
    body: JSON.stringify({ model: $("model").value, stream: true,
                           messages: [{ role: "user", content: $("prompt").value }] }),
  });
  streamId = response.headers.get("x-relay-stream-id");
  $("stream-id").textContent = streamId || "-";
  for (let resumes = 0; ; ) {
    if (!response.ok) {
      if (response.status !== 204)  // 204: the stream had ended and we had all of it
        $("chat-status").textContent = `error ${response.status}: ${await response.text()}`;
      break;
    }
    const cut = await readEvents(response, state);
    if (!cut || !streamId || state.done || resumes >= 20) break;
    $("resumes").textContent = String(++resumes);
    $("chat-status").textContent = "resuming";
    rawNote(`resume: GET /v1/streams/${streamId} with Last-Event-ID: ${state.lastId}`);
    response = await resume(streamId, state.lastId);
  }
  if (state.done && !state.failed) $("chat-status").textContent = "done";
  answer.dataset.done = "1";
}

async function resume(id, lastId) {
  for (let wait = 100; ; wait = Math.min(wait * 2, 2000)) {
    try {
      return await fetch(`/v1/streams/${id}`, { headers: { "last-event-id": lastId } });
    } catch (e) {  // the relay is not reachable yet: try again
      await new Promise((ok) => setTimeout(ok, wait));
    }
  }
}

// Reads one response's events; true if it was cut (or told to resume) before the end.
async function readEvents(response, state) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();  // each read: what one network read brought
    } catch (e) {
      return true;  // the connection dropped
    }
    if (chunk.done) return !state.done;
    $("reads").textContent = String(++state.reads);
    const text = decoder.decode(chunk.value, { stream: true });
    if ($("raw-toggle").checked) rawRow(state.reads, chunk.value.length, text);
    buffer += text.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {  // an event ends with a blank line
      if (onEvent(buffer.slice(0, end), state)) return true;
      buffer = buffer.slice(end + 2);
    }
  }
}

// One event: its id, then its data. True when the relay says to resume elsewhere.
function onEvent(event, state) {
  let data = null, type = "message";
  for (const line of event.split("\n")) {  // comments (heartbeats) are skipped
    if (line.startsWith("id:")) state.lastId = line.slice(3).trim();
    else if (line.startsWith("event:")) type = line.slice(6).trim();
    else if (line.startsWith("data:")) data = line.slice(5).trimStart();
  }
  if (type === "relay.resume") return true;  // the relay drains: resume (maybe elsewhere)
  if (data === null) return false;
  if (data === "[DONE]") { state.done = true; return false; }
  const doc = JSON.parse(data);
  if (doc.error) {
    state.done = state.failed = true;
    // A cancel the user asked for (Stop) ends the stream with a "cancelled" error event: for
    // the relay's other readers it is news, for this page it is what was asked.
    const stopped = state.stopped && doc.error.code === "cancelled";
    $("chat-status").textContent = stopped ? "stopped" : `error: ${doc.error.message}`;
    return false;
  }
  const delta = doc.choices && doc.choices[0] && doc.choices[0].delta.content;
  if (delta) {
    if (state.first === null) {
      state.first = performance.now();
      $("ttft").textContent = `${Math.round(state.first - state.started)} ms`;
    }
    $("answer").textContent += delta;
  }
  return false;
}

async function stop() {
  if (!streamId || !current || current.done) return;
  current.stopped = true;
  $("chat-status").textContent = "stopping";
  await fetch(`/v1/streams/${streamId}/cancel`, { method: "POST" });
}

// -- raw bytes: each read as it came off the network, \r and \n shown (the toggle) ------------
// One row per read: an event may come whole in one read, or several in one, or be split over
// two; heartbeats (": heartbeat") come between events; the relay's "id:" lines are what a
// resume sends back as Last-Event-ID.
const MAX_ROWS = 500;

function rawRow(n, bytes, text) {
  const row = document.createElement("li");
  const label = document.createElement("span");
  label.className = "read";
  label.textContent = `read ${n} · ${bytes} B`;
  const body = document.createElement("code");
  body.textContent = text.replace(/\r/g, "\\r").replace(/\n/g, "\\n\n").replace(/\n$/, "");
  row.append(label, body);
  addRaw(row);
}

function rawNote(text) {
  const row = document.createElement("li");
  row.className = "note";
  row.textContent = text;
  addRaw(row);
}

function addRaw(row) {
  const list = $("raw");
  list.appendChild(row);
  while (list.children.length > MAX_ROWS) list.firstChild.remove();
}

function showRaw() {
  $("raw").hidden = !$("raw-toggle").checked;
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
$("stop").addEventListener("click", stop);
$("raw-toggle").addEventListener("change", showRaw);
showRaw();
$("subscribe").addEventListener("click", subscribe);
$("publish").addEventListener("click", publish);
subscribe();
