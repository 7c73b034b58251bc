// What a keyboard or screen-reader user needs besides the markup: announcements of
// changes, focus that never falls to the document, a title per state.

import { $, setVisibleText } from "./dom.js";

let announceTimer = null;

// Read `text` out politely. Emptied first, so the same words twice are read twice.
export function announce(text) {
  const region = $("announcer");
  region.textContent = "";
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    region.textContent = text;
  }, 50);
}

// Move focus to the first of `candidates` that can take it (elements or ids).
export function focusFirst(...candidates) {
  for (const candidate of candidates) {
    const node = typeof candidate === "string" ? $(candidate) : candidate;
    if (node && node.isConnected && !node.disabled && !node.closest("[hidden]")) {
      node.focus();
      return node;
    }
  }
  return null;
}

// Whether focus is nowhere useful: on the page itself, or on an element that is gone,
// hidden or disabled (an action's result may remove the control that started it).
export function focusIsLost() {
  const active = document.activeElement;
  return !active || active === document.body || active === document.documentElement || !active.isConnected ||
    active.disabled || Boolean(active.closest("[hidden]"));
}

// Copy to the clipboard, then say so on the button and out loud; without clipboard access
// (plain http) select the text so the customer can copy it themselves.
export async function copyText(text, button, what, selectable) {
  let said;
  try {
    await navigator.clipboard.writeText(text);
    setVisibleText(button, "Copied");
    said = `${what} copied.`;
  } catch {
    const range = document.createRange();
    range.selectNodeContents(selectable);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    setVisibleText(button, "Selected");
    said = `${what} selected: press Control C to copy it.`;
  }
  announce(said);
  clearTimeout(button.copyTimer);
  button.copyTimer = setTimeout(() => setVisibleText(button, "Copy"), 2000);
}

const STATE_TITLES = {
  created: "waiting for payment",
  waiting: "waiting for payment",
  confirming: "payment confirming",
  paid: "paid, delivering keys",
  fulfilled: "keys ready",
  expired: "expired",
  failed: "payment failed",
  underpaid: "underpaid",
};

export function orderTitle(order) {
  const state = STATE_TITLES[order.status] || order.status_text;
  return `Order ${order.id.slice(0, 4)}… — ${state} — bitloot`;
}
