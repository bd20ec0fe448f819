// Table picker of the new-export page: filter, select all/none, count. Delegated events,
// so it keeps working when htmx swaps the table list in.
(function () {
  function rows() { return document.querySelectorAll("#table-list tbody tr[data-name]"); }
  function visible(row) { return row.style.display !== "none"; }
  function count() {
    var n = document.querySelectorAll("#table-list input[name=tables]:checked").length;
    var label = document.getElementById("selected-count");
    if (label) label.textContent = n + " selected";
  }
  function check(on) {
    // "Select all" leaves external tables out: they are exported only when picked one by one.
    rows().forEach(function (row) {
      if (visible(row) && !(on && row.hasAttribute("data-external"))) row.querySelector("input").checked = on;
    });
    count();
  }
  document.addEventListener("input", function (e) {
    if (e.target.id !== "table-filter") return;
    var needle = e.target.value.toLowerCase();
    rows().forEach(function (row) {
      row.style.display = row.dataset.name.toLowerCase().indexOf(needle) >= 0 ? "" : "none";
    });
  });
  document.addEventListener("click", function (e) {
    if (e.target.id === "select-all") check(true);
    if (e.target.id === "select-none") check(false);
  });
  document.addEventListener("change", function (e) { if (e.target.name === "tables") count(); });
  document.addEventListener("htmx:afterSwap", count);
  // Editing a table's "Columns and rows…" part is choosing that table: without the tick
  // the server would drop the choice without a word.
  function tickEditedTable(e) {
    var part = e.target.closest && e.target.closest("fieldset[data-table]");
    if (!part) return;
    document.querySelectorAll("#table-list input[name=tables]").forEach(function (box) {
      if (box.value === part.dataset.table && !box.checked) { box.checked = true; count(); }
    });
  }
  document.addEventListener("input", tickEditedTable);
  document.addEventListener("change", tickEditedTable);
})();

// Rule form: show only the fields the chosen kind uses (inputs marked data-kinds). Without
// this script every field shows, and the server clears the ones the kind does not use.
(function () {
  function showKindFields() {
    var kind = document.getElementById("id_kind");
    if (!kind) return;
    document.querySelectorAll("[data-kinds]").forEach(function (input) {
      var wrapper = input.closest(".field");
      if (wrapper) wrapper.hidden = input.dataset.kinds.split(" ").indexOf(kind.value) < 0;
    });
  }
  document.addEventListener("change", function (e) { if (e.target.id === "id_kind") showKindFields(); });
  document.addEventListener("DOMContentLoaded", showKindFields);
})();

// Forms that undo work or cannot be undone (cancel a job, retry its tables, revoke a token)
// carry data-confirm: the browser asks first. Without this script they simply submit.
document.addEventListener("submit", function (e) {
  var question = e.target.dataset && e.target.dataset.confirm;
  if (question && !window.confirm(question)) e.preventDefault();
});

// Copy buttons (data-copy = a selector of the element whose text to copy), hidden until this
// script can make them work. The Clipboard API needs a secure context (HTTPS or
// localhost); elsewhere the text is selected and copied the old way.
(function () {
  function copy(button) {
    var source = document.querySelector(button.dataset.copy);
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () { button.textContent = "Copied"; button.classList.add("copied"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectAndCopy(source) && done(); });
    } else if (selectAndCopy(source)) {
      done();
    }
  }
  function selectAndCopy(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    try { return document.execCommand("copy"); } catch (err) { return false; }
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("button[data-copy]");
    if (button) copy(button);
  });
  function reveal() {
    document.querySelectorAll("button[data-copy]").forEach(function (b) { b.hidden = false; });
  }
  document.addEventListener("DOMContentLoaded", reveal);
  document.addEventListener("htmx:load", reveal); // buttons in parts htmx swaps in later
})();
