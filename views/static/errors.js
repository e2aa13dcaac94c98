// latch: an htmx request's error shows beside what made the request, the
// form or the button, instead of in one slot at the top of the page.
//
// The server answers an error with its status and a notice
// (views.ErrorNotice, its message escaped). The layout's htmx-config swaps
// no 4xx or 5xx answer into the request's target; this script puts the
// notice right after the element that made the request instead. A new
// error from that element replaces its notice; a later request from it
// that succeeds takes the notice away.
//
// The browser places it, not the server with HX-Retarget: htmx tells the
// server only the ids of the requesting element and of the target
// (HX-Trigger, HX-Target), and most buttons have no id; a target such as
// "closest tr" is no place for a notice, and some buttons swap a section
// elsewhere on the page (a person's "Passkey link" fills the invites).
// Here the request's own element is at hand, id or not.
(() => {
  "use strict";

  // The notice each requesting element shows now.
  const notices = new WeakMap();

  const clear = (elt) => {
    const old = notices.get(elt);
    if (old) {
      old.remove();
      notices.delete(elt);
    }
  };

  // notice is the server's notice, or one made here when the answer is
  // not latch's (a proxy's error page, say).
  const notice = (html, xhr) => {
    const t = document.createElement("template");
    t.innerHTML = html; // inert: a template's content runs no script
    const el = t.content.firstElementChild;
    if (el && el.matches(".notice.error")) return el;
    const p = document.createElement("p");
    p.className = "notice error";
    p.setAttribute("role", "alert");
    p.textContent = `the server answered ${[xhr.status, xhr.statusText].join(" ").trim()}; try again`;
    return p;
  };

  // htmx 2.0.8 fires htmx:beforeSwap on the target (detail.elt); the
  // element that made the request is detail.requestConfig.elt.
  document.addEventListener("htmx:beforeSwap", (e) => {
    const d = e.detail;
    const elt = d.requestConfig && d.requestConfig.elt;
    if (!d.isError || !elt) return;
    d.shouldSwap = false; // whatever the htmx-config says: the notice goes only here
    const n = notice(d.serverResponse, d.xhr);
    clear(elt);
    if (!elt.isConnected) {
      // The element left the page meanwhile (its row was replaced live):
      // the message goes to the page's own slot rather than nowhere.
      const slot = document.getElementById("passkey-error");
      if (slot) {
        slot.textContent = n.textContent;
        slot.hidden = false;
      }
      return;
    }
    elt.after(n);
    notices.set(elt, n);
  });

  document.addEventListener("htmx:afterRequest", (e) => {
    const d = e.detail;
    if (d.successful && d.requestConfig) clear(d.requestConfig.elt);
  });
})();
