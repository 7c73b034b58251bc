// One order: live status, payment panel, items and their keys, the sandbox panel.
// After each action focus lands on what the customer needs next, never on the document.

import { announce, copyText, focusFirst, focusIsLost, orderTitle } from "./a11y.js";
import { api, enc } from "./api.js";
import { $, el, labelledButton, spokenOnly } from "./dom.js";
import { clearMessage, showError, showMessage } from "./messages.js";
import { money, percentOf } from "./money.js";
import { AWAITING_PAYMENT, noteServerTime, renderPayment, setUpPaymentPanel } from "./payment.js";
import { remember, remembered, orderUrl } from "./storage.js";

const TERMINAL = new Set(["fulfilled", "expired", "failed", "underpaid"]);
const POLL_MS = 2000;
const SLOW_POLL_MS = 10000;

let orderId = null;
let token = null;
let current = null; // the latest order JSON
let itemsShape = "";
let pollTimer = null;
let objectUrls = [];

export async function orderPage(id) {
  orderId = id;
  $("order-loading").hidden = false;
  const query = new URLSearchParams(window.location.search);
  token = query.get("token") || (remembered()[id] || {}).token || null;
  if (!token) {
    showOrderView(id);
    $("status").textContent = "This order link has no access token.";
    showMessage("Open the order link from your confirmation email, or start a new order.");
    return;
  }
  if (!query.get("token")) window.history.replaceState(null, "", orderUrl(id, token));
  remember(id, token);
  let order;
  try {
    order = await api("GET", `/api/orders/${enc(id)}`, { token });
    if (!order.payment && AWAITING_PAYMENT.has(order.status)) {
      await api("POST", `/api/orders/${enc(id)}/payment`, { token });
      order = await api("GET", `/api/orders/${enc(id)}`, { token });
    }
  } catch (error) {
    showOrderView(id);
    $("status").textContent = "The order could not be loaded.";
    showError(error);
    return;
  }
  setUpPaymentPanel();
  render(order);
  // Everything above the sandbox panel appears at once, fully drawn: nothing shifts.
  showOrderView(id);
  watch();
  setUpSandbox();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
}

function showOrderView(id) {
  $("order-id").textContent = id;
  $("order-loading").hidden = true;
  $("order-view").hidden = false;
}

function render(order) {
  // an answer that left the server before the one on screen is old news
  if (current && Date.parse(order.updated_at) < Date.parse(current.updated_at)) return;
  const first = current === null;
  const hadFocus = !focusIsLost();
  current = order;
  const status = $("status");
  status.textContent = order.status_text;
  status.dataset.status = order.status;
  document.title = orderTitle(order);
  $("status-hint").textContent = statusHint(order);
  $("order-total").textContent = money(order.total, order.currency);
  renderPayment(order, token);
  const newReveals = renderItems(order) && !first;
  updateSandboxButtons();
  // A change that removed or disabled the focused control (the payment panel closing, a
  // sandbox button) sends focus to the status, and keys arriving send it to the first key.
  const waiting = document.activeElement === status;
  if (newReveals && (waiting || focusIsLost())) focusFirst(document.querySelector("[data-testid^='reveal-']"));
  else if (hadFocus && focusIsLost()) focusFirst(status);
}

// Flags of a paid order that waits for the shop's staff, not for the supplier.
const HELD_FLAGS = ["fulfillment_failed", "product_unavailable", "supplier_order_canceled", "price_guard"];

function statusHint(order) {
  const payment = order.payment;
  switch (order.status) {
    case "created":
    case "waiting":
      return "Send the exact amount to the address below. This page updates by itself.";
    case "confirming":
      return "Your payment was seen; waiting for network confirmations.";
    case "paid":
      // Held for the shop's staff (the supplier out of stock, its order canceled, its
      // price above the limit, the retries spent): waiting alone would never bring the keys.
      if (order.flags.some((flag) => HELD_FLAGS.includes(flag))) {
        return "Payment received. Your keys are delayed: our team has been told and will deliver them or refund you, and we email you either way. Your order id is above if you contact support.";
      }
      // Kinguin may take hours (a pre-order: until its release): never promise seconds.
      return "Payment received. Your keys are on their way: this page updates by itself, and we email you when they are ready.";
    case "fulfilled":
      return "Your keys are ready. We also sent a link to your email.";
    case "underpaid":
      return payment && payment.actually_paid
        ? `We received ${money(payment.actually_paid, payment.pay_currency)} of ${money(payment.pay_amount, payment.pay_currency)}. No keys are delivered; please contact support with your order id.`
        : "The payment was short. No keys are delivered; please contact support with your order id.";
    case "expired":
      return "This order was not paid in time. Please start a new order.";
    case "failed":
      return "The payment did not go through. Please start a new order.";
    default:
      return "";
  }
}

