// The shop: products, cart, email, pay. Cart lines are updated in place (never rebuilt),
// so a quantity control keeps focus while its line changes.

import { announce, focusFirst } from "./a11y.js";
import { api, newIdempotencyKey, enc } from "./api.js";
import { $, el, spokenOnly } from "./dom.js";
import { clearMessage, showError, showMessage } from "./messages.js";
import { money, sumLines } from "./money.js";
import { lastOrder, remember, remembered, orderUrl } from "./storage.js";

const MAX_QUANTITY = 9;
const cart = new Map(); // product id -> quantity
let products = [];
let attempt = null; // {key, fingerprint}: one Idempotency-Key per checkout attempt
let checkingOut = false;

export async function shopPage() {
  const loadingProducts = api("GET", "/api/products");
  // The provider choice is drawn before the shop shows, so nothing below it shifts.
  await showProviderChoice();
  $("shop-view").hidden = false;
  document.title = "Shop — bitloot";
  showResumeLink();
  $("checkout-form").addEventListener("submit", checkout);
  try {
    products = await loadingProducts;
  } catch (error) {
    $("products").replaceChildren();
    $("products-loading").textContent = "The products could not be loaded.";
    $("products-loading").classList.remove("visually-hidden");
    showError(error);
    return;
  } finally {
    $("products").removeAttribute("aria-busy");
  }
  $("products").replaceChildren(...products.map(productRow));
  renderCart();
}

// With several payment providers the customer picks one (the first, the shop's default,
// is preselected); with one, or if the list cannot be read, the shop's default is used.
async function showProviderChoice() {
  let providers = [];
  try {
    providers = (await api("GET", "/api/payment-providers")).providers || [];
  } catch {
    return;
  }
  if (providers.length < 2) return;
  $("providers").replaceChildren(
    ...providers.map((provider, index) => {
      const id = `provider-${provider.id}`;
      const input = el("input", {
        type: "radio",
        name: "provider",
        id,
        value: provider.id,
        checked: index === 0,
        dataset: { testid: id },
      });
      return el("label", { className: "provider", htmlFor: id }, input, provider.name);
    }),
  );
  $("provider-choice").hidden = false;
}

function chosenProvider() {
  if ($("provider-choice").hidden) return undefined;
  const chosen = document.querySelector('input[name="provider"]:checked');
  return chosen ? chosen.value : undefined;
}

function showResumeLink() {
  const last = lastOrder();
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
    spokenOnly(` ${product.name}`),
  );
  add.addEventListener("click", () => {
    const quantity = Math.min(MAX_QUANTITY, (cart.get(product.id) || 0) + 1);
    cart.set(product.id, quantity);
    renderCart();
    announce(`${product.name} added: ${quantity} in your cart. ${cartSummary()}`);
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

const productById = (id) => products.find((p) => p.id === id);

function cartTotal() {
  const lines = [...cart].map(([id, quantity]) => [productById(id), quantity]);
  return lines.length ? money(sumLines(lines.map(([p, q]) => [p.price, q])), lines[0][0].currency) : "—";
}

function cartSummary() {
  const count = [...cart.values()].reduce((sum, q) => sum + q, 0);
  if (!count) return "Your cart is empty.";
  return `${count} ${count === 1 ? "item" : "items"}, total ${cartTotal()}.`;
}

// Adds missing lines, updates quantities and drops removed lines, keeping every other
// line's elements (and so the focus inside them).
function renderCart() {
  const list = $("cart");
  const shown = new Map([...list.children].map((row) => [row.dataset.productId, row]));
  for (const [id, row] of shown) if (!cart.has(id)) row.remove();
  for (const [id, quantity] of cart) {
    const row = shown.get(id) || list.appendChild(cartRow(productById(id)));
    row.querySelector("select").value = String(quantity);
  }
  $("cart-empty").hidden = cart.size > 0;
  $("cart-total").textContent = cartTotal();
  $("pay").disabled = cart.size === 0;
}

function cartRow(product) {
  const selectId = `qty-${product.id}`;
  const select = el("select", { id: selectId, dataset: { testid: selectId } });
  for (let n = 1; n <= MAX_QUANTITY; n += 1) select.append(el("option", { value: String(n) }, n));
  select.addEventListener("change", () => {
    cart.set(product.id, Number(select.value));
    renderCart();
    announce(`${product.name}: ${select.value} in your cart. ${cartSummary()}`);
  });
  const remove = el(
    "button",
    { type: "button", className: "link", dataset: { testid: `remove-${product.id}` } },
    "Remove",
    spokenOnly(` ${product.name}`),
  );
  const row = el(
    "li",
    { className: "cart-line", dataset: { testid: `cart-${product.id}`, productId: product.id } },
    el("span", { className: "name" }, product.name),
    el("label", { className: "qty", htmlFor: selectId }, "Qty ", select),
    remove,
  );
  remove.addEventListener("click", () => {
    // Focus goes to the next line's control, else the previous one's, else the cart.
    const neighbour = row.nextElementSibling || row.previousElementSibling;
    cart.delete(product.id);
    renderCart();
    announce(`${product.name} removed. ${cartSummary()}`);
    focusFirst(neighbour && neighbour.querySelector("select"), "cart-title");
  });
  return row;
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
  // Busy, not disabled: a disabled button would drop the keyboard focus to the document.
  const pay = $("pay");
  pay.setAttribute("aria-disabled", "true");
  pay.textContent = "Creating your order…";
  try {
    const order = await api("POST", "/api/orders", { body, headers: { "Idempotency-Key": attempt.key } });
    remember(order.id, order.access_token);
    try {
      const provider = chosenProvider();
      await api("POST", `/api/orders/${enc(order.id)}/payment`, {
        token: order.access_token,
        body: provider ? { provider } : undefined,
      });
    } catch {
      // the order page opens the payment again
    }
    window.location.assign(orderUrl(order.id, order.access_token));
  } catch (error) {
    showError(error);
    checkingOut = false;
    pay.removeAttribute("aria-disabled");
    pay.textContent = "Pay with crypto";
    renderCart();
    focusFirst(/email/.test(error.code || "") ? "email" : pay);
  }
}
