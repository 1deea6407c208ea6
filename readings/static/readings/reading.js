// The reading page: follows GET /api/readings/<id>/events/ (Server-Sent Events) and writes
// each part's text in place as it arrives. The server replays what was missed, so a page
// opened late, or a connection that drops (EventSource reconnects with Last-Event-ID), shows
// the same text; a task that restarts has its text cleared, never written twice.
(function () {
  "use strict";
  const root = document.getElementById("reading");
  if (!root || !root.dataset.events) return;
  const status = document.getElementById("status");
  const tasks = {}; // task id -> {type, positions}
  const texts = {}; // part -> text shown
  const writing = new Set(); // parts being written now

  // While the reading runs, the status line names the parts being written.
  function sayWriting() {
    // Waiting for budget, or still in the line (the page says where): nothing to name yet.
    if (root.dataset.status === "waiting_for_budget" || root.dataset.status === "queued") return;
    const names = [...writing]
      .map((part) => root.querySelector('[data-part="' + part + '"]'))
      .filter((box) => box)
      .map((box) => box.dataset.name);
    status.textContent = names.length
      ? root.dataset.textWritingParts + " " + names.join(", ")
      : root.dataset.textWriting;
  }

  function partsOf(task) {
    if (!task) return [];
    if (task.task_type === "card_interpretation") return task.positions.map((i) => "card-" + i);
    return [{ overall_reading: "overall", relationships: "relationships", advice: "advice" }[task.task_type]];
  }

  function show(part, text) {
    const box = root.querySelector('[data-part="' + part + '"]');
    if (!box) return;
    texts[part] = text;
    box.replaceChildren(
      ...text.split(/\n\s*\n/).filter((p) => p.trim()).map((paragraph) => {
        const p = document.createElement("p");
        p.textContent = paragraph;
        return p;
      })
    );
  }

  function partFor(data) {
    const task = tasks[data.task];
    if (data.position !== null && data.position !== undefined) return "card-" + data.position;
    return partsOf(task)[0];
  }

  function setBusy(task, busy) {
    partsOf(task).forEach((part) => {
      const box = root.querySelector('[data-part="' + part + '"]');
      if (box) box.setAttribute("aria-busy", busy ? "true" : "false");
      if (busy) writing.add(part);
      else writing.delete(part);
    });
    sayWriting();
  }

  const source = new EventSource(root.dataset.events);
  status.textContent = root.dataset.textWriting;

  source.addEventListener("task_started", (e) => {
    const data = JSON.parse(e.data);
    if (root.dataset.status === "queued") root.dataset.status = "running";
    tasks[data.task] = data;
    partsOf(data).forEach((part) => show(part, ""));
    setBusy(data, true);
  });
  source.addEventListener("text", (e) => {
    const data = JSON.parse(e.data);
    const part = partFor(data);
    if (part) show(part, (texts[part] || "") + data.text);
  });
  source.addEventListener("task_restarted", (e) => {
    const data = JSON.parse(e.data);
    partsOf(tasks[data.task]).forEach((part) => show(part, ""));
  });
  source.addEventListener("task_finished", (e) => {
    const data = JSON.parse(e.data);
    const task = tasks[data.task];
    if (data.texts) Object.entries(data.texts).forEach(([i, text]) => show("card-" + i, text));
    else if (data.text !== undefined && task) show(partsOf(task)[0], data.text);
    setBusy(task, false);
  });
  source.addEventListener("status", (e) => {
    // Waiting for budget, then running again: the status line says which.
    const data = JSON.parse(e.data);
    root.dataset.status = data.status;
    if (data.status === "waiting_for_budget") status.textContent = root.dataset.textWaiting;
    else sayWriting();
  });
  source.addEventListener("reading_finished", (e) => {
    source.close();
    writing.clear();
    const data = JSON.parse(e.data);
    const results = data.reading.results;
    results.cards.forEach((card) => show("card-" + card.index, card.text));
    show("overall", results.overall);
    show("relationships", results.relationships);
    show("advice", results.advice);
    root.querySelectorAll("[aria-busy]").forEach((box) => box.setAttribute("aria-busy", "false"));
    root.dataset.status = data.status;
    status.textContent = data.status === "done" ? root.dataset.textDone : root.dataset.textFailed;
    // A failure reads as one, and offers to finish what was not written.
    status.classList.toggle("errors", data.status === "failed");
    const retry = document.getElementById("retry");
    if (retry && data.status === "failed") retry.hidden = false;
    // A reading that cannot be finished (an economy one) offers to ask its question again.
    const again = document.getElementById("ask-again");
    if (again && data.status === "failed") again.hidden = false;
    if (data.status === "failed") {
      root.querySelectorAll("[data-waiting]").forEach((box) => {
        box.dataset.waiting = root.dataset.textNotWritten;
      });
    }
  });
  source.addEventListener("error", (e) => {
    if (e.data) {
      // The server refused the stream (e.g. too many open): say so, stop retrying.
      source.close();
      status.textContent = root.dataset.textFailed;
    } else if (source.readyState !== EventSource.CLOSED) {
      status.textContent = root.dataset.textLost;
    }
  });
  source.addEventListener("open", () => {
    if (root.dataset.status === "waiting_for_budget") status.textContent = root.dataset.textWaiting;
    else if (root.dataset.status !== "done") sayWriting();
  });
})();
