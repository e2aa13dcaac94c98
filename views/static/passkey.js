// latch passkey ceremonies. htmx cannot call navigator.credentials, so the
// buttons and forms marked with data-passkey run here: the server's options
// go to the browser's WebAuthn JSON helpers and the result back as JSON.
(function () {
  "use strict";

  function show(msg) {
    var el = document.getElementById("passkey-error");
    if (el) { el.textContent = msg; el.hidden = false; } else { alert(msg); }
  }

  async function post(url, body) {
    var r = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body || {}),
    });
    var data = {};
    try { data = await r.json(); } catch (e) { /* empty body */ }
    if (!r.ok) {
      var err = new Error(data.error_description || data.error || ("the server answered " + r.status));
      err.code = data.error;
      throw err;
    }
    return data;
  }

  function supported() {
    return window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON &&
      PublicKeyCredential.parseRequestOptionsFromJSON;
  }

  async function create(beginURL, finishURL, body) {
    var o = await post(beginURL, body);
    var c = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(o.publicKey) });
    return post(finishURL, c.toJSON());
  }

  async function assert(beginURL, finishURL, body) {
    var o = await post(beginURL, body);
    var a = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(o.publicKey) });
    return post(finishURL, a.toJSON());
  }

  function fields(form) {
    var out = {};
    if (!form) { return out; }
    new FormData(form).forEach(function (v, k) { out[k] = v; });
    return out;
  }

  async function run(el, ev) {
    var kind = el.dataset.passkey;
    if (kind === "confirm") {
      // A form that needs a fresh passkey check before it is sent.
      if (el.dataset.confirmed === "yes") { return; }
      ev.preventDefault();
      await assert("/reauth/begin", "/reauth/finish");
      el.dataset.confirmed = "yes";
      if (ev.submitter && ev.submitter.name) {
        var h = document.createElement("input");
        h.type = "hidden"; h.name = ev.submitter.name; h.value = ev.submitter.value;
        el.appendChild(h);
      }
      el.submit();
      // A form that stays on the page (a download) asks again next time.
      setTimeout(function () { delete el.dataset.confirmed; }, 0);
      return;
    }
    ev.preventDefault();
    var form = el.closest("form");
    var res;
    if (kind === "register") {
      res = await create("/register/begin", "/register/finish", fields(form));
    } else if (kind === "add") {
      try {
        res = await create("/passkeys/begin", "/passkeys/finish", fields(form));
      } catch (err) {
        if (err.code !== "reauth_required") { throw err; }
        // Adding a passkey needs a fresh check with one already held.
        await assert("/reauth/begin", "/reauth/finish");
        res = await create("/passkeys/begin", "/passkeys/finish", fields(form));
      }
    } else if (kind === "login") {
      res = await assert("/login/begin", "/login/finish");
    } else {
      return;
    }
    // A page that asked for a login may name where to go back to: a path
    // on this site only.
    var next = el.dataset.next || "";
    if (kind === "login" && next.charAt(0) === "/" && next.charAt(1) !== "/" && next.charAt(1) !== "\\") {
      window.location.assign(next);
      return;
    }
    window.location.assign(res.redirect || "/");
  }

  function handle(ev) {
    var el = ev.target.closest(ev.type === "submit" ? "form[data-passkey]" : "button[data-passkey]");
    if (!el) { return; }
    if (ev.type === "click" && el.form && el.form.dataset.passkey === "confirm") { return; }
    if (!supported()) {
      ev.preventDefault();
      show("This browser cannot use passkeys here; use a current Chrome, Edge, Firefox or Safari.");
      return;
    }
    var button = ev.type === "click" ? el : ev.submitter;
    if (button) { button.disabled = true; }
    run(el, ev).catch(function (err) {
      show(err.name === "NotAllowedError" ? "The passkey request was cancelled or timed out." : err.message);
    }).finally(function () { if (button) { button.disabled = false; } });
  }

  document.addEventListener("click", handle);
  document.addEventListener("submit", handle);
})();
