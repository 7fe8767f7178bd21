/*! EasyConnect connect widget, contract version 1. No dependencies.
 *
 *   EasyConnect.open({url, mode: "popup" | "iframe" | "redirect", container, onEvent, onSuccess, onExit})
 *   EasyConnect.button(element, options)   opens on click; also finishes a redirect that came back here
 *   EasyConnect.resume(options)            finishes a redirect that came back here (button() calls it)
 *   options.returnUrl                      redirect mode: where to come back (same origin; default: this
 *                                          page without its query string, which is never sent)
 *
 * Every event is {source: "easyconnect", version: 1, type, session, ...} with type one of ready,
 * platform_selected, popup_blocked, success ({attempt, platform, account, connections: [{id, platform,
 * account}]}), error ({attempt, code, message}) and exit ({reason}). Success and error are only ever
 * reported after the portal confirmed them (its status endpoint), so a message can hint but never
 * forge a result, and a severed or closed popup never leaves the page waiting.
 */
(function (window, document) {
  "use strict";
  if (window.EasyConnect && window.EasyConnect.version === 1) { return; }

  var SOURCE = "easyconnect";
  var VERSION = 1;
  var TYPES = { ready: 1, platform_selected: 1, popup_blocked: 1, success: 1, error: 1, exit: 1 };
  var POLL_MS = 1500;
  var LINGER_MS = 30000;  // after a hint, keep asking the portal this long for an attempt to appear
  var PENDING_KEY = "easyconnect.pending";
  var MAX_RETURN_URL = 2000;

  function randomHandle() {
    var bytes = new Uint8Array(24);
    window.crypto.getRandomValues(bytes);
    var text = "";
    for (var i = 0; i < bytes.length; i++) { text += String.fromCharCode(bytes[i]); }
    return window.btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function isPhone() {
    var narrow = window.matchMedia && window.matchMedia("(max-width: 640px)").matches;
    return Boolean(narrow || /Android|iPhone|iPad|iPod|Mobile/i.test(navigator.userAgent || ""));
  }

  function isEvent(data) {
    return Boolean(data) && typeof data === "object" && data.source === SOURCE && data.version === VERSION &&
      TYPES[data.type] === 1;
  }

  // Where a redirect comes back to: the page's origin and path only. Its query may hold the host's own
  // secrets (a reset or invite token ...), which the portal has no business seeing or storing.
  function returnUrl(options) {
    var here = window.location;
    var chosen = options && typeof options.returnUrl === "string" ? new URL(options.returnUrl, here.href) : null;
    if (chosen && chosen.origin === here.origin) { return chosen.href.slice(0, MAX_RETURN_URL); }
    return here.origin + here.pathname.slice(0, MAX_RETURN_URL - 200);
  }

  function call(fn, value) {
    if (typeof fn === "function") {
      try { fn(value); } catch (err) { window.setTimeout(function () { throw err; }, 0); }
    }
  }

  function Flow(options, link, mode, session) {
    this.options = options;
    this.link = link;
    this.portal = link.origin;
    this.mode = mode;
    this.session = session;
    this.seen = {};
    this.finished = false;
    this.lingerUntil = 0;
    this.unknownAfterClose = 0;
    this.timer = null;
    this.window = null;
    this.frame = null;
    this.onMessage = this.receive.bind(this);
    window.addEventListener("message", this.onMessage);
  }

  Flow.prototype.url = function (mode, extra) {
    var url = new URL(this.link.href);
    url.searchParams.set("embed", mode);
    url.searchParams.set("origin", window.location.origin);
    url.searchParams.set("session", this.session);
    if (extra) { Object.keys(extra).forEach(function (key) { url.searchParams.set(key, extra[key]); }); }
    return url.href;
  };

  Flow.prototype.emit = function (event) {
    var key = event.type === "success" || event.type === "error" ? event.type + ":" + event.attempt :
      event.type === "ready" ? "ready" : null;
    if (this.finished || (key && this.seen[key])) { return; }
    if (key) { this.seen[key] = true; }
    call(this.options.onEvent, event);
    if (event.type === "success") { call(this.options.onSuccess, event); }
    if (event.type === "exit") { call(this.options.onExit, event); }
  };

  Flow.prototype.event = function (type, fields) {
    var event = { source: SOURCE, version: VERSION, type: type, session: this.session };
    Object.keys(fields || {}).forEach(function (key) { event[key] = fields[key]; });
    return event;
  };

  // Messages count only from the portal's exact origin and the window this flow opened or framed.
  Flow.prototype.receive = function (message) {
    if (message.origin !== this.portal || !isEvent(message.data)) { return; }
    var from = this.frame ? this.frame.contentWindow : this.window;
    if (!from || message.source !== from) { return; }
    var data = message.data;
    if ((data.type === "success" || data.type === "error") && data.attempt !== undefined) {
      this.linger();  // an attempt's outcome is only a hint: the portal's status confirms it
      this.poll();
      return;
    }
    if (data.session !== this.session) { return; }
    if (data.type === "error") {  // the page itself failed (expired or revoked link ...): nothing to confirm
      this.emit(this.event("error", { code: String(data.code).slice(0, 40), message: String(data.message).slice(0, 500) }));
    } else if (data.type === "popup_blocked") {  // the iframe could not open the consent popup
      this.emit(this.event("popup_blocked"));
      this.fallBack();
    } else if (data.type === "ready" || data.type === "platform_selected") {
      if (data.type === "platform_selected") { this.linger(); }
      this.emit(this.event(data.type, data.type === "ready" ? { mode: this.mode } : { platform: String(data.platform) }));
    }
  };

  Flow.prototype.linger = function () {
    this.lingerUntil = Date.now() + LINGER_MS;
    this.schedule();
  };

  Flow.prototype.schedule = function () {
    if (this.timer === null && !this.finished) {
      var self = this;
      this.timer = window.setTimeout(function () { self.timer = null; self.poll(); }, POLL_MS);
    }
  };

  Flow.prototype.poll = function () {
    if (this.finished) { return; }
    var self = this;
    var url = this.portal + "/widget/v1/status/" + encodeURIComponent(this.session);
    window.fetch(url, { credentials: "omit", cache: "no-store", mode: "cors" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (status) { self.settle(status); }, function () { self.settle(null); });
  };

  Flow.prototype.settle = function (status) {
    if (this.finished) { return; }
    var self = this;
    var state = status && status.session === this.session ? status.state : "unknown";
    if (state !== "unknown") {
      (status.events || []).forEach(function (event) {
        if (isEvent(event) && event.session === self.session) { self.emit(event); }
      });
    }
    var succeeded = Object.keys(this.seen).some(function (key) { return key.indexOf("success:") === 0; });
    var closed = this.mode === "popup" && (!this.window || this.window.closed);
    if (this.mode === "popup" && succeeded) { return this.finish(null); }
    if (state === "expired") { return this.finish("expired"); }
    // A popup that looks closed may only be severed (a consent page isolating itself): trust the
    // portal's word that an attempt is still running, and give up only once none is.
    if (closed && state !== "in_progress" && state !== "unknown") { return this.finish(succeeded ? null : "closed"); }
    // Closed, and the portal knows no such session (the page failed before recording it) or cannot be reached.
    this.unknownAfterClose = closed && state === "unknown" ? (this.unknownAfterClose || 0) + 1 : 0;
    if (this.unknownAfterClose >= 3) { return this.finish("closed"); }
    if (this.mode === "popup" || state === "in_progress" || Date.now() < this.lingerUntil) { this.schedule(); }
  };

  Flow.prototype.finish = function (exitReason) {
    if (this.finished) { return; }
    if (exitReason) { this.emit(this.event("exit", { reason: exitReason })); }
    this.finished = true;
    if (this.timer !== null) { window.clearTimeout(this.timer); this.timer = null; }
    window.removeEventListener("message", this.onMessage);
    if (this.window && !this.window.closed) { try { this.window.close(); } catch (err) { /* severed */ } }
    try { window.sessionStorage.removeItem(PENDING_KEY); } catch (err) { /* storage off */ }
  };

  Flow.prototype.close = function () {
    if (this.frame && this.frame.parentNode) { this.frame.parentNode.removeChild(this.frame); }
    this.finish("closed");
  };

  Flow.prototype.openPopup = function () {
    var width = 520, height = 720;
    var left = Math.max(0, (window.screenX || 0) + ((window.outerWidth || width) - width) / 2);
    var top = Math.max(0, (window.screenY || 0) + ((window.outerHeight || height) - height) / 2);
    this.window = window.open(this.url("popup"), "easyconnect_" + this.session.slice(0, 12),
      "popup,width=" + width + ",height=" + height + ",left=" + left + ",top=" + top);
    if (!this.window) {
      this.emit(this.event("popup_blocked"));
      this.fallBack();
      return;
    }
    this.schedule();
  };

  Flow.prototype.mountIframe = function () {
    var container = this.options.container;
    if (typeof container === "string") { container = document.querySelector(container); }
    if (!container || !container.appendChild) { throw new Error("EasyConnect: iframe mode needs a container element"); }
    var frame = document.createElement("iframe");
    frame.src = this.url("iframe");
    frame.title = this.options.title || "Connect your accounts";
    frame.style.width = "100%";
    frame.style.height = (this.options.height || 680) + "px";
    frame.style.border = "0";
    frame.setAttribute("referrerpolicy", "no-referrer");
    this.frame = frame;
    container.appendChild(frame);
  };

  Flow.prototype.fallBack = function () {
    if (this.options.fallback === "none") { return this.finish("popup_blocked"); }
    this.redirect();
  };

  Flow.prototype.redirect = function () {
    try {
      window.sessionStorage.setItem(PENDING_KEY, JSON.stringify({ session: this.session, portal: this.portal }));
    } catch (err) { /* storage off: the page will not learn the result, the client still connects */ }
    this.finished = true;
    window.removeEventListener("message", this.onMessage);
    window.location.assign(this.url("redirect", { return_url: returnUrl(this.options) }));
  };

  function open(options) {
    if (!options || !options.url) { throw new Error("EasyConnect.open needs the link's url"); }
    var link = new URL(options.url, window.location.href);
    if (link.protocol !== "https:" && link.protocol !== "http:") { throw new Error("EasyConnect: not a link url"); }
    var mode = options.mode || "popup";
    if (mode !== "popup" && mode !== "iframe" && mode !== "redirect") { throw new Error("EasyConnect: unknown mode"); }
    if (mode !== "redirect" && options.preferRedirectOnPhones !== false && isPhone()) { mode = "redirect"; }
    var flow = new Flow(options, link, mode, randomHandle());
    if (mode === "popup") { flow.openPopup(); } else if (mode === "iframe") { flow.mountIframe(); } else { flow.redirect(); }
    return { session: flow.session, mode: mode, close: function () { flow.close(); } };
  }

  // Back from a redirect: ask the portal how it ended, report it once, and forget it.
  function resume(options) {
    var pending = null;
    try {
      pending = JSON.parse(window.sessionStorage.getItem(PENDING_KEY) || "null");
      window.sessionStorage.removeItem(PENDING_KEY);  // consumed now: a second resume() reports nothing twice
    } catch (err) { pending = null; }
    if (!pending || typeof pending.session !== "string" || typeof pending.portal !== "string") { return null; }
    if (options && options.url && new URL(options.url, window.location.href).origin !== pending.portal) { return null; }
    var flow = new Flow(options || {}, new URL(pending.portal), "redirect", pending.session);
    window.removeEventListener("message", flow.onMessage);  // nothing to hear from: no window was opened
    flow.settle = function (status) {
      Flow.prototype.settle.call(flow, status);
      // Nothing started (the portal records no session for a page merely viewed), or nothing more to wait for.
      var nothing = !status && Date.now() >= flow.lingerUntil;
      if (!flow.finished && (nothing || (status && (status.state === "done" || status.state === "waiting")))) {
        var succeeded = Object.keys(flow.seen).some(function (key) { return key.indexOf("success:") === 0; });
        flow.finish(succeeded ? null : "closed");
      }
    };
    flow.lingerUntil = Date.now() + LINGER_MS;  // retried for a while if the portal cannot be reached
    flow.poll();
    return { session: flow.session, mode: "redirect", close: function () { flow.close(); } };
  }

  function button(element, options) {
    if (typeof element === "string") { element = document.querySelector(element); }
    if (!element) { throw new Error("EasyConnect.button needs an element"); }
    element.addEventListener("click", function (event) {
      event.preventDefault();
      open(options);  // synchronously inside the click: popups opened here are not blocked
    });
    return resume(options);
  }

  window.EasyConnect = { version: VERSION, open: open, button: button, resume: resume };
}(window, document));
