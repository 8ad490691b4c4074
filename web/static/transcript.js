// The transcript view: select text with the mouse and the segments the selection overlaps
// are ticked for the code bar, which then codes them whole. Without this file, tick segments by hand.
(function () {
  "use strict";
  var text = document.getElementById("transcript-text");
  var form = document.getElementById("code-form");
  if (!text || !form) { return; }
  var status = document.getElementById("code-status");
  var back = form.querySelector('input[name="back"]');
  var base = back.value;
  var segs = Array.prototype.slice.call(text.querySelectorAll(".seg"));

  function ticked() {
    return segs.filter(function (s) { return s.querySelector("input[type=checkbox]").checked; });
  }
  function show() {
    var on = ticked();
    segs.forEach(function (s) { s.classList.toggle("picked", s.querySelector("input").checked); });
    if (!on.length) {
      status.textContent = "Select text (or tick segments) to code it.";
      back.value = base;
      return;
    }
    status.textContent = on.length === 1 ? "1 segment overlaps your selection: it is coded whole."
      : on.length + " segments overlap your selection: each is coded whole.";
    back.value = base + "#" + on[0].id;  // back to the place coded
  }
  function picked() {
    var sel = window.getSelection();
    if (!sel || sel.isCollapsed || !sel.rangeCount) { return; }
    var range = sel.getRangeAt(0);
    if (!text.contains(range.commonAncestorContainer)) { return; }
    var any = false;
    segs.forEach(function (s) {
      var hit = range.intersectsNode(s.querySelector(".text"));
      s.querySelector("input").checked = hit;
      any = any || hit;
    });
    if (any) { show(); document.getElementById("code-to").focus({preventScroll: true}); }
  }
  text.addEventListener("mouseup", function (ev) {
    // a box ticked by hand is the coder's choice: the selection made before it must not tick the boxes again
    if (ev.target.closest("input, label")) { return; }
    window.setTimeout(picked, 0);
  });
  text.addEventListener("change", show);
})();
