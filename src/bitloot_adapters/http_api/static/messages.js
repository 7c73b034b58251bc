// The page's one alert box, for errors and notices.

import { $ } from "./dom.js";

export function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.hidden = false;
}

export function showError(error) {
  const code = error && error.code ? ` (${error.code})` : "";
  showMessage(`${(error && error.message) || "Something went wrong."}${code}`);
}

export function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}
