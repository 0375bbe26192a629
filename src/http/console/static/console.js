// aion-webhooks console: the only script (no inline code is allowed by the
// Content-Security-Policy). It asks before forms that change much.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = button && button.dataset ? button.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
