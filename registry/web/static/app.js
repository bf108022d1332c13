// forecourt back office: the little the pages need, no framework, nothing from another host.
// - a <select class="autosubmit"> sends its form when changed (the language picker);
// - an element with data-live="/api/..." is refreshed every data-every seconds (default 5) from that
//   address, which answers HTML (the simulator's sales appear without a reload);
// - a form with data-confirm asks before it is sent.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const select of document.querySelectorAll("select.autosubmit")) {
    select.addEventListener("change", () => select.form.submit());
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  for (const element of document.querySelectorAll("[data-live]")) {
    const every = Number(element.dataset.every || 5) * 1000;
    const refresh = async () => {
      try {
        const response = await fetch(element.dataset.live, {credentials: "same-origin"});
        if (response.ok) element.innerHTML = await response.text();
      } catch (error) {
        // offline for a moment: the next round tries again
      }
    };
    window.setInterval(refresh, every);
  }
});
