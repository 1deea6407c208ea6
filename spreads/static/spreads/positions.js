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

// The spread as laid out, redrawn as staff type the positions' places: the same rules as
// spreads/layout.py (every position placed, or all of them in rows of five).
(function () {
  var ROW_LENGTH = 5;

  function positions() {
    return Array.from(document.querySelectorAll("#positions-group tr.form-row:not(.empty-form)"))
      .filter(function (row) {
        var remove = row.querySelector("input[name$='-DELETE']");
        return !(remove && remove.checked);
      })
      .map(function (row) {
        function value(field) {
          var input = row.querySelector("[name$='-" + field + "']");
          return input ? input.value.trim() : "";
        }
        return {
          index: parseInt(value("index"), 10),
          column: parseInt(value("column"), 10),
          row: parseInt(value("row"), 10),
          crosswise: value("rotation") === "90",
        };
      })
      .filter(function (p) { return p.index > 0; })
      .sort(function (a, b) { return a.index - b.index; });
  }

  function draw(preview) {
    var found = positions();
    var placed = found.length > 0 && found.every(function (p) { return p.column > 0 && p.row > 0; });
    var grid = preview.querySelector("ol");
    grid.textContent = "";
    var seen = {};
    found.forEach(function (p, n) {
      var column = placed ? p.column : (n % ROW_LENGTH) + 1;
      var row = placed ? p.row : Math.floor(n / ROW_LENGTH) + 1;
      var card = document.createElement("li");
      card.textContent = p.index;
      card.style.gridColumn = column;
      card.style.gridRow = row;
      if (placed && p.crosswise) {
        card.className = "crosswise";
      }
      // Two upright cards in one place hide each other: only a crossing card may share one.
      var key = column + "," + row;
      if (!(placed && p.crosswise)) {
        if (seen[key]) {
          card.className = "clash";
          seen[key].className = "clash";
        }
        seen[key] = card;
      }
      grid.appendChild(card);
    });
    preview.querySelector("p").textContent = placed
      ? "As readers will see it: each card where its column and row put it."
      : "Not every position has a column and a row, so readers see the cards in rows, in order.";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var group = document.getElementById("positions-group");
    if (!group) {
      return;
    }
    var preview = document.createElement("section");
    preview.className = "layout-preview";
    preview.innerHTML = "<h3>Layout preview</h3><p></p><ol aria-label=\"The spread as laid out\"></ol>";
    group.appendChild(preview);
    draw(preview);
    group.addEventListener("input", function () { draw(preview); });
    group.addEventListener("change", function () { draw(preview); });
    document.addEventListener("formset:added", function () { draw(preview); });
  });
})();
