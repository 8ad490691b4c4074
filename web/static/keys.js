// Keyboard shortcuts only; every action also works without this file.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  function focusKey(name) {
    var el = document.querySelector('[data-key="' + name + '"]');
    if (el) { el.focus(); if (el.select) { el.select(); } return true; }
    return false;
  }
  var rows = Array.prototype.slice.call(document.querySelectorAll(".theme-row"));
  var current = -1;
  function select(i) {
    if (!rows.length) { return; }
    current = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r, n) { r.classList.toggle("selected", n === current); });
    rows[current].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(document.activeElement)) { return; }
    var page = document.body.getAttribute("data-page");
    var link;
    switch (ev.key) {
      case "/": if (focusKey("search")) { ev.preventDefault(); } break;
      case "j":
        if (page === "list") { select(current + 1); }
        else if ((link = document.querySelector('[data-key="next"]'))) { window.location = link.href; }
        break;
      case "k":
        if (page === "list") { select(current - 1); }
        else if ((link = document.querySelector('[data-key="prev"]'))) { window.location = link.href; }
        break;
      case "Enter": if (page === "list" && current >= 0) { window.location = rows[current].getAttribute("data-href"); } break;
      case "c": if (focusKey("confirm")) { ev.preventDefault(); } break;
      case "r": if (focusKey("reject")) { ev.preventDefault(); } break;
      case "u":
        var undo = document.getElementById("undo-form");
        if (undo && window.confirm(undo.querySelector("button").title + "?")) { undo.submit(); }
        break;
    }
  });
}());
