// Live preview of branding overrides: the preview frame reloads with the typed (unsaved) values.
(function () {
  "use strict";
  var form = document.getElementById("branding-form");
  var frame = document.getElementById("branding-preview");
  if (!form || !frame) return;
  var timer = null;
  function refresh() {
    var params = new URLSearchParams();
    params.set("live", "1");
    Array.prototype.forEach.call(form.elements, function (field) {
      if (field.name && field.name !== "csrf_token" && field.name !== "language") params.set(field.name, field.value);
    });
    frame.src = form.getAttribute("data-preview") + "?" + params.toString();
  }
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  });
})();
