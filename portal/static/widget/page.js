/* Client pages opened by the EasyConnect widget: tell the host page what happens, by postMessage to
 * its exact origin only (never "*"), and listen to nobody but this portal's own consent popup. */
(function () {
  "use strict";
  var SOURCE = "easyconnect";
  var VERSION = 1;
  var POLL_MS = 1500;

  function message(type, fields) {
    var event = { source: SOURCE, version: VERSION, type: type };
    Object.keys(fields || {}).forEach(function (key) { event[key] = fields[key]; });
    return event;
  }

  function post(target, origin, event) {
    if (!target || target === window || !origin) { return; }
    try { target.postMessage(event, origin); } catch (err) { /* closed or severed: the portal's status tells */ }
  }

  function isOwnEvent(msg) {
    var data = msg.data;
    return msg.origin === window.location.origin && Boolean(data) && typeof data === "object" &&
      data.source === SOURCE && data.version === VERSION && (data.type === "success" || data.type === "error");
  }

  // The language links must keep the embedding parameters, or the page would fall out of the widget.
  function keepEmbedParams() {
    document.querySelectorAll(".languages a[hreflang]").forEach(function (link) {
      var params = new URLSearchParams(window.location.search);
      params.set("lang", link.getAttribute("hreflang"));
      link.setAttribute("href", "?" + params.toString());
    });
  }

  // Iframe mode: the iframe asks the portal (same origin, no cookie needed) how the attempt ended and
  // relays it to the host page, since the consent popup's link to this frame is usually severed.
  function Watcher(config, host) {
    this.config = config;
    this.host = host;
    this.reported = {};
    this.timer = null;
    this.until = 0;
  }

  Watcher.prototype.start = function (ms) {
    this.until = Math.max(this.until, Date.now() + ms);
    if (this.timer === null) { this.tick(); }
  };

  Watcher.prototype.tick = function () {
    var self = this;
    this.timer = window.setTimeout(function () {
      window.fetch(self.config.statusUrl, { credentials: "omit", cache: "no-store" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (status) { self.settle(status); }, function () { self.settle(null); });
    }, POLL_MS);
  };

  Watcher.prototype.settle = function (status) {
    var self = this;
    var fresh = false;
    this.timer = null;
    ((status && status.events) || []).forEach(function (event) {
      var key = event.type + ":" + event.attempt;
      if (!self.reported[key]) {
        self.reported[key] = true;
        post(self.host, self.config.origin, event);
        fresh = fresh || event.type === "success";
      }
    });
    if (fresh) {  // show the page again with its new "Connected" line, still inside the widget
      window.setTimeout(function () { window.location.reload(); }, 300);
      return;
    }
    if ((status && status.state === "in_progress") || Date.now() < this.until) { this.tick(); }
  };

  // The portal records the session only when a platform is started: the forms carry what it needs.
  function carrySession(element, config) {
    var fields = { widget_mode: config.mode, widget_origin: config.origin,
                   widget_return_url: element.getAttribute("data-return-url") || "" };
    document.querySelectorAll("form[data-platform]").forEach(function (form) {
      Object.keys(fields).forEach(function (name) {
        if (!fields[name] || form.querySelector("input[name='" + name + "']")) { return; }
        var input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = fields[name];
        form.appendChild(input);
      });
    });
  }

  // "Continue on your phone": a single-use code, asked for only when the client opens it.
  function setUpHandoff(element, config) {
    var details = document.querySelector("details.handoff");
    var image = details && details.querySelector("img.handoff-qr");
    var url = element.getAttribute("data-handoff-code-url");
    if (!details || !image || !url) { return; }
    var asked = false;
    details.addEventListener("toggle", function () {
      if (!details.open || asked) { return; }
      asked = true;
      var body = new URLSearchParams({ link: element.getAttribute("data-link"), mode: config.mode,
                                       origin: config.origin, session: config.session,
                                       return_url: element.getAttribute("data-return-url") || "" });
      window.fetch(url, { method: "POST", body: body, credentials: "omit", cache: "no-store" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (answer) {
          if (answer && typeof answer.qr === "string" && answer.qr.indexOf("data:image/svg+xml") === 0) {
            image.src = answer.qr;
            image.hidden = false;
          } else { asked = false; }
        }, function () { asked = false; });
    });
  }

  function setUpEmbed(element) {
    var config = {
      mode: element.getAttribute("data-mode"),
      origin: element.getAttribute("data-origin"),
      session: element.getAttribute("data-session"),
      statusUrl: element.getAttribute("data-status-url")
    };
    var host = config.mode === "popup" ? window.opener : config.mode === "iframe" ? window.parent : null;
    var watcher = new Watcher(config, host);
    keepEmbedParams();
    carrySession(element, config);
    setUpHandoff(element, config);
    if (config.mode === "iframe") {
      // What was already reported before this page (re)loaded is not news.
      window.fetch(config.statusUrl, { credentials: "omit", cache: "no-store" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (status) {
          ((status && status.events) || []).forEach(function (e) { watcher.reported[e.type + ":" + e.attempt] = true; });
        }, function () { /* nothing known yet */ });
      window.addEventListener("message", function (msg) {  // our own consent popup, when not severed
        if (isOwnEvent(msg)) { watcher.start(10000); }
      });
    }
    post(host, config.origin, message("ready", { session: config.session, mode: config.mode }));
    document.querySelectorAll("form[data-platform]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        var platform = form.getAttribute("data-platform");
        if (config.mode === "iframe") {
          // Consent pages refuse to be framed: open them in a first-party popup, on this very click
          // (the flow's cookie is then set first-party, even with third-party cookies blocked).
          var name = "easyconnect_consent_" + config.session.slice(0, 12);
          var popup = window.open("about:blank", name, "popup,width=520,height=720");
          if (!popup) {
            event.preventDefault();
            post(host, config.origin, message("popup_blocked", { session: config.session }));
            return;
          }
          form.setAttribute("target", name);
          watcher.start(60000);
        }
        post(host, config.origin, message("platform_selected", { session: config.session, platform: platform }));
      });
    });
  }

  // The done page of a widget attempt: hint the opener (the host page in popup mode, or the framed
  // page in iframe mode: each target origin is exact, so only the right one receives it), then close;
  // in redirect mode, go back to the host page's validated return address.
  function setUpRelay(element) {
    var hint = message("success", { attempt: element.getAttribute("data-attempt"),
                                    platform: element.getAttribute("data-platform") });
    var returnUrl = element.getAttribute("data-return-url");
    if (window.opener) {
      post(window.opener, element.getAttribute("data-origin"), hint);
      post(window.opener, window.location.origin, hint);
      window.setTimeout(function () { window.close(); }, 600);
    } else if (returnUrl) {
      window.setTimeout(function () { window.location.assign(returnUrl); }, 1200);
    }
  }

  // A link page opened by the widget failed (expired or revoked link ...): tell the host page why.
  function setUpError(element) {
    var mode = element.getAttribute("data-mode");
    var host = mode === "popup" ? window.opener : mode === "iframe" ? window.parent : null;
    post(host, element.getAttribute("data-origin"), message("error", {
      session: element.getAttribute("data-session"), code: element.getAttribute("data-code"),
      message: element.getAttribute("data-message")
    }));
  }

  var failure = document.getElementById("easyconnect-error");
  if (failure) { setUpError(failure); }
  var embed = document.getElementById("easyconnect-embed");
  if (embed) { setUpEmbed(embed); }
  var relay = document.getElementById("easyconnect-relay");
  if (relay) { setUpRelay(relay); }
}());
