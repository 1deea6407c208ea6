// The spread form's positions: every row numbered, and rows added up to the card count.
"use strict";
(function () {
  function rows() {
    return Array.from(document.querySelectorAll("#positions-group tr.form-row:not(.empty-form)"));
  }

  function numberBlankRows() {
    rows().forEach(function (row, n) {
      var index = row.querySelector("input[name$='-index']");
      var name = row.querySelector("input[name$='-name']");
      if (index && !index.value && (!name || !name.value)) {
        index.value = n + 1;
      }
      row.querySelectorAll("[aria-label^='New position']").forEach(function (input) {
        input.setAttribute("aria-label", input.getAttribute("aria-label").replace("New position", "Position row " + (n + 1)));
      });
    });
  }

  function addRowsUpTo(count) {
    var add = document.querySelector("#positions-group .add-row a");
    var guard = 200;
    while (add && rows().length < count && guard-- > 0) {
      add.click();
    }
  }

  document.addEventListener("formset:added", function (event) {
    if (event.detail && event.detail.formsetName === "positions") {
      numberBlankRows();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var cardCount = document.getElementById("id_card_count");
    if (!cardCount) {
      return;
    }
    cardCount.addEventListener("change", function () {
      var count = parseInt(cardCount.value, 10);
      if (count > 0 && count <= 200) {
        addRowsUpTo(count);
      }
    });
  });
})();
