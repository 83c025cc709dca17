// The console's only script (the Content-Security-Policy allows no inline one): the queue's
// refresh, the packet's copy button and the print button. Every page works without it.
"use strict";

function refreshQueue(body) {
  const url = body.getAttribute("data-refresh");
  const every = Number(body.getAttribute("data-refresh-ms")) || 15000;
  const status = document.getElementById("refreshed");
  async function tick() {
    try {
      const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (answer.status === 401) {
        window.location.assign("/console/sign-in?ended=idle");
        return;
      }
      // Rows are not swapped under a keyboard user's focus (it would be lost): next time.
      if (answer.ok && !body.contains(document.activeElement)) {
        body.innerHTML = await answer.text();
        if (status) {
          status.textContent = "Updated " + new Date().toISOString().replace("T", " ").slice(0, 19) + " UTC";
        }
      }
    } catch (e) {
      if (status) { status.textContent = "Could not refresh: the console did not answer. Retrying."; }
    }
    window.setTimeout(tick, every);
  }
  window.setTimeout(tick, every);
}

function copyButton(button) {
  const source = document.getElementById(button.getAttribute("data-copy"));
  const status = document.getElementById("copy-status");
  button.addEventListener("click", async function () {
    try {
      await navigator.clipboard.writeText(source.textContent);
      if (status) { status.textContent = "Copied the packet text."; }
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      if (status) { status.textContent = "Could not copy by itself: the text is selected, press Ctrl+C."; }
    }
  });
}

document.addEventListener("DOMContentLoaded", function () {
  const body = document.querySelector("[data-refresh]");
  if (body) { refreshQueue(body); }
  document.querySelectorAll("[data-copy]").forEach(copyButton);
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.addEventListener("click", function () { window.print(); });
  });
});
