/* concepts atlas: theme, random class, index filter/sort (kept in the URL), method switch, tint toggle, maps.
   No network access. The index and class pages read without it (the default method's order is the page's
   order); concept and image pages are drawn by conceptpage.js / imagepage.js, which run before it. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };

  // theme: the system's (prefers-color-scheme) until the button sets one, kept in localStorage
  var theme = $("theme");
  if (theme) {
    theme.addEventListener("click", function () {
      var root = document.documentElement;
      var dark = root.dataset.theme ? root.dataset.theme === "dark" :
        window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
      root.dataset.theme = dark ? "light" : "dark";
      try { localStorage.setItem("atlas-theme", root.dataset.theme); } catch (e) { /* file:// without storage */ }
    });
  }

  // a random class page
  var random = $("random-class");
  if (random && window.ATLAS_CLASSES && window.ATLAS_CLASSES.length) {
    random.addEventListener("click", function (event) {
      event.preventDefault();
      var pages = window.ATLAS_CLASSES;
      window.location.href = random.dataset.root + pages[Math.floor(Math.random() * pages.length)];
    });
  }

  // index: filter and sort, state in the URL hash (#q=...&sort=...)
  var list = $("classes");
  if (list) {
    var filter = $("filter"), sort = $("sort"), count = $("count");
    var cards = Array.prototype.slice.call(list.querySelectorAll(".class-card"));
    var cmp = function (x, y) { return x < y ? -1 : (x > y ? 1 : 0); };
    var number = function (card, key) { return parseFloat(card.dataset[key]); };
    var byName = function (a, b) { return cmp(a.dataset.name, b.dataset.name) || cmp(a.dataset.id, b.dataset.id); };
    var orders = {
      name: byName,
      concentration: function (a, b) { return number(b, "concentration") - number(a, "concentration") || byName(a, b); },
      explained: function (a, b) { return number(b, "explained") - number(a, "explained") || byName(a, b); },
      index: function (a, b) { return number(a, "index") - number(b, "index") || byName(a, b); },
      images: function (a, b) { return number(b, "images") - number(a, "images") || byName(a, b); }
    };
    var save = function () {
      var state = new URLSearchParams();
      if (filter.value) { state.set("q", filter.value); }
      if (sort.value !== "name") { state.set("sort", sort.value); }
      var hash = state.toString();
      history.replaceState(null, "", hash ? "#" + hash : window.location.pathname + window.location.search);
    };
    var apply = function () {
      var q = (filter.value || "").trim().toLowerCase(), shown = 0;
      cards.forEach(function (card) {
        var hit = !q || card.dataset.name.indexOf(q) >= 0 || card.dataset.id.indexOf(q) >= 0;
        card.hidden = !hit;
        if (hit) { shown += 1; }
      });
      if (count) { count.textContent = shown + " shown"; }
    };
    var reorder = function () {
      cards.slice().sort(orders[sort.value] || byName).forEach(function (card) { list.appendChild(card); });
    };
    var restore = function () {
      var state = new URLSearchParams(window.location.hash.replace(/^#/, ""));
      filter.value = state.get("q") || "";
      var wanted = state.get("sort");
      sort.value = wanted && orders[wanted] ? wanted : "name";
      reorder();
      apply();
    };
    filter.addEventListener("input", function () { apply(); save(); });
    sort.addEventListener("change", function () { reorder(); save(); });
    window.addEventListener("hashchange", restore);
    restore();
  }

  // method switch: show that method's values and charts, order the concept cards by its ranking
  var method = $("method");
  if (method) {
    var show = function (name) {
      Array.prototype.forEach.call(document.querySelectorAll("[data-method]"), function (el) {
        el.hidden = el.dataset.method.split(" ").indexOf(name) < 0;
      });
      var deck = $("concept-cards");
      if (deck) {
        var key = "rank" + name.charAt(0).toUpperCase() + name.slice(1);
        Array.prototype.slice.call(deck.querySelectorAll(".concept-card")).sort(function (a, b) {
          return parseInt(a.dataset[key], 10) - parseInt(b.dataset[key], 10);
        }).forEach(function (card) { deck.appendChild(card); });
      }
      document.body.dataset.ranking = name;
    };
    method.addEventListener("change", function () { show(method.value); });
    show(method.value);
  }

  // maps: base64 bytes at feature-map resolution drawn on canvases (the browser upscales them smoothly)
  var decode = function (text) {
    var raw = window.atob(text), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i += 1) { out[i] = raw.charCodeAt(i); }
    return out;
  };
  var rgb = function (hex) { return [1, 3, 5].map(function (i) { return parseInt(hex.substr(i, 2), 16); }); };
  Array.prototype.forEach.call(document.querySelectorAll("canvas[data-d]"), function (canvas) {
    var bytes = decode(canvas.dataset.d), kind = canvas.dataset.k || "alpha", n = canvas.width * canvas.height;
    var context = canvas.getContext("2d"), image = context.createImageData(canvas.width, canvas.height);
    var around = canvas.closest("[data-c]"), hex = around ? around.dataset.c : "";  // its own, or its container's
    var colour = hex ? rgb(hex) : [0, 0, 0];
    for (var p = 0; p < n; p += 1) {
      var o = 4 * p;
      if (kind === "rgba") {
        for (var j = 0; j < 4; j += 1) { image.data[o + j] = bytes[o + j]; }
      } else if (kind === "signed") {
        var v = bytes[p] - 128, up = v >= 0;
        image.data[o] = up ? 214 : 31; image.data[o + 1] = up ? 39 : 119; image.data[o + 2] = up ? 40 : 180;
        image.data[o + 3] = Math.min(255, Math.round(Math.abs(v) / 127 * 0.85 * 255));
      } else {
        image.data[o] = colour[0]; image.data[o + 1] = colour[1]; image.data[o + 2] = colour[2];
        image.data[o + 3] = bytes[p];
      }
    }
    context.putImageData(image, 0, 0);
  });

  // feature visualisations: the image, or the image seen through its transparency map
  var alpha = $("fviz-alpha");
  if (alpha) {
    document.body.classList.toggle("fviz-alpha", alpha.checked);
    alpha.addEventListener("change", function () { document.body.classList.toggle("fviz-alpha", alpha.checked); });
  }

  // class page: filter the concept cards by name, state in the URL hash (#label=...; a plain #c3 is left alone)
  var labelFilter = $("label-filter"), deckOfCards = $("concept-cards");
  if (labelFilter && deckOfCards) {
    var labelCount = $("label-count");
    var conceptCards = Array.prototype.slice.call(deckOfCards.querySelectorAll(".concept-card"));
    var applyLabel = function () {
      var q = (labelFilter.value || "").trim().toLowerCase(), shown = 0;
      conceptCards.forEach(function (card) {
        var hit = !q || (card.dataset.label || "").indexOf(q) >= 0;
        card.hidden = !hit;
        if (hit) { shown += 1; }
      });
      if (labelCount) { labelCount.textContent = shown + " shown"; }
    };
    var saveLabel = function () {
      var q = labelFilter.value;
      if (q) {
        history.replaceState(null, "", "#" + new URLSearchParams({ label: q }).toString());
      } else if (window.location.hash.indexOf("label=") >= 0) {
        history.replaceState(null, "", window.location.pathname + window.location.search);
      }
    };
    var restoreLabel = function () {
      var hash = window.location.hash.replace(/^#/, "");
      if (hash.indexOf("=") >= 0) { labelFilter.value = new URLSearchParams(hash).get("label") || ""; }
      applyLabel();
    };
    labelFilter.addEventListener("input", function () { applyLabel(); saveLabel(); });
    window.addEventListener("hashchange", restoreLabel);
    restoreLabel();
  }

  // tint: the concept's presence map over each crop
  var tint = $("tint");
  if (tint) {
    document.body.classList.toggle("tinted", tint.checked);
    tint.addEventListener("change", function () { document.body.classList.toggle("tinted", tint.checked); });
  }
})();
