"use strict";
// The operator's screen: polls status (state, score, strip, events), shows the border, the
// NO SIGNAL cover and the strip of the last minutes' decisions; f flags a false alarm.
const $ = (id) => document.getElementById(id);
const COLORS = { aligned: "#3cdc3c", not_aligned: "#eb2828", uncertain: "#ffbe00" };
const LABELS = { aligned: "ALIGNED", not_aligned: "NOT ALIGNED", uncertain: "UNCERTAIN", no_signal: "NO SIGNAL" };
const POLL_MS = 250;
let strip = [];
let since = 0;
let historyS = 300;
let lastEvent = -1;
let failures = 0;

const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
const secs = (s) => (s < 90 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`);

function describe(e) {
  switch (e.kind) {
    case "green":
      return e.align_s === null ? "border green" : `border green: the bars took ${secs(e.align_s)} to align`;
    case "red": return "border red (not aligned)";
    case "no_signal": return `NO SIGNAL: ${e.note}`;
    case "signal": return `signal: ${e.note}`;
    case "flag": return `false alarm flagged (${LABELS[e.state] || e.state}, score ${e.score === null ? "--" : e.score.toFixed(3)})`;
    default: return e.kind;
  }
}

function showState(state, reason) {
  document.body.dataset.state = state;
  document.body.dataset.signal = state === "no_signal" ? "none" : "ok";
  $("screen").dataset.state = state;
  $("state").textContent = LABELS[state] || state;
  $("reason").textContent = reason || "";
}

function renderEvents(events) {
  const newest = events.length ? events[events.length - 1].id : -1;
  if (newest === lastEvent) return;
  lastEvent = newest;
  const items = (list) => list.slice().reverse().map((e) => {
    const li = document.createElement("li");
    li.className = e.kind;
    li.dataset.id = e.id;
    li.textContent = `${clock(e.t)}  ${describe(e)}`;
    return li;
  });
  const flags = events.filter((e) => e.kind === "flag");
  $("events").replaceChildren(...items(events));
  $("flags").replaceChildren(...items(flags));
  $("nflags").textContent = String(flags.length);
}

function drawStrip(now) {
  const canvas = $("strip");
  const w = canvas.clientWidth || canvas.width;
  if (canvas.width !== w) canvas.width = w;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const tick = Math.max(1, canvas.width / historyS / 4);
  for (const [t, state] of strip) {
    const x = canvas.width * (1 - (now - t) / historyS);
    ctx.fillStyle = COLORS[state] || "#666";
    ctx.fillRect(Math.floor(x), 0, Math.ceil(tick), canvas.height);
  }
}

function show(s) {
  showState(s.state, s.reason);
  $("score").textContent = s.score === null ? "--" : s.score.toFixed(3);
  $("fps").textContent = `${s.fps.toFixed(1)} (source ${s.source_fps.toFixed(1)})`;
  $("last").textContent = s.last_frame_time === null ? "--" : `${clock(s.last_frame_time)} (frame ${s.frame})`;
  $("threshold").textContent = s.threshold.toFixed(3);
  $("smoothing").textContent = `${s.smoothing.k} of ${s.smoothing.n}, margin ${s.smoothing.margin}`;
  $("dropped").textContent = `${s.frames_dropped} of ${s.frames_scored + s.frames_dropped}`;
  $("source").textContent = s.source;
  historyS = s.history_s;
  $("strip-from").textContent = `-${secs(historyS)}`;
  if (s.strip.length) {
    strip.push(...s.strip);
    since = s.strip[s.strip.length - 1][0];
  }
  strip = strip.filter(([t]) => t >= s.server_time - historyS);
  drawStrip(s.server_time);
  renderEvents(s.events);
}

async function poll() {
  try {
    const r = await fetch(`status?since=${since}`, { cache: "no-store" });
    if (!r.ok) throw new Error(`status ${r.status}`);
    show(await r.json());
    failures = 0;
  } catch (err) {
    failures += 1;
    if (failures >= 2) showState("no_signal", `no answer from the server (${err.message})`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function flag() {
  // the next poll lists it (the server logs it with the state and score on the screen now)
  fetch("flag", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
}

document.addEventListener("keydown", (e) => {
  if (e.key === "f" && !e.repeat && !e.ctrlKey && !e.metaKey && !e.altKey) flag();
});
$("flag").addEventListener("click", flag);
$("video").addEventListener("error", () => {
  setTimeout(() => { $("video").src = `stream.mjpg?t=${Date.now()}`; }, 1000);
});
poll();
