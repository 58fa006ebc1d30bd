// Kedge UI: live updates over server-sent events and a few keyboard helpers. Pages work without it.
(function () {
  "use strict";
  var source = null;
  function setState(state, title) {
    var dot = document.getElementById("live-status");
    if (dot) { dot.dataset.state = state; dot.title = title; }
  }
  // Live regions are swapped out whole (outerHTML) when they refresh, so they are always found again by id: a refresh
  // sent to a region that was just replaced would be swapped into a detached element, and the page would keep
  // showing the older state.
  function current(id) { return id ? document.getElementById(id) : null; }
  // Refreshes a live region, but not while a request of its own (or of a form inside it) waits for its answer
  // (htmx drops the answer of a request whose element was swapped out): then once that answer is in.
  function refresh(id) {
    var el = current(id);
    if (!el) return;
    if (el.querySelector(".htmx-request") || el.classList.contains("htmx-request")) {
      el.addEventListener("htmx:afterRequest", function once() {
        el.removeEventListener("htmx:afterRequest", once);
        setTimeout(function () { refresh(id); }, 0);
      });
      return;
    }
    htmx.trigger(el, "kedge:changed");
  }
  // A refresh that was already on its way when a form inside the region sent a request must not replace the region
  // before that request is answered either: its answer (a toast into #flash) would be dropped with the form.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var target = e.detail.target;
    if (!target || !target.id || !target.hasAttribute("data-live")) return;
    if (target.querySelector(".htmx-request")) {
      e.detail.shouldSwap = false;
      refresh(target.id);
    }
  });
  // At most one refresh of a region per `data-live-every` milliseconds, and always one after its last change: a
  // throttle that dropped the changes inside its window would leave the page showing an older state.
  var pacing = {};
  function schedule(el) {
    var id = el.id;
    if (!id) return;
    var p = pacing[id] || (pacing[id] = { last: 0, timer: null });
    if (p.timer) return;
    var every = parseInt(el.getAttribute("data-live-every") || "500", 10);
    var wait = p.last + every - Date.now();
    var fire = function () { p.timer = null; p.last = Date.now(); refresh(id); };
    if (wait <= 0) fire(); else p.timer = setTimeout(fire, wait);
  }
  function connect() {
    if (!window.EventSource || !window.htmx || !document.querySelector("[data-live]")) return;
    source = new EventSource("/ui/events");
    source.addEventListener("hello", function () { setState("live", "Live updates on"); });
    source.addEventListener("app", function (e) {
      var key = e.data;
      // `data-live` names one application, `*` for all, or several separated by spaces (a promotion pipeline).
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var want = el.getAttribute("data-live").split(/\s+/);
        if (key === "*" || want.indexOf("*") >= 0 || want.indexOf(key) >= 0) schedule(el);
      });
    });
    source.onerror = function () { setState("off", "Live updates reconnecting"); };
  }
  window.addEventListener("beforeunload", function () { if (source) source.close(); });
  document.addEventListener("DOMContentLoaded", connect);
  document.addEventListener("keydown", function (e) {
    var t = e.target && e.target.tagName;
    if (e.key === "/" && t !== "INPUT" && t !== "TEXTAREA" && t !== "SELECT") {
      var s = document.getElementById("search");
      if (s) { e.preventDefault(); s.focus(); s.select(); }
    }
    if (e.key === "Escape") {
      document.querySelectorAll("details.menu[open]").forEach(function (d) { d.removeAttribute("open"); });
    }
  });
  // Toasts disappear after a while.
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "flash") {
      var toast = e.detail.target.lastElementChild;
      setTimeout(function () { if (toast) toast.remove(); }, 6000);
      document.querySelectorAll("details.menu[open]").forEach(function (d) { d.removeAttribute("open"); });
    }
  });
})();
