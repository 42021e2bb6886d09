/* concepts atlas: the image page of a class (classes/<stem>/image.html?i=<n>), drawn for the image its query
   names from the class's data file (classes/<stem>/images.js, a <script src>: it works from file://). Runs before
   atlas.js, which draws the maps. Text goes in as textContent only. */
(function () {
  "use strict";
  var host = document.getElementById("image-page"), packed = window.ATLAS_IMAGES;
  if (!host || typeof packed !== "string" || !window.atlasInflate) { return; }
  var all = JSON.parse(window.atlasInflate(packed));  // deflated JSON (concepts/atlas/packed.py)
  if (!all.order.length) { return; }
  // the image is the query's (?i=<n>: each image is a document of its own, for the history and the back button)
  var wanted = /^\?i=(\d+)$/.exec(window.location.search), at = wanted ? all.order.indexOf(parseInt(wanted[1], 10)) : -1;
  if (at < 0) { at = 0; history.replaceState(null, "", "?i=" + all.order[0]); }  // no or an unknown image: the first
  var n = all.order[at], im = all.images[String(n)], root = host.dataset.root, name = im.name;
  host.dataset.image = n;
  document.title = name + " (" + all.class_name + ")" + document.title.slice(document.title.lastIndexOf(" - "));
  document.querySelector("h1.image-title").textContent = name;
  var here = document.getElementById("image-name");
  if (here) { here.textContent = name; }
  [["prev", at - 1], ["next", at + 1]].forEach(function (pair) {
    var link = document.querySelector("header .pager a." + pair[0]);
    if (link && pair[1] >= 0 && pair[1] < all.order.length) {
      link.setAttribute("href", "?i=" + all.order[pair[1]]);
      link.hidden = false;
    } else if (link) {
      link.parentNode.removeChild(link);
    }
  });
  var colour = function (k) { return all.colours[String(k)]; };
  // compact records (concepts/atlas/imagedata.py): expand the defaults
  var legendOf = {};
  im.legend = im.legend.map(function (item) {
    var full = [item[0], item.length > 2 ? item[2] : colour(item[0]), item[1]];
    legendOf[item[0]] = full;
    return full;
  });
  im.maps = im.maps.map(function (mp) {  // -> [concept, colour, text, presence]
    return mp.length > 2 ? [mp[0], mp[3], mp[2], mp[1]] : [mp[0], legendOf[mp[0]][1], legendOf[mp[0]][2], mp[1]];
  });
  im.kinds = im.kinds || [];
  im.charts.forEach(function (chart) {
    chart.bars = chart.bars.map(function (b) {  // -> [label, kind, concept, left, width, colour, text, href, ci]
      return typeof b[0] === "number" ? ["concept " + b[0], "concept", b[0], b[1], b[2], colour(b[0]), b[3],
                                         "c" + b[0] + ".html", b[4] || null] : b;
    });
  });
  var el = function (tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (attrs[key] !== null && attrs[key] !== undefined) { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) { return; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  };
  var canvas = function (m) {  // [width, height, kind, colour, data] as macros.html's canvas()
    return m ? el("canvas", { "class": "map", width: m[0], height: m[1], "data-k": m[2], "data-c": m[3] || null,
                              "data-d": m[4] }) : null;
  };
  var swatch = function (colour) { return el("span", { "class": "swatch", style: "background:" + colour }); };
  var conceptLink = function (k) { return el("a", { href: "c" + k + ".html" }, ["concept " + k]); };

  var meta = el("p", { "class": "meta" }, [el("span", { "class": "path" }, [im.path])]);
  im.kinds.forEach(function (kind) { meta.appendChild(document.createTextNode(" \u00b7 "));
                                     meta.appendChild(el("span", { "class": "kind" }, [kind])); });
  var legend = el("ul", { "class": "legend" }, im.legend.map(function (item) {
    return el("li", {}, [swatch(item[1]), conceptLink(item[0]), " ", el("span", { "class": "imp" }, [item[2]])]);
  }));
  var main = el("figure", { "class": "main-image" }, [
    el("span", { "class": "frame sq big" }, [el("img", { "class": "photo", src: root + im.photo, alt: name,
                                                          width: 320, height: 320 }), canvas(im.overlay)]),
    el("figcaption", {}, ["The photo as the model sees it" + (im.overlay ? ", coloured where its top concepts are" :
                                                               "") + ".", legend])]);
  var prediction;
  if (all.kind === "prevalence") {
    prediction = el("div", { "class": "prediction" }, [el("p", { id: "no-score" }, [
      "No class score (", el("code", {}, ["--head none"]), "): the run explains no model decision; the bars " +
      "below are this image's concept coefficients, not an importance."])]);
  } else {
    prediction = el("div", { "class": "prediction" }, [
      el("p", {}, ["Class logit (" + all.class_name + "): ", el("strong", { "class": "logit" }, [im.logit])]),
      el("p", {}, ["The model predicts ", el("strong", { "class": (im.correct ? "right" : "wrong") + " predicted" },
                                              [im.predicted]),
                   im.correct ? " (right)." : " (wrong: the image is in the class " + all.class_name + ")."])]);
  }
  var bars = function (chart) {  // as macros.html's bars()
    var box = el("div", { "class": "chart bars ", role: "img", "aria-label": chart.axis, style: "--z:" + chart.zero + "%" },
                 [el("p", { "class": "axis" }, [chart.axis + (chart.negative ? " \u00b7 negative values left of the axis" :
                                                              "")])]);
    chart.bars.forEach(function (b) {  // [label, kind, concept, left, width, colour, text, href, ci]
      var track = el("span", { "class": "t" }, [el("i", { style: "left:" + b[3] + "%;width:" + b[4] + "%;background:" +
                                                                  b[5] })]);
      if (b[8]) { track.appendChild(el("s", { style: "left:" + b[8][0] + "%;width:" + b[8][1] + "%" })); }
      box.appendChild(el("div", { "class": "r k-" + b[1], "data-concept": b[2] }, [
        el("span", { "class": "l" }, [b[7] ? el("a", { href: b[7] }, [b[0]]) : b[0]]), track,
        el("b", {}, [b[6]])]));
    });
    return box;
  };
  var decomposition = el("section", { id: "decomposition" }, [el("h2", {}, [
    all.kind === "prevalence" ? "What this image is made of" : "What each concept adds to this image's score"])]);
  im.charts.forEach(function (chart) { decomposition.appendChild(bars(chart)); });
  var maps = el("div", { "class": "maps" }, im.maps.map(function (mp) {  // [concept, colour, text, presence]
    return el("figure", { "class": "map-one", style: "width:160px" }, [
      el("a", { href: "c" + mp[0] + ".html", title: "concept " + mp[0] }, [el("span", { "class": "frame sq" }, [
        el("img", { "class": "photo", src: root + im.photo, alt: "where concept " + mp[0] + " is", width: 160,
                    height: 160, loading: "lazy" }), canvas(mp[3])])]),
      el("figcaption", {}, [swatch(mp[1]), "concept " + mp[0] + " ", el("span", { "class": "imp" }, [mp[2]])])]);
  }));
  var section = el("section", { id: "maps" }, [el("h2", {}, ["Concept maps"]), el("p", { "class": "meta" }, [
    "Where each of its top concepts is (its coefficient at each feature-map position); a concept's page shows " +
    "what it adds to the logit at each position."]), maps]);
  host.textContent = "";
  [meta, el("div", { "class": "image-top" }, [main, prediction]), decomposition, section].forEach(function (node) {
    host.appendChild(node);
  });
})();
