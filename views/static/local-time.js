// latch: shows each <time datetime> in the reader's own time zone. The
// server writes times in UTC; that stays in the element's title.
(() => {
  "use strict";

  const pad = (n) => String(n).padStart(2, "0");

  const format = (d, seconds) => {
    let s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
    if (seconds) s += ":" + pad(d.getSeconds());
    const zone = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
      .formatToParts(d).find((p) => p.type === "timeZoneName");
    return zone ? `${s} ${zone.value}` : s;
  };

  const localize = (root) => {
    const els = [...root.querySelectorAll("time[datetime]")];
    if (root.matches && root.matches("time[datetime]")) els.push(root);
    for (const el of els) {
      if (el.dataset.local) continue;
      const d = new Date(el.getAttribute("datetime"));
      if (Number.isNaN(d.getTime())) continue;
      el.textContent = format(d, el.dataset.precision === "second");
      el.dataset.local = "1";
    }
  };

  document.addEventListener("DOMContentLoaded", () => localize(document));
  // Rows that htmx swaps in, live ones included.
  document.addEventListener("htmx:load", (e) => localize(e.detail.elt));
})();
