// The bitloot customer page: shop (products, cart, pay) and order (status, payment, keys).
// Plain browser JavaScript, no build step. API data only ever reaches the page through
// textContent and attributes, never as HTML.
"use strict";

(() => {
  const TERMINAL = new Set(["fulfilled", "expired", "failed", "underpaid"]);
  const AWAITING_PAYMENT = new Set(["created", "waiting"]);
  const ORDER_TTL_MS = 60 * 60 * 1000;
  const POLL_MS = 2000;
  const SLOW_POLL_MS = 10000;
  const STORE_KEY = "bitloot.orders";
  const LAST_KEY = "bitloot.lastOrder";

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  // --- small helpers -----------------------------------------------------------------------

  // el("p", {className: "x", dataset: {testid: "y"}}, "text", child) -> element
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name in node) node[name] = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, { body, token, headers } = {}) {
    const sent = { Accept: "application/json", ...headers };
    if (body !== undefined) sent["Content-Type"] = "application/json";
    if (token) sent.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "network_error", "Could not reach the shop. Check your connection and try again.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(
        response.status,
        error.code || `http_${response.status}`,
        error.message || `The request failed (HTTP ${response.status}).`,
      );
    }
    return data;
  }

  function showMessage(text, kind = "error") {
    const box = $("message");
    box.textContent = text;
    box.className = `message ${kind}`;
    box.hidden = false;
  }

  function showError(error) {
    const code = error && error.code ? ` (${error.code})` : "";
    showMessage(`${(error && error.message) || "Something went wrong."}${code}`);
  }

  function clearMessage() {
    $("message").hidden = true;
    $("message").textContent = "";
  }

  function newIdempotencyKey() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    // Pages served over plain http on a LAN address have no randomUUID: build a v4 UUID.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  // --- exact decimal arithmetic on strings (amounts never go through floats) ----------------

  function parseDecimal(text) {
    const match = /^(\d+)(?:\.(\d+))?$/.exec(String(text).trim());
    if (!match) throw new Error(`not a decimal amount: ${text}`);
    const fraction = match[2] || "";
    return { units: BigInt(match[1] + fraction), scale: fraction.length };
  }

  function formatDecimal(units, scale) {
    const digits = units.toString().padStart(scale + 1, "0");
    return scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  }

  function rescale({ units, scale }, to) {
    return units * 10n ** BigInt(to - scale);
  }

  // sum of price × quantity over lines, exactly, at the largest scale seen
  function sumLines(lines) {
    const parsed = lines.map(([price, quantity]) => [parseDecimal(price), BigInt(quantity)]);
    const scale = Math.max(2, ...parsed.map(([p]) => p.scale));
    const units = parsed.reduce((sum, [p, q]) => sum + rescale(p, scale) * q, 0n);
    return formatDecimal(units, scale);
  }

  // percent% of amount, rounded down at the amount's own precision
  function percentOf(amount, percent) {
    const { units, scale } = parseDecimal(amount);
    return formatDecimal((units * BigInt(percent)) / 100n, scale);
  }

  const money = (amount, currency) => `${amount} ${String(currency || "").toUpperCase()}`;
  const when = (iso) => new Date(iso).toLocaleString();

  // --- remembered orders (a returning mobile user lands on the same order) -----------------

  function remembered() {
    try {
      return JSON.parse(localStorage.getItem(STORE_KEY) || "{}") || {};
    } catch {
      return {};
    }
  }

  function remember(orderId, token) {
    try {
      const orders = remembered();
      orders[orderId] = { token, at: Date.now() };
      const newest = Object.entries(orders)
        .sort((a, b) => b[1].at - a[1].at)
        .slice(0, 10);
      localStorage.setItem(STORE_KEY, JSON.stringify(Object.fromEntries(newest)));
      localStorage.setItem(LAST_KEY, orderId);
      sessionStorage.setItem(LAST_KEY, orderId);
    } catch {
      // storage can be off (private browsing); the token stays in the URL
    }
  }

  const orderUrl = (orderId, token) => `/order/${enc(orderId)}?token=${enc(token)}`;

  // --- the shop ----------------------------------------------------------------------------

  const cart = new Map(); // product id -> quantity
  let products = [];
  let attempt = null; // {key, body}: one Idempotency-Key per checkout attempt
  let checkingOut = false;

  async function shopPage() {
    $("shop-view").hidden = false;
    showResumeLink();
    try {
      products = await api("GET", "/api/products");
    } catch (error) {
      $("products-loading").textContent = "The products could not be loaded.";
      showError(error);
      return;
    }
    $("products-loading").hidden = true;
    $("products").replaceChildren(...products.map(productRow));
    $("checkout-form").addEventListener("submit", checkout);
    renderCart();
  }

  function showResumeLink() {
    let last = null;
    try {
      last = sessionStorage.getItem(LAST_KEY) || localStorage.getItem(LAST_KEY);
    } catch {
      return;
    }
    const saved = last && remembered()[last];
    if (!saved) return;
    $("resume-link").href = orderUrl(last, saved.token);
    $("resume").hidden = false;
  }

  function productRow(product) {
    const add = el(
      "button",
      { type: "button", dataset: { testid: `add-${product.id}` }, disabled: !product.available },
      "Add to cart",
    );
    add.setAttribute("aria-label", `Add ${product.name} to cart`);
    add.addEventListener("click", () => {
      cart.set(product.id, Math.min(9, (cart.get(product.id) || 0) + 1));
      renderCart();
    });
    const badge = product.available
      ? el("span", { className: "source" }, product.source === "kinguin" ? "Kinguin" : "bitloot")
      : el("span", { className: "badge sold-out", dataset: { testid: "sold-out" } }, "sold out");
    return el(
      "li",
      { className: "product", dataset: { testid: `product-${product.id}`, productId: product.id } },
      el("span", { className: "name" }, product.name),
      el("span", { className: "meta" }, el("span", { className: "price" }, money(product.price, product.currency)), " ", badge),
      add,
    );
  }

  function renderCart() {
    const lines = [...cart].map(([id, quantity]) => [products.find((p) => p.id === id), quantity]);
    $("cart").replaceChildren(...lines.map(([product, quantity]) => cartRow(product, quantity)));
    $("cart-empty").hidden = cart.size > 0;
    $("cart-total").textContent = cart.size
      ? money(sumLines(lines.map(([p, q]) => [p.price, q])), lines[0][0].currency)
      : "—";
    $("pay").disabled = checkingOut || cart.size === 0;
  }

  function cartRow(product, quantity) {
    const selectId = `qty-${product.id}`;
    const select = el("select", { id: selectId, dataset: { testid: selectId } });
    for (let n = 1; n <= 9; n += 1) select.append(el("option", { value: String(n), selected: n === quantity }, n));
    select.addEventListener("change", () => {
      cart.set(product.id, Number(select.value));
      renderCart();
    });
    const remove = el("button", { type: "button", className: "link", dataset: { testid: `remove-${product.id}` } }, "Remove");
    remove.setAttribute("aria-label", `Remove ${product.name} from cart`);
    remove.addEventListener("click", () => {
      cart.delete(product.id);
      renderCart();
    });
    return el(
      "li",
      { className: "cart-line", dataset: { testid: `cart-${product.id}` } },
      el("span", { className: "name" }, product.name),
      el("label", { className: "qty", htmlFor: selectId }, "Qty ", select),
      remove,
    );
  }

  async function checkout(event) {
    event.preventDefault();
    if (checkingOut || cart.size === 0) return;
    clearMessage();
    const email = $("email").value.trim();
    if (!email) {
      showMessage("Enter the email address your keys should be sent to.");
      $("email").focus();
      return;
    }
    const body = { email, items: [...cart].map(([product_id, quantity]) => ({ product_id, quantity })) };
    const fingerprint = JSON.stringify(body);
    // The same cart and email reuse the key, so a retry or a double click finds the same order.
    if (!attempt || attempt.fingerprint !== fingerprint) attempt = { key: newIdempotencyKey(), fingerprint };
    checkingOut = true;
    $("pay").disabled = true;
    $("pay").textContent = "Creating your order…";
    try {
      const order = await api("POST", "/api/orders", { body, headers: { "Idempotency-Key": attempt.key } });
      remember(order.id, order.access_token);
      try {
        await api("POST", `/api/orders/${enc(order.id)}/payment`, { token: order.access_token });
      } catch {
        // the order page opens the payment again
      }
      window.location.assign(orderUrl(order.id, order.access_token));
    } catch (error) {
      showError(error);
      checkingOut = false;
      $("pay").textContent = "Pay with crypto";
      renderCart();
    }
  }

  // --- one order ---------------------------------------------------------------------------

  let orderId = null;
  let token = null;
  let current = null; // the latest order JSON
  let itemsShape = "";
  let qrFor = null;
  let pollTimer = null;
  let countdownTimer = null;
  let clockSkewMs = 0; // server clock minus this browser's clock
  let objectUrls = [];

  async function orderPage(id) {
    $("order-view").hidden = false;
    orderId = id;
    $("order-id").textContent = id;
    const query = new URLSearchParams(window.location.search);
    token = query.get("token") || (remembered()[id] || {}).token || null;
    if (!token) {
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
      $("status").textContent = "The order could not be loaded.";
      showError(error);
      return;
    }
    render(order);
    watch();
    setUpSandbox();
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") refresh();
    });
  }

  function render(order) {
    // an answer that left the server before the one on screen is old news
    if (current && Date.parse(order.updated_at) < Date.parse(current.updated_at)) return;
    current = order;
    const status = $("status");
    status.textContent = order.status_text;
    status.dataset.status = order.status;
    $("status-hint").textContent = statusHint(order);
    $("order-total").textContent = money(order.total, order.currency);
    renderPayment(order);
    renderItems(order);
    updateSandboxButtons();
  }

  function statusHint(order) {
    const payment = order.payment;
    switch (order.status) {
      case "created":
      case "waiting":
        return "Send the exact amount to the address below. This page updates by itself.";
      case "confirming":
        return "Your payment was seen; waiting for network confirmations.";
      case "paid":
        return "Delivering your keys…";
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

  function renderPayment(order) {
    const payment = order.payment;
    const show = Boolean(payment) && (AWAITING_PAYMENT.has(order.status) || order.status === "confirming");
    $("payment").hidden = !show;
    if (!payment) return;
    $("pay-amount").textContent = payment.pay_amount;
    $("pay-currency").textContent = String(payment.pay_currency).toUpperCase();
    $("pay-address").textContent = payment.pay_address;
    if (qrFor !== payment.id) {
      qrFor = payment.id;
      $("qr").src = `/api/orders/${enc(order.id)}/qr.svg?token=${enc(token)}`;
    }
    clearInterval(countdownTimer);
    countdownTimer = null;
    if (AWAITING_PAYMENT.has(order.status)) {
      tickCountdown();
      countdownTimer = setInterval(tickCountdown, 1000);
    } else {
      $("countdown").textContent = "—";
    }
  }

  function tickCountdown() {
    const payment = current.payment;
    const deadline = payment && payment.valid_until
      ? Date.parse(payment.valid_until)
      : Date.parse(current.created_at) + ORDER_TTL_MS;
    const left = Math.floor((deadline - (Date.now() + clockSkewMs)) / 1000);
    if (left <= 0) {
      $("countdown").textContent = "Time is up";
      return;
    }
    const minutes = Math.floor(left / 60);
    const seconds = String(left % 60).padStart(2, "0");
    $("countdown").textContent = `${minutes}:${seconds}`;
  }

  function renderItems(order) {
    const fulfilled = order.status === "fulfilled";
    const shape = JSON.stringify([fulfilled, order.items.map((i) => [i.id, i.delivered])]);
    if (shape === itemsShape) return; // keep revealed keys on screen
    itemsShape = shape;
    revokeObjectUrls();
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
          const button = el("button", { type: "button", className: "primary", dataset: { testid: `reveal-${item.product_id}` } }, "Reveal key");
          button.setAttribute("aria-label", `Reveal the key for ${item.name}`);
          button.addEventListener("click", () => reveal(item, button, output));
          row.append(button, output);
        }
        return row;
      }),
    );
  }

  async function reveal(item, button, output) {
    button.disabled = true;
    clearMessage();
    try {
      const answer = await api("POST", `/api/orders/${enc(orderId)}/items/${enc(item.id)}/reveal`, { token });
      const urls = answer.urls && answer.urls.length ? answer.urls : [answer.url];
      const keys = await Promise.all(urls.map((url, index) => showKey(url, index, urls.length)));
      revokeObjectUrls(output);
      output.replaceChildren(
        ...keys,
        el("p", { className: "muted small" }, `Links valid until ${when(answer.expires_at)}.`),
      );
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  }

  async function showKey(url, index, count) {
    const box = el("div", { className: "key" });
    const label = count > 1 ? `Key ${index + 1}` : "Key";
    const link = el("a", { href: url, target: "_blank", rel: "noopener noreferrer", dataset: { testid: "key-link" } }, `Open ${label.toLowerCase()} link`);
    try {
      const response = await fetch(url, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const type = response.headers.get("content-type") || "";
      if (type.startsWith("image/")) {
        const src = URL.createObjectURL(await response.blob());
        objectUrls.push(src);
        box.append(el("img", { src, alt: `${label} (image)`, className: "key-image", dataset: { testid: "key-image", objectUrl: src } }));
      } else {
        const text = (await response.text()).trim();
        const code = el("code", { className: "key-text", dataset: { testid: "key-text" } }, text);
        const copy = el("button", { type: "button", className: "small", dataset: { testid: "copy" } }, "Copy");
        copy.setAttribute("aria-label", `Copy ${label.toLowerCase()}`);
        copy.addEventListener("click", () => copyText(text, code, copy));
        box.append(el("span", { className: "key-label" }, `${label}: `), code, " ", copy);
      }
    } catch {
      box.append(el("p", {}, `${label}: open the link to see it.`));
    }
    box.append(" ", link);
    return box;
  }

  async function copyText(text, code, button) {
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      // no clipboard access (plain http): select the key so the user can copy it
      const range = document.createRange();
      range.selectNodeContents(code);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      button.textContent = "Selected — copy it";
    }
    setTimeout(() => {
      button.textContent = "Copy";
    }, 2000);
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

  // --- live status: Server-Sent Events, else polling ----------------------------------------

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

  // --- sandbox panel (test mode only) -------------------------------------------------------

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

  function noteServerTime(iso) {
    const serverNow = Date.parse(iso);
    if (!Number.isNaN(serverNow)) clockSkewMs = serverNow - Date.now();
  }

  let sandboxBusy = false;

  async function sandboxAction(run) {
    sandboxBusy = true;
    updateSandboxButtons();
    clearMessage();
    try {
      await run();
      await refresh();
    } catch (error) {
      showError(error);
    } finally {
      sandboxBusy = false;
      updateSandboxButtons();
    }
  }

  function updateSandboxButtons() {
    if (!current || $("sandbox").hidden) return;
    const canPay = Boolean(current.payment) && !TERMINAL.has(current.status) && current.status !== "paid";
    for (const id of ["sandbox-pay", "sandbox-pay-short", "sandbox-fail"]) $(id).disabled = sandboxBusy || !canPay;
    $("sandbox-advance").disabled = sandboxBusy;
  }

  // --- start -------------------------------------------------------------------------------

  const route = /^\/order\/([^/]+)\/?$/.exec(window.location.pathname);
  if (route) orderPage(decodeURIComponent(route[1]));
  else shopPage();
})();
