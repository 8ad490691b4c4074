// The Teach queue without page reloads: an answer is posted in the background, the next question shows at
// once, and the next batch is fetched while the last questions of this one are answered. Without this file every answer is a plain form
// post that comes back to /teach.
(function () {
  "use strict";
  var list = document.getElementById("questions");
  if (!list) { return; }
  var skipped = [];
  var pending = [];  // answers still being posted: the next batch is asked for only once they are stored
  var AHEAD = 3;     // the next batch is asked for while this many questions are still open, so it is ready
  var loading = false;
  var next = null;   // the next batch's questions (HTML) once fetched, until this batch runs out
  var wanted = false;  // this batch ran out before the next one came
  function questions() { return Array.prototype.slice.call(list.querySelectorAll(".question:not(.done)")); }
  function show() {
    var open = questions();
    Array.prototype.forEach.call(list.querySelectorAll(".question.done"), function (q) {
      q.hidden = true;
      q.classList.remove("current");
    });
    open.forEach(function (q, n) { q.hidden = n > 0; q.classList.toggle("current", n === 0); });
    if (open.length <= AHEAD) { fetchNext(); }
    if (!open.length) {
      if (next !== null) { swapIn(); } else { wanted = true; }
    }
  }
  function fetchNext() {
    if (loading || next !== null) { return; }
    loading = true;
    // the questions still open are not asked again: their answers may not be stored yet
    var skip = skipped.concat(questions().map(function (q) { return q.getAttribute("data-segment"); }));
    var url = "/teach" + (skip.length ? "?" + skip.map(function (s) { return "skip=" + s; }).join("&") : "");
    var waiting = pending;
    pending = [];
    Promise.all(waiting).then(function () {
      return fetch(url, { credentials: "same-origin" });
    }).then(function (r) { return r.text(); }).then(function (html) {
      loading = false;
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("questions");
      next = fresh ? fresh.innerHTML : "";
      if (wanted) { swapIn(); }
    }, function () { loading = false; });
  }
  function swapIn() {
    var html = next;
    next = null;
    wanted = false;
    if (html) { list.innerHTML = html; wire(); show(); }
  }
  function answer(form, button) {
    var data = new FormData(form);
    if (button && button.name) { data.append(button.name, button.value); }
    data.set("back", "/undo-form");  // the server's answer is not shown: a small page, not a new batch
    var li = form.closest(".question");
    li.classList.add("done");
    // form.action would be the hidden field named "action"
    var posted = fetch(form.getAttribute("action"), { method: "POST", body: data, credentials: "same-origin" });
    pending.push(posted.then(function () {}, function () {}));
    show();
    outstanding += 1;
    posted.then(settled, settled);
    posted.then(function (r) {
      if (!r.ok) {
        li.classList.remove("done");
        li.hidden = false;
        r.text().then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var errors = doc.querySelector(".errors");
          var note = li.querySelector(".error") || li.appendChild(document.createElement("p"));
          note.className = "error";
          note.setAttribute("role", "alert");
          note.textContent = errors ? errors.textContent.trim() : "Not recorded.";
          show();
          var first = li.querySelector("input:not([type=hidden]), button");  // the coder answers it again
          if (first) { first.focus(); }
        });
      }
    });
  }
  var outstanding = 0;  // answers posted and not yet answered by the server
  function settled() {
    // once every answer is stored, "Undo my last" in the header is fetched again: it takes back the last
    // answer, not the decision the page was loaded after
    outstanding -= 1;
    if (outstanding) { return; }
    fetch("/undo-form?back=" + encodeURIComponent(window.location.pathname), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("undo-slot");
        var slot = document.getElementById("undo-slot");
        if (fresh && slot && !outstanding) { slot.innerHTML = fresh.innerHTML; }
      });
  }
  function wire() {
    Array.prototype.forEach.call(list.querySelectorAll("form.answer"), function (form) {
      form.addEventListener("submit", function (ev) { ev.preventDefault(); answer(form, ev.submitter); });
    });
    Array.prototype.forEach.call(list.querySelectorAll("a.skip"), function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        var li = a.closest(".question");
        skipped.push(li.getAttribute("data-segment"));
        li.classList.add("done");
        show();
      });
    });
  }
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var el = document.activeElement;
    if (el && (/^(TEXTAREA|SELECT)$/.test(el.tagName)
               || (el.tagName === "INPUT" && !/^(checkbox|radio|button|submit)$/.test(el.type)))) { return; }
    var current = list.querySelector(".question.current");
    if (!current) { return; }
    var target = { y: "yes", n: "no", o: "other", w: "new", s: "skip" }[ev.key];
    if (/^[1-9]$/.test(ev.key)) { target = "tick-" + ev.key; }
    var hit = target && current.querySelector('[data-key="' + target + '"]');
    if (!hit) { return; }
    ev.preventDefault();
    if (target.indexOf("tick-") === 0) { hit.checked = !hit.checked; return; }
    if (target === "yes" || target === "no") { answer(hit.form, hit); }
    else if (target === "skip") { hit.click(); }
    else { hit.focus(); }
  });
  wire();
  show();
}());