// Returns whether Reveal buttons were (re)built.
function renderItems(order) {
  const fulfilled = order.status === "fulfilled";
  const shape = JSON.stringify([fulfilled, order.items.map((i) => [i.id, i.delivered])]);
  if (shape === itemsShape) return false; // keep revealed keys on screen
  itemsShape = shape;
  revokeObjectUrls();
  let reveals = false;
  $("items").replaceChildren(
    ...order.items.map((item) => {
      const row = el(
        "li",
        { className: "item", dataset: { testid: `item-${item.product_id}`, itemId: item.id } },
        el(
          "div",
          { className: "item-head" },
          el("span", { className: "name" }, `${item.name} × ${item.quantity}`),
          el("span", { className: "price" }, money(item.unit_price, order.currency)),
        ),
      );
      if (fulfilled && item.delivered) {
        const output = el("div", { className: "key-output", dataset: { testid: `key-${item.product_id}` } });
        const button = el(
          "button",
          { type: "button", className: "primary", dataset: { testid: `reveal-${item.product_id}` } },
          "Reveal key",
          spokenOnly(` for ${item.name}`),
        );
        button.addEventListener("click", () => reveal(item, button, output));
        row.append(button, output);
        reveals = true;
      }
      return row;
    }),
  );
  return reveals;
}

async function reveal(item, button, output) {
  // Busy, not disabled: a disabled button would drop the keyboard focus to the document.
  if (button.getAttribute("aria-busy") === "true") return;
  button.setAttribute("aria-busy", "true");
  clearMessage();
  try {
    const answer = await api("POST", `/api/orders/${enc(orderId)}/items/${enc(item.id)}/reveal`, { token });
    const urls = answer.urls && answer.urls.length ? answer.urls : [answer.url];
    const keys = await Promise.all(urls.map((url, index) => showKey(item, url, index, urls.length)));
    revokeObjectUrls(output);
    output.replaceChildren(
      ...keys.map(([box]) => box),
      el("p", { className: "muted small" }, `Links valid until ${new Date(answer.expires_at).toLocaleString()}.`),
    );
    announce(`${item.name}: ${keys.map(([, said]) => said).join(" ")}`);
    focusFirst(output.querySelector("button.copy"), output.querySelector("a"), button);
  } catch (error) {
    showError(error);
  } finally {
    button.removeAttribute("aria-busy");
  }
}

// One key's box and what to say about it.
async function showKey(item, url, index, count) {
  const box = el("div", { className: "key" });
  const label = count > 1 ? `Key ${index + 1}` : "Key";
  const link = el(
    "a",
    { href: url, target: "_blank", rel: "noopener noreferrer", dataset: { testid: "key-link" } },
    `Open ${label.toLowerCase()} link`,
    spokenOnly(` for ${item.name} (opens a new tab)`),
  );
  let said;
  try {
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const type = response.headers.get("content-type") || "";
    if (type.startsWith("image/")) {
      const src = URL.createObjectURL(await response.blob());
      objectUrls.push(src);
      box.append(el("img", { src, alt: `${label} for ${item.name} (image)`, className: "key-image", dataset: { testid: "key-image", objectUrl: src } }));
      said = `${label} revealed as an image.`;
    } else {
      const text = (await response.text()).trim();
      const code = el("code", { className: "key-text", dataset: { testid: "key-text" } }, text);
      const copy = labelledButton("Copy", ` ${label.toLowerCase()} for ${item.name}`, { className: "small copy", dataset: { testid: "copy" } });
      copy.addEventListener("click", () => copyText(text, copy, `${label} for ${item.name}`, code));
      box.append(el("span", { className: "key-label" }, `${label}: `), code, " ", copy);
      said = `${label} revealed: ${text}.`;
    }
  } catch {
    box.append(el("p", {}, `${label}: open the link to see it.`));
    said = `${label}: open the link to see it.`;
  }
  box.append(" ", link);
  return [box, said];
}

