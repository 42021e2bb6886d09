/* concepts atlas: filter and sort the class index, toggle heatmaps. No network access. */
(function () {
  "use strict";
  var list = document.getElementById("classes");
  if (list) {
    var filter = document.getElementById("filter");
    var sort = document.getElementById("sort");
    var count = document.getElementById("count");
    var cards = Array.prototype.slice.call(list.querySelectorAll(".class-card"));
    var apply = function () {
      var q = (filter.value || "").trim().toLowerCase();
      var shown = 0;
      cards.forEach(function (card) {
        var hit = !q || card.dataset.name.indexOf(q) >= 0 || card.dataset.id.indexOf(q) >= 0;
        card.hidden = !hit;
        if (hit) { shown += 1; }
      });
      if (count) { count.textContent = shown + " shown"; }
    };
    var cmp = function (x, y) { return x < y ? -1 : (x > y ? 1 : 0); };
    var reorder = function () {
      var key = sort.value;
      var sorted = cards.slice().sort(function (a, b) {
        if (key === "concentration") {
          return parseFloat(b.dataset.concentration) - parseFloat(a.dataset.concentration) ||
            cmp(a.dataset.name, b.dataset.name);
        }
        if (key === "index") { return parseInt(a.dataset.index, 10) - parseInt(b.dataset.index, 10); }
        return cmp(a.dataset.name, b.dataset.name) || cmp(a.dataset.id, b.dataset.id);
      });
      sorted.forEach(function (card) { list.appendChild(card); });
    };
    filter.addEventListener("input", apply);
    sort.addEventListener("change", reorder);
    reorder();
    apply();
  }
  var heat = document.getElementById("show-heat");
  if (heat) {
    heat.addEventListener("change", function () { document.body.classList.toggle("no-heat", !heat.checked); });
  }
})();
