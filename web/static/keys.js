// Keyboard shortcuts only; every action also works without this file.
// List: j/k select, Enter open, x tick, c confirm the ticked, r reject the ticked (type a reason, Enter),
// m merge the ticked, n first undecided theme. Theme page: c confirm (and go on), e edit the name first,
// r reject (type a reason, Enter), a rename, m merge others in, s split, n next undecided, j/k next/previous.
// Everywhere: / search, u undo.
(function () {
  "use strict";
  function typing(el) {  // a box ticked with the mouse keeps the focus, but takes no letters
    return el && (el.isContentEditable || /^(TEXTAREA|SELECT)$/.test(el.tagName)
                  || (el.tagName === "INPUT" && !/^(checkbox|radio|button|submit)$/.test(el.type)));
  }
  function onPage(el) {  // nothing of its own focused: Enter is the list's (else a link's or a button's)
    return !el || el === document.body || el === document.documentElement;
  }
  function el(name) { return document.querySelector('[data-key="' + name + '"]'); }
  function focusKey(name) {
    var target = el(name);
    if (target) { target.focus(); if (target.select) { target.select(); } return true; }
    return false;
  }
  function press(name) {
    var target = el(name);
    if (target) { target.click(); return true; }
    return false;
  }
  function go(name) {
    var link = el(name);
    if (link) { window.location = link.href; return true; }
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
  function ticked() { return document.querySelectorAll('.theme-row input[name="themes"]:checked').length; }
  function tickSelected(only) {
    // with nothing ticked, the selected row is the one meant
    var box = current >= 0 ? rows[current].querySelector('input[name="themes"]') : null;
    if (box && (!only || !ticked())) { box.checked = only ? true : !box.checked; }
  }
  // Enter in the reason box rejects the ticked themes (not merges them)
  var reason = el("bulk-reason");
  if (reason) {
    reason.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { ev.preventDefault(); press("bulk-reject"); }
    });
  }
  document.addEventListener("keydown", function (ev) {
    var split = el("split");  // s, then Enter: the split's preview with the parts chosen (a select takes no Enter)
    if (ev.key === "Enter" && split && document.activeElement === split && split.form) {
      ev.preventDefault();
      split.form.requestSubmit();
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(document.activeElement)) { return; }
    var list = document.body.getAttribute("data-page") === "list";
    var done = true;
    switch (ev.key) {
      case "/": done = focusKey("search"); break;
      case "j": if (list) { select(current + 1); } else { go("next"); } break;
      case "k": if (list) { select(current - 1); } else { go("prev"); } break;
      case "n": go("undecided"); break;
      case "Enter":
        if (list && current >= 0 && onPage(document.activeElement)) {
          window.location = rows[current].getAttribute("data-href");
        } else { done = false; }
        break;
      case "x": if (list) { tickSelected(false); } break;
      case "c":
        if (list) { tickSelected(true); }
        done = (!list || ticked() > 0) && press(list ? "bulk-confirm" : "confirm");
        break;
      case "r": if (list) { tickSelected(true); } done = focusKey(list ? "bulk-reason" : "reject"); break;
      case "m": if (list) { tickSelected(true); } done = focusKey(list ? "merge-name" : "merge"); break;
      case "e": done = focusKey("name"); break;
      case "a": done = focusKey("rename"); break;
      case "s": done = focusKey("split"); break;
      case "u":
        var undo = document.getElementById("undo-form");
        if (undo && window.confirm(undo.querySelector("button").title + "?")) { undo.submit(); }
        break;
      default: done = false;
    }
    if (done) { ev.preventDefault(); }
  });
}());
