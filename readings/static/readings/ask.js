// The question's character count as the querent types or pastes: over the limit it says so
// (and the server refuses it with the same limit), instead of the text being cut.
(() => {
  const box = document.getElementById("question");
  const count = document.getElementById("question-count");
  if (!box || !count) return;
  const max = Number(box.dataset.max);
  const format = (n) => n.toLocaleString(document.documentElement.lang || undefined);
  const update = () => {
    const length = box.value.length;
    const over = length > max;
    const text = over ? count.dataset.textOver : count.dataset.text;
    count.textContent = text.replace("%(count)s", format(length)).replace("%(max)s", format(max));
    count.classList.toggle("errors", over);
    box.setCustomValidity(over ? count.textContent : "");
  };
  box.addEventListener("input", update);
  update();
})();
