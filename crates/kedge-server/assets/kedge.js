// Kedge UI: live updates over server-sent events and a few keyboard helpers. Pages work without it.
(function () {
  "use strict";
  var source = null;
  function setState(state, title) {
    var dot = document.getElementById("live-status");
    if (dot) { dot.dataset.state = state; dot.title = title; }
  }
  // Refreshes a live region, but not while a form inside it waits for its answer (htmx drops the answer of a
  // request whose form was swapped out, and the user would miss the confirmation).
  function refresh(el) {
    if (el.querySelector(".htmx-request") || el.classList.contains("htmx-request")) {
      el.addEventListener("htmx:afterRequest", function once() {
        el.removeEventListener("htmx:afterRequest", once);
        setTimeout(function () { htmx.trigger(el, "kedge:changed"); }, 0);
      });
      return;
    }
    htmx.trigger(el, "kedge:changed");
  }
  function connect() {
    if (!window.EventSource || !window.htmx || !document.querySelector("[data-live]")) return;
    source = new EventSource("/ui/events");
    source.addEventListener("hello", function () { setState("live", "Live updates on"); });
    source.addEventListener("app", function (e) {
      var key = e.data;
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var want = el.getAttribute("data-live");
        if (key === "*" || want === "*" || want === key) refresh(el);
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
