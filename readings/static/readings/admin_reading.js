// The admin's reading page: while the reading is queued or running, fetch it from the API
// every few seconds and put each part's text in place, until it is done or failed.
(function () {
  "use strict";
  const box = document.querySelector(".reading-text");
  if (!box || box.dataset.status === "done" || box.dataset.status === "failed") return;

  function put(key, text) {
    const part = box.querySelector('[data-part="' + key + '"]');
    if (part && text) part.textContent = text;
  }

  async function refresh() {
    let reading;
    try {
      const response = await fetch(box.dataset.detail, { headers: { Accept: "application/json" } });
      if (!response.ok) return setTimeout(refresh, 5000);
      reading = await response.json();
    } catch (error) {
      return setTimeout(refresh, 5000);
    }
    reading.results.cards.forEach((card) => put("card-" + card.index, card.text));
    put("overall", reading.results.overall);
    put("relationships", reading.results.relationships);
    put("advice", reading.results.advice);
    const status = document.querySelector(".field-status .readonly");
    if (status) status.textContent = reading.status.charAt(0).toUpperCase() + reading.status.slice(1);
    if (reading.status === "done" || reading.status === "failed") {
      // The metrics and tasks are written at the end: show them too.
      window.location.reload();
      return;
    }
    setTimeout(refresh, 2000);
  }
  setTimeout(refresh, 2000);
})();
