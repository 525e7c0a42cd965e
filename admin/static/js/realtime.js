// reelscore admin: live updates. Opens ONE EventSource on /events when the page has
// elements that watch announcements, and refreshes those elements when a matching event
// arrives. The server relays the database's NOTIFYs (sql/700-realtime.sql); on reconnect the
// browser sends Last-Event-ID and the server replays what the page missed from the outbox.
//
// Markup (all optional except data-rs-on):
//   <body data-rs-since="{{ realtime_since() }}">        the seq the page was rendered at
//   <div data-rs-on="metric_values:42 metric_definition profile:3"   kinds, optionally :ids
//        data-rs-get="/playground/score?movie=42"          GET this URL into the element
//        hx-get="..." hx-trigger="rs:changed"              ...or let htmx do it
//        data-rs-notice="Changed by {by} (event {seq})"    ...or show this text (and unhide)
//        data-rs-ignore-by="{{ user }}">                   ignore changes made by this actor
// An event matches an element when its kind is listed and either no ids are given, the
// event says "more" (its id list is incomplete), or one of its ids is listed. Every event
// is also dispatched on document as a "reelscore:event" CustomEvent (detail = the event).
(function () {
  "use strict";
  const DEBOUNCE_MS = 200;
  const state = { source: null, lastSeq: null, pending: new Map() };
  window.reelscoreRealtime = state;

  function parseWatch(el) {
    const spec = new Map();
    for (const token of (el.dataset.rsOn || "").split(/\s+/)) {
      if (!token) continue;
      const [kind, ids] = token.split(":");
      if (!spec.has(kind)) spec.set(kind, new Set());
      if (ids) for (const id of ids.split(",")) if (id) spec.get(kind).add(Number(id));
    }
    return spec;
  }

  function matches(el, ev) {
    if (ev.kind === "reset") return true;  // events were lost: refresh everything watched
    const spec = parseWatch(el);
    if (!spec.has(ev.kind)) return false;
    if (el.dataset.rsIgnoreBy && ev.by === el.dataset.rsIgnoreBy) return false;
    const want = spec.get(ev.kind);
    if (want.size === 0 || ev.more) return true;
    return (ev.ids || []).some((id) => want.has(Number(id)));
  }

  function fill(template, ev) {
    return template.replace(/\{(\w+)\}/g, (m, key) => (ev[key] === undefined || ev[key] === null ? "" : String(ev[key])));
  }

  function refresh(el, ev) {
    el.dataset.rsLastSeq = String(ev.seq);
    if (el.dataset.rsNotice !== undefined) {
      el.textContent = fill(el.dataset.rsNotice ||
        (ev.kind === "reset" ? "Some updates were missed: reload the page." : "Changed by {by}."), ev);
      el.hidden = false;
    }
    const url = el.dataset.rsGet;
    if (url) {
      if (window.htmx) {
        window.htmx.ajax("GET", url, { target: el, swap: "innerHTML" });
      } else {
        fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } })
          .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
          .then((html) => { el.innerHTML = html; })
          .catch(() => {});
      }
    }
    el.dispatchEvent(new CustomEvent("rs:changed", { bubbles: false, detail: ev }));
  }

  // Several events in a burst refresh an element once (with the newest event).
  function schedule(el, ev) {
    const prev = state.pending.get(el);
    state.pending.set(el, ev);
    if (prev) return;
    setTimeout(() => {
      const last = state.pending.get(el);
      state.pending.delete(el);
      if (last && el.isConnected) refresh(el, last);
    }, DEBOUNCE_MS);
  }

  function onEvent(ev) {
    if (ev.kind !== "reset") state.lastSeq = ev.seq;
    document.dispatchEvent(new CustomEvent("reelscore:event", { detail: ev }));
    for (const el of document.querySelectorAll("[data-rs-on]")) {
      if (matches(el, ev)) schedule(el, ev);
    }
  }

  function connect() {
    if (state.source || !document.querySelector("[data-rs-on]") || !window.EventSource) return;
    const since = document.body.dataset.rsSince;
    const url = "/events" + (since ? "?since=" + encodeURIComponent(since) : "");
    const source = new EventSource(url, { withCredentials: true });
    source.onmessage = (msg) => {
      try { onEvent(JSON.parse(msg.data)); } catch (e) { /* malformed event: ignore */ }
    };
    // On a dropped stream the browser reconnects by itself with Last-Event-ID. A closed
    // stream (401 after logout, 503) is not retried by the browser: retry slowly here.
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        state.source = null;
        if (state.lastSeq !== null) document.body.dataset.rsSince = String(state.lastSeq);
        setTimeout(connect, 10000);
      }
    };
    state.source = source;
  }

  state.matches = matches;   // exposed for tests and page scripts
  state.connect = connect;
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", connect);
  else connect();
  // Pages that add watched elements later (htmx swaps) call reelscoreRealtime.connect().
  document.addEventListener("htmx:afterSettle", connect);
})();
