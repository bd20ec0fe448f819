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
