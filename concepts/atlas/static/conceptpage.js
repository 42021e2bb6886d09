/* concepts atlas: a concept page (classes/<stem>/c<k>.html) puts its content, rendered at build time
   (templates/concept_body.html), in place of its placeholder: the class's data file concepts.js holds the
   content of every concept page of the class, deflated (concepts/atlas/packed.py). Runs before atlas.js, which
   then wires the method switch, the tint toggle and the maps as on any page. */
(function () {
  "use strict";
  var host = document.getElementById("concept-page"), packed = window.ATLAS_CONCEPTS;
  if (!host || typeof packed !== "string" || !window.atlasInflate) { return; }
  var body = JSON.parse(window.atlasInflate(packed))[host.dataset.k];
  if (typeof body === "string") {
    host.insertAdjacentHTML("beforebegin", body);  // the markup of the build's autoescaped template
    host.parentNode.removeChild(host);
  }
})();
