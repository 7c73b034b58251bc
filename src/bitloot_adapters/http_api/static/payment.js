// The payment panel: QR code and "Open in wallet" link from the payment's standard URI
// (BIP21, EIP-681; none for a coin without one), amount and address with copy buttons,
// the coin and network by name, and when the payment window closes.

import { copyText } from "./a11y.js";
import { enc } from "./api.js";
import { $ } from "./dom.js";

const ORDER_TTL_MS = 60 * 60 * 1000;
export const AWAITING_PAYMENT = new Set(["created", "waiting"]);

let shownFor = null; // the payment id the panel was filled for
let countdownTimer = null;
let deadline = null;
let skewMs = 0; // server clock minus this browser's clock

export function noteServerTime(iso) {
  const serverNow = Date.parse(iso);
  if (!Number.isNaN(serverNow)) skewMs = serverNow - Date.now();
}

export function setUpPaymentPanel() {
  for (const [button, source, what] of [
    ["copy-amount", "pay-amount", "Amount"],
    ["copy-address", "pay-address", "Address"],
  ]) {
    $(button).addEventListener("click", () => copyText($(source).textContent, $(button), what, $(source)));
  }
}

export function renderPayment(order, token) {
  const payment = order.payment;
  const show = Boolean(payment) && (AWAITING_PAYMENT.has(order.status) || order.status === "confirming");
  $("payment").hidden = !show;
  if (!payment) return;
  if (shownFor !== payment.id) {
    shownFor = payment.id;
    fill(order, payment, token);
  }
  clearInterval(countdownTimer);
  countdownTimer = null;
  deadline = payment.valid_until ? Date.parse(payment.valid_until) : Date.parse(order.created_at) + ORDER_TTL_MS;
  if (AWAITING_PAYMENT.has(order.status)) {
    $("closes-at").textContent = `(closes at ${new Date(deadline).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", timeZoneName: "short" })})`;
    tick();
    countdownTimer = setInterval(tick, 1000);
  } else {
    $("countdown").textContent = "—";
    $("closes-at").textContent = "";
  }
}

function fill(order, payment, token) {
  const coin = payment.coin || { ticker: String(payment.pay_currency).toUpperCase(), name: "", network: "" };
  $("pay-amount").textContent = payment.pay_amount;
  $("pay-currency").textContent = coin.ticker;
  $("pay-coin").textContent = coin.name && coin.name !== coin.ticker ? `${coin.name} (${coin.ticker})` : coin.ticker;
  $("pay-network").textContent = coin.network || "Ask your wallet: the network of this coin is not known here";
  $("pay-address").textContent = payment.pay_address;
  const link = $("wallet-link");
  link.hidden = !payment.uri;
  $("no-wallet-link").hidden = Boolean(payment.uri);
  if (payment.uri) link.href = payment.uri;
  else link.removeAttribute("href");
  const qr = $("qr");
  qr.alt = payment.uri
    ? `QR code to scan with your wallet: pays ${payment.pay_amount} ${coin.ticker} to the address below`
    : "QR code of the address below";
  qr.src = `/api/orders/${enc(order.id)}/qr.svg?token=${enc(token)}`;
}

function tick() {
  const left = Math.floor((deadline - (Date.now() + skewMs)) / 1000);
  if (left <= 0) {
    $("countdown").textContent = "Time is up";
    return;
  }
  const minutes = Math.floor(left / 60);
  const seconds = String(left % 60).padStart(2, "0");
  $("countdown").textContent = `${minutes}:${seconds}`;
}