function revokeObjectUrls(within) {
  const keep = [];
  for (const src of objectUrls) {
    const inside = !within || within.querySelector(`img[data-object-url="${CSS.escape(src)}"]`);
    if (inside) URL.revokeObjectURL(src);
    else keep.push(src);
  }
  objectUrls = keep;
}

// --- live status: Server-Sent Events, else polling ------------------------------------------

// How long until the next poll: soon while the order can move, slowly while an admin may
// still resolve it, never once it is settled.
function pollDelay(order) {
  if (!TERMINAL.has(order.status)) return POLL_MS;
  if (order.status === "underpaid" || (order.status === "expired" && order.flags.length)) return SLOW_POLL_MS;
  return 0;
}

function watch() {
  if (TERMINAL.has(current.status)) {
    schedulePoll(pollDelay(current));
    return;
  }
  if (typeof window.EventSource !== "function") {
    schedulePoll(POLL_MS);
    return;
  }
  const stream = new EventSource(`/api/orders/${enc(orderId)}/events?token=${enc(token)}`);
  stream.addEventListener("status", (event) => {
    let order;
    try {
      order = JSON.parse(event.data);
    } catch {
      return;
    }
    render(order);
    if (TERMINAL.has(order.status)) {
      stream.close(); // the server ends the stream here; do not reconnect
      schedulePoll(pollDelay(order));
    }
  });
  stream.addEventListener("error", () => {
    stream.close();
    schedulePoll(pollDelay(current));
  });
}

function schedulePoll(delay) {
  clearTimeout(pollTimer);
  pollTimer = delay ? setTimeout(poll, delay) : null;
}

let pollFailed = false;

async function poll() {
  try {
    render(await api("GET", `/api/orders/${enc(orderId)}`, { token }));
    if (pollFailed) clearMessage();
    pollFailed = false;
  } catch (error) {
    showError(error); // e.g. offline for a moment: keep trying
    pollFailed = true;
  }
  schedulePoll(pollDelay(current));
}

async function refresh() {
  try {
    render(await api("GET", `/api/orders/${enc(orderId)}`, { token }));
  } catch (error) {
    showError(error);
  }
}

// --- sandbox panel (test mode only) ---------------------------------------------------------

async function setUpSandbox() {
  // A zero-second clock step changes nothing; a production server answers 404.
  let answer;
  try {
    answer = await api("POST", "/sandbox/clock/advance", { body: { seconds: 0 } });
  } catch {
    return;
  }
  noteServerTime(answer.now);
  $("sandbox").hidden = false;
  const action = (id, run) => $(id).addEventListener("click", () => sandboxAction(run));
  const payment = () => `/sandbox/payments/${enc(current.payment.id)}`;
  action("sandbox-pay", () => api("POST", `${payment()}/pay`, { body: {} }));
  action("sandbox-pay-short", () =>
    api("POST", `${payment()}/pay`, { body: { amount: percentOf(current.payment.pay_amount, 80) } }));
  action("sandbox-fail", () => api("POST", `${payment()}/fail`, { body: {} }));
  action("sandbox-advance", async () => {
    noteServerTime((await api("POST", "/sandbox/clock/advance", { body: { seconds: 3660 } })).now);
  });
  updateSandboxButtons();
}

let sandboxBusy = false;

async function sandboxAction(run) {
  if (sandboxBusy) return;
  sandboxBusy = true;
  clearMessage();
  try {
    await run();
    await refresh();
  } catch (error) {
    showError(error);
  } finally {
    sandboxBusy = false;
    updateSandboxButtons();
    if (focusIsLost()) focusFirst(document.querySelector("[data-testid^='reveal-']"), "status");
  }
}

function updateSandboxButtons() {
  if (!current || $("sandbox").hidden) return;
  const canPay = Boolean(current.payment) && !TERMINAL.has(current.status) && current.status !== "paid";
  for (const id of ["sandbox-pay", "sandbox-pay-short", "sandbox-fail"]) $(id).disabled = !canPay;
}
