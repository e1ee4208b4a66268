// The live socket carries hints, never HTML: {"topic": "events"} means "what you show about
// events may have changed". Elements re-fetch their own role-aware fragment with
//   hx-trigger="live:events from:body throttle:500ms, live:reconnect from:body"
// so a burst of events costs a page at most a couple of requests a second. After a dropped
// socket reconnects, everything re-fetches ("live:reconnect"). Pages work without any of it.
(function () {
  let opened = false;
  function state(text) {
    const el = document.getElementById("live-state");
    if (el) el.textContent = text;
  }
  document.addEventListener("htmx:wsBeforeMessage", function (e) {
    e.preventDefault(); // not HTML to swap
    let hint;
    try { hint = JSON.parse(e.detail.message); } catch (_) { return; }
    if (!hint || !hint.topic) return;
    const kind = String(hint.topic).split(":")[0];
    htmx.trigger(document.body, "live:" + kind, hint);
    if (kind !== hint.topic) htmx.trigger(document.body, "live:" + hint.topic.replace(":", "-"), hint);
  });
  document.addEventListener("htmx:wsOpen", function () {
    state("live");
    if (opened) htmx.trigger(document.body, "live:reconnect");
    opened = true;
  });
  document.addEventListener("htmx:wsClose", function () { state("reconnecting…"); });
})();
